"""labkit.keys against independent truth: envelopes built and opened with OpenSSL's scrypt and
libsodium's low-level secretbox, RFC 8032 vectors, and signatures checked by ``cryptography``."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import time

import nacl.bindings
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from labkit import keys
from labkit.errors import (
    KeyExistsError,
    KeyFileError,
    KeyMaterialError,
    PasswordError,
    UnsupportedKeyError,
    VerificationError,
)

PASSWORD = b"correct horse battery staple"


def openssl_scrypt(password: bytes, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(password)


def independent_key_file(der: bytes, password: bytes, *, n: int = 65536,
                         label: str = "ENCRYPTED SIGSTORE PRIVATE KEY") -> bytes:
    """A cosign key file built without labkit: OpenSSL scrypt + libsodium crypto_secretbox."""
    salt, nonce = bytes(range(32)), bytes(range(100, 124))
    ciphertext = nacl.bindings.crypto_secretbox(der, nonce, openssl_scrypt(password, salt, n))
    body = json.dumps({
        "kdf": {"name": "scrypt", "params": {"N": n, "r": 8, "p": 1},
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }, separators=(",", ":")).encode()
    b64 = base64.b64encode(body).decode()
    lines = "".join(b64[i:i + 64] + "\n" for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{lines}-----END {label}-----\n".encode()


def pkcs8(key) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem(key, fmt=serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


# --- encrypted key files --------------------------------------------------------------------


@pytest.mark.parametrize("n", [32768, 65536, 131072])
@pytest.mark.parametrize("label", ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"])
def test_decrypts_independently_built_key_file(n: int, label: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    loaded = keys.decrypt_private_key(independent_key_file(pkcs8(key), PASSWORD, n=n, label=label),
                                      PASSWORD)
    assert pkcs8(loaded) == pkcs8(key)


def test_encrypted_file_opens_with_independent_libraries() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    text = keys.encrypt_private_key(key, PASSWORD)
    lines = text.decode().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    body = base64.b64decode("".join(lines[1:-1]))
    envelope = json.loads(body)
    # compact JSON in go-securesystemslib's struct order
    assert body.startswith(b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"')
    assert list(envelope) == ["kdf", "cipher", "ciphertext"]
    salt = base64.b64decode(envelope["kdf"]["salt"])
    nonce = base64.b64decode(envelope["cipher"]["nonce"])
    assert len(salt) == 32 and len(nonce) == 24
    der = nacl.bindings.crypto_secretbox_open(base64.b64decode(envelope["ciphertext"]), nonce,
                                              openssl_scrypt(PASSWORD, salt, 65536))
    assert der == pkcs8(key)


def test_wrong_password_names_file_and_hides_password(tmp_path) -> None:
    path = tmp_path / "cosign.key"
    path.write_bytes(keys.encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), PASSWORD))
    with pytest.raises(PasswordError) as info:
        keys.load_private_key(path, b"hunter2-wrong")
    message = str(info.value)
    assert "decrypt: encrypted: decryption failed" in message and str(path) in message
    assert "hunter2" not in message and PASSWORD.decode() not in message


@pytest.mark.parametrize("params", [{"N": 16384, "r": 8, "p": 1}, {"N": 65536, "r": 16, "p": 1},
                                    {"N": 65536, "r": 8, "p": 2}])
def test_refuses_scrypt_parameters_cosign_refuses(params) -> None:
    text = independent_key_file(b"irrelevant", PASSWORD)
    body = json.loads(base64.b64decode(b"".join(text.splitlines()[1:-1])))
    body["kdf"]["params"] = params
    bad = keys.pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", json.dumps(body).encode())
    with pytest.raises(UnsupportedKeyError, match="unsupported scrypt parameters"):
        keys.decrypt_private_key(bad, PASSWORD, source="k.key")


def test_bad_key_files(tmp_path) -> None:
    good = keys.encrypt_private_key(ec.generate_private_key(ec.SECP256R1()), PASSWORD)
    cases = {
        "truncated.key": (good[: len(good) // 2], "invalid pem block"),
        "empty.key": (b"", "invalid pem block"),
        "pub.key": (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                    "unsupported pem type: PUBLIC KEY"),
        "notjson.key": (keys.pem_encode("ENCRYPTED SIGSTORE PRIVATE KEY", b"{nope"), "not valid JSON"),
    }
    for name, (data, wording) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(KeyFileError) as info:
            keys.load_private_key(tmp_path / name, PASSWORD)
        assert wording in str(info.value) and name in str(info.value)
    with pytest.raises(KeyFileError, match="does not exist"):
        keys.load_private_key(tmp_path / "missing.key", PASSWORD)


# Files of PEM lines that cost a quadratic reader ~30 s at 200 KB (issue 13, item 8); cosign (Go 1.26
# pem.Decode) answers each in milliseconds. Each maps to whether Go still finds a key appended to
# it (a header line after an END makes Go give up on the whole input);
# tests/interop/test_keys_cosign.py checks the outcomes against cosign itself.
HOSTILE_PEM = {
    "begin-lines": (b"-----BEGIN PUBLIC KEY-----\n" * 7600, True),
    "colon-begin-end": (b"-----BEGIN a:b-----\n-----END a:b\n" * 6000, False),
    "end-lines": (b"-----BEGIN X-----\n" + b"-----END X\n" * 18000, True),
    "header-lines": (b"-----BEGIN X-----\n" * 5000 + b"a: b\n" * 20000, True),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PEM))
def test_hostile_pem_is_read_in_linear_time(name) -> None:
    hostile, key_found = HOSTILE_PEM[name]
    key_pem = pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL)
    for data, expected in ((hostile, None), (hostile + b"\n" + key_pem, key_pem if key_found else None)):
        started = time.monotonic()
        block = keys.pem_decode_first(data)
        assert time.monotonic() - started < 2.0  # generous: a linear read takes milliseconds
        if expected is None:
            assert block is None
        else:
            assert block is not None and keys.pem_encode(block.type, block.body) == expected


# --- generate / import / files -------------------------------------------------------------


def test_generate_writes_modes_and_a_p256_pair(tmp_path) -> None:
    paths = keys.generate_key_pair(tmp_path / "cosign", PASSWORD)
    assert paths == keys.KeyPairPaths(tmp_path / "cosign.key", tmp_path / "cosign.pub")
    assert stat.S_IMODE(os.stat(paths.private_key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.public_key).st_mode) == 0o644
    private = keys.load_private_key(paths.private_key, PASSWORD)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
    assert paths.public_key.read_text() == keys.public_key_pem(private)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cosign.key", "cosign.pub"]


def test_generate_refuses_to_overwrite_and_touches_nothing(tmp_path) -> None:
    paths = keys.generate_key_pair(tmp_path / "cosign", PASSWORD)
    before = {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in (paths.private_key, paths.public_key)}
    with pytest.raises(KeyExistsError, match="cosign.key"):
        keys.generate_key_pair(tmp_path / "cosign", PASSWORD)
    assert {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cosign.key", "cosign.pub"]
    keys.generate_key_pair(tmp_path / "cosign", PASSWORD, force=True)
    assert paths.private_key.read_bytes() != before[paths.private_key][0]
    assert stat.S_IMODE(os.stat(paths.private_key).st_mode) == 0o600


@pytest.mark.parametrize("suffix", [".key", ".pub"])
def test_generate_refuses_a_directory_target_before_writing_anything(tmp_path, suffix) -> None:
    (tmp_path / f"cosign{suffix}").mkdir()
    with pytest.raises(KeyFileError, match=rf"^open .*cosign\{suffix}: is a directory$"):
        keys.generate_key_pair(tmp_path / "cosign", PASSWORD, force=True)
    assert [p.name for p in tmp_path.iterdir()] == [f"cosign{suffix}"]


def test_key_file_json_nested_deep_or_with_huge_numbers_is_one_error(tmp_path) -> None:
    """Python's json raises RecursionError and ValueError where Go's gives an error (issue 13)."""
    label = "ENCRYPTED SIGSTORE PRIVATE KEY"
    envelope = ('{"kdf":{"name":"scrypt","params":{"N":%s,"r":8,"p":1},"salt":%s},'
                '"cipher":{"name":"nacl/secretbox","nonce":"AA=="},"ciphertext":"AA=="}')
    cases = {
        b"[" * 20000 + b"]" * 20000: "decrypt: invalid character '[' exceeded max depth",  # Go's words
        b'{"a":' * 20000 + b"1" + b"}" * 20000: "decrypt: invalid character '{' exceeded max depth",
        b"[" * 5000 + b"]" * 5000: "nests too deeply",  # within Go's limit, past Python's
        (envelope % ("9" * 10000, '"AA=="')).encode(): "unsupported scrypt parameters",
        (envelope % ("65536", "9" * 10000)).encode(): "field 'salt' of the encrypted key is not base64",
        (envelope % ("65536", "1234")).encode(): "field 'salt' of the encrypted key is not base64",
    }
    for body, wording in cases.items():
        with pytest.raises(KeyMaterialError, match=re.escape(wording)):
            keys.decrypt_private_key(keys.pem_encode(label, body), PASSWORD, source="k.key")


def test_a_failed_write_leaves_the_pair_and_no_stray_private_key(tmp_path, monkeypatch) -> None:
    from labkit.keys import generation

    paths = keys.generate_key_pair(tmp_path / "cosign", PASSWORD)
    before = {p: p.read_bytes() for p in (paths.private_key, paths.public_key)}

    def refuse_pub(path, data, **kwargs):
        if path.suffix == ".pub":
            raise PermissionError(13, "Permission denied")
        return stage_file(path, data, **kwargs)

    stage_file = generation.stage_file
    monkeypatch.setattr(generation, "stage_file", refuse_pub)
    with pytest.raises(KeyFileError, match=r"^cannot write .*cosign\.pub: permission denied$"):
        keys.generate_key_pair(tmp_path / "cosign", PASSWORD, force=True)
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cosign.key", "cosign.pub"]


IMPORTABLE = {
    "rsa2048-pkcs1": lambda: pem(rsa.generate_private_key(65537, 2048),
                                 serialization.PrivateFormat.TraditionalOpenSSL),
    "rsa4096-pkcs8": lambda: pem(rsa.generate_private_key(65537, 4096)),
    "p256-sec1": lambda: pem(ec.generate_private_key(ec.SECP256R1()),
                             serialization.PrivateFormat.TraditionalOpenSSL),
    "p384-pkcs8": lambda: pem(ec.generate_private_key(ec.SECP384R1())),
    "p521-sec1": lambda: pem(ec.generate_private_key(ec.SECP521R1()),
                             serialization.PrivateFormat.TraditionalOpenSSL),
    "ed25519-pkcs8": lambda: pem(ed25519.Ed25519PrivateKey.generate()),
}


@pytest.mark.parametrize("name", sorted(IMPORTABLE))
def test_import_accepts_what_cosign_accepts(tmp_path, name) -> None:
    source = tmp_path / "in.pem"
    source.write_bytes(IMPORTABLE[name]())
    paths = keys.import_key_pair(source, PASSWORD, tmp_path / "import-cosign")
    original = serialization.load_pem_private_key(source.read_bytes(), None)
    assert pkcs8(keys.load_private_key(paths.private_key, PASSWORD)) == pkcs8(original)
    assert paths.private_key.read_bytes().startswith(b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")


REFUSED = {
    "rsa1024": (lambda: pem(rsa.generate_private_key(65537, 1024)),
                "error validating rsa key: key size not supported: 1024"),
    "rsa-e3": (lambda: pem(rsa.generate_private_key(3, 2048)),
               "error validating rsa key: key exponent must be 65537"),
    "p224": (lambda: pem(ec.generate_private_key(ec.SECP224R1()),
                         serialization.PrivateFormat.TraditionalOpenSSL),
             "error validating ecdsa key: ECDSA curve P-224 not allowed"),
    "k1-sec1": (lambda: pem(ec.generate_private_key(ec.SECP256K1()),
                            serialization.PrivateFormat.TraditionalOpenSSL),
                "error parsing ecdsa private key"),
    "k1-pkcs8": (lambda: pem(ec.generate_private_key(ec.SECP256K1())),
                 "error parsing pkcs #8 private key"),
    "ecparams-first": (lambda: b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n"
                       b"-----END EC PARAMETERS-----\n"
                       + pem(ec.generate_private_key(ec.SECP256R1()),
                             serialization.PrivateFormat.TraditionalOpenSSL),
                       "unsupported private key"),
    "encrypted-pkcs8": (lambda: ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"x")), "unsupported private key"),
    "not-pem": (lambda: b"hello", "invalid pem block"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_import_refuses_with_cosigns_reason_and_writes_nothing(tmp_path, name) -> None:
    make, wording = REFUSED[name]
    source = tmp_path / "in.pem"
    source.write_bytes(make())
    with pytest.raises((UnsupportedKeyError, KeyFileError)) as info:
        keys.import_key_pair(source, PASSWORD, tmp_path / "import-cosign")
    assert wording in str(info.value) and "in.pem" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["in.pem"]


# --- public keys ----------------------------------------------------------------------------


def test_public_key_pem_matches_openssl_layout_and_loads_back(tmp_path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    expected = key.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys.public_key_pem(key).encode() == expected
    (tmp_path / "k.pub").write_bytes(expected)
    assert keys.load_public_key(tmp_path / "k.pub") == key.public_key()
    assert keys.load_public_key(expected) == key.public_key()


def test_load_public_key_accepts_pkcs1_and_explains_private_keys(tmp_path) -> None:
    key = rsa.generate_private_key(65537, 2048)
    pkcs1 = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    assert keys.load_public_key(pkcs1).public_numbers() == key.public_key().public_numbers()
    paths = keys.generate_key_pair(tmp_path / "cosign", b"")
    with pytest.raises(KeyFileError, match="is a cosign private key, not a public key"):
        keys.load_public_key(paths.private_key)
    with pytest.raises(KeyFileError, match="unknown Public key PEM file type: CERTIFICATE"):
        keys.load_public_key(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# --- signatures -----------------------------------------------------------------------------


@pytest.mark.parametrize("curve,algorithm", [(ec.SECP256R1, hashes.SHA256),
                                             (ec.SECP384R1, hashes.SHA384),
                                             (ec.SECP521R1, hashes.SHA512)])
def test_ecdsa_hash_follows_the_curve(curve, algorithm) -> None:
    key = ec.generate_private_key(curve())
    signature = keys.sign_message(key, b"payload")
    decode_dss_signature(signature)  # ASN.1 DER, as Go's ecdsa.SignASN1
    key.public_key().verify(signature, b"payload", ec.ECDSA(algorithm()))
    keys.verify_message(key.public_key(), signature, b"payload", digest_algorithm=algorithm.name)


def test_ecdsa_accepts_ieee_p1363_and_uses_sigstore_wording() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(keys.sign_message(key, b"payload"))
    p1363 = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    keys.verify_message(key.public_key(), p1363, b"payload")
    with pytest.raises(VerificationError, match="^invalid signature when validating IEEE_P1363"):
        keys.verify_message(key.public_key(), p1363, b"payloaX")
    with pytest.raises(VerificationError,
                       match="^invalid signature when validating ASN.1 encoded signature$"):
        keys.verify_message(key.public_key(), keys.sign_message(key, b"a"), b"b")
    with pytest.raises(VerificationError, match="Invalid IEEE_P1363 encoded bytes"):
        keys.verify_message(key.public_key(), b"\x01\x02\x03", b"payload")


def test_rsa_signs_pkcs1v15_sha256() -> None:
    key = rsa.generate_private_key(65537, 2048)
    signature = keys.sign_message(key, b"payload")
    key.public_key().verify(signature, b"payload", padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(VerificationError, match="crypto/rsa: verification error"):
        keys.verify_message(key.public_key(), signature, b"other")


def test_ed25519ph_matches_rfc8032_vector() -> None:
    # RFC 8032 §7.3, test "abc"
    key = ed25519.Ed25519PrivateKey.from_private_bytes(
        bytes.fromhex("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"))
    expected = bytes.fromhex(
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
        "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406")
    assert keys.sign_message(key, b"abc") == expected
    keys.verify_message(key.public_key(), expected, b"abc", ed25519ph=True)
    with pytest.raises(VerificationError):  # pure Ed25519 is a different scheme
        keys.verify_message(key.public_key(), expected, b"abc")
    pure = keys.sign_message(key, b"abc", ed25519ph=False)
    key.public_key().verify(pure, b"abc")
    keys.verify_message(key.public_key(), pure, b"abc")
