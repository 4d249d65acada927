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
from labkit.policy.phases import Decision, evaluate
from labkit.policy.podspec import Engine
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
                    # offline: no transparency log, no SCT (else Kyverno fetches Sigstore's TUF root)
                    rekor: {{ignoreTlog: true}}
                    ctlog: {{ignoreSCT: true}}
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
    # knative sends each line as its own warning (webhook/admission.go:132-142)
    assert (d.warnings == expected.split("\n")) is warned
    if not allowed:
        assert d.message == "validation failed: " + expected


def test_cip_warn_mode_admits_with_warning() -> None:
    """The FieldError text is split at its newline into two warnings (knative.dev/pkg
    webhook/admission.go:132-142); the native lab's kubectl prints, for cip-key-a-warn-fail,
    ``failed policy: diff-20: spec.containers[0].image`` then ``<image> signature key validation
    failed for authority authority-0 for <ggcr name>: no signatures found``."""
    d = evaluate(load_policies(cip("warn")), pod(IMAGE), namespace_labels=INCLUDE, verifier=Stub(set()))
    assert d.allowed
    assert d.warnings == [
        "failed policy: signed: spec.containers[0].image",
        f"{IMAGE} signature key validation failed for authority authority-0 for "
        f"ghcr.io/labkit/app@{DIGEST}: no signatures found",
    ]


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


# --- transparency log and CT log, offline (Kyverno v1.19.1 buildCosignVerifier/buildCosignOptions,
# policy-controller v0.13.1 checkOptsFromAuthority; labkit.policy.tlog) ----------------------------

TUF_TAIL = ("updating local metadata and targets: error updating to TUF remote mirror: "
            "tuf: failed to download 13.root.json: ")


def kyverno_keys(rekor: str | None, ctlog: str | None) -> str:
    """kyverno_policy() with the keys attestor's rekor/ctlog lines replaced (None: absent)."""
    text = kyverno_policy().replace("                    rekor: {ignoreTlog: true}\n", "").replace(
        "                    ctlog: {ignoreSCT: true}\n", "")
    extra = "".join(f"                    {line}\n" for line in (rekor, ctlog) if line)
    return text.replace("                - keys:\n", "                - keys:\n" + extra)


def test_kyverno_without_ignore_tlog_fails_on_the_tuf_root_without_contacting_anything() -> None:
    # Observed on Kyverno 1.19.1 (native-engines.md "Verified run"): the signed image is denied
    # with "…keys: failed to load Rekor public keys: updating local metadata and targets: …"
    stub = Stub({"docker.io/nginx:1.2"})
    for rekor in (None, "rekor: {url: 'http://127.0.0.1:9'}"):
        d = evaluate(load_policies(kyverno_keys(rekor, "ctlog: {ignoreSCT: true}")), pod("nginx:1.2"),
                     verifier=stub)
        assert not d.allowed and d.webhook == "mutate.kyverno.svc-fail"
        assert ("check-image: 'failed to verify image docker.io/nginx:1.2: .attestors[0].entries[0].keys: "
                "failed to load Rekor public keys: " + TUF_TAIL) in d.message
        assert d.trace[0].status == "fail"  # ErrDownloadFailed does not unwrap to a net.OpError
    assert stub.calls == []  # never reached the registry, let alone Sigstore


def test_kyverno_without_ignore_sct_fails_on_the_ct_log_keys() -> None:
    d = evaluate(load_policies(kyverno_keys("rekor: {ignoreTlog: true}", None)), pod("nginx:1.2"),
                 verifier=Stub({"docker.io/nginx:1.2"}))
    assert not d.allowed
    assert ".attestors[0].entries[0].keys: failed to load CTLogs public keys: " + TUF_TAIL in d.message


def test_kyverno_rekor_pubkey_means_an_online_rekor_lookup_per_signature() -> None:
    rekor = f"rekor: {{url: 'http://127.0.0.1:9', pubkey: {json.dumps(PEM)}}}"
    text = kyverno_keys(rekor, "ctlog: {ignoreSCT: true}")
    d = evaluate(load_policies(text), pod("nginx:1.2"), verifier=Stub({"docker.io/nginx:1.2"}))
    assert not d.allowed
    assert ('.attestors[0].entries[0].keys: no matching signatures: searching log query: '
            'Post "http://127.0.0.1:9/api/v1/log/entries/retrieve": ') in d.message
    # no .sig at all: cosign says so before any Rekor lookup
    d = evaluate(load_policies(text), pod("nginx:1.2"), verifier=Stub(set()))
    assert ".attestors[0].entries[0].keys: no signatures found" in d.message


def test_kyverno_ignore_tlog_with_ct_log_pubkey_needs_no_tuf() -> None:
    ctlog = f"ctlog: {{pubkey: {json.dumps(PEM)}}}"
    d = evaluate(load_policies(kyverno_keys("rekor: {ignoreTlog: true}", ctlog)), pod("nginx:1.2"),
                 verifier=Stub({"docker.io/nginx:1.2"}))
    assert d.allowed, d.message


def cip_with_ctlog(ctlog: str) -> str:
    return cip().replace("    - key:\n", f"    - ctlog: {ctlog}\n      key:\n")


def test_cip_key_authority_skips_rekor_without_a_ctlog_url() -> None:
    for text in (cip(), cip_with_ctlog("{}")):
        stub = Stub({f"ghcr.io/labkit/app@{DIGEST}"})
        assert evaluate(load_policies(text), pod(IMAGE), namespace_labels=INCLUDE, verifier=stub).allowed


def test_cip_key_authority_with_ctlog_url_fails_on_the_tuf_root() -> None:
    stub = Stub({f"ghcr.io/labkit/app@{DIGEST}"})
    d = evaluate(load_policies(cip_with_ctlog("{url: 'http://127.0.0.1:9'}")), pod(IMAGE),
                 namespace_labels=INCLUDE, verifier=stub)
    assert not d.allowed and stub.calls == []
    assert d.message.startswith(
        "validation failed: failed policy: signed: spec.containers[0].image\n"
        f"{IMAGE} constructing checkOpts for authority-0: getting Rekor public keys: authority-0: "
        "getting Rekor public keys: " + TUF_TAIL)


# --- signature hash (Kyverno keys.signatureAlgorithm; cosign v2.6.1 signs P-384 with SHA-384) -----


class HashStub(Stub):
    """Verifies only when asked for ``good`` (the hash the signer used)."""

    def __init__(self, good: str) -> None:
        super().__init__(set())
        self.good, self.asked = good, []

    def __call__(self, ref: str, keys: Sequence[Any], *, digest_algorithm: str = "sha256",  # type: ignore[override]
                 **options: Any) -> Result:
        self.asked.append(digest_algorithm)
        if digest_algorithm == self.good:
            return Result(DIGEST)
        raise NoMatchingSignaturesError("no matching signatures: invalid signature when validating ASN.1 encoded signature")


@pytest.mark.parametrize(("line", "asked", "allowed"), [
    ("", "sha256", False),  # the default: a SHA-384 signature does not verify
    ("signatureAlgorithm: sha384", "sha384", True),
    ("signatureAlgorithm: sha512", "sha512", False),
])
def test_kyverno_keys_signature_algorithm_picks_the_hash(line: str, asked: str, allowed: bool) -> None:
    text = kyverno_policy().replace("                    publicKeys:",
                                    f"                    {line}\n                    publicKeys:")
    stub = HashStub("sha384")
    d = evaluate(load_policies(text), pod("nginx:1.2"), verifier=stub)
    assert stub.asked == [asked] and d.allowed is allowed
    if not allowed:
        assert (".attestors[0].entries[0].keys: no matching signatures: "
                "invalid signature when validating ASN.1 encoded signature") in d.message


def test_kyverno_attestor_level_signature_algorithm_is_overridden_by_keys() -> None:
    # buildCosignVerifier sets opts.SignatureAlgorithm from the entry, then from keys (default sha256)
    text = kyverno_policy().replace("                - keys:\n",
                                    "                - signatureAlgorithm: sha384\n                  keys:\n")
    stub = HashStub("sha384")
    assert not evaluate(load_policies(text), pod("nginx:1.2"), verifier=stub).allowed
    assert stub.asked == ["sha256"]


@pytest.mark.parametrize(("algorithm", "allowed"), [("", False), ("sha384", True)])
def test_cip_key_hash_algorithm_picks_the_hash(algorithm: str, allowed: bool) -> None:
    """CIP ``key.hashAlgorithm`` is the hash cosign checks with (policy-controller v0.13.1
    pkg/webhook/clusterimagepolicy/clusterimagepolicy_types.go:99-101,184-188, default sha256).
    The native lab (cip-key-c-sha384-enforce-fail) admits the P-384 image signed with SHA-384
    under ``hashAlgorithm: sha384``; with the default it denies with cosign's text."""
    text = cip().replace("    - key:\n", "    - key:\n" + (f"        hashAlgorithm: {algorithm}\n" if algorithm else ""))
    stub = HashStub("sha384")
    d = evaluate(load_policies(text), pod(IMAGE), namespace_labels=INCLUDE, verifier=stub)
    assert stub.asked == [algorithm or "sha256"] and d.allowed is allowed
    if not allowed:
        assert d.message == (
            "validation failed: failed policy: signed: spec.containers[0].image\n"
            f"{IMAGE} signature key validation failed for authority authority-0 for "
            f"ghcr.io/labkit/app@{DIGEST}: no matching signatures: "
            "invalid signature when validating ASN.1 encoded signature")


def test_a_verifier_that_cannot_take_the_hash_is_an_error_not_a_sha256_check() -> None:
    text = kyverno_policy().replace("                    publicKeys:",
                                    "                    signatureAlgorithm: sha384\n                    publicKeys:")
    stub = Stub({"docker.io/nginx:1.2"})  # no digest_algorithm parameter
    d = evaluate(load_policies(text), pod("nginx:1.2"), verifier=stub)
    assert not d.allowed and stub.calls == [] and d.trace[0].status == "error"
    assert "cannot check sha384 signatures" in d.message


def test_p384_cosign_signature_against_the_real_verifier(tmp_path: Any) -> None:
    """A real P-384 signature as cosign v2.6.1 makes it (sigstore LoadDefaultSignerVerifier:
    P-384 → SHA-384), pushed to labkit's registry and checked by the RegistryAccess verifier."""
    from labkit.oci.client import RegistryClient
    from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
    from labkit.policy.credentials import RegistryAccess
    from labkit.registry import serve
    from labkit.signing.sign import sign_image

    handle = serve(tmp_path / "registry", port=0)
    try:
        host = f"127.0.0.1:{handle.port}"
        private = ec.generate_private_key(ec.SECP384R1())
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [sha256_digest(b"x")]}}).encode()
        image = Image(manifest=Manifest(config=Descriptor.of(OCI_CONFIG, config),
                                        layers=(Descriptor.of(OCI_LAYER, b"x"),)), config=config, layers=[b"x"])
        with RegistryClient() as client:
            digest = client.push_image(f"{host}/p384/app:v1", image)
            sign_image(f"{host}/p384/app@{digest}", private, client=client)
            access = RegistryAccess(client)
            key = textwrap.indent(public, " " * 22)

            def decide(line: str) -> Decision:
                text = kyverno_policy(patterns=f'"{host}/p384/*"').replace(
                    "                    publicKeys: |-\n" + textwrap.indent(PEM, " " * 22),
                    f"                    {line}\n                    publicKeys: |-\n{key}")
                return evaluate(load_policies(text), pod(f"{host}/p384/app:v1"), verifier=access,
                                resolver=access.resolve)
            try:
                assert decide("signatureAlgorithm: sha384").allowed
                denied = decide("signatureAlgorithm: sha256")
                assert not denied.allowed
                assert ".attestors[0].entries[0].keys: no matching signatures: " in denied.message
            finally:
                access.close()
    finally:
        handle.stop()
