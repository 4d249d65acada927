"""Blob signing and the key/blob CLI verbs, checked with ``cryptography`` as the independent verifier."""

from __future__ import annotations

import base64
import io
import os
import stat
import sys

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

import labkit.cli
from labkit import keys
from labkit.errors import VerificationError
from labkit.signing.blob import decode_signature, read_signature, sign_blob, verify_blob


def test_sign_blob_is_base64_of_a_signature_over_the_blob() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = sign_blob(key, b"hello\n")
    key.public_key().verify(base64.b64decode(signature, validate=True), b"hello\n",
                            ec.ECDSA(hashes.SHA256()))
    verify_blob(key.public_key(), b"hello\n", signature)
    verify_blob(key.public_key(), b"hello\n", signature + "\n")  # file with a newline
    with pytest.raises(VerificationError, match="invalid signature when validating ASN.1"):
        verify_blob(key.public_key(), b"hello!\n", signature)
    with pytest.raises(VerificationError):
        verify_blob(ec.generate_private_key(ec.SECP256R1()).public_key(), b"hello\n", signature)


def test_ed25519_blobs_are_pure_ed25519() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    signature = sign_blob(key, b"blob")
    key.public_key().verify(base64.b64decode(signature), b"blob")


def test_signature_decoding_follows_cosign(tmp_path) -> None:
    raw = bytes(range(70))
    assert decode_signature(base64.b64encode(raw)) == raw
    assert decode_signature(b"\x00not base64\xff") == b"\x00not base64\xff"
    (tmp_path / "s.sig").write_bytes(b"QUJD")
    assert read_signature(str(tmp_path / "s.sig")) == b"QUJD"
    assert read_signature("QUJD") == b"QUJD"  # no such file: the argument is the signature


@pytest.fixture
def cli(monkeypatch, tmp_path, capsys):
    """Run ``labkit`` in-process with only this area's verbs, in tmp_path, stdin not a TTY."""
    monkeypatch.setattr(labkit.cli, "_VERB_MODULES", ("keys", "blob"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", "s3cret-pw")

    def run(*argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = labkit.cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_generate_sign_verify_round_trip(cli, tmp_path) -> None:
    code, out, err = cli("generate-key-pair")
    assert (code, out) == (0, "")
    assert err == "Private key written to cosign.key\nPublic key written to cosign.pub\n"
    assert stat.S_IMODE(os.stat(tmp_path / "cosign.key").st_mode) == 0o600
    (tmp_path / "blob").write_bytes(b"data")
    code, out, err = cli("sign-blob", "--key", "cosign.key", "--tlog-upload=false", "blob")
    assert code == 0 and err == "Using payload from: blob\n"
    public = keys.load_public_key(tmp_path / "cosign.pub")
    public.verify(base64.b64decode(out.strip()), b"data", ec.ECDSA(hashes.SHA256()))
    code, _, err = cli("sign-blob", "--key", "cosign.key", "--tlog-upload=false",
                       "--output-signature", "blob.sig", "blob")
    assert code == 0 and "Wrote signature to file blob.sig" in err
    assert not (tmp_path / "blob.sig").read_bytes().endswith(b"\n")
    code, _, err = cli("verify-blob", "--key", "cosign.pub", "--signature", "blob.sig",
                       "--insecure-ignore-tlog", "blob")
    assert code == 0 and err.endswith("for the blob.\nVerified OK\n")
    (tmp_path / "blob").write_bytes(b"tampered")
    code, _, err = cli("verify-blob", "--key", "cosign.pub", "--signature", "blob.sig",
                       "--insecure-ignore-tlog=true", "blob")
    assert code == 1
    assert err.splitlines()[-1] == "Error: invalid signature when validating ASN.1 encoded signature"
    assert "s3cret-pw" not in out + err


def test_cli_verify_blob_requires_ignoring_the_tlog(cli, tmp_path) -> None:
    cli("generate-key-pair")
    (tmp_path / "blob").write_bytes(b"data")
    code, _, err = cli("verify-blob", "--key", "cosign.pub", "--signature", "AAAA", "blob")
    assert code == 2 and "--insecure-ignore-tlog" in err


def test_cli_overwrite_prompt_declined_keeps_the_key(cli, tmp_path) -> None:
    cli("generate-key-pair")
    before = (tmp_path / "cosign.key").read_bytes()
    code, _, err = cli("generate-key-pair", stdin=b"n\n")
    assert code == 1
    assert err.startswith("WARNING: File cosign.key already exists. Overwrite?\n"
                          "Are you sure you would like to continue? [y/N] Error: user declined the prompt")
    assert (tmp_path / "cosign.key").read_bytes() == before
    code, _, err = cli("generate-key-pair", stdin=b"y\n")
    assert code == 0 and (tmp_path / "cosign.key").read_bytes() != before


def test_cli_wrong_password_exits_1_without_echoing_it(cli, monkeypatch, tmp_path) -> None:
    cli("generate-key-pair")
    monkeypatch.setenv("COSIGN_PASSWORD", "not-the-password")
    (tmp_path / "blob").write_bytes(b"data")
    code, _, err = cli("sign-blob", "--key", "cosign.key", "--tlog-upload=false", "blob")
    assert code == 1 and "decrypt: encrypted: decryption failed" in err
    assert "not-the-password" not in err


def test_cli_public_key(cli, tmp_path) -> None:
    cli("generate-key-pair")
    code, out, _ = cli("public-key", "--key", "cosign.key")
    assert code == 0 and out == (tmp_path / "cosign.pub").read_text()
    code, _, err = cli("public-key", "--key", "cosign.key", "--outfile", "out.pub")
    assert err == "Public key written to out.pub\n"
    assert (tmp_path / "out.pub").read_text() == out
