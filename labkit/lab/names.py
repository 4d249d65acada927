"""How kubectl and the API server name things: resource plurals, ``kind/name``, and which engine a
policy's API group belongs to. Shared by the embedded lab's API server (:mod:`labkit.lab.apiserver`)
and the kubectl-driven backends (:mod:`labkit.lab.kubectl`), so neither imports the other."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

POLICY_GROUPS = {"kyverno.io": "kyverno", "policies.kyverno.io": "kyverno", "policy.sigstore.dev": "policy-controller"}


def api_group(doc: Mapping[str, Any]) -> str:
    """An object's API group: ``kyverno.io`` for ``kyverno.io/v1``, ``""`` for core ``v1``."""
    return str(doc.get("apiVersion", "")).rpartition("/")[0]


def plural(kind: str) -> str:
    """The resource name the API server serves ``kind`` as (``ClusterPolicy`` → ``clusterpolicies``)."""
    kind = kind.lower()
    return kind[:-1] + "ies" if kind.endswith("y") and kind[-2:-1] not in "aeiou" else kind + "s"


def kind_slash_name(obj: Mapping[str, Any]) -> str:
    """kubectl's ``pod/app``, ``deployment.apps/web``, ``clusterpolicy.kyverno.io/check``."""
    group = api_group(obj)
    kind = str(obj.get("kind", "")).lower()
    return f"{kind}.{group}/{obj.get('metadata', {}).get('name', '')}" if group else \
        f"{kind}/{obj.get('metadata', {}).get('name', '')}"
