"""cosign's encrypted key files: go-securesystemslib ``encrypted`` (scrypt KDF + NaCl secretbox).

The PEM body is a JSON envelope around the key's PKCS#8 DER.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from labkit.errors import KeyFileError, PasswordError, UnsupportedKeyError
from labkit.keys.formats import (
    ENCRYPTED_PEM_TYPES,
    SIGSTORE_PRIVATE_KEY_PEM_TYPE,
    PrivateKey,
    pem_decode_first,
    pem_encode,
    read_key_file,
    signing_key,
)

# Where cosign reads a key's password from before it prompts.
PASSWORD_ENV = "COSIGN_PASSWORD"

# go-securesystemslib accepts exactly these (legacy, standard = what it writes, OWASP).
_SCRYPT_N_ACCEPTED = (32768, 65536, 131072)
_SCRYPT_N_WRITTEN = 65536
_SCRYPT_R, _SCRYPT_P = 8, 1
# scrypt needs 128·r·N bytes (128 MiB at N=2^17); hashlib's default cap is 32 MiB.
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_SALT_SIZE = 32


def _scrypt(password: bytes, salt: bytes, n: int) -> bytes:
    return hashlib.scrypt(
        password, salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM, dklen=32
    )


def encrypt_private_key(key: PrivateKey, password: bytes) -> bytes:
    """The PEM bytes of a cosign key file holding ``key`` (PKCS#8) under ``password``."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt = os.urandom(_SALT_SIZE)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_scrypt(password, salt, _SCRYPT_N_WRITTEN))
    ciphertext = box.encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": _SCRYPT_N_WRITTEN, "r": _SCRYPT_R, "p": _SCRYPT_P},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    # Go's json.Marshal: struct order, no spaces.
    body = json.dumps(envelope, separators=(",", ":")).encode()
    return pem_encode(SIGSTORE_PRIVATE_KEY_PEM_TYPE, body)


def _go_int(text: str) -> int | float:
    # Go decodes into an int only what fits 64 bits; longer integers become floats here, which
    # no envelope field accepts, instead of Python's ValueError past 4300 digits.
    return int(text) if len(text) <= 19 else float(text)


# Go's encoding/json refuses nesting deeper than this; Python's decoder stops near 1000.
_GO_JSON_MAX_DEPTH = 10000
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[][{}]')


def _too_deep(body: bytes) -> str:
    """Go's error for JSON nested past its limit (cosign's message), or labkit's own when the
    nesting is within Go's limit but beyond Python's."""
    depth = 0
    for token in _JSON_TOKEN.finditer(body):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > _GO_JSON_MAX_DEPTH:
                return f"invalid character '{bracket.decode()}' exceeded max depth"
        elif bracket in (b"]", b"}"):
            depth -= 1
    return "the encrypted key's JSON nests too deeply for labkit"


def _envelope_field(obj: object, name: str, source: str) -> object:
    if not isinstance(obj, dict) or name not in obj:
        raise KeyFileError(
            f"{source}: encrypted key envelope has no {name!r} field",
            hint="the file is truncated or corrupted; regenerate or re-import the key",
        )
    return obj[name]


def _b64_field(obj: object, name: str, source: str) -> bytes:
    value = _envelope_field(obj, name, source)
    try:
        if not isinstance(value, str):  # Go fills a []byte field from a JSON string only
            raise ValueError(name)
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(
            f"{source}: field {name!r} of the encrypted key is not base64",
            hint="the file is corrupted; regenerate or re-import the key",
        ) from None


def decrypt_private_key(pem: bytes, password: bytes, *, source: str = "<key>") -> PrivateKey:
    """Open a cosign key file's bytes. ``source`` names the input in error messages."""
    block = pem_decode_first(pem)
    if block is None:
        raise KeyFileError(
            f"{source}: invalid pem block",
            hint="the file is not a PEM key, or it is truncated; pass a cosign .key file",
        )
    if block.type not in ENCRYPTED_PEM_TYPES:
        hint = "pass a cosign .key file"
        if block.type in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            hint = "this is a public key; signing needs the private .key file"
        elif block.type in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"):
            hint = "this is an unencrypted key; convert it first with `labkit import-key-pair --key FILE`"
        raise KeyFileError(f"{source}: unsupported pem type: {block.type}", hint=hint)
    try:
        envelope = json.loads(block.body, parse_int=_go_int)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyFileError(
            f"{source}: the encrypted key is not valid JSON",
            hint="the file is corrupted; regenerate or re-import the key",
        ) from None
    except RecursionError:
        raise KeyFileError(
            f"{source}: decrypt: {_too_deep(block.body)}",
            hint="the file is not a cosign key; regenerate or re-import the key",
        ) from None
    kdf = _envelope_field(envelope, "kdf", source)
    cipher = _envelope_field(envelope, "cipher", source)
    if (kdf_name := _envelope_field(kdf, "name", source)) != "scrypt":
        raise KeyFileError(f'{source}: decrypt: encrypted: unknown kdf name "{kdf_name}"')
    if (cipher_name := _envelope_field(cipher, "name", source)) != "nacl/secretbox":
        raise KeyFileError(f'{source}: decrypt: encrypted: unknown cipher name "{cipher_name}"')
    params = _envelope_field(kdf, "params", source)
    if not isinstance(params, dict) or (
        params.get("N") not in _SCRYPT_N_ACCEPTED
        or params.get("r") != _SCRYPT_R
        or params.get("p") != _SCRYPT_P
    ):
        raise UnsupportedKeyError(
            f"{source}: decrypt: unsupported scrypt parameters",
            hint="cosign accepts only N=32768/65536/131072, r=8, p=1; re-import the key",
        )
    salt = _b64_field(kdf, "salt", source)
    nonce = _b64_field(cipher, "nonce", source)
    ciphertext = _b64_field(envelope, "ciphertext", source)
    if len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyFileError(f"{source}: decrypt: encrypted: incorrect nonce size")
    box = nacl.secret.SecretBox(_scrypt(password, salt, int(params["N"])))
    try:
        der = box.decrypt(ciphertext, nonce)
    except nacl.exceptions.CryptoError:
        raise PasswordError(
            f"{source}: decrypt: encrypted: decryption failed",
            hint=f"wrong password: set {PASSWORD_ENV} or type the password the key was made with",
        ) from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{source}: parsing private key: the decrypted content is not PKCS#8",
            hint="the file was not written by cosign or labkit",
        ) from None
    return signing_key(key, source)


def load_private_key(path: str | Path, password: bytes) -> PrivateKey:
    """Load a cosign/labkit encrypted key file (either PEM label)."""
    return decrypt_private_key(read_key_file(path, "key file"), password, source=str(path))
