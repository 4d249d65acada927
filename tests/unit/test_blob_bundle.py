"""Sigstore bundles for blobs (labkit.signing.blob_bundle), checked with ``cryptography`` and
hashlib as independent verifiers; cosign's words for each failure are held to real cosign in
tests/interop/test_blob_bundle_cosign.py, the conformance cases in tests/conformance/."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import labkit.cli
from labkit.errors import UsageError, VerificationError
from labkit.signing.blob_bundle import (
    NO_LOG_ENTRIES,
    CertificateIdentity,
    certificate_issuer,
    certificate_san,
    sign_blob_bundle,
    verify_blob_bundle,
)

BLOB = b"some artifact\n"
CASES = Path(__file__).resolve().parents[1] / "fixtures" / "sigstore-conformance"


def test_the_bundle_is_a_v03_key_bundle_without_tlog() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = json.loads(sign_blob_bundle(key, BLOB))
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    hint = base64.b64encode(hashlib.sha256(der).digest()).decode()
    assert bundle["verificationMaterial"] == {"publicKey": {"hint": hint}}
    message = bundle["messageSignature"]
    assert message["messageDigest"] == {"algorithm": "SHA2_256",
                                        "digest": base64.b64encode(hashlib.sha256(BLOB).digest()).decode()}
    key.public_key().verify(base64.b64decode(message["signature"]), BLOB, ec.ECDSA(hashes.SHA256()))


def test_ed25519_bundles_sign_pure_ed25519() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    bundle = sign_blob_bundle(key, BLOB)
    key.public_key().verify(base64.b64decode(json.loads(bundle)["messageSignature"]["signature"]), BLOB)
    verify_blob_bundle(bundle, BLOB, public_key=key.public_key(), ignore_tlog=True)


def test_key_bundles_verify_against_the_key_only_without_a_tlog() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    bundle = sign_blob_bundle(key, BLOB)
    assert verify_blob_bundle(bundle, BLOB, public_key=key.public_key(), ignore_tlog=True).signer == "key"
    with pytest.raises(VerificationError, match=r"invalid signature when validating ASN\.1"):
        verify_blob_bundle(bundle, BLOB + b"!", public_key=key.public_key(), ignore_tlog=True)
    with pytest.raises(VerificationError, match=r"invalid signature when validating ASN\.1"):
        verify_blob_bundle(bundle, BLOB, public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
                           ignore_tlog=True)
    with pytest.raises(VerificationError) as info:
        verify_blob_bundle(bundle, BLOB, public_key=key.public_key(),
                           trusted_root=CASES / "production-trusted_root.json")
    assert info.value.message == NO_LOG_ENTRIES and "--insecure-ignore-tlog" in (info.value.hint or "")


def _dsse_bundle(key: ec.EllipticCurvePrivateKey, subject_digest: str) -> bytes:
    """A key-signed DSSE bundle built from the DSSE spec here, not by labkit."""
    statement = json.dumps({"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://example.com/p",
                            "subject": [{"name": "a", "digest": {"sha256": subject_digest}}], "predicate": {}}).encode()
    kind = b"application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(statement), statement)
    return json.dumps({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "x"}},
        "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": kind.decode(),
                         "signatures": [{"sig": base64.b64encode(key.sign(pae, ec.ECDSA(hashes.SHA256()))).decode()}]},
    }).encode()


def test_key_signed_dsse_bundles_check_the_statement_subject() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    good = _dsse_bundle(key, hashlib.sha256(BLOB).hexdigest())
    assert verify_blob_bundle(good, BLOB, public_key=key.public_key(), ignore_tlog=True).dsse
    with pytest.raises(VerificationError, match="provided artifact digests do not match digests in statement"):
        verify_blob_bundle(_dsse_bundle(key, "0" * 64), BLOB, public_key=key.public_key(), ignore_tlog=True)


def test_flags_that_cannot_work_are_usage_errors() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    keyless = (CASES / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes()
    with pytest.raises(UsageError, match="exactly one of: key reference"):
        verify_blob_bundle(keyless, BLOB, public_key=key.public_key(), identity=CertificateIdentity("x", issuer="y"))
    with pytest.raises(UsageError, match="--certificate-identity or --certificate-identity-regexp is required"):
        verify_blob_bundle(keyless, BLOB)
    with pytest.raises(UsageError, match="needs a trusted root"):
        verify_blob_bundle(keyless, BLOB, identity=CertificateIdentity("x", issuer="y"))
    with pytest.raises(VerificationError, match="expected key signature, not certificate"):
        verify_blob_bundle(keyless, BLOB, public_key=key.public_key())
    with pytest.raises(VerificationError, match="failed to load bundle"):
        verify_blob_bundle(b"{not json", BLOB, public_key=key.public_key())


def test_identity_and_issuer_come_from_the_fulcio_certificate() -> None:
    """The suite's default identity and issuer (its README) are those of its happy-path certificate."""
    chain = json.loads((CASES / "happy-path-v0.1" / "bundle.sigstore.json").read_bytes())
    der = base64.b64decode(chain["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"])
    cert = x509.load_der_x509_certificate(der)
    assert certificate_issuer(cert) == "https://token.actions.githubusercontent.com"
    assert certificate_san(cert).endswith("extremely-dangerous-oidc-beacon.yml@refs/heads/main")


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(labkit.cli, "_VERB_MODULES", ("keys", "blob"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", "pw")

    def run(*argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
        try:
            code = labkit.cli.main(list(argv))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err
    return run


def test_cli_round_trip_and_the_old_required_flags(cli, tmp_path: Path) -> None:
    assert cli("generate-key-pair")[0] == 0
    (tmp_path / "blob").write_bytes(BLOB)
    code, out, err = cli("sign-blob", "--key", "cosign.key", "--bundle", "b.json", "blob")
    assert (code, out) == (0, "") and "Wrote bundle to file b.json" in err
    assert not (tmp_path / "b.json").read_bytes().endswith(b"\n")
    code, _, err = cli("verify-blob", "--key", "cosign.pub", "--bundle", "b.json", "--insecure-ignore-tlog", "blob")
    assert code == 0 and "Verified OK" in err and "WARNING: Skipping tlog verification" in err
    code, _, err = cli("verify-blob", "--key", "cosign.pub", "--bundle", "b.json", "--signature", "x", "blob")
    assert code == 2 and "cannot be used together" in err
    # without --bundle, --key and --signature stay required as before
    code, _, err = cli("verify-blob", "--insecure-ignore-tlog", "blob")
    assert code == 2 and "the following arguments are required: --key, --signature" in err


# --- tlog entry bodies of key bundles --------------------------------------------------------------
# The Merkle/checkpoint/SET part is sigstore-python's and runs on the conformance cases; here it is
# stubbed so that bodies written from Rekor's schemas (hashedrekord 0.0.1 and 0.0.2, dsse 0.0.1)
# reach the check that the entry names this signature, key and artifact.


def _entry(kind: str, version: str, body: dict) -> dict:
    return {"logIndex": "1", "logId": {"keyId": base64.b64encode(b"k" * 32).decode()},
            "kindVersion": {"kind": kind, "version": version},
            "inclusionProof": {"logIndex": "1", "rootHash": base64.b64encode(b"r" * 32).decode(), "treeSize": "2",
                               "hashes": [], "checkpoint": {"envelope": "x"}},
            "canonicalizedBody": base64.b64encode(json.dumps(body).encode()).decode()}


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def _der(key: ec.EllipticCurvePrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def _with_entry(bundle: bytes, entry: dict) -> bytes:
    document = json.loads(bundle)
    document["verificationMaterial"]["tlogEntries"] = [entry]
    return json.dumps(document).encode()


@pytest.fixture
def no_merkle(monkeypatch: pytest.MonkeyPatch) -> None:
    import labkit.signing.blob_bundle as module

    monkeypatch.setattr(module, "_verify_entry", lambda entry, root: None)


def test_message_entries_must_name_this_signature_key_and_artifact(no_merkle) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    bundle = sign_blob_bundle(key, BLOB)
    signature = json.loads(bundle)["messageSignature"]["signature"]
    root = CASES / "production-trusted_root.json"

    def v1(value: str, sig: str, pem: str) -> dict:
        return _entry("hashedrekord", "0.0.1", {"apiVersion": "0.0.1", "kind": "hashedrekord", "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": value}},
            "signature": {"content": sig, "publicKey": {"content": pem}}}})

    def v2(digest: bytes, sig: str, der: str) -> dict:
        return _entry("hashedrekord", "0.0.2", {"apiVersion": "0.0.2", "kind": "hashedrekord", "spec": {
            "hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": base64.b64encode(digest).decode()},
                "signature": {"content": sig, "verifier": {"publicKey": {"rawBytes": der},
                                                           "keyDetails": "PKIX_ECDSA_P256_SHA_256"}}}}})

    digest = hashlib.sha256(BLOB)
    good = [v1(digest.hexdigest(), signature, _pem(key)), v2(digest.digest(), signature, _der(key))]
    bad = [v1("0" * 64, signature, _pem(key)), v1(digest.hexdigest(), signature, _pem(other)),
           v1(digest.hexdigest(), base64.b64encode(b"x").decode(), _pem(key)),
           v2(b"\0" * 32, signature, _der(key)), v2(digest.digest(), signature, _der(other))]
    for entry in good:
        result = verify_blob_bundle(_with_entry(bundle, entry), BLOB, public_key=key.public_key(), trusted_root=root)
        assert result.tlog_entries == 1
    for entry in bad:
        with pytest.raises(VerificationError, match="transparency log entry is inconsistent with other materials"):
            verify_blob_bundle(_with_entry(bundle, entry), BLOB, public_key=key.public_key(), trusted_root=root)


def test_dsse_entries_must_name_this_payload_signature_and_key(no_merkle) -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    bundle = _dsse_bundle(key, hashlib.sha256(BLOB).hexdigest())
    envelope = json.loads(bundle)["dsseEnvelope"]
    payload_hash = hashlib.sha256(base64.b64decode(envelope["payload"])).hexdigest()
    root = CASES / "production-trusted_root.json"

    def dsse(value: str, pem: str) -> dict:
        return _entry("dsse", "0.0.1", {"apiVersion": "0.0.1", "kind": "dsse", "spec": {
            "envelopeHash": {"algorithm": "sha256", "value": "0" * 64},
            "payloadHash": {"algorithm": "sha256", "value": value},
            "signatures": [{"signature": envelope["signatures"][0]["sig"], "verifier": pem}]}})

    verify_blob_bundle(_with_entry(bundle, dsse(payload_hash, _pem(key))), BLOB, public_key=key.public_key(),
                       trusted_root=root)
    for entry in (dsse("0" * 64, _pem(key)), dsse(payload_hash, _pem(other))):
        with pytest.raises(VerificationError, match="transparency log entry is inconsistent with other materials"):
            verify_blob_bundle(_with_entry(bundle, entry), BLOB, public_key=key.public_key(), trusted_root=root)


def test_zero_values_protobuf_leaves_out_are_put_back() -> None:
    """A fresh log's first entry has log index 0, which protobuf's JSON omits (as it omits an empty
    proof path); the bundle must read as if they were written out."""
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    from labkit.signing.blob_bundle import with_proto_defaults

    written = json.loads((CASES / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes())
    entry = written["verificationMaterial"]["tlogEntries"][0]
    entry["logIndex"] = entry["inclusionProof"]["logIndex"] = "0"
    entry["inclusionProof"]["hashes"] = []
    omitted = json.loads(json.dumps(written))
    del omitted["verificationMaterial"]["tlogEntries"][0]["logIndex"]
    del omitted["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["logIndex"]
    del omitted["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"]
    with pytest.raises(ValueError):
        BundleModel.from_json(json.dumps(omitted))
    assert BundleModel.from_json(with_proto_defaults(json.dumps(omitted).encode())) == \
        BundleModel.from_json(json.dumps(written))
    assert with_proto_defaults(b"{not json") == b"{not json"
