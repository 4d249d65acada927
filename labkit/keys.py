"""Cosign-compatible key pairs: generation, import, encrypted key files, public keys, raw signatures.

A labkit key file *is* a cosign key file: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` whose body is the
JSON envelope of go-securesystemslib ``encrypted`` (scrypt KDF + NaCl secretbox) around PKCS#8 DER.
Signing follows sigstore's ``LoadDefaultSignerVerifier`` as cosign configures it: the hash follows
the key (P-256→SHA-256, P-384→SHA-384, P-521→SHA-512, RSA→PKCS#1 v1.5 SHA-256) and Ed25519 keys
sign Ed25519ph. Nothing here touches the network.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sys
from math import isqrt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.utils
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from labkit.errors import (
    KeyExistsError,
    KeyFileError,
    PasswordError,
    UnsupportedKeyError,
    UsageError,
    VerificationError,
)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

SIGSTORE_PRIVATE_KEY_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PRIVATE_KEY_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"  # written by cosign <= 2.0.0
_ENCRYPTED_TYPES = (SIGSTORE_PRIVATE_KEY_PEM_TYPE, COSIGN_PRIVATE_KEY_PEM_TYPE)

PASSWORD_ENV = "COSIGN_PASSWORD"
DEFAULT_PROMPT = "Enter password for private key: "

# go-securesystemslib accepts exactly these (legacy, standard = what it writes, OWASP).
_SCRYPT_N_ACCEPTED = (32768, 65536, 131072)
_SCRYPT_N_WRITTEN = 65536
_SCRYPT_R, _SCRYPT_P = 8, 1
# scrypt needs 128·r·N bytes (128 MiB at N=2^17); hashlib's default cap is 32 MiB.
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_SALT_SIZE = 32

_EC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_GO_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521",
                   "secp224r1": "P-224"}
_RSA_SIZES = (2048, 3072, 4096)
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class KeyPairPaths:
    """Where a key pair was written: ``PREFIX.key`` (0600) and ``PREFIX.pub`` (0644)."""

    private_key: Path
    public_key: Path


# --- PEM, as Go's encoding/pem writes and reads it --------------------------------------------

_PEM_BLOCK = re.compile(
    rb"(?:^|\n)-----BEGIN ([^\r\n-]*)-----[ \t]*\r?\n(.*?)(?:^|\n)-----END \1-----[ \t]*(?:\r?\n|$)",
    re.DOTALL,
)


@dataclass(frozen=True)
class PemBlock:
    type: str
    body: bytes


def pem_encode(pem_type: str, body: bytes) -> bytes:
    """Go ``pem.EncodeToMemory`` without headers: 64-character lines, trailing newline."""
    b64 = base64.b64encode(body)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    head = f"-----BEGIN {pem_type}-----\n".encode()
    tail = f"-----END {pem_type}-----\n".encode()
    return head + b"".join(line + b"\n" for line in lines) + tail


def pem_decode_first(data: bytes) -> PemBlock | None:
    """The first well-formed PEM block, or None; like Go ``pem.Decode``, malformed blocks are skipped."""
    for match in _PEM_BLOCK.finditer(data):
        body_text = match.group(2)
        if b":" in body_text.split(b"\n", 1)[0]:
            # RFC 1421 headers (Proc-Type: …) precede a blank line; the body follows it.
            body_text = body_text.split(b"\n\n", 1)[-1]
        try:
            body = base64.b64decode(re.sub(rb"\s+", b"", body_text), validate=True)
        except (binascii.Error, ValueError):
            continue
        return PemBlock(match.group(1).decode("ascii", "replace"), body)
    return None


# --- the encrypted envelope (go-securesystemslib encrypted.Encrypt / Decrypt) -----------------


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
        return base64.b64decode(str(value), validate=True)
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
    if block.type not in _ENCRYPTED_TYPES:
        hint = "pass a cosign .key file"
        if block.type in ("PUBLIC KEY", "RSA PUBLIC KEY"):
            hint = "this is a public key; signing needs the private .key file"
        elif block.type in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"):
            hint = "this is an unencrypted key; convert it first with `labkit import-key-pair --key FILE`"
        raise KeyFileError(f"{source}: unsupported pem type: {block.type}", hint=hint)
    try:
        envelope = json.loads(block.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KeyFileError(
            f"{source}: the encrypted key is not valid JSON",
            hint="the file is corrupted; regenerate or re-import the key",
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
            hint="wrong password: set COSIGN_PASSWORD or type the password the key was made with",
        ) from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{source}: parsing private key: the decrypted content is not PKCS#8",
            hint="the file was not written by cosign or labkit",
        ) from None
    return _signing_key(key, source)


def _signing_key(key: object, source: str) -> PrivateKey:
    if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        return key
    raise UnsupportedKeyError(
        f"{source}: unsupported public key type {type(key).__name__}",
        hint="cosign signs with ECDSA, RSA or Ed25519 keys only",
    )


# --- files -----------------------------------------------------------------------------------


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist", hint="check the path") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a directory", hint="pass a file") from None
    except PermissionError:
        raise KeyFileError(f"cannot read {what} {path}: permission denied") from None


def load_private_key(path: str | Path, password: bytes) -> PrivateKey:
    """Load a cosign/labkit encrypted key file (either PEM label)."""
    return decrypt_private_key(_read(path, "key file"), password, source=str(path))


def load_public_key(path_or_pem: str | Path | bytes) -> PublicKey:
    """A ``PUBLIC KEY`` (PKIX) or ``RSA PUBLIC KEY`` (PKCS#1) PEM, given as bytes or a file path."""
    if isinstance(path_or_pem, bytes):
        data, source = path_or_pem, "<public key>"
    elif isinstance(path_or_pem, str) and path_or_pem.lstrip().startswith("-----BEGIN"):
        data, source = path_or_pem.encode(), "<public key>"
    else:
        data, source = _read(path_or_pem, "public key file"), str(path_or_pem)
    block = pem_decode_first(data)
    if block is None:
        raise KeyFileError(f"{source}: PEM decoding failed", hint="pass a PEM public key (.pub)")
    try:
        if block.type == "PUBLIC KEY":
            key = serialization.load_der_public_key(block.body)
        elif block.type == "RSA PUBLIC KEY":
            # cryptography reads PKCS#1 public keys from PEM only.
            key = serialization.load_pem_public_key(pem_encode(block.type, block.body))
        elif block.type in _ENCRYPTED_TYPES:
            raise KeyFileError(
                f"{source} is a cosign private key, not a public key",
                hint=f"pass the matching .pub file, or print it with `labkit public-key --key {source}`",
            )
        else:
            raise KeyFileError(
                f"{source}: unknown Public key PEM file type: {block.type}. "
                "Are you passing the correct public key?"
            )
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{source}: the {block.type} block does not hold a valid public key",
            hint="the file is corrupted or truncated",
        ) from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise UnsupportedKeyError(f"{source}: unsupported public key type {type(key).__name__}")
    return key


def public_key_pem(key: PrivateKey | PublicKey) -> str:
    """PKIX ``PUBLIC KEY`` PEM, byte-identical to ``cosign public-key``."""
    public = key.public_key() if hasattr(key, "private_bytes") else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem_encode("PUBLIC KEY", der).decode()


def write_key_pair(
    prefix: str | Path, key: PrivateKey, password: bytes, *, force: bool = False
) -> KeyPairPaths:
    """Write ``PREFIX.key`` (encrypted, 0600) and ``PREFIX.pub`` (0644); refuse to replace a key."""
    prefix = str(prefix)
    paths = KeyPairPaths(Path(prefix + ".key"), Path(prefix + ".pub"))
    # cosign only guards the .key file; the .pub follows it.
    if paths.private_key.exists() and not force:
        raise KeyExistsError(
            f"refusing to overwrite existing key file {paths.private_key}",
            hint="pass --force (API: force=True) or choose another --output-key-prefix",
        )
    private_pem = encrypt_private_key(key, password)
    public_pem = public_key_pem(key).encode()
    # Write both to temporary files first so a failure leaves any existing pair untouched.
    staged = [
        (_stage(paths.private_key, private_pem, 0o600), paths.private_key),
        (_stage(paths.public_key, public_pem, 0o644), paths.public_key),
    ]
    for tmp, final in staged:
        os.replace(tmp, final)
    return paths


def _stage(final: Path, data: bytes, mode: int) -> Path:
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileNotFoundError:
        raise KeyFileError(f"cannot write {final}: directory {final.parent} does not exist") from None
    except PermissionError:
        raise KeyFileError(f"cannot write {final}: permission denied") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)  # the umask may have narrowed 0644
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def generate_key_pair(
    prefix: str | Path = "cosign", password: bytes = b"", *, force: bool = False
) -> KeyPairPaths:
    """A new ECDSA P-256 pair, as ``cosign generate-key-pair`` makes (empty passwords are legal)."""
    return write_key_pair(prefix, ec.generate_private_key(ec.SECP256R1()), password, force=force)


def import_key_pair(
    pem_path: str | Path,
    password: bytes,
    prefix: str | Path = "import-cosign",
    *,
    force: bool = False,
) -> KeyPairPaths:
    """Re-encrypt an unencrypted PEM private key (SEC1, PKCS#1, PKCS#8) as a cosign key pair."""
    return write_key_pair(prefix, load_importable_key(pem_path), password, force=force)


def load_importable_key(pem_path: str | Path) -> PrivateKey:
    """Read an unencrypted PEM private key that ``cosign import-key-pair`` would accept."""
    return parse_importable_key(_read(pem_path, "key file"), source=str(pem_path))


def parse_importable_key(data: bytes, *, source: str) -> PrivateKey:
    """What cosign's ``ImportKeyPair`` accepts: the first PEM block only, validated like goodkey."""
    block = pem_decode_first(data)
    if block is None:
        raise KeyFileError(f"{source}: invalid pem block", hint="pass an unencrypted PEM private key")
    loaders: dict[str, tuple[str, str]] = {
        "RSA PRIVATE KEY": ("rsa", "error parsing rsa private key"),
        "EC PRIVATE KEY": ("ecdsa", "error parsing ecdsa private key"),
        "PRIVATE KEY": ("", "error parsing pkcs #8 private key"),
    }
    if block.type not in loaders:
        hint = "cosign imports RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY blocks"
        if block.type == "EC PARAMETERS":
            hint = ("the file starts with an EC PARAMETERS block (openssl ecparam -genkey); "
                    "make it with `openssl ecparam -genkey -noout` or `openssl genpkey`")
        elif block.type == "ENCRYPTED PRIVATE KEY":
            hint = "decrypt it first: openssl pkey -in FILE -out plain.pem"
        raise UnsupportedKeyError(f"{source}: unsupported private key ({block.type})", hint=hint)
    family, parse_error = loaders[block.type]
    try:
        key = serialization.load_pem_private_key(pem_encode(block.type, block.body), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UnsupportedKeyError(
            f"{source}: {parse_error}",
            hint="cosign can read RSA, ECDSA on P-224/P-256/P-384/P-521, and Ed25519 keys only",
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _GO_CURVE_NAMES:
        # Go's x509 parsers know only the NIST curves, so cosign fails at parsing.
        raise UnsupportedKeyError(
            f"{source}: {parse_error}", hint=f"curve {key.curve.name} is not supported by cosign"
        )
    if block.type == "PRIVATE KEY":
        family = _family(key)
        if family is None and not isinstance(key, x25519.X25519PrivateKey):
            # Go's ParsePKCS8PrivateKey knows RSA, NIST ECDSA, Ed25519 and X25519 only.
            raise UnsupportedKeyError(
                f"{source}: {parse_error}", hint="cosign imports RSA, ECDSA and Ed25519 keys"
            )
        if family is None:
            raise UnsupportedKeyError(
                f"{source}: unexpected private key ({type(key).__name__})",
                hint="use RSA, ECDSA or Ed25519 keys",
            )
    reason = _goodkey_reason(key)
    if reason:
        raise UnsupportedKeyError(
            f"{source}: error validating {family} key: {reason}",
            hint="use RSA 2048/3072/4096, ECDSA P-256/P-384/P-521, or Ed25519",
        )
    return _signing_key(key, source)


def _family(key: object) -> str | None:
    for family, cls in (
        ("ecdsa", ec.EllipticCurvePrivateKey),
        ("rsa", rsa.RSAPrivateKey),
        ("ed25519", ed25519.Ed25519PrivateKey),
    ):
        if isinstance(key, cls):
            return family
    return None


def _goodkey_reason(key: object) -> str | None:
    """Why sigstore's ``cryptoutils.ValidatePubKey`` (Boulder goodkey) refuses a key, or None."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        if key.key_size not in _RSA_SIZES:
            return f"key size not supported: {key.key_size}"
        if numbers.e != 65537:
            return "key exponent must be 65537"
        if _fermat_factorable(numbers.n):
            return "key generated with factors too close together"
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in _EC_HASHES:
            return f"ECDSA curve {_GO_CURVE_NAMES[key.curve.name]} not allowed"
        return None
    return None  # Ed25519: any key


def _fermat_factorable(n: int, rounds: int = 100) -> bool:
    # goodkey's Fermat check: n = a² − b² with a close to √n means p and q are too close.
    a = isqrt(n)
    if a * a < n:
        a += 1
    for _ in range(rounds):
        b2 = a * a - n
        b = isqrt(b2)
        if b * b == b2:
            return True
        a += 1
    return False


# --- raw signatures --------------------------------------------------------------------------


def sign_message(private_key: PrivateKey, message: bytes, *, ed25519ph: bool = True) -> bytes:
    """The raw signature cosign makes over ``message`` with this key (see the module docstring).

    ``ed25519ph=False`` signs pure Ed25519, as ``cosign sign-blob`` v3 does for blobs.
    """
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        algorithm = _EC_HASHES.get(private_key.curve.name)
        if algorithm is None:
            raise UnsupportedKeyError(f"cannot sign with ECDSA curve {private_key.curve.name}")
        return private_key.sign(message, ec.ECDSA(algorithm()))
    if isinstance(private_key, rsa.RSAPrivateKey):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return _ed25519ph_sign(private_key, message) if ed25519ph else private_key.sign(message)
    raise UnsupportedKeyError(f"cannot sign with a {type(private_key).__name__}")


def _raw_public(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _ed25519ph_state(message: bytes) -> object:
    # libsodium's multi-part crypto_sign is RFC 8032 Ed25519ph with an empty context.
    state = nacl.bindings.crypto_sign_ed25519ph_state()
    nacl.bindings.crypto_sign_ed25519ph_update(state, message)
    return state


def _ed25519ph_sign(key: ed25519.Ed25519PrivateKey, message: bytes) -> bytes:
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secret = seed + _raw_public(key.public_key())
    return nacl.bindings.crypto_sign_ed25519ph_final_create(_ed25519ph_state(message), secret)


def verify_message(
    public_key: PublicKey,
    signature: bytes,
    message: bytes,
    *,
    digest_algorithm: str = "sha256",
    ed25519ph: bool = False,
) -> None:
    """Check a raw signature as cosign's verifier does; raise VerificationError with its wording.

    ``digest_algorithm`` is cosign's ``--signature-digest-algorithm`` (ECDSA and RSA). Ed25519 keys
    verify pure Ed25519 as ``cosign verify --key`` does, unless ``ed25519ph`` (what cosign signs).
    """
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        _verify_ecdsa(public_key, signature, message, _digest(digest_algorithm))
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        try:
            public_key.verify(signature, message, padding.PKCS1v15(), _digest(digest_algorithm))
        except InvalidSignature:
            raise VerificationError("crypto/rsa: verification error") from None
        return
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        if ed25519ph:
            try:
                ok = nacl.bindings.crypto_sign_ed25519ph_final_verify(
                    _ed25519ph_state(message), signature, _raw_public(public_key)
                )
            except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
                ok = False
            if not ok:
                raise VerificationError("failed to verify signature: ed25519: invalid signature")
            return
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            raise VerificationError("failed to verify signature") from None
        return
    raise UnsupportedKeyError(f"cannot verify with a {type(public_key).__name__}")


def _verify_ecdsa(
    public_key: ec.EllipticCurvePublicKey,
    signature: bytes,
    message: bytes,
    algorithm: hashes.HashAlgorithm,
) -> None:
    try:
        decode_dss_signature(signature)
    except ValueError:
        pass
    else:
        try:
            public_key.verify(signature, message, ec.ECDSA(algorithm))
        except InvalidSignature:
            raise VerificationError(
                "invalid signature when validating ASN.1 encoded signature"
            ) from None
        return
    # Not DER: sigstore also accepts IEEE P1363 r||s.
    if not signature or len(signature) > 132 or len(signature) % 2:
        raise VerificationError("ecdsa: Invalid IEEE_P1363 encoded bytes")
    half = len(signature) // 2
    der = encode_dss_signature(
        int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    )
    try:
        public_key.verify(der, message, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise VerificationError(
            "invalid signature when validating IEEE_P1363 encoded signature"
        ) from None


def _digest(name: str) -> hashes.HashAlgorithm:
    try:
        return _DIGESTS[name.lower()]()
    except KeyError:
        raise UsageError(
            f"unsupported digest algorithm {name!r}",
            hint=f"choose one of {', '.join(_DIGESTS)}",
        ) from None


# --- passwords -------------------------------------------------------------------------------


def read_password(
    *,
    confirm: bool,
    prompt: str = DEFAULT_PROMPT,
    environ: dict[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stderr: TextIO | None = None,
    getpass: Callable[[str, TextIO], str] | None = None,
) -> bytes:
    """cosign's order: ``COSIGN_PASSWORD`` if set (even empty), else a TTY prompt, else all of stdin.

    The stdin bytes are taken verbatim, trailing newline included, as cosign's ``io.ReadAll``.
    """
    env = os.environ if environ is None else environ
    if PASSWORD_ENV in env:
        return env[PASSWORD_ENV].encode()
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stderr = stderr if stderr is not None else sys.stderr
    if not stdin.isatty():
        return stdin.read()
    if getpass is None:
        import getpass as _getpass

        getpass = _getpass.getpass
    first = getpass(prompt, stderr)
    if not confirm:
        return first.encode()
    # cosign's second prompt: "Enter password for private key again: "
    again_prompt = prompt[:-2] + " again: " if prompt.endswith(": ") else prompt
    again = getpass(again_prompt, stderr)
    if first != again:
        raise PasswordError("passwords do not match", hint="type the same password twice")
    return first.encode()
