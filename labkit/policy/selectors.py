"""Kubernetes label selectors, as the engines' match blocks and webhooks apply them to objects and
namespaces (:mod:`labkit.policy.kyverno`, :mod:`labkit.policy.ivp`,
:mod:`labkit.policy.policy_controller`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def labels_match(selector: Any, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = k in labels
        ok = {
            "In": present and labels.get(k) in values,
            "NotIn": not present or labels.get(k) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True
