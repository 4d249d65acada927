"""The webhook's per-engine endpoints without HTTP, against what the real engines answer.

Expected texts: policy-controller v0.13.1 as the native lab's kube-apiserver relays it
(tests/differential, ``cp-key-a-enforce-fail/pod/signed-a@digest/include/create``): an image in a
namespace opted in with ``policy.sigstore.dev/include=true`` and no ClusterImagePolicy at all
matches no policy and is denied (``validateContainerImage``/``setNoMatchingPoliciesError``,
pkg/webhook/validator.go:1182 and :360, default ``no-match-policy: deny`` in pkg/config/store.go).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.admission.review import AdmissionRequest
from labkit.admission.sources import NamespaceLabels, PolicyDirectory
from labkit.admission.webhook import Webhook
from labkit.oci.client import RegistryClient
from labkit.policy.podspec import Engine

IMAGE = "registry.local:5000/diff/signed-a@sha256:" + "fd" * 32


def _webhook(tmp_path: Path) -> Webhook:
    (tmp_path / "policies").mkdir()
    (tmp_path / "namespaces.json").write_text(json.dumps({
        "diff-include": {"policy.sigstore.dev/include": "true"}, "diff-plain": {}}))
    return Webhook(PolicyDirectory(tmp_path / "policies"), NamespaceLabels(tmp_path / "namespaces.json"),
                   RegistryClient(), cache_ttl=0)


def _pod(namespace: str) -> AdmissionRequest:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace},
           "spec": {"containers": [{"name": "c", "image": IMAGE}]}}
    return AdmissionRequest("u", "CREATE", namespace, "p", obj, kind={"group": "", "version": "v1", "kind": "Pod"})


def test_policy_controller_without_policies_denies_an_opted_in_image(tmp_path: Path) -> None:
    webhook = _webhook(tmp_path)
    outcome = webhook.review(Engine.POLICY_CONTROLLER, False, _pod("diff-include"))
    assert not outcome.allowed
    assert outcome.message == f"validation failed: no matching policies: spec.containers[0].image\n{IMAGE}"
    # the mutating webhook has nothing to resolve in a digest and never denies
    assert webhook.review(Engine.POLICY_CONTROLLER, True, _pod("diff-include")).allowed


@pytest.mark.parametrize(("engine", "namespace"), [
    (Engine.POLICY_CONTROLLER, "diff-plain"),  # not opted in: the engine lets it through
    (Engine.KYVERNO, "diff-include"),  # no Kyverno policy: nothing to check
])
def test_without_policies_nothing_else_is_denied(tmp_path: Path, engine: Engine, namespace: str) -> None:
    webhook = _webhook(tmp_path)
    for mutating in (True, False):
        assert webhook.review(engine, mutating, _pod(namespace)).allowed
