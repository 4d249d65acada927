"""OCI wire formats as dataclasses: media types, digests, descriptors, manifests and indexes.

JSON goes out compact with keys in go-containerregistry's struct order (``pkg/v1/manifest.go``),
so a manifest labkit writes looks like one cosign or crane writes. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import LabkitError

# --- media types ----------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
COSIGN_SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MEDIA_TYPES

# The empty JSON blob ``{}`` the image spec names for artifacts without a config.
EMPTY_JSON = b"{}"

# --- digests --------------------------------------------------------------------------------

_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


class InvalidDigestError(LabkitError):
    """A string that should be ``algorithm:hex`` is not."""

    exit_code = 2


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256/sha512 digest, else raise naming it."""
    if not _DIGEST_RE.match(digest):
        raise InvalidDigestError(
            f"invalid digest {digest!r}",
            hint="a digest is sha256: followed by 64 lowercase hex characters",
        )
    return digest


def compute_digest(algorithm: str, data: bytes) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def canonical_json(obj: Any) -> bytes:
    """Compact JSON, insertion-ordered keys, no trailing newline (Go's ``json.Marshal``)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --- descriptors, manifests, indexes --------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise LabkitError(
                f"invalid platform {text!r}", hint="write it as os/arch or os/arch/variant, e.g. linux/amd64"
            )
        return cls(*parts)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Platform:
        return cls(os=d.get("os", ""), architecture=d.get("architecture", ""), variant=d.get("variant"))


# What a build targets when no platform is named (and what most lab machines run).
DEFAULT_PLATFORM = Platform("linux", "amd64")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifact_type: str | None = None

    @classmethod
    def of(cls, media_type: str, data: bytes, **kwargs: Any) -> Descriptor:
        return cls(media_type=media_type, digest=sha256_digest(data), size=len(data), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "size": self.size, "digest": self.digest}
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.platform:
            d["platform"] = self.platform.to_dict()
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Descriptor:
        return cls(
            media_type=d.get("mediaType", ""),
            digest=validate_digest(d["digest"]),
            size=int(d["size"]),
            annotations=d.get("annotations") or None,
            platform=Platform.from_dict(d["platform"]) if d.get("platform") else None,
            artifact_type=d.get("artifactType"),
        )


def _envelope(obj: Manifest | Index, body: dict[str, Any]) -> dict[str, Any]:
    """The fields manifests and indexes share, around their body, in the order ggcr writes them."""
    d: dict[str, Any] = {"schemaVersion": 2, "mediaType": obj.media_type}
    if obj.artifact_type:
        d["artifactType"] = obj.artifact_type
    d.update(body)
    if obj.annotations:
        d["annotations"] = dict(obj.annotations)
    if obj.subject:
        d["subject"] = obj.subject.to_dict()
    return d


def _envelope_fields(d: dict[str, Any]) -> dict[str, Any]:
    return {"annotations": d.get("annotations") or None,
            "subject": Descriptor.from_dict(d["subject"]) if d.get("subject") else None,
            "artifact_type": d.get("artifactType")}


@dataclass(frozen=True)
class Manifest:
    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = OCI_MANIFEST
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self, {"config": self.config.to_dict(), "layers": [x.to_dict() for x in self.layers]})

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        return cls(
            config=Descriptor.from_dict(d["config"]),
            layers=tuple(Descriptor.from_dict(x) for x in d.get("layers") or ()),
            media_type=d.get("mediaType", OCI_MANIFEST),
            **_envelope_fields(d),
        )


@dataclass(frozen=True)
class Index:
    manifests: tuple[Descriptor, ...]
    media_type: str = OCI_INDEX
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _envelope(self, {"manifests": [m.to_dict() for m in self.manifests]})

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Index:
        return cls(
            manifests=tuple(Descriptor.from_dict(x) for x in d.get("manifests") or ()),
            media_type=d.get("mediaType", OCI_INDEX),
            **_envelope_fields(d),
        )


def parse_manifest(data: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse manifest bytes as an image manifest or an index, by media type or by shape."""
    try:
        doc = json.loads(data)
    except RecursionError:
        # Go's decoder (go-containerregistry's) allows 10000 levels, Python's about 1000: a
        # manifest nested between the two is refused here, one nested deeper by both.
        raise LabkitError("manifest nests JSON too deeply for labkit") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer beyond 4300 digits
        raise LabkitError(f"manifest is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise LabkitError("manifest is not a JSON object")
    kind = doc.get("mediaType") or media_type
    try:
        if kind in INDEX_MEDIA_TYPES or (kind is None and "manifests" in doc):
            return Index.from_dict(doc)
        return Manifest.from_dict(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise LabkitError(f"manifest of type {kind or 'unknown'} is malformed: {exc!r}") from exc


# --- content held in memory (what build produces and push consumes) -------------------------


@dataclass
class Image:
    """One image: its manifest, config blob and layer blobs, all bytes in memory."""

    manifest: Manifest
    config: bytes
    layers: list[bytes] = field(default_factory=list)
    # The bytes as pulled: re-serialising another tool's manifest may change its digest.
    raw_manifest: bytes | None = field(default=None, repr=False)

    @property
    def manifest_bytes(self) -> bytes:
        return self.raw_manifest if self.raw_manifest is not None else self.manifest.to_json()

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest_bytes)

    def blobs(self) -> dict[str, bytes]:
        out = {self.manifest.config.digest: self.config}
        out.update({d.digest: b for d, b in zip(self.manifest.layers, self.layers, strict=True)})
        return out


@dataclass
class ImageIndex:
    """A multi-platform image: an index and the images it points to."""

    index: Index
    images: list[Image] = field(default_factory=list)
    raw_manifest: bytes | None = field(default=None, repr=False)  # as pulled, see Image

    @property
    def manifest_bytes(self) -> bytes:
        return self.raw_manifest if self.raw_manifest is not None else self.index.to_json()

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest_bytes)
