"""Blob signing as ``cosign sign-blob --key K --tlog-upload=false`` / ``verify-blob --key --insecure-ignore-tlog``.

The signature is the key's raw signature over the blob bytes (see ``labkit.keys.sign_message``),
base64-encoded (standard alphabet, padded) exactly as cosign prints it. labkit never talks to a
transparency log, so there is no bundle and no Rekor entry.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from labkit.errors import KeyFileError
from labkit.keys import PrivateKey, PublicKey, sign_message, verify_message


def sign_blob(private_key: PrivateKey, blob: bytes) -> str:
    """Base64 signature over ``blob``, what cosign prints on stdout (without the newline).

    Ed25519 keys sign pure Ed25519 here, as cosign v3 ``sign-blob`` does and as every cosign
    ``verify-blob`` checks (cosign v2.6.x ``sign-blob`` panics on Ed25519 keys).
    """
    return base64.b64encode(sign_message(private_key, blob, ed25519ph=False)).decode("ascii")


def verify_blob(
    public_key: PublicKey,
    blob: bytes,
    signature_b64: str | bytes,
    *,
    digest_algorithm: str = "sha256",
    ed25519ph: bool = False,
) -> None:
    """Raise ``VerificationError`` (cosign's wording) unless the signature matches blob and key.

    ``signature_b64`` is decoded as cosign does: base64 when it is valid base64 (line breaks
    ignored), otherwise taken as raw signature bytes.
    """
    verify_message(
        public_key,
        decode_signature(signature_b64),
        blob,
        digest_algorithm=digest_algorithm,
        ed25519ph=ed25519ph,
    )


def decode_signature(signature: str | bytes) -> bytes:
    raw = signature.encode() if isinstance(signature, str) else signature
    # Go's base64.StdEncoding skips \r and \n, so a signature file with a newline still decodes.
    try:
        return base64.b64decode(raw.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError):
        return raw


def read_signature(ref: str) -> bytes:
    """cosign's ``--signature``: a file's contents, or the argument itself when no such file exists."""
    path = Path(ref)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return ref.encode()
    except (IsADirectoryError, PermissionError) as exc:
        raise KeyFileError(f"cannot read signature file {ref}: {exc.strerror}") from None
