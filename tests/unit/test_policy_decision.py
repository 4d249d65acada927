"""Admission decisions with a stub signature check.

Expected message layouts: Kyverno's ``block.go`` text and webhook outputs quoted in
``shared/reference/kyverno.md`` §1.7–1.8 (patch value ``docker.io/nginx:1.2@sha256:…``,
annotation keyed by the tag-less digest form, error ``failed to verify image …: .attestors[0]
.entries[0].keys: no signatures found``); policy-controller's knative text as quoted from issue
#1899 in ``policy-controller.md`` §2.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.errors import NoMatchingSignaturesError, NoSignaturesError
from labkit.oci.auth import Credentials
from labkit.policy.decision import evaluate
from labkit.policy.images import Engine
from labkit.policy.load import load_policies

DIGEST = "sha256:" + "ab" * 32
PEM = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


@dataclass
class Result:
    digest: str


class Stub:
    """Signed images verify; others raise cosign's errors. Records what was asked."""

    def __init__(self, signed: set[str], wrong_key: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.signed, self.wrong_key, self.calls = signed, wrong_key, []
        self.options: list[dict[str, Any]] = []

    def __call__(self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
                 repository: str | None = None, credentials: Credentials | None = None) -> Result:
        self.calls.append(ref)
        self.options.append({"repository": repository, "credentials": credentials})
        if ref in self.signed:
            return Result(DIGEST)
        if ref in self.wrong_key:
            raise NoMatchingSignaturesError("no matching signatures: invalid signature when validating ASN.1 encoded signature")
        raise NoSignaturesError("no signatures found")


def kyverno_policy(action: str = "Enforce", patterns: str = '"docker.io/*"') -> str:
    key = textwrap.indent(PEM, " " * 22)
    return f"""\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {{name: check-image}}
spec:
  rules:
    - name: check-image
      match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
      verifyImages:
        - imageReferences: [{patterns}]
          failureAction: {action}
          mutateDigest: {"true" if action == "Enforce" else "false"}
          verifyDigest: false
          attestors:
            - entries:
                - keys:
                    publicKeys: |-
{key}
"""


def pod(image: str, kind: str = "Pod") -> dict[str, Any]:
    spec = {"containers": [{"name": "web", "image": image}]}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web", "namespace": "default"},
            "spec": {"template": {"spec": spec}}}


def test_kyverno_signed_image_is_patched_to_digest() -> None:
    stub = Stub({"docker.io/nginx:1.2"})
    d = evaluate(load_policies(kyverno_policy()), pod("nginx:1.2"), verifier=stub)
    assert d.allowed and d.engine is None
    assert d.patches == [
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/kyverno.io~1verify-images",
         "value": json.dumps({f"docker.io/nginx@{DIGEST}": "pass"}, separators=(",", ":"))},
        {"op": "add", "path": "/metadata/annotations/kyverno.io~1verify-images-scoped",
         "value": '{"version":1,"policies":{"/check-image":{"check-image":{"docker.io/nginx@'
                  + DIGEST + '":"pass"}}}}'},
        {"op": "replace", "path": "/spec/containers/0/image", "value": f"docker.io/nginx:1.2@{DIGEST}"},
    ]
    # the validating webhook sees the pinned image and the scoped annotation
    assert [(t.phase, t.status, t.image) for t in d.trace] == [
        ("mutate", "pass", "docker.io/nginx:1.2"), ("validate", "pass", f"docker.io/nginx@{DIGEST}")]


def test_kyverno_unsigned_image_is_blocked_with_block_go_message() -> None:
    d = evaluate(load_policies(kyverno_policy()), pod("nginx:1.2"), verifier=Stub(set()))
    assert not d.allowed and d.engine is Engine.KYVERNO
    assert d.message == (
        "\n\nresource Pod/default/web was blocked due to the following policies \n\n"
        "check-image:\n"
        "  check-image: 'failed to verify image docker.io/nginx:1.2: .attestors[0].entries[0].keys: no signatures found'\n"
    )


def test_kyverno_autogen_rule_name_for_deployments() -> None:
    d = evaluate(load_policies(kyverno_policy()), pod("nginx:1.2", "Deployment"), verifier=Stub(set(), {"docker.io/nginx:1.2"}))
    assert not d.allowed
    assert "  autogen-check-image: 'failed to verify image docker.io/nginx:1.2: .attestors[0].entries[0].keys: no matching signatures:" in d.message
    assert d.trace[0].path == "/spec/template/spec/containers/0/image"


def test_kyverno_audit_admits_and_records_fail() -> None:
    d = evaluate(load_policies(kyverno_policy("Audit")), pod("nginx:1.2"), verifier=Stub(set()))
    assert d.allowed
    assert d.trace[0].status == "fail"
    assert d.patches[1]["value"] == '{"docker.io/nginx:1.2":"fail"}'


def test_kyverno_pattern_is_matched_against_normalised_name() -> None:
    # docker.io/library/* never matches: Kyverno does not add library/
    stub = Stub(set())
    d = evaluate(load_policies(kyverno_policy(patterns='"docker.io/library/*"')), pod("nginx:1.2"), verifier=stub)
    assert d.allowed and d.trace == [] and stub.calls == []


def cip(mode: str = "enforce") -> str:
    key = textwrap.indent(PEM, " " * 10)
    return f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: signed}}
spec:
  mode: {mode}
  images: [{{glob: "ghcr.io/labkit/**"}}]
  authorities:
    - key:
        data: |
{key}
"""


INCLUDE = {"policy.sigstore.dev/include": "true"}
IMAGE = f"ghcr.io/labkit/app:v1@{DIGEST}"


def test_cip_unsigned_digest_image_is_denied_with_knative_text() -> None:
    d = evaluate(load_policies(cip()), pod(IMAGE), namespace_labels=INCLUDE, verifier=Stub(set()))
    assert not d.allowed and d.engine is Engine.POLICY_CONTROLLER
    assert d.message == (
        "validation failed: failed policy: signed: spec.containers[0].image\n"
        f"{IMAGE} signature key validation failed for authority authority-0 for "
        f"ghcr.io/labkit/app@{DIGEST}: no signatures found"
    )


def test_cip_signed_image_passes_and_verifier_sees_ggcr_name() -> None:
    stub = Stub({f"ghcr.io/labkit/app@{DIGEST}"})
    d = evaluate(load_policies(cip()), pod(IMAGE), namespace_labels=INCLUDE, verifier=stub)
    assert d.allowed and stub.calls == [f"ghcr.io/labkit/app@{DIGEST}"]


def test_cip_requires_digests_and_opt_in_namespace() -> None:
    d = evaluate(load_policies(cip()), pod("ghcr.io/labkit/app:v1"), namespace_labels=INCLUDE, verifier=Stub(set()))
    assert d.message == (
        "validation failed: invalid value: ghcr.io/labkit/app:v1 must be an image digest: spec.containers[0].image"
    )
    d = evaluate(load_policies(cip()), pod("ghcr.io/labkit/app:v1"), verifier=Stub(set()))
    assert d.allowed and d.trace == []


@pytest.mark.parametrize(("setting", "allowed", "warned"), [("deny", False, False), ("warn", True, True), ("allow", True, False), ("", False, False)])
def test_cip_no_match_policy(setting: str, allowed: bool, warned: bool) -> None:
    other = f"quay.io/x/y@{DIGEST}"
    d = evaluate(load_policies(cip()), pod(other), namespace_labels=INCLUDE, verifier=Stub(set()), no_match_policy=setting)
    assert d.allowed is allowed
    expected = f"no matching policies: spec.containers[0].image\n{other}"
    assert (d.warnings == [expected]) is warned
    if not allowed:
        assert d.message == "validation failed: " + expected


def test_cip_warn_mode_admits_with_warning() -> None:
    d = evaluate(load_policies(cip("warn")), pod(IMAGE), namespace_labels=INCLUDE, verifier=Stub(set()))
    assert d.allowed and d.warnings[0].startswith("failed policy: signed: spec.containers[0].image\n")


def test_kyverno_unreadable_public_key_fails_the_rule() -> None:
    (policy,) = load_policies(kyverno_policy())
    policy.spec.rules[0].verify_images[0].attestors[0].entries[0].keys.public_keys = (
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
    )
    d = evaluate([policy], pod("nginx:1.2"), verifier=Stub({"docker.io/nginx:1.2"}))
    assert not d.allowed
    assert ".attestors[0].entries[0].keys: failed to load public key from PEM" in d.message


def test_kyverno_namespaced_policy_only_governs_its_namespace() -> None:
    doc = kyverno_policy().replace("kind: ClusterPolicy", "kind: Policy").replace(
        "metadata: {name: check-image}", "metadata: {name: check-image, namespace: team-a}")
    stub = Stub(set())
    assert evaluate(load_policies(doc), pod("nginx:1.2"), verifier=stub).allowed
    assert stub.calls == []
    team_a = pod("nginx:1.2")
    team_a["metadata"]["namespace"] = "team-a"
    assert not evaluate(load_policies(doc), team_a, verifier=stub).allowed
