"""Verify an image's legacy cosign signatures against public keys (``cosign verify --key``).

The checks and their order follow cosign's ``verifyInternal``: resolve the digest, fetch the
``.sig`` image, and for each signature layer check the signature against the key, then the
claims (the payload's digest must be the image's, and any required annotations must be present).
Errors carry cosign's wording and exit codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labkit import keys
from labkit.errors import (
    ImageTagNotFoundError,
    LabkitError,
    NoMatchingSignaturesError,
    NoSignaturesError,
    NotFoundError,
    UsageError,
)
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.signing.artifact import SignatureImage, SignatureLayer, attachment_ref
from labkit.signing.payload import SimpleSigningPayload


@dataclass(frozen=True)
class VerifiedSignature:
    payload: bytes
    signature: str  # base64
    key: keys.PublicKey

    @property
    def claims(self) -> SimpleSigningPayload:
        return SimpleSigningPayload.from_json(self.payload)


@dataclass(frozen=True)
class VerificationResult:
    reference: Reference
    digest: str
    signatures: tuple[VerifiedSignature, ...]

    def payloads_json(self) -> str:
        """The JSON array cosign prints on stdout: each payload re-marshalled as critical/optional."""
        docs = [json.loads(sig.payload) for sig in self.signatures]
        return json.dumps(
            [{"critical": d.get("critical"), "optional": d.get("optional")} for d in docs],
            separators=(",", ":"),
            ensure_ascii=False,
        )


def verify_image(
    ref: Reference | str,
    public_keys: keys.PublicKey | Sequence[keys.PublicKey],
    *,
    client: RegistryClient,
    annotations: Mapping[str, str] | None = None,
    signature_repository: str | None = None,
    digest_algorithm: str = "sha256",
) -> VerificationResult:
    """Return the signatures on ``ref`` that verify; raise cosign's error when none does."""
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    candidates = tuple(public_keys) if isinstance(public_keys, Sequence) else (public_keys,)
    if not candidates:
        raise UsageError("verify needs at least one public key")
    try:
        digest = image.digest or client.resolve(image)
    except NotFoundError as exc:
        raise ImageTagNotFoundError(f"image tag not found: {exc}") from exc
    sig_image = SignatureImage.fetch(
        client, attachment_ref(image, digest, repository=signature_repository)
    )
    if sig_image is None or not sig_image.layers:
        raise NoSignaturesError(
            "no signatures found",
            hint=f"nothing is signed for {image.name}@{digest}; sign it with `labkit sign --key …`",
        )
    verified: list[VerifiedSignature] = []
    errors: list[str] = []
    for layer in sig_image.layers:
        try:
            key = _check_signature(layer, candidates, digest_algorithm)
            _check_claims(layer.payload, digest, annotations)
        except LabkitError as exc:
            errors.append(exc.message)
            continue
        verified.append(VerifiedSignature(layer.payload, layer.signature_b64, key))
    if not verified:
        raise NoMatchingSignaturesError("no matching signatures: " + "\n ".join(errors))
    return VerificationResult(image, digest, tuple(verified))


def _check_signature(
    layer: SignatureLayer, candidates: Sequence[keys.PublicKey], digest_algorithm: str
) -> keys.PublicKey:
    signature = layer.signature_bytes()
    first_error: LabkitError | None = None
    for key in candidates:
        try:
            keys.verify_message(key, signature, layer.payload, digest_algorithm=digest_algorithm)
            return key
        except LabkitError as exc:
            first_error = first_error or exc
    raise first_error  # type: ignore[misc]  # candidates is never empty


def _check_claims(payload: bytes, digest: str, annotations: Mapping[str, str] | None) -> None:
    claims = SimpleSigningPayload.from_json(payload)
    if claims.digest != digest:
        raise LabkitError(f"invalid or missing digest in claim: {claims.digest}")
    if annotations:
        optional = claims.optional or {}
        if any(optional.get(k) != v for k, v in annotations.items()):
            raise LabkitError("missing or incorrect annotation")
