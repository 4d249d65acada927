"""Key files and key import, both directions, with real cosign (v2.6.1, v2.6.5, v3.1.3) as the oracle.

cosign-made keys load in labkit; labkit-made keys are read by ``cosign public-key`` and
``cosign sign-blob``; ``labkit public-key`` is byte-identical to ``cosign public-key``; openssl-made
keys get the same accept/refuse outcome (and reason) from ``import-key-pair`` in both tools.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit import keys
from labkit.cli import main as labkit_main
from labkit.errors import KeyMaterialError, PasswordError
from tests.interop.cosign import PASSWORD, Cosign, cosign  # noqa: F401 (fixture)
from tests.unit.test_keys import HOSTILE_PEM

pytestmark = pytest.mark.interop

def test_cosign_generated_key_loads_in_labkit(cosign: Cosign, tmp_path: Path) -> None:
    proc = cosign.run("generate-key-pair")
    assert proc.returncode == 0, proc.stderr
    private = keys.load_private_key(tmp_path / "cosign.key", PASSWORD.encode())
    assert keys.public_key_pem(private) == (tmp_path / "cosign.pub").read_text()
    with pytest.raises(PasswordError, match="decrypt: encrypted: decryption failed"):
        keys.load_private_key(tmp_path / "cosign.key", b"wrong")


def test_labkit_key_is_read_by_cosign(cosign: Cosign, tmp_path: Path) -> None:
    paths = keys.generate_key_pair(tmp_path / "cosign", PASSWORD.encode())
    proc = cosign.run("public-key", "--key", "cosign.key")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == paths.public_key.read_text()
    assert proc.stdout == keys.public_key_pem(keys.load_private_key(paths.private_key,
                                                                    PASSWORD.encode()))
    wrong = cosign.run("public-key", "--key", "cosign.key", password="wrong")
    assert wrong.returncode != 0
    assert "decrypt: encrypted: decryption failed" in cosign.error(wrong)


def test_empty_password_keys_interoperate(cosign: Cosign, tmp_path: Path) -> None:
    keys.generate_key_pair(tmp_path / "cosign", b"")
    proc = cosign.run("public-key", "--key", "cosign.key", password="")
    assert proc.returncode == 0, proc.stderr


# --- import-key-pair: same outcome for openssl-made keys -------------------------------------

OPENSSL_KEYS: dict[str, list[list[str]]] = {
    "rsa2048-pkcs1": [["genrsa", "-traditional", "-out", "{out}", "2048"]],
    "rsa3072-pkcs8": [["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072",
                       "-out", "{out}"]],
    "rsa4096-pkcs1": [["genrsa", "-traditional", "-out", "{out}", "4096"]],
    "p256-sec1": [["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "{out}"]],
    "p384-sec1": [["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "{out}"]],
    "p521-pkcs8": [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521",
                    "-out", "{out}"]],
    "ed25519-pkcs8": [["genpkey", "-algorithm", "ed25519", "-out", "{out}"]],
    # refused ones
    "rsa1024": [["genrsa", "-out", "{out}", "1024"]],
    "rsa2048-e3": [["genrsa", "-3", "-traditional", "-out", "{out}", "2048"]],
    "p224-sec1": [["ecparam", "-name", "secp224r1", "-genkey", "-noout", "-out", "{out}"]],
    "secp256k1-sec1": [["ecparam", "-name", "secp256k1", "-genkey", "-noout", "-out", "{out}"]],
    "secp256k1-pkcs8": [["genpkey", "-algorithm", "EC", "-pkeyopt",
                         "ec_paramgen_curve:secp256k1", "-out", "{out}"]],
    "ed448": [["genpkey", "-algorithm", "ed448", "-out", "{out}"]],
    "x25519": [["genpkey", "-algorithm", "x25519", "-out", "{out}"]],
    # explicit curve parameters instead of a named-curve OID: Go's x509 cannot parse them
    "p256-explicit-sec1": [["ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-genkey",
                            "-noout", "-out", "{out}"]],
    "p256-explicit-pkcs8": [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-pkeyopt", "ec_param_enc:explicit", "-out", "{out}"]],
    # `openssl ecparam -genkey` without -noout writes an EC PARAMETERS block first
    "p256-ecparam-first": [["ecparam", "-name", "prime256v1", "-genkey", "-out", "{out}"]],
    "encrypted-pkcs8": [["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                         "-aes256", "-pass", "pass:x", "-out", "{out}"]],
}


@pytest.fixture(scope="module")
def openssl_keys(tmp_path_factory) -> dict[str, Path]:
    openssl = "/usr/bin/openssl"
    if not os.access(openssl, os.X_OK):
        pytest.skip("openssl is not installed")
    root = tmp_path_factory.mktemp("openssl-keys")
    made = {}
    for name, commands in OPENSSL_KEYS.items():
        out = root / f"{name}.pem"
        for command in commands:
            subprocess.run([openssl, *(arg.format(out=out) for arg in command)], check=True,
                           capture_output=True, timeout=120)
        made[name] = out
    return made


@pytest.mark.parametrize("name", sorted(OPENSSL_KEYS))
def test_import_outcome_matches_cosign(cosign: Cosign, openssl_keys, tmp_path: Path, name) -> None:
    source = openssl_keys[name]
    proc = cosign.run("import-key-pair", "--key", str(source), "--output-key-prefix", "cosign-imp")
    try:
        paths = keys.import_key_pair(source, PASSWORD.encode(), tmp_path / "labkit-imp")
    except KeyMaterialError as exc:
        assert proc.returncode != 0, f"cosign accepted {name}, labkit refused: {exc}"
        assert cosign.error(proc) in str(exc)  # cosign's reason, word for word
        assert not (tmp_path / "labkit-imp.key").exists()
        return
    assert proc.returncode == 0, f"labkit accepted {name}, cosign refused: {proc.stderr}"
    assert "Private key written to cosign-imp.key" in proc.stderr
    # each tool reads the other's output, and both hold the same key
    cosign_side = keys.load_private_key(tmp_path / "cosign-imp.key", PASSWORD.encode())
    assert keys.public_key_pem(cosign_side) == paths.public_key.read_text()
    assert (tmp_path / "cosign-imp.pub").read_text() == paths.public_key.read_text()
    pub = cosign.run("public-key", "--key", str(paths.private_key))
    assert pub.returncode == 0 and pub.stdout == paths.public_key.read_text()


@pytest.mark.parametrize("name", ["p256-sec1", "p256-explicit-sec1", "p256-explicit-pkcs8"])
def test_public_key_outcome_matches_cosign(cosign: Cosign, openssl_keys, tmp_path: Path, name) -> None:
    """A public key with explicit curve parameters: cosign's x509 refuses it (issue 13, item 14)."""
    pub, blob = tmp_path / "key.pub", tmp_path / "blob"
    subprocess.run(["/usr/bin/openssl", "pkey", "-in", str(openssl_keys[name]), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True, timeout=60)
    blob.write_bytes(b"blob")
    proc = cosign.run("verify-blob", "--key", str(pub), "--signature", "AAAA", "--insecure-ignore-tlog",
                      str(blob))
    assert proc.returncode != 0  # the signature is garbage; only the reason tells
    try:
        keys.load_public_key(pub)
    except KeyMaterialError as exc:
        assert cosign.error(proc).endswith("x509: invalid ECDSA parameters")
        assert str(exc) == f"{pub}: x509: invalid ECDSA parameters"
    else:
        assert "invalid ECDSA parameters" not in proc.stderr


# --- hostile PEM files: same outcome as cosign, in linear time (issue 13, item 8) ------------


@pytest.mark.parametrize("name", sorted(HOSTILE_PEM))
@pytest.mark.parametrize("key_after", [False, True], ids=["alone", "key-after"])
def test_hostile_pem_outcome_matches_cosign(cosign: Cosign, tmp_path: Path, name, key_after) -> None:
    data = HOSTILE_PEM[name][0]
    if key_after:
        key = ec.generate_private_key(ec.SECP256R1())
        data += b"\n" + key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.TraditionalOpenSSL,
                                          serialization.NoEncryption())
    source = tmp_path / "hostile.pem"
    source.write_bytes(data)
    proc = cosign.run("import-key-pair", "--key", str(source), "--output-key-prefix", "cosign-imp")
    started = time.monotonic()
    try:
        keys.load_importable_key(source)
    except KeyMaterialError as exc:
        assert proc.returncode != 0, f"cosign accepted {name}, labkit refused: {exc}"
        assert cosign.error(proc) in str(exc)
    else:
        assert proc.returncode == 0, f"labkit accepted {name}, cosign refused: {proc.stderr}"
    assert time.monotonic() - started < 2.0


# --- one line, never a traceback: same outcome as cosign (issue 13, item 9) ------------------


def labkit_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = labkit_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_password_with_any_bytes_matches_cosign(cosign: Cosign, tmp_path: Path, capsys, monkeypatch):
    password = "\udcff"  # the byte 0xff, as os.environ holds it
    assert cosign.run("generate-key-pair", password=password).returncode == 0
    monkeypatch.setenv("COSIGN_PASSWORD", password)
    code, out, err = labkit_cli(capsys, "public-key", "--key", str(tmp_path / "cosign.key"))
    assert (code, out) == (0, (tmp_path / "cosign.pub").read_text()), err
    assert keys.load_private_key(tmp_path / "cosign.key", b"\xff")


@pytest.mark.parametrize("suffix", [".key", ".pub"])
def test_generate_into_a_directory_fails_like_cosign_and_writes_nothing(
    cosign: Cosign, tmp_path: Path, capsys, monkeypatch, suffix
):
    theirs_dir, ours_dir = tmp_path / "theirs", tmp_path / "ours"
    for where in (theirs_dir, ours_dir):
        (where / f"cosign{suffix}").mkdir(parents=True)
    theirs = Cosign(cosign.path, theirs_dir).run("generate-key-pair")
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    monkeypatch.chdir(ours_dir)
    code, _, err = labkit_cli(capsys, "generate-key-pair")
    assert (code, theirs.returncode) == (1, 1)
    message = f"Error: open cosign{suffix}: is a directory"
    assert message in theirs.stderr and err.splitlines()[0] == message
    # cosign leaves a lone cosign.key beside a cosign.pub directory; labkit writes nothing
    assert [p.name for p in ours_dir.iterdir()] == [f"cosign{suffix}"]


_ENVELOPE = ('{"kdf":{"name":"scrypt","params":{"N":%s,"r":8,"p":1},"salt":%s},'
             '"cipher":{"name":"nacl/secretbox","nonce":"AA=="},"ciphertext":"AA=="}')
HOSTILE_KEY_FILES = {
    "deep-arrays": b"[" * 20000 + b"]" * 20000,
    "deep-objects": b'{"a":' * 20000 + b"1" + b"}" * 20000,
    "huge-n": (_ENVELOPE % ("9" * 10000, '"AA=="')).encode(),
    "huge-salt": (_ENVELOPE % ("65536", "9" * 10000)).encode(),
    "number-salt": (_ENVELOPE % ("65536", "1234")).encode(),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_KEY_FILES))
def test_hostile_key_file_fails_in_one_line_like_cosign(cosign: Cosign, tmp_path: Path, capsys,
                                                        monkeypatch, name):
    source = tmp_path / "hostile.key"
    source.write_bytes(keys.pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", HOSTILE_KEY_FILES[name]))
    theirs = cosign.run("public-key", "--key", str(source))
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    code, out, err = labkit_cli(capsys, "public-key", "--key", str(source))
    assert (code, theirs.returncode, out) == (1, 1, "")
    assert err.startswith(f"Error: {source}: ") and "Traceback" not in err
    if name.startswith("deep"):  # Go's JSON error, word for word
        assert err.splitlines()[0] == f"Error: {source}: {cosign.error(theirs)}"


@pytest.mark.parametrize("outfile", ["out.pub", "missing/out.pub"], ids=["directory", "no-parent"])
def test_public_key_outfile_that_cannot_be_written_fails_like_cosign(
    cosign: Cosign, tmp_path: Path, capsys, monkeypatch, outfile
):
    keys.generate_key_pair(tmp_path / "cosign", PASSWORD.encode())
    (tmp_path / "out.pub").mkdir()
    theirs = cosign.run("public-key", "--key", "cosign.key", "--outfile", outfile)
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    code, _, err = labkit_cli(capsys, "public-key", "--key", "cosign.key", "--outfile", outfile)
    assert (code, theirs.returncode) == (1, 1)
    assert err.splitlines()[0] == f"Error: {cosign.error(theirs)}"
