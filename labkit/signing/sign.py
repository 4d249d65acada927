"""Sign container images by digest, as ``cosign sign --key … --tlog-upload=false`` does.

labkit never uploads to a transparency log: the signature lives only in the registry, which is
exactly what ``--tlog-upload=false`` gives with cosign (verification then needs
``--insecure-ignore-tlog``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from labkit import keys
from labkit.errors import LabkitError
from labkit.oci.client import RegistryClient
from labkit.oci.model import Index
from labkit.oci.reference import Reference
from labkit.signing.artifact import (
    SIGNATURE_ANNOTATION,
    SignatureImage,
    SignatureLayer,
    attachment_ref,
)
from labkit.signing.payload import SimpleSigningPayload

TAG_WARNING = (
    "WARNING: Image reference {ref} uses a tag, not a digest, to identify the image to sign.\n"
    "    This can lead you to sign a different image than the intended one. Please use a\n"
    "    digest (example.com/ubuntu@sha256:abc123...) rather than tag\n"
    "    (example.com/ubuntu:latest) for the input to cosign. The ability to refer to\n"
    "    images by tag will be removed in a future release.\n"
)


@dataclass(frozen=True)
class SignResult:
    """One signed digest: where its signature went, and whether an identical one was already there."""

    digest: str
    signature_ref: Reference
    payload: bytes
    signature: str  # base64, as stored in the layer annotation
    appended: bool  # False when cosign's duplicate check found the same signature already present


def sign_image(
    ref: Reference | str,
    private_key: keys.PrivateKey,
    *,
    client: RegistryClient,
    annotations: Mapping[str, str] | None = None,
    recursive: bool = False,
    signature_repository: str | None = None,
    upload: bool = True,
) -> list[SignResult]:
    """Sign ``ref`` (a tag is resolved to its digest first) and push each signature.

    With ``recursive``, an index and every manifest it reaches are signed, parent first, each
    under its own ``sha256-<hex>.sig`` tag — cosign's ``--recursive``.
    """
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    root = image.digest or client.resolve(image)
    digests = list(walk_digests(client, image, root)) if recursive else [root]
    optional = dict(annotations) if annotations else None
    public_key = private_key.public_key()
    results = []
    for digest in digests:
        payload = SimpleSigningPayload(image.name, digest, optional).to_json()
        signature = base64.b64encode(keys.sign_message(private_key, payload)).decode()
        layer = SignatureLayer(payload=payload, annotations={SIGNATURE_ANNOTATION: signature})
        target = attachment_ref(image, digest, repository=signature_repository)
        appended = attach_signature(client, target, layer, public_key) if upload else False
        results.append(SignResult(digest, target, payload, signature, appended))
    return results


def walk_digests(client: RegistryClient, image: Reference, digest: str) -> Iterator[str]:
    """``digest`` and, for an index, every manifest it reaches, parent first (``--recursive``)."""
    yield digest
    manifest = client.get_manifest(image.with_digest(digest)).parsed()
    if isinstance(manifest, Index):
        for child in manifest.manifests:
            yield from walk_digests(client, image, child.digest)


def attach_signature(
    client: RegistryClient, target: Reference, layer: SignatureLayer, public_key: keys.PublicKey
) -> bool:
    """Append ``layer`` to the ``.sig`` image at ``target`` unless cosign would call it a duplicate."""
    existing = SignatureImage.fetch(client, target, with_config=True) or SignatureImage()
    if any(_is_duplicate(old, layer, public_key) for old in existing.layers):
        return False
    existing.append(layer)
    existing.push(client, target)
    return True


def _is_duplicate(old: SignatureLayer, new: SignatureLayer, public_key: keys.PublicKey) -> bool:
    """cosign's dupe detector: same payload, media type and other annotations, valid for our key."""
    if old.payload != new.payload or old.media_type != new.media_type:
        return False
    if _unsigned(old.annotations) != _unsigned(new.annotations):
        return False
    try:
        keys.verify_message(public_key, old.signature_bytes(), old.payload, ed25519ph=True)
    except LabkitError:
        return False
    return True


def _unsigned(annotations: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in annotations.items() if k != SIGNATURE_ANNOTATION}
