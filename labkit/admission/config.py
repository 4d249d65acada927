"""Validating- and MutatingWebhookConfiguration objects that point a cluster at the webhook.

One webhook entry per engine endpoint, each with that engine's namespaceSelector: Kyverno's
default excludes ``kube-system`` and ``kyverno``; policy-controller's is the opt-in label
``policy.sigstore.dev/include: "true"``. ``failurePolicy: Fail`` (both engines' default),
``timeoutSeconds: 10``, ``sideEffects: None``, ``admissionReviewVersions: [v1]``.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from labkit.policy.policy_controller import INCLUDE_LABEL as PC_INCLUDE_LABEL

_KYVERNO_SELECTOR = {"matchExpressions": [
    {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "kyverno"]}]}
_PC_SELECTOR = {"matchExpressions": [{"key": PC_INCLUDE_LABEL, "operator": "In", "values": ["true"]}]}
_RULES = [
    {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods", "replicationcontrollers"]},
    {"apiGroups": ["apps"], "apiVersions": ["v1"],
     "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"]},
    {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs", "cronjobs"]},
]


def _webhook(name: str, url: str, ca_bundle: str, selector: dict[str, Any], failure_policy: str,
             mutating: bool) -> dict[str, Any]:
    hook: dict[str, Any] = {
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca_bundle},
        # fresh copies: shared lists would come out as YAML anchors and aliases
        "rules": [{**copy.deepcopy(r), "operations": ["CREATE", "UPDATE"], "scope": "Namespaced"}
                  for r in _RULES],
        "namespaceSelector": copy.deepcopy(selector),
        "failurePolicy": failure_policy,
        "timeoutSeconds": 10,
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    if mutating:
        hook["reinvocationPolicy"] = "IfNeeded"
    return hook


def webhook_configurations(base_url: str, ca_bundle: str, *, failure_policy: str = "Fail") -> list[dict[str, Any]]:
    """The two configuration objects; ``base_url`` is how the API server reaches the webhook."""
    base = base_url.rstrip("/")
    engines = (("kyverno", _KYVERNO_SELECTOR), ("policy-controller", _PC_SELECTOR))
    docs = []
    for kind, verb in (("MutatingWebhookConfiguration", "mutate"),
                       ("ValidatingWebhookConfiguration", "validate")):
        docs.append({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": f"labkit-{verb}", "labels": {"app.kubernetes.io/managed-by": "labkit"}},
            "webhooks": [
                _webhook(f"{verb}.{engine}.labkit.dev", f"{base}/{verb}/{engine}", ca_bundle, selector,
                         failure_policy, verb == "mutate")
                for engine, selector in engines
            ],
        })
    return docs


def webhook_configuration_yaml(base_url: str, ca_bundle: str, *, failure_policy: str = "Fail") -> str:
    return yaml.safe_dump_all(webhook_configurations(base_url, ca_bundle, failure_policy=failure_policy),
                              sort_keys=False, width=1 << 20)
