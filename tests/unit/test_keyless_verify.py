"""Keyless verification of legacy signature layers, without a lab: a CA, a Rekor key and SETs made
here, so each check of cosign's ``verifyInternal`` order can fail alone. The real services and
cosign's own words are ``tests/interop/test_keyless_labkit.py``'s."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit.errors import LabkitError, UsageError
from labkit.signing.artifact import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SignatureLayer,
)
from labkit.signing.blob_bundle import CertificateIdentity
from labkit.signing.keyless_trust import KeylessTrust
from labkit.signing.keyless_verify import (
    EXPIRED_NO_TIMESTAMP,
    NO_SCT,
    OFFLINE_FAILED,
    UNKNOWN_AUTHORITY,
    KeylessPolicy,
    KeylessSignature,
    KeylessVerification,
    verify_layer,
)
from labkit.signing.payload import SimpleSigningPayload

ISSUER = "http://127.0.0.1:9400"
ALICE = "alice@example.com"
DIGEST = "sha256:" + "ab" * 32
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


@dataclass
class Instance:
    """A Sigstore of the test's own: a CA and a Rekor key, as PEM files."""

    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    rekor_key: ec.EllipticCurvePrivateKey
    trust: KeylessTrust

    def certificate(self, key: ec.EllipticCurvePrivateKey, *, minutes: int = 10, start: dt.datetime = NOW,
                    email: str = ALICE, issuer: str = ISSUER, ca_key: ec.EllipticCurvePrivateKey | None = None,
                    ) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(start).not_valid_after(start + dt.timedelta(minutes=minutes))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key((ca_key or self.ca_key).public_key()),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=True)
                .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"),
                                                          issuer.encode()), critical=False)
                .sign(ca_key or self.ca_key, hashes.SHA256()))

    def layer(self, *, cert: x509.Certificate | None = None, integrated: dt.datetime | None = None,
              digest: str = DIGEST, tlog: bool = True) -> SignatureLayer:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = cert or self.certificate(key)
        if cert.public_key() != key.public_key():
            key = _KEYS[cert.serial_number]
        payload = SimpleSigningPayload("registry.example/app", digest).to_json()
        signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
        annotations = {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode(),
                       CERTIFICATE_ANNOTATION: cert.public_bytes(Encoding.PEM).decode(),
                       CHAIN_ANNOTATION: self.ca.public_bytes(Encoding.PEM).decode().strip()}
        if tlog:
            annotations[BUNDLE_ANNOTATION] = json.dumps(self.rekor_bundle(payload, signature, cert,
                                                                          integrated or NOW + dt.timedelta(minutes=1)))
        return SignatureLayer(payload, annotations)

    def rekor_bundle(self, payload: bytes, signature: bytes, cert: x509.Certificate,
                     integrated: dt.datetime) -> dict[str, object]:
        body = {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}},
            "signature": {"content": base64.b64encode(signature).decode(),
                          "publicKey": {"content": base64.b64encode(cert.public_bytes(Encoding.PEM)).decode()}}}}
        spki = self.rekor_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        inner = {"body": base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode(),
                 "integratedTime": int(integrated.timestamp()), "logIndex": 7,
                 "logID": hashlib.sha256(spki).hexdigest()}
        canonical = json.dumps(inner, sort_keys=True, separators=(",", ":")).encode()
        set_ = self.rekor_key.sign(canonical, ec.ECDSA(hashes.SHA256()))
        return {"SignedEntryTimestamp": base64.b64encode(set_).decode(), "Payload": inner}


_KEYS: dict[int, ec.EllipticCurvePrivateKey] = {}


def signing_pair(instance: Instance, **kwargs: object) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = instance.certificate(key, **kwargs)  # type: ignore[arg-type]
    _KEYS[cert.serial_number] = key
    return cert


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test Fulcio root")])
    ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    rekor_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "root.pem").write_bytes(ca.public_bytes(Encoding.PEM))
    (tmp_path / "rekor.pub").write_bytes(rekor_key.public_key().public_bytes(Encoding.PEM,
                                                                             PublicFormat.SubjectPublicKeyInfo))
    trust = KeylessTrust.from_pem_files(tmp_path / "root.pem", tmp_path / "rekor.pub", None)
    return Instance(ca_key, ca, rekor_key, trust)


def policy(identity: str = ALICE, issuer: str = ISSUER, *, ignore_tlog: bool = False) -> KeylessPolicy:
    return KeylessPolicy(CertificateIdentity(identity=identity, issuer=issuer), ignore_sct=True,
                         ignore_tlog=ignore_tlog)


def failure(instance: Instance, layer: SignatureLayer, rules: KeylessPolicy, *, trust: KeylessTrust | None = None,
            now: dt.datetime = NOW) -> str:
    with pytest.raises(LabkitError) as caught:
        verify_layer(layer, DIGEST, trust or instance.trust, rules, now=now)
    return caught.value.message


def test_a_good_signature_verifies_with_its_rekor_bundle(instance: Instance) -> None:
    signature, checked = verify_layer(instance.layer(), DIGEST, instance.trust, policy(), now=NOW)
    assert checked and signature.subject == ALICE and signature.issuer == ISSUER
    out = json.loads(KeylessVerification(None, DIGEST, (signature,), True).payloads_json())  # type: ignore[arg-type]
    assert list(out[0]["optional"]) == ["1.3.6.1.4.1.57264.1.1", "Bundle", "Issuer", "Subject"]
    assert list(out[0]["optional"]["Bundle"]) == ["SignedEntryTimestamp", "Payload"]  # Go's struct order


def test_identity_and_issuer_in_cosigns_words(instance: Instance) -> None:
    layer = instance.layer()
    expected = f"none of the expected identities matched what was in the certificate, got subjects [{ALICE}] " \
               f"with issuer {ISSUER}"
    assert failure(instance, layer, policy("bob@example.com")) == expected
    assert failure(instance, layer, policy(ALICE, ISSUER + "/")) == expected
    regexp = KeylessPolicy(CertificateIdentity(identity_regexp="^alice@", issuer_regexp="127[.]0"), ignore_sct=True)
    assert isinstance(verify_layer(layer, DIGEST, instance.trust, regexp, now=NOW)[0], KeylessSignature)


def test_the_set_binds_the_integrated_time(instance: Instance) -> None:
    layer = instance.layer()
    bundle = json.loads(layer.annotations[BUNDLE_ANNOTATION])
    bundle["Payload"]["integratedTime"] += 1
    tampered = SignatureLayer(layer.payload, {**layer.annotations, BUNDLE_ANNOTATION: json.dumps(bundle)})
    assert failure(instance, tampered, policy()) == "error verifying bundle: unable to verify SET"
    as_root = KeylessTrust(instance.trust.root, "trusted_root.json", True)
    assert failure(instance, tampered, policy(), trust=as_root) == \
        "error verifying bundle: verifying bundle with trusted root: unable to verify SET"


def test_the_entry_must_record_this_signature(instance: Instance) -> None:
    layer, other = instance.layer(), instance.layer()
    swapped = SignatureLayer(layer.payload, {**layer.annotations,
                                             BUNDLE_ANNOTATION: other.annotations[BUNDLE_ANNOTATION]})
    assert failure(instance, swapped, policy()) == \
        "error verifying bundle: signature in bundle does not match signature being verified"


def test_without_a_bundle_labkit_is_cosign_offline(instance: Instance) -> None:
    layer = instance.layer(tlog=False)
    assert failure(instance, layer, policy()) == OFFLINE_FAILED
    _, checked = verify_layer(layer, DIGEST, instance.trust, policy(ignore_tlog=True), now=NOW)
    assert not checked
    # without a log entry the certificate is checked against the present time
    later = NOW + dt.timedelta(hours=1)
    assert failure(instance, layer, policy(ignore_tlog=True), now=later) == EXPIRED_NO_TIMESTAMP


def test_a_certificate_expired_before_its_entry(instance: Instance) -> None:
    cert = signing_pair(instance, start=NOW - dt.timedelta(minutes=30))
    layer = instance.layer(cert=cert, integrated=NOW)
    assert failure(instance, layer, policy()) == (
        "checking expiry on certificate with bundle: certificate expired before signatures were entered in log: "
        "2026-12-03T11:40:00Z is before 2026-12-03T12:00:00Z")


def test_another_ca_and_a_missing_sct(instance: Instance) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    cert = signing_pair(instance, ca_key=stranger)
    assert failure(instance, instance.layer(cert=cert), policy()) == UNKNOWN_AUTHORITY
    strict = KeylessPolicy(CertificateIdentity(identity=ALICE, issuer=ISSUER))
    assert failure(instance, instance.layer(), strict) == NO_SCT


def test_the_claims_name_the_image(instance: Instance) -> None:
    layer = instance.layer(digest="sha256:" + "cd" * 32)
    assert failure(instance, layer, policy()) == "invalid or missing digest in claim: sha256:" + "cd" * 32


def test_a_key_signature_has_no_certificate(instance: Instance) -> None:
    layer = instance.layer()
    keyed = SignatureLayer(layer.payload, {SIGNATURE_ANNOTATION: layer.annotations[SIGNATURE_ANNOTATION]})
    assert failure(instance, keyed, policy(ignore_tlog=True)) == "no certificate found on signature"


def test_trust_material_is_never_guessed(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no trust material"):
        KeylessTrust.resolve(None, {})
    with pytest.raises(UsageError, match="open"):
        KeylessTrust.resolve(tmp_path / "missing.json", {})


# --- the CLI's refusals, before anything is asked of a service ------------------------------------

IMAGE = "127.0.0.1:1/app@sha256:" + "0" * 64


@pytest.fixture
def no_sigstore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIGSTORE_ID_TOKEN", "SIGSTORE_ROOT_FILE", "SIGSTORE_REKOR_PUBLIC_KEY",
                 "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("argv", "says"), [
    (["sign", "-y", IMAGE], "keyless signing needs an OIDC identity token"),
    (["sign", "-y", "--identity-token", "t", IMAGE], "labkit needs --fulcio-url and --rekor-url"),
    (["sign", "-y", "--identity-token", "t", "--fulcio-url", "http://127.0.0.1:1", "--rekor-url",
      "http://127.0.0.1:1", IMAGE], "labkit has no trust material"),
    (["verify", IMAGE], "--certificate-identity or --certificate-identity-regexp is required"),
    (["verify", "--certificate-identity", ALICE, IMAGE],
     "--certificate-oidc-issuer or --certificate-oidc-issuer-regexp is required"),
    (["verify", "--certificate-identity", ALICE, "--certificate-oidc-issuer", ISSUER, IMAGE],
     "labkit has no trust material"),
])
def test_keyless_cli_refuses_what_it_cannot_do_offline(argv: list[str], says: str, no_sigstore_env: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from labkit import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and says in err
    assert "Hint: " in err or "required" in says
