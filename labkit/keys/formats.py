"""Key file formats: PEM as Go writes and reads it, public keys (PKIX, PKCS#1), key types cosign signs with."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from labkit.errors import KeyFileError, UnsupportedKeyError

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

SIGSTORE_PRIVATE_KEY_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PRIVATE_KEY_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"  # written by cosign <= 2.0.0
ENCRYPTED_PEM_TYPES = (SIGSTORE_PRIVATE_KEY_PEM_TYPE, COSIGN_PRIVATE_KEY_PEM_TYPE)


# --- PEM, as Go's encoding/pem writes and reads it --------------------------------------------

_PEM_BEGIN = b"-----BEGIN "
_PEM_END = b"\n-----END "
_PEM_DASHES = b"-----"


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


def _pem_line(data: bytes, start: int) -> tuple[bytes, int]:
    """Go pem's ``getLine`` at ``start``: the line less its CR and trailing blanks, and the next line's start."""
    newline = data.find(b"\n", start)
    if newline < 0:
        return data[start:].rstrip(b" \t"), len(data)
    end = newline - 1 if newline > start and data[newline - 1] == 0x0D else newline
    return data[start:end].rstrip(b" \t"), newline + 1


def pem_decode_first(data: bytes) -> PemBlock | None:
    """The first well-formed PEM block, or None: Go 1.26 ``pem.Decode`` (what cosign runs).

    Like Go since CVE-2025-61723, each round finds the next END line and then the last BEGIN line
    before it, and the next round starts after that END; so every byte is looked at a bounded
    number of times and a file of unmatched BEGIN lines costs linear time, not quadratic.
    """
    start = 0
    while (end := data.find(_PEM_END, start)) >= 0:
        begin = data.rfind(_PEM_BEGIN, start, end)
        round_start, start = start, end + len(_PEM_END)
        if begin < 0 or (begin > round_start and data[begin - 1] != 0x0A):
            continue
        type_line, pos = _pem_line(data, begin + len(_PEM_BEGIN))
        if not type_line.endswith(_PEM_DASHES):
            continue
        pem_type = type_line[: -len(_PEM_DASHES)]
        # RFC 1421 headers ("Proc-Type: …") are lines with a colon before the body.
        has_headers = False
        while True:
            if pos >= len(data):
                return None  # Go gives up on the whole input when headers run to its end
            line, next_pos = _pem_line(data, pos)
            if b":" not in line:
                break
            has_headers, pos = True, next_pos
            if pos > start:
                # Headers past the END line: Go's next round starts before its own start and
                # gives up on the whole input; stopping here keeps each round in its own bytes.
                return None
        if has_headers and pos > end:
            continue
        trailer = data[start : start + len(pem_type) + len(_PEM_DASHES)]
        if trailer != pem_type + _PEM_DASHES or _pem_line(data, start + len(trailer))[0]:
            continue
        body = data[pos:end] if end > pos else b""
        try:
            decoded = base64.b64decode(re.sub(rb"[ \t\r\n]", b"", body), validate=True)
        except (binascii.Error, ValueError):
            continue
        return PemBlock(pem_type.decode("ascii", "replace"), decoded)
    return None


# --- DER, as far as telling a named curve from explicit parameters -------------------------

_DER_OID, _DER_SEQUENCE, _DER_OCTET_STRING, _DER_CONTEXT_0 = 0x06, 0x30, 0x04, 0xA0


def _der_elements(content: bytes) -> list[tuple[int, bytes]]:
    """The (tag, content) DER elements that make up ``content``; [] if it does not parse."""
    elements, pos = [], 0
    while pos < len(content):
        if pos + 2 > len(content):
            return []
        length, start = content[pos + 1], pos + 2
        if length & 0x80:
            size = length & 0x7F
            if not 0 < size <= 4 or start + size > len(content):
                return []
            length, start = int.from_bytes(content[start : start + size], "big"), start + size
        if start + length > len(content):
            return []
        elements.append((content[pos], content[start : start + length]))
        pos = start + length
    return elements


def _sequence(content: bytes) -> list[tuple[int, bytes]]:
    """The elements of the one SEQUENCE that ``content`` holds; [] otherwise."""
    top = _der_elements(content)
    return _der_elements(top[0][1]) if len(top) == 1 and top[0][0] == _DER_SEQUENCE else []


def names_its_curve(pem_type: str, der: bytes) -> bool:
    """Whether an EC key's DER gives its curve as an OID, the only form Go's x509 parses.

    A public key (PKIX) carries it in its algorithm identifier; SEC1 in ``[0] parameters``;
    PKCS#8 in its algorithm identifier, and the SEC1 key inside may repeat it.
    """
    key = _sequence(der)
    if pem_type == "PUBLIC KEY":
        return bool(key) and _algorithm_names_curve(key[0])
    if pem_type == "PRIVATE KEY":
        if len(key) < 3 or not _algorithm_names_curve(key[1]) or key[2][0] != _DER_OCTET_STRING:
            return False
        key = _sequence(key[2][1])
    params = [content for tag, content in key if tag == _DER_CONTEXT_0]
    return not params or params[0][:1] == bytes([_DER_OID])


def _algorithm_names_curve(element: tuple[int, bytes]) -> bool:
    """An AlgorithmIdentifier whose parameters are an OID (the named curve)."""
    tag, content = element
    algorithm = _der_elements(content) if tag == _DER_SEQUENCE else []
    return len(algorithm) >= 2 and algorithm[1][0] == _DER_OID


# --- key files and key types -----------------------------------------------------------------


def read_key_file(path: str | Path, what: str) -> bytes:
    """The bytes of a key file; ``what`` names it in the error when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist", hint="check the path") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a directory", hint="pass a file") from None
    except PermissionError:
        raise KeyFileError(f"cannot read {what} {path}: permission denied") from None


def signing_key(key: object, source: str) -> PrivateKey:
    """``key`` if cosign can sign with its type, else UnsupportedKeyError naming ``source``."""
    if isinstance(key, PrivateKey):
        return key
    raise UnsupportedKeyError(
        f"{source}: unsupported public key type {type(key).__name__}",
        hint="cosign signs with ECDSA, RSA or Ed25519 keys only",
    )


# --- public keys -----------------------------------------------------------------------------


def load_public_key(path_or_pem: str | Path | bytes) -> PublicKey:
    """A ``PUBLIC KEY`` (PKIX) or ``RSA PUBLIC KEY`` (PKCS#1) PEM, given as bytes or a file path."""
    if isinstance(path_or_pem, bytes):
        data, source = path_or_pem, "<public key>"
    elif isinstance(path_or_pem, str) and path_or_pem.lstrip().startswith("-----BEGIN"):
        data, source = path_or_pem.encode(), "<public key>"
    else:
        data, source = read_key_file(path_or_pem, "public key file"), str(path_or_pem)
    block = pem_decode_first(data)
    if block is None:
        raise KeyFileError(f"{source}: PEM decoding failed", hint="pass a PEM public key (.pub)")
    try:
        if block.type == "PUBLIC KEY":
            key = serialization.load_der_public_key(block.body)
        elif block.type == "RSA PUBLIC KEY":
            # cryptography reads PKCS#1 public keys from PEM only.
            key = serialization.load_pem_public_key(pem_encode(block.type, block.body))
        elif block.type in ENCRYPTED_PEM_TYPES:
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
    if not isinstance(key, PublicKey):
        raise UnsupportedKeyError(f"{source}: unsupported public key type {type(key).__name__}")
    if isinstance(key, ec.EllipticCurvePublicKey) and not names_its_curve(block.type, block.body):
        raise UnsupportedKeyError(
            f"{source}: x509: invalid ECDSA parameters",  # cosign's words (Go's x509)
            hint="the key spells out its curve parameters; re-export it with a named curve: "
            "openssl ec -pubin -in KEY -param_enc named_curve -pubout -out KEY.named",
        )
    return key


def public_key_pem(key: PrivateKey | PublicKey) -> str:
    """PKIX ``PUBLIC KEY`` PEM, byte-identical to ``cosign public-key``."""
    public = key.public_key() if isinstance(key, PrivateKey) else key
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem_encode("PUBLIC KEY", der).decode()
