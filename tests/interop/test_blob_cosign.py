"""Blob signatures, both directions, with real cosign (v2.6.1, v2.6.5, v3.1.3) as the oracle.

labkit sign-blob → cosign verify-blob --insecure-ignore-tlog and back; tampered blobs and wrong
keys fail in both tools with the same message; the hash pitfalls of non-P-256 keys.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from labkit import keys
from labkit.errors import VerificationError
from labkit.signing.blob import sign_blob, verify_blob
from tests.interop.cosign import PASSWORD, Cosign, cosign  # noqa: F401 (fixture)

pytestmark = pytest.mark.interop

BLOB = b"an artifact to sign\n"


def verify_with_cosign(cosign: Cosign, pub: str, signature: str, blob: str,
                       *extra: str) -> subprocess.CompletedProcess[str]:
    return cosign.run("verify-blob", "--key", pub, "--signature", signature,
                      "--insecure-ignore-tlog", *extra, blob)


def import_into_labkit(tmp_path: Path, key, prefix: str) -> keys.KeyPairPaths:
    source = tmp_path / f"{prefix}.pem"
    source.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    return keys.import_key_pair(source, PASSWORD.encode(), tmp_path / prefix)


def test_labkit_signature_verifies_in_cosign(cosign: Cosign, tmp_path: Path) -> None:
    paths = keys.generate_key_pair(tmp_path / "cosign", PASSWORD.encode())
    (tmp_path / "blob").write_bytes(BLOB)
    (tmp_path / "blob.sig").write_text(
        sign_blob(keys.load_private_key(paths.private_key, PASSWORD.encode()), BLOB))
    proc = verify_with_cosign(cosign, "cosign.pub", "blob.sig", "blob")
    assert proc.returncode == 0, proc.stderr
    assert "Verified OK" in proc.stderr
    assert ("WARNING: Skipping tlog verification is an insecure practice that lacks transparency "
            "and auditability verification for the blob.") in proc.stderr
    # tampered blob and wrong key: both tools refuse, with the same words
    (tmp_path / "blob").write_bytes(BLOB + b"!")
    tampered = verify_with_cosign(cosign, "cosign.pub", "blob.sig", "blob")
    assert tampered.returncode == 1
    with pytest.raises(VerificationError) as info:
        verify_blob(keys.load_public_key(paths.public_key), BLOB + b"!",
                    (tmp_path / "blob.sig").read_text())
    assert cosign.error(tampered) == str(info.value)
    (tmp_path / "blob").write_bytes(BLOB)
    keys.generate_key_pair(tmp_path / "other", b"")
    assert verify_with_cosign(cosign, "other.pub", "blob.sig", "blob").returncode == 1


def test_cosign_signature_verifies_in_labkit(cosign: Cosign, tmp_path: Path) -> None:
    assert cosign.run("generate-key-pair").returncode == 0
    (tmp_path / "blob").write_bytes(BLOB)
    proc = cosign.run("sign-blob", "--key", "cosign.key", *cosign.legacy_sign_flags, "blob")
    assert proc.returncode == 0, proc.stderr
    assert "Using payload from: blob" in proc.stderr
    public = keys.load_public_key(tmp_path / "cosign.pub")
    verify_blob(public, BLOB, proc.stdout)
    with pytest.raises(VerificationError, match="invalid signature when validating ASN.1"):
        verify_blob(public, BLOB + b"!", proc.stdout)
    # --output-signature: same bytes, no trailing newline, in both tools
    out = cosign.run("sign-blob", "--key", "cosign.key", *cosign.legacy_sign_flags,
                     "--output-signature", "cosign.sig", "blob")
    assert out.returncode == 0 and "Wrote signature to file cosign.sig" in out.stderr
    assert not (tmp_path / "cosign.sig").read_bytes().endswith(b"\n")
    verify_blob(public, BLOB, (tmp_path / "cosign.sig").read_bytes())


def test_p384_needs_the_digest_flag_in_cosign(cosign: Cosign, tmp_path: Path) -> None:
    """cosign signs P-384 with SHA-384 but verify-blob assumes SHA-256 unless told (cosign.md)."""
    paths = import_into_labkit(tmp_path, ec.generate_private_key(ec.SECP384R1()), "p384")
    (tmp_path / "blob").write_bytes(BLOB)
    proc = cosign.run("sign-blob", "--key", "p384.key", *cosign.legacy_sign_flags, "blob")
    assert proc.returncode == 0, proc.stderr
    public = keys.load_public_key(paths.public_key)
    verify_blob(public, BLOB, proc.stdout, digest_algorithm="sha384")
    with pytest.raises(VerificationError):
        verify_blob(public, BLOB, proc.stdout)
    (tmp_path / "labkit.sig").write_text(
        sign_blob(keys.load_private_key(paths.private_key, PASSWORD.encode()), BLOB))
    assert verify_with_cosign(cosign, "p384.pub", "labkit.sig", "blob").returncode == 1
    ok = verify_with_cosign(cosign, "p384.pub", "labkit.sig", "blob",
                            "--signature-digest-algorithm", "sha384")
    assert ok.returncode == 0, ok.stderr


def test_ed25519_blob_signatures(cosign: Cosign, tmp_path: Path) -> None:
    """Ed25519 is deterministic, so labkit's signature must equal cosign v3's byte for byte."""
    key = ed25519.Ed25519PrivateKey.generate()
    import_into_labkit(tmp_path, key, "ed")
    (tmp_path / "blob").write_bytes(BLOB)
    labkit_sig = sign_blob(key, BLOB)
    proc = cosign.run("sign-blob", "--key", "ed.key", *cosign.legacy_sign_flags, "blob")
    if cosign.path.name.startswith("cosign-v2"):
        # v2.6.x sign-blob asks for hash function 0 for Ed25519 keys and panics.
        assert proc.returncode != 0 and "requested hash function #0 is unavailable" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == labkit_sig
    (tmp_path / "ed.sig").write_text(labkit_sig)
    assert verify_with_cosign(cosign, "ed.pub", "ed.sig", "blob").returncode == 0
    assert base64.b64decode(labkit_sig) != keys.sign_message(key, BLOB)  # images use Ed25519ph
