"""Raw signatures as sigstore's ``LoadDefaultSignerVerifier`` makes and checks them for cosign.

The hash follows the key (P-256→SHA-256, P-384→SHA-384, P-521→SHA-512, RSA→PKCS#1 v1.5 SHA-256)
and Ed25519 keys sign Ed25519ph.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from labkit.errors import UnsupportedKeyError, UsageError, VerificationError
from labkit.keys.formats import PrivateKey, PublicKey

# The curves cosign signs with, and the hash each one signs.
EC_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def sign_message(private_key: PrivateKey, message: bytes, *, ed25519ph: bool = True) -> bytes:
    """The raw signature cosign makes over ``message`` with this key (see the module docstring).

    ``ed25519ph=False`` signs pure Ed25519, as ``cosign sign-blob`` v3 does for blobs.
    """
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        algorithm = EC_HASHES.get(private_key.curve.name)
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


def _ed25519ph_state(message: bytes) -> nacl.bindings.crypto_sign_ed25519ph_state:
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
    encoding, der = _ecdsa_der(signature)
    try:
        public_key.verify(der, message, ec.ECDSA(algorithm))
    except InvalidSignature:
        raise VerificationError(
            f"invalid signature when validating {encoding} encoded signature"
        ) from None


def _ecdsa_der(signature: bytes) -> tuple[str, bytes]:
    """The signature's encoding, as sigstore names it, and its DER form."""
    try:
        decode_dss_signature(signature)
    except ValueError:
        pass
    else:
        return "ASN.1", signature
    # Not DER: sigstore also accepts IEEE P1363 r||s.
    if not signature or len(signature) > 132 or len(signature) % 2:
        raise VerificationError("ecdsa: Invalid IEEE_P1363 encoded bytes")
    half = len(signature) // 2
    r, s = int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
    return "IEEE_P1363", encode_dss_signature(r, s)


def _digest(name: str) -> hashes.HashAlgorithm:
    try:
        return _DIGESTS[name.lower()]()
    except KeyError:
        raise UsageError(
            f"unsupported digest algorithm {name!r}",
            hint=f"choose one of {', '.join(_DIGESTS)}",
        ) from None
