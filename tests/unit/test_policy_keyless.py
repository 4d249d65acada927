"""Keyless attestors in labkit's engines, without a registry: a verifier double returns
certificates made here, so each engine's own part (trust options, Kyverno's certificate matching,
policy-controller's TrustRoot and identities, the messages) is checked alone. Agreement with the
real engines is tests/differential/test_keyless.py's."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import http.server
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labkit.errors import NoSignaturesError, PolicyError
from labkit.policy.load import load_objects, load_policies
from labkit.policy.phases import evaluate

ISSUER = "http://127.0.0.1:5556"
IMAGE = "registry.example/team/app@sha256:" + "a" * 64


def _pem_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _certificate(email: str, issuer: str = ISSUER) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(minutes=10))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"),
                                                      issuer.encode()), critical=False)
            .sign(key, hashes.SHA256()))


ROOT = _certificate("root@example.com")
ROOTS = ROOT.public_bytes(serialization.Encoding.PEM).decode()
REKOR, CTLOG = _pem_key(), _pem_key()


@dataclass
class _Signature:
    certificate: x509.Certificate
    payload: bytes = b'{"critical":{"image":{"docker-manifest-digest":"sha256:' + b"a" * 64 + b'"}}}'


@dataclass
class _Verified:
    digest: str
    signatures: tuple[_Signature, ...]


class Double:
    """A verifier whose keyless signatures are certificates for ``signers`` (none: unsigned)."""

    def __init__(self, *signers: str, issuer: str = ISSUER) -> None:
        self.signers, self.issuer = signers, issuer
        self.calls: list[dict[str, Any]] = []

    def __call__(self, ref: str, keys: Sequence[Any], **options: Any) -> Any:
        raise AssertionError("a keyless attestor must not be checked with keys")

    def verify_keyless(self, ref: str, trust: Any, policy: Any, **options: Any) -> _Verified:
        self.calls.append({"ref": ref, "trust": trust, "policy": policy, **options})
        if not self.signers:
            raise NoSignaturesError("no signatures found")
        return _Verified("sha256:" + "a" * 64, tuple(_Signature(_certificate(s, self.issuer)) for s in self.signers))


def cpol(**keyless: Any) -> str:
    entry = {"roots": ROOTS, "rekor": {"url": "http://127.0.0.1:3000", "pubkey": REKOR}, "ctlog": {"pubkey": CTLOG},
             **keyless}
    return yaml.safe_dump({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "kl"},
                           "spec": {"rules": [{"name": "keyless", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                               "verifyImages": [{"imageReferences": ["registry.example/*"],
                                                                 "failureAction": "Enforce",
                                                                 "attestors": [{"entries": [{"keyless": entry}]}]}]}]}})


def pod() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": IMAGE}]}}


def kyverno_message(policy: str, verifier: Any) -> str:
    decision = evaluate(load_policies(policy), pod(), verifier=verifier)
    return "" if decision.allowed else decision.message


def test_kyverno_keyless_subject_and_issuer() -> None:
    assert kyverno_message(cpol(subject="alice@example.com", issuer=ISSUER), Double("alice@example.com")) == ""
    wildcards = cpol(subject="*@example.com", issuer="http://127.0.0.1:*")
    assert kyverno_message(wildcards, Double("alice@example.com")) == ""
    assert kyverno_message(cpol(subjectRegExp="^alice@", issuerRegExp="127[.]0"), Double("alice@example.com")) == ""
    bob = kyverno_message(cpol(subject="alice@example.com", issuer=ISSUER), Double("bob@example.com"))
    assert (".attestors[0].entries[0].keyless: subject mismatch: expected alice@example.com, received "
            "bob@example.com") in bob
    lookalike = kyverno_message(cpol(subject="alice@example.com", issuer="http://localhost:5556"),
                                Double("alice@example.com"))
    assert f"issuer mismatch: expected http://localhost:5556, received {ISSUER}" in lookalike
    # any one signature's certificate suffices; otherwise each mismatch, joined as multierr does
    assert kyverno_message(cpol(subject="alice@example.com"), Double("bob@example.com", "alice@example.com")) == ""
    both = kyverno_message(cpol(subject="carol@example.com"), Double("bob@example.com", "alice@example.com"))
    assert "received bob@example.com; subject mismatch: expected carol@example.com, received alice@example.com" in both


def test_kyverno_keyless_cosign_checks_no_identity_and_reads_the_policy_trust() -> None:
    double = Double("alice@example.com")
    kyverno_message(cpol(subject="alice@example.com", ctlog={"ignoreSCT": True}), double)
    (call,) = double.calls
    policy = call["policy"]
    assert (policy.identity.identity_regexp, policy.identity.issuer_regexp) == ("", "")
    assert (policy.ignore_sct, policy.ignore_tlog) == (True, False)
    assert call["trust"].ca_certificates() == [ROOT]


def test_kyverno_keyless_failures_before_and_from_cosign() -> None:
    unsigned = kyverno_message(cpol(subject="alice@example.com"), Double())
    assert ".attestors[0].entries[0].keyless: no signatures found" in unsigned
    no_roots = kyverno_message(cpol(subject="alice@example.com", roots=""), Double("alice@example.com"))
    assert ".keyless: failed to get roots from fulcio: failed to fetch Fulcio roots: " in no_roots
    no_rekor_key = kyverno_message(cpol(subject="a", rekor={"url": "http://127.0.0.1:3000"}), Double("a"))
    assert ".keyless: failed to load Rekor public keys: " in no_rekor_key
    bad_roots = kyverno_message(cpol(subject="a", roots="not a certificate"), Double("a"))
    assert ".keyless: failed to load Root certificates: error creating root cert pool" in bad_roots


def test_kyverno_keyless_fields_decode_strictly() -> None:
    with pytest.raises(PolicyError, match=r"unknown field .*keyless\.subjectRegex"):
        load_policies(cpol(subjectRegex="alice"))


def test_a_verifier_without_keyless_is_an_error_not_a_pass() -> None:
    def keys_only(ref: str, keys: Sequence[Any], **options: Any) -> Any:
        raise AssertionError("not called")

    decision = evaluate(load_policies(cpol(subject="alice@example.com")), pod(), verifier=keys_only)
    assert not decision.allowed
    assert "cannot check keyless signatures" in decision.message


def trust_root(name: str = "lab") -> dict[str, Any]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": name},
            "spec": {"sigstoreKeys": {
                "certificateAuthorities": [{"subject": {"organization": "o", "commonName": "c"},
                                            "uri": "http://127.0.0.1:5555", "certChain": b64(ROOTS)}],
                "tLogs": [{"baseURL": "http://127.0.0.1:3000", "hashAlgorithm": "sha-256", "publicKey": b64(REKOR)}],
                "ctLogs": [{"baseURL": "http://127.0.0.1:6962", "hashAlgorithm": "sha-256", "publicKey": b64(CTLOG)}]}}}


def cip(trust_root_ref: str = "lab", ctlog: dict[str, Any] | None = None, **identity: str) -> dict[str, Any]:
    authority: dict[str, Any] = {"name": "lab-keyless", "keyless": {
        "url": "http://127.0.0.1:5555", "trustRootRef": trust_root_ref,
        "identities": [identity or {"subject": "alice@example.com", "issuer": ISSUER}]}}
    if ctlog is not None:
        authority["ctlog"] = ctlog
    return {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": "kl-cip"},
            "spec": {"images": [{"glob": "registry.example/**"}], "authorities": [authority]}}


def pc_decision(docs: list[dict[str, Any]], verifier: Any) -> Any:
    return evaluate(load_objects(yaml.safe_dump_all(docs)), pod(), verifier=verifier,
                    namespace_labels={"policy.sigstore.dev/include": "true"})


def test_policy_controller_keyless_with_a_trust_root() -> None:
    double = Double("alice@example.com")
    decision = pc_decision([trust_root(), cip(ctlog={"url": "http://127.0.0.1:3000", "trustRootRef": "lab"})], double)
    assert decision.allowed, decision.message
    (call,) = double.calls
    policy = call["policy"]
    assert (policy.identity.identity, policy.identity.issuer) == ("alice@example.com", ISSUER)
    assert policy.ignore_tlog is False
    assert call["trust"].ca_certificates() == [ROOT]
    # no ctlog: no Rekor client nor keys, so the tlog is skipped
    double = Double("alice@example.com")
    pc_decision([trust_root(), cip()], double)
    assert double.calls[0]["policy"].ignore_tlog is True


def test_policy_controller_keyless_failures() -> None:
    missing = pc_decision([cip(trust_root_ref="elsewhere")], Double("alice@example.com"))
    assert ("constructing checkOpts for lab-keyless: getting Fulcio certs: lab-keyless: trustRootRef elsewhere "
            "not found") in missing.message
    unsigned = pc_decision([trust_root(), cip()], Double())
    assert (f"signature keyless validation failed for authority lab-keyless for {IMAGE}: no signatures found"
            in unsigned.message)


# --- ImageValidatingPolicy: its trust comes from a TUF repository ----------------------------------

CONFORMANCE_ROOT = (Path(__file__).resolve().parents[1] / "fixtures" / "sigstore-conformance"
                    / "invalid-ct-key_fail" / "trusted_root.json")


@pytest.fixture
def tuf_mirror(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A TUF repository serving a conformance suite's trusted root: (mirror, root as base64)."""
    from labkit.lab.tuf_repo import TufRepository

    repo = TufRepository(tmp_path / "tuf")
    repo.write(CONFORMANCE_ROOT)
    handler = functools.partial(_Quiet, directory=str(repo.served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", repo.root_base64()
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_ivp_keyless_trust_is_the_mirrors_trusted_root(tuf_mirror: tuple[str, str]) -> None:
    from labkit.policy.decoder import Decoder
    from labkit.policy.keyless import ivp_keyless_options
    from labkit.policy.schema import Cosign
    from labkit.signing.keyless_trust import KeylessTrust

    mirror, root = tuf_mirror
    cosign = Decoder().decode(Cosign, {"keyless": {"identities": [{"subject": "alice@example.com", "issuer": ISSUER}]},
                                       "tuf": {"mirror": mirror, "root": {"data": root}},
                                       "ctlog": {"insecureIgnoreSCT": True}}, "cosign")
    options, problem = ivp_keyless_options("lab", cosign)
    assert options is not None, problem
    trust, policy = options
    assert trust.ca_certificates() == KeylessTrust.load(CONFORMANCE_ROOT).ca_certificates()
    assert (policy.identity.identity, policy.identity.issuer, policy.ignore_sct) == ("alice@example.com", ISSUER, True)
    # a root the repository was not signed with: the attestor counts 0, saying why
    other = Decoder().decode(Cosign, {"keyless": {"identities": [{"subject": "a", "issuer": "b"}]},
                                      "tuf": {"mirror": mirror, "root": {"data": base64.b64encode(b"{}").decode()}}},
                             "cosign")
    options, problem = ivp_keyless_options("lab", other)
    assert options is None and problem.startswith(f"failed to initialize TUF client (mirror='{mirror}')")


def _entry_policy(keyless: dict[str, Any]) -> str:
    verify = {"imageReferences": ["x/*"], "failureAction": "Enforce",
              "attestors": [{"entries": [{"keyless": keyless}]}]}
    return yaml.safe_dump({"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "probe"},
                           "spec": {"rules": [{"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                               "verifyImages": [verify]}]}})


@pytest.mark.parametrize(("keyless", "said"), [
    ({"subject": "alice@example.com", "issuer": "http://x"},
     'Invalid value: {"issuer":"http://x","subject":"alice@example.com"}: Either Rekor URL or roots are required'),
    ({"subject": "alice@example.com", "roots": "x", "rekor": {"pubkey": "k"}},
     'Invalid value: {"rekor":{"url":"","pubkey":"k"},"subject":"alice@example.com","roots":"x"}: An URL is required'),
    ({"subject": "a", "ctlog": {"ignoreSCT": True}, "additionalExtensions": {"b": "<&>", "a": "1"}},
     'Invalid value: {"ctlog":{"ignoreSCT":true},"subject":"a","additionalExtensions":{"a":"1","b":"\\u003c\\u0026'
     '\\u003e"}}: Either Rekor URL or roots are required'),
])
def test_kyverno_keyless_entry_validation(keyless: dict[str, Any], said: str) -> None:
    """KeylessAttestor.Validate, in the words the native lab's validate-policy.kyverno.svc gave
    (2026-12-03, Kyverno v1.19.1)."""
    with pytest.raises(PolicyError) as err:
        load_policies(_entry_policy(keyless))
    assert f"spec.rules[0].verifyImages[0].attestors[0].entries[0].keyless: {said}" in err.value.message
