"""Verify an image's legacy cosign signatures against public keys (``cosign verify --key``).

The checks and their order follow cosign's ``verifyInternal``: resolve the digest, fetch the
``.sig`` image, and for each signature layer check the signature against the key, then the
claims (the payload's digest must be the image's, and any required annotations must be present).
Errors carry cosign's wording and exit codes.

A :class:`VerificationCache` lets a long-lived process (a notebook, a webhook) skip the payload
fetches and signature checks when nothing they depend on has changed: one HEAD of the ``.sig`` tag
tells whether the signature set is still the one that verified.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

from labkit import keys
from labkit._internal.cache import BoundedCache
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
from labkit.signing.bundle import find_bundles, verify_bundle
from labkit.signing.payload import SimpleSigningPayload


@dataclass(frozen=True)
class VerifiedSignature:
    payload: bytes
    signature: str  # base64
    key: keys.PublicKey
    # The OCI annotations of the signature's layer (cosign's oci.Signature.Annotations()), not the
    # payload's `optional` ones: what Kyverno's ImageValidatingPolicy matches `annotations` against.
    layer_annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def claims(self) -> SimpleSigningPayload:
        return SimpleSigningPayload.from_json(self.payload)


@dataclass(frozen=True)
class VerificationResult:
    reference: Reference
    digest: str
    signatures: tuple[VerifiedSignature, ...]

    def payloads_json(self) -> str:
        """The JSON array cosign prints on stdout: each payload as read into sigstore's struct and
        marshalled again (absent members empty, unknown ones dropped, map keys sorted)."""
        return json.dumps(
            [sig.claims.to_dict() for sig in self.signatures],
            separators=(",", ":"),
            ensure_ascii=False,
            sort_keys=True,
        )


_CacheKey = tuple[str, str, tuple[str, ...], tuple[tuple[str, str], ...], str]


class VerificationCache(BoundedCache[_CacheKey, tuple[VerifiedSignature, ...]]):
    """Successful verifications, keyed by everything that decides the outcome.

    The key is the image digest, the digest of the ``.sig`` manifest (which pins every payload
    and signature), the keys' fingerprints, the required annotations and the digest algorithm.
    All of it is content-addressed, so an entry never goes stale: a signature added, removed or
    replaced gives the ``.sig`` tag a new digest and the next call verifies afresh. Failures are
    not cached. Least recently used entries are dropped beyond ``max_entries``.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        super().__init__(max_entries)


def key_fingerprint(key: keys.PublicKey) -> str:
    """SHA-256 of the key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def verify_image(
    ref: Reference | str,
    public_keys: keys.PublicKey | Sequence[keys.PublicKey],
    *,
    client: RegistryClient,
    annotations: Mapping[str, str] | None = None,
    signature_repository: str | None = None,
    digest_algorithm: str = "sha256",
    cache: VerificationCache | None = None,
    bundles: bool = False,
) -> VerificationResult:
    """Return the signatures on ``ref`` that verify; raise cosign's error when none does.

    With ``cache``, a repeat verification of an unchanged signature set costs one HEAD request
    (two for a tag reference) instead of fetching and checking every signature. With
    ``bundles``, cosign v3 bundles attached as referrers are looked for first and, when there
    are any, they alone are checked (cosign v3's and Kyverno's ImageValidatingPolicy auto-detect).
    """
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    candidates = tuple(public_keys) if isinstance(public_keys, Sequence) else (public_keys,)
    if not candidates:
        raise UsageError("verify needs at least one public key")
    try:
        digest = image.digest or client.resolve(image)
    except NotFoundError as exc:
        raise ImageTagNotFoundError(f"image tag not found: {exc}") from exc
    no_signatures = NoSignaturesError(
        "no signatures found",
        hint=f"nothing is signed for {image.name}@{digest}; sign it with `labkit sign --key …`",
    )
    if bundles:
        found = find_bundles(client, image.with_digest(digest))
        if found:
            return _verify_bundles(image, digest, found, candidates)
    sig_ref = attachment_ref(image, digest, repository=signature_repository)
    cache_key: _CacheKey | None = None
    if cache is not None:
        try:
            sig_digest = client.resolve(sig_ref)
        except NotFoundError:
            raise no_signatures from None
        cache_key = (digest, sig_digest, tuple(sorted(key_fingerprint(k) for k in candidates)),
                     tuple(sorted((annotations or {}).items())), digest_algorithm)
        cached = cache.get(cache_key)
        if cached is not None:
            return VerificationResult(image, digest, cached)
        # Fetch exactly the signature set the key names, even if the tag moves meanwhile.
        sig_ref = sig_ref.with_digest(sig_digest)
    sig_image = SignatureImage.fetch(client, sig_ref)
    if sig_image is None or not sig_image.layers:
        raise no_signatures
    verified: list[VerifiedSignature] = []
    errors: list[str] = []
    for layer in sig_image.layers:
        try:
            key = _check_signature(layer, candidates, digest_algorithm)
            check_claims(layer.payload, digest, annotations)
        except LabkitError as exc:
            errors.append(exc.message)
            continue
        verified.append(VerifiedSignature(layer.payload, layer.signature_b64, key, dict(layer.annotations)))
    if not verified:
        raise NoMatchingSignaturesError("no matching signatures: " + "\n ".join(errors))
    if cache is not None and cache_key is not None:
        cache.put(cache_key, tuple(verified))
    return VerificationResult(image, digest, tuple(verified))


def _verify_bundles(image: Reference, digest: str, found: list[bytes],
                    candidates: tuple[keys.PublicKey, ...]) -> VerificationResult:
    verified: list[VerifiedSignature] = []
    errors: list[str] = []
    for bundle in found:
        try:
            verified.append(VerifiedSignature(*verify_bundle(bundle, candidates, digest)))
        except LabkitError as exc:
            errors.append(exc.message)
    if not verified:
        raise NoMatchingSignaturesError("no matching attestations: " + "\n ".join(errors))
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


def check_claims(payload: bytes, digest: str, annotations: Mapping[str, str] | None) -> None:
    """cosign's ``SimpleClaimVerifier``: the payload names ``digest`` and carries ``annotations``."""
    claims = SimpleSigningPayload.from_json(payload)
    if claims.digest != digest:
        raise LabkitError(f"invalid or missing digest in claim: {claims.digest}")
    if annotations:
        optional = claims.optional or {}
        if any(optional.get(k) != v for k, v in annotations.items()):
            raise LabkitError("missing or incorrect annotation")
