"""Cosign's legacy signature artifact: the ``sha256-<hex>.sig`` image beside the signed image.

One image per signed digest; each signature is one layer holding the simple-signing payload
(uncompressed, so its digest is its diffID) with the base64 signature in a layer annotation.
The config is go-containerregistry's empty image with a diffID and a history entry appended per
layer, exactly as ``mutate.Append`` leaves it (cosign ``pkg/oci/mutate/signatures.go``).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import NotFoundError, VerificationError
from labkit.oci.client import RegistryClient
from labkit.oci.model import (
    COSIGN_SIMPLESIGNING,
    OCI_CONFIG,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    canonical_json,
    validate_digest,
)
from labkit.oci.reference import Reference

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
RFC3161_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"

# cosign's suffixes for attached artifacts (``pkg/oci/remote/remote.go``).
SUFFIXES = {"signature": "sig", "attestation": "att", "sbom": "sbom"}

# Cosign refuses to grow a signature image past this many layers, and to read one that has more
# (``maxLayers`` in pkg/oci/mutate and pkg/oci/remote/signatures.go).
MAX_LAYERS = 1000
# ... and to read a signature payload larger than this (internal/pkg/cosign/payload/size, 128 MiB).
MAX_PAYLOAD_SIZE = 128 * 1024 * 1024

_ZERO_TIME = "0001-01-01T00:00:00Z"


def attachment_tag(digest: str, suffix: str = "sig") -> str:
    """``sha256:abc…`` → ``sha256-abc….sig``: where cosign looks for a digest's signatures."""
    validate_digest(digest)
    return digest.replace(":", "-") + "." + suffix


def is_attachment_tag(tag: str) -> bool:
    """Whether ``tag`` is one of cosign's tag-scheme attachments (``sha256-….sig/.att/.sbom``)."""
    return tag.startswith("sha256-") and tag.endswith(tuple(f".{s}" for s in SUFFIXES.values()))


def attachment_ref(
    image: Reference, digest: str, suffix: str = "sig", *, repository: str | None = None
) -> Reference:
    """The tag holding ``digest``'s attachments, moved to ``repository`` (COSIGN_REPOSITORY) if given."""
    target = Reference.parse(repository) if repository else image
    return target.with_tag(attachment_tag(digest, suffix))


def signature_repository_from_env() -> str | None:
    """cosign honours ``COSIGN_REPOSITORY`` to keep signatures in another repository."""
    return os.environ.get("COSIGN_REPOSITORY") or None


@dataclass(frozen=True)
class SignatureLayer:
    """One signature: the payload bytes and the layer annotations that carry the signature."""

    payload: bytes
    annotations: dict[str, str]
    media_type: str = COSIGN_SIMPLESIGNING

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor.of(self.media_type, self.payload, annotations=self.annotations)

    @property
    def signature_b64(self) -> str:
        return self.annotations.get(SIGNATURE_ANNOTATION, "")

    def signature_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.signature_b64, validate=True)
        except ValueError as exc:
            raise VerificationError(f"signature annotation is not valid base64: {exc}") from exc


def _empty_config() -> dict[str, Any]:
    return {
        "architecture": "",
        "created": _ZERO_TIME,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": []},
        "config": {},
    }


@dataclass
class SignatureImage:
    """The ``.sig`` image: its config document (kept as found, so appends preserve it) and layers."""

    layers: list[SignatureLayer] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=_empty_config)
    media_type: str = OCI_MANIFEST

    def append(self, layer: SignatureLayer) -> None:
        _check_layer_count(len(self.layers) + 1)
        self.layers.append(layer)
        # ggcr's mutate.Append adds a diffID and a history entry per layer, keeping key order.
        rootfs = self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs.setdefault("diff_ids", []).append(layer.descriptor.digest)
        history = self.config.get("history")
        entry = {"created": _ZERO_TIME}
        if history is None:
            self.config = _insert_after(self.config, "created", "history", [entry])
        else:
            history.append(entry)

    def config_bytes(self) -> bytes:
        return canonical_json(self.config)

    def manifest(self) -> Manifest:
        config = self.config_bytes()
        return Manifest(
            config=Descriptor.of(OCI_CONFIG, config),
            layers=tuple(layer.descriptor for layer in self.layers),
            media_type=self.media_type,
        )

    # --- registry I/O ----------------------------------------------------------------------

    @classmethod
    def fetch(
        cls, client: RegistryClient, ref: Reference, *, with_config: bool = False
    ) -> SignatureImage | None:
        """The signature image at ``ref``, or None when the tag does not exist.

        Verifying needs only the manifest and payloads; the config is fetched when the image is
        to be appended to and pushed back (``with_config``).
        """
        manifest = fetch_manifest(client, ref)
        if manifest is None:
            return None
        _check_layer_count(len(manifest.layers))  # before fetching any: each costs a request
        config = (json.loads(client.get_blob(ref, manifest.config.digest, size=manifest.config.size))
                  if with_config else _empty_config())
        layers = [
            SignatureLayer(
                payload=client.get_blob(ref, desc.digest, size=_checked_payload_size(desc.size)),
                annotations=dict(desc.annotations or {}),
                media_type=desc.media_type,
            )
            for desc in manifest.layers
        ]
        return cls(layers=layers, config=config, media_type=manifest.media_type)

    def push(self, client: RegistryClient, ref: Reference) -> str:
        """Upload layers, then config, then the manifest under ``ref``'s tag (as ggcr orders it)."""
        for layer in self.layers:
            client.push_blob(ref, layer.payload)
        client.push_blob(ref, self.config_bytes())
        manifest = self.manifest()
        return client.put_manifest(ref, manifest.to_json(), manifest.media_type)


def _check_layer_count(count: int) -> None:
    if count > MAX_LAYERS:
        raise VerificationError(
            f"number of layers ({count}) exceeded the limit ({MAX_LAYERS})",  # cosign's words
            hint="cosign reads no more signatures than that either; delete the .sig tag and sign again",
        )


def _checked_payload_size(size: int) -> int:
    if size > MAX_PAYLOAD_SIZE:
        raise VerificationError(
            f"size of layer ({size}) exceeded the limit ({MAX_PAYLOAD_SIZE})",  # cosign's words
            hint="a signature payload is a few hundred bytes; this .sig image is not cosign's",
        )
    return size


def fetch_manifest(client: RegistryClient, ref: Reference) -> Manifest | None:
    """The attachment image manifest at ``ref`` (a ``.sig``/``.att``/``.sbom`` tag), or None."""
    try:
        manifest = client.get_manifest(ref).parsed()
    except NotFoundError:
        return None
    if not isinstance(manifest, Manifest):
        raise VerificationError(f"{ref} is an index, not a cosign attachment image")
    return manifest


def _insert_after(doc: dict[str, Any], after: str, key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        out[k] = v
        if k == after:
            out[key] = value
    out.setdefault(key, value)
    return out
