"""``cosign import-key-pair``: unencrypted PEM private keys (SEC1, PKCS#1, PKCS#8), checked as cosign does.

cosign reads the first PEM block only and refuses what sigstore's ``cryptoutils.ValidatePubKey``
(Boulder goodkey) refuses: odd RSA sizes and exponents, Fermat-factorable moduli, P-224.
"""

from __future__ import annotations

from math import isqrt
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

from labkit.errors import KeyFileError, UnsupportedKeyError
from labkit.keys.formats import (
    PrivateKey,
    names_its_curve,
    pem_decode_first,
    pem_encode,
    read_key_file,
    signing_key,
)
from labkit.keys.generation import KeyPairPaths, write_key_pair
from labkit.keys.signatures import EC_HASHES

_GO_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521",
                   "secp224r1": "P-224"}
_RSA_SIZES = (2048, 3072, 4096)


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
    return parse_importable_key(read_key_file(pem_path, "key file"), source=str(pem_path))


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
    if isinstance(key, ec.EllipticCurvePrivateKey) and not names_its_curve(block.type, block.body):
        # Go's x509 reads a curve only as a named-curve OID: cosign fails to parse explicit ones.
        raise UnsupportedKeyError(
            f"{source}: {parse_error}",
            hint="the key spells out its curve parameters (-param_enc explicit); re-export it "
            "with a named curve: openssl ec -in KEY -param_enc named_curve -out KEY.named",
        )
    if block.type == "PRIVATE KEY":
        pkcs8_family = _family(key)
        if pkcs8_family is None and not isinstance(key, x25519.X25519PrivateKey):
            # Go's ParsePKCS8PrivateKey knows RSA, NIST ECDSA, Ed25519 and X25519 only.
            raise UnsupportedKeyError(
                f"{source}: {parse_error}", hint="cosign imports RSA, ECDSA and Ed25519 keys"
            )
        if pkcs8_family is None:
            raise UnsupportedKeyError(
                f"{source}: unexpected private key ({type(key).__name__})",
                hint="use RSA, ECDSA or Ed25519 keys",
            )
        family = pkcs8_family
    reason = _goodkey_reason(key)
    if reason:
        raise UnsupportedKeyError(
            f"{source}: error validating {family} key: {reason}",
            hint="use RSA 2048/3072/4096, ECDSA P-256/P-384/P-521, or Ed25519",
        )
    return signing_key(key, source)


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
        if key.curve.name not in EC_HASHES:
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
