"""Kyverno ClusterPolicy verifyImages details the differential suite found against the real
engine (Kyverno v1.19.1 in the native lab, tests/differential, ``cp-*`` sets).

Each expected text is the native lab's kubectl output for the case named, with the registry
host and policy/rule/object names of these tests substituted, or is quoted from Kyverno's source
at v1.19.1 (file:line given).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.policy.phases import evaluate
from labkit.policy.load import load_policies
from tests.unit.test_policy_decision import DIGEST, PEM, Result, Stub, kyverno_policy, pod

PEM_B = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
IMAGE = "docker.io/nginx:1.2"


class KeyStub(Stub):
    """Signed by the key whose PEM is ``signer`` only."""

    def __init__(self, signer: str | None) -> None:
        super().__init__(set())
        self.signer = signer

    def __call__(self, ref: str, keys: Sequence[Any], **options: Any) -> Result:  # type: ignore[override]
        if self.signer is None:
            return super().__call__(ref, keys)
        pem = keys[0].public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        if pem == self.signer:
            return Result(DIGEST)
        self.wrong_key = {ref}
        return super().__call__(ref, keys)


def _two_pems_in_one_entry() -> str:
    both = textwrap.indent(PEM.strip() + "\n" + PEM_B.strip(), " " * 22)
    return kyverno_policy().replace(textwrap.indent(PEM, " " * 22), both + "\n")


@pytest.mark.parametrize(("signer", "reason"), [
    # cp-pem-ab-enforce-fail/pod/signed-a:tag: the second key is entries[1], not entries[0]
    (PEM, ".attestors[0].entries[1].keys: no matching signatures: "
          "invalid signature when validating ASN.1 encoded signature"),
    # cp-pem-ab-enforce-fail/pod/unsigned:tag
    (None, ".attestors[0].entries[0].keys: no signatures found; "
           ".attestors[0].entries[1].keys: no signatures found"),
])
def test_several_pem_blocks_in_one_entry_are_numbered_as_expanded_entries(signer: str | None,
                                                                        reason: str) -> None:
    """ExpandStaticKeys (pkg/engine/internal/utils.go:18) makes one entry per PEM block before
    verifyAttestorSet numbers them (imageverifier.go:356)."""
    d = evaluate(load_policies(_two_pems_in_one_entry()), pod(IMAGE), verifier=KeyStub(signer))
    assert not d.allowed
    assert f"  check-image: 'failed to verify image {IMAGE}: {reason}'\n" in d.message


def _audit(required: bool = True) -> str:
    text = kyverno_policy("Audit")
    return text if not required else text.replace("          verifyDigest: false\n",
                                                  "          verifyDigest: false\n          required: true\n")


def test_audit_failure_is_warned_by_both_webhooks_in_order() -> None:
    """cp-key-a-audit-fail/pod/unsigned:tag: the mutating webhook's rule response, then the
    validating webhook's check of the verify-images annotation (GetWarningMessages,
    pkg/webhooks/utils/warning.go:9; "unverified image", validate_image.go:133)."""
    d = evaluate(load_policies(_audit()), pod(IMAGE), verifier=Stub(set()))
    assert d.allowed
    assert d.warnings == [
        f"policy check-image.check-image: failed to verify image {IMAGE}: "
        ".attestors[0].entries[0].keys: no signatures found",
        f"policy check-image.check-image: unverified image {IMAGE}",
    ]


def test_audit_wrong_key_warning_quotes_cosign() -> None:
    # cp-key-a-audit-fail/pod/signed-b:tag
    d = evaluate(load_policies(_audit()), pod(IMAGE), verifier=Stub(set(), {IMAGE}))
    assert d.warnings[0] == (
        f"policy check-image.check-image: failed to verify image {IMAGE}: .attestors[0].entries[0]"
        ".keys: no matching signatures: invalid signature when validating ASN.1 encoded signature")


def test_passing_and_blocking_rules_warn_nothing() -> None:
    assert evaluate(load_policies(_audit()), pod(IMAGE), verifier=Stub({IMAGE})).warnings == []
    # a blocked request carries no warnings (imageverification/handler.go:126 returns before them)
    blocked = evaluate(load_policies(kyverno_policy()), pod(IMAGE), verifier=Stub(set()))
    assert not blocked.allowed and blocked.warnings == []


def test_skip_image_references_is_warned_with_kyvernos_text() -> None:
    """imageverifier.go:179: a skipImageReferences skip is a RuleSkip WithEmitWarning(true)."""
    text = kyverno_policy().replace('        - imageReferences: ["docker.io/*"]\n',
                                    '        - imageReferences: ["docker.io/*"]\n'
                                    '          skipImageReferences: ["docker.io/nginx*"]\n')
    d = evaluate(load_policies(text), pod(IMAGE), verifier=Stub(set()))
    assert d.allowed
    assert d.warnings == [f"policy check-image.check-image: skipping image reference image {IMAGE}, "
                          "policy check-image ruleName check-image"]


def test_block_message_lists_audit_failures_too_once_one_rule_blocks() -> None:
    """GetBlockedMessages (pkg/webhooks/utils/block.go:38) lists every failed rule of every
    policy once any of them blocks."""
    enforce, audit = kyverno_policy(), kyverno_policy("Audit").replace("name: check-image}", "name: audit-image}")
    d = evaluate(load_policies(enforce + "---\n" + audit), pod(IMAGE), verifier=Stub(set()))
    assert not d.allowed
    assert "\naudit-image:\n  check-image: 'failed to verify image" in d.message
    assert "\ncheck-image:\n  check-image: 'failed to verify image" in d.message


# --- the admission webhook's verifier ---------------------------------------------------------


class _Access:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, ref: str, keys: Sequence[Any], **options: Any) -> Result:
        self.calls.append(options)
        return Result(DIGEST)


def test_caching_verifier_forwards_the_signature_hash_and_keys_the_cache_on_it() -> None:
    """cp-key-c-sha384-enforce-fail/pod/signed-p384:tag is admitted by Kyverno (keys.
    signatureAlgorithm sha384); the webhook's verifier must pass the hash on, and a sha256
    success must not answer a sha384 question."""
    from labkit.admission.cache import CachingVerifier

    access = _Access()
    verifier = CachingVerifier(access, ttl=60)  # type: ignore[arg-type]
    key = serialization.load_pem_public_key(PEM.encode())
    verifier(IMAGE, [key], digest_algorithm="sha384")
    verifier(IMAGE, [key])
    verifier(IMAGE, [key], digest_algorithm="sha384")
    assert [c["digest_algorithm"] for c in access.calls] == ["sha384", "sha256"]
    assert verifier.stats == {"hits": 1, "misses": 2}


def test_kyverno_reaches_the_hash_through_the_webhook_verifier() -> None:
    from labkit.admission.cache import CachingVerifier

    access = _Access()
    text = kyverno_policy().replace("                    publicKeys:",
                                    "                    signatureAlgorithm: sha384\n                    publicKeys:")
    d = evaluate(load_policies(text), pod(IMAGE), verifier=CachingVerifier(access, ttl=0))  # type: ignore[arg-type]
    assert d.allowed and access.calls[0]["digest_algorithm"] == "sha384"


def test_missing_tag_is_reported_as_cosign_quotes_ggcr(tmp_path: Path) -> None:
    """cp-key-a-enforce-fail/pod/missing:tag: cosign's ResolveDigest GETs the manifest
    (pkg/oci/remote/digest.go:30 at cosign v3.1.2) and wraps ggcr's transport.Error
    (pkg/cosign/verify.go:660); the native lab shows ``image tag not found: GET http://{registry}/
    v2/diff/missing/manifests/v1: MANIFEST_UNKNOWN: manifest unknown to registry;
    map[reference:v1]``."""
    from labkit.errors import ImageTagNotFoundError
    from labkit.oci.client import RegistryClient
    from labkit.policy.credentials import RegistryAccess
    from labkit.registry import serve

    handle = serve(tmp_path / "registry", port=0)
    try:
        host = f"127.0.0.1:{handle.port}"
        key = serialization.load_pem_public_key(PEM.encode())
        with RegistryClient() as client:
            access = RegistryAccess(client)
            with pytest.raises(ImageTagNotFoundError) as caught:
                access(f"{host}/diff/missing:v1", [key])
            access.close()
        assert caught.value.message == (
            f"image tag not found: GET http://{host}/v2/diff/missing/manifests/v1: "
            "MANIFEST_UNKNOWN: manifest unknown to registry; map[reference:v1]")
    finally:
        handle.stop()


# --- kubectl apply of a deprecated CRD version ------------------------------------------------


def test_apply_and_delete_of_a_v1_cluster_policy_carry_the_crds_deprecation_warning(tmp_path: Path) -> None:
    """The native lab's ``kubectl apply`` prints the CRD's deprecationWarning (kyverno v1.19.1
    api/kyverno/v1/clusterpolicy_types.go:29, config/crds/kyverno/kyverno.io_clusterpolicies.yaml);
    the API server adds it to any request for the version (customresource_handler.go:319)."""
    import yaml

    from labkit.lab.apiserver import ObjectStore, delete_object, store_object

    store = ObjectStore(tmp_path / "p", tmp_path / "s")
    store.initialise()
    doc = yaml.safe_load(kyverno_policy())
    applied = store_object(store, doc)
    assert applied.admitted and applied.warnings == (
        "kyverno.io/v1 ClusterPolicy is deprecated and will be removed in a future release; migrate to "
        "ValidatingPolicy, MutatingPolicy, GeneratingPolicy or ImageValidatingPolicy (policies.kyverno.io), "
        "see https://kyverno.io/docs/guides/migration-to-cel/",)
    assert delete_object(store, doc).warnings == applied.warnings
    # api/kyverno/v1/policy_types.go:28
    namespaced = {**doc, "kind": "Policy", "metadata": {"name": "p", "namespace": "default"}}
    assert store_object(store, namespaced).warnings == (
        "kyverno.io/v1 Policy is deprecated and will be removed in a future release; migrate to "
        "NamespacedValidatingPolicy and the other namespaced policy types (policies.kyverno.io), "
        "see https://kyverno.io/docs/guides/migration-to-cel/",)
    # the CEL policy types are not deprecated
    ivp = {"apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy", "metadata": {"name": "i"}}
    from labkit.lab.apiserver import deprecation_warnings
    assert deprecation_warnings(ivp) == ()


# --- UPDATE: an unchanged image the old object records as verified ------------------------------


def _with_scoped(resource: dict[str, Any], policy: str, image: str, status: str = "pass") -> dict[str, Any]:
    import json

    scoped = {"version": 1, "policies": {f"/{policy}": {"check-image": {image: status}}}}
    return {**resource, "metadata": {**resource["metadata"],
                                     "annotations": {"kyverno.io/verify-images-scoped": json.dumps(scoped)}}}


def test_update_trusts_the_old_objects_record_for_an_unchanged_image() -> None:
    """cp-key-a-enforce-fail/pod/unsigned@digest/plain/update-forged-annotation: the native lab
    answers ``pod/g01-23 replaced``: imageVerifier.Verify skips an image whose field is unchanged
    and that the OLD object's scoped annotation says passed (imageverifier.go:74-79, 140-144)."""
    image = f"docker.io/nginx@{DIGEST}"
    old = _with_scoped(pod(image), "check-image", image)
    stub = Stub(set())
    d = evaluate(load_policies(kyverno_policy()), pod(image), verifier=stub, old_resource=old)
    assert d.allowed and stub.calls == [] and d.warnings == []
    assert {"op": "add", "path": "/metadata/annotations/kyverno.io~1verify-images-scoped",
            "value": '{"version":1,"policies":{"/check-image":{"check-image":{"' + image + '":"pass"}}}}'} \
        in d.patches


@pytest.mark.parametrize("old", [
    _with_scoped(pod("docker.io/nginx:1.1"), "check-image", "docker.io/nginx:1.2"),  # the image changed
    _with_scoped(pod("nginx:1.2"), "other-policy", "docker.io/nginx:1.2"),  # another policy's record
    _with_scoped(pod("nginx:1.2"), "check-image", "docker.io/nginx:1.2", "fail"),
    pod("nginx:1.2"),  # no record
])
def test_update_verifies_again_without_a_matching_record(old: dict[str, Any]) -> None:
    stub = Stub(set())
    d = evaluate(load_policies(kyverno_policy()), pod("nginx:1.2"), verifier=stub, old_resource=old)
    assert not d.allowed and stub.calls == [IMAGE]


# --- autogen: CanAutoGen ------------------------------------------------------------------------


def _excluding(block: str) -> str:
    return kyverno_policy().replace(
        "      verifyImages:\n", f"      exclude: {{any: [{{resources: {block}}}]}}\n      verifyImages:\n", 1)


@pytest.mark.parametrize("block", [
    "{selector: {matchLabels: {labkit.dev/skip: 'true'}}}",  # the differential suite's exclude
    "{names: [other]}",
    "{annotations: {a: b}}",
])
def test_a_selector_name_or_annotations_anywhere_turns_autogen_off(block: str) -> None:
    """cp-key-a-enforce-fail/deployment/unsigned:tag is created on the native lab (``deployment.
    apps/g01-16 created``, image untouched) and the policy's status lists no autogen rule:
    CanAutoGen refuses a description with a selector, names or annotations
    (pkg/autogen/v1/autogen.go:30-38, 100-117)."""
    stub = Stub(set())
    d = evaluate(load_policies(_excluding(block)), pod(IMAGE, "Deployment"), verifier=stub)
    assert d.allowed and d.trace == [] and d.patches == [] and stub.calls == []
    # the Pod rule itself still applies
    assert not evaluate(load_policies(_excluding(block)), pod(IMAGE), verifier=stub).allowed


def test_an_exclude_by_namespace_keeps_autogen() -> None:
    d = evaluate(load_policies(_excluding("{namespaces: [kube-system]}")), pod(IMAGE, "Deployment"),
                 verifier=Stub(set()))
    assert not d.allowed and "autogen-check-image" in d.message
