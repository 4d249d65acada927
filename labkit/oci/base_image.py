"""The Dockerfile's ``FROM``, pulled by digest: ``labkit build --pull-base``.

By default ``labkit build`` does not pull ``FROM`` (the image is the app layer alone), so the
embedded and native labs, whose pods never run, never leave the machine. Where pods do run (the
kind lab exports ``LABKIT_BUILD_PULL_BASE=1``), the app layer goes on the base. The base must be
named by digest: every learner in a room then builds on the same bytes and gets the same digest.

What is pulled is kept by digest in ``$XDG_CACHE_HOME/labkit/blobs`` (re-hashed on every read), so
a workshop's many builds ask the base's registry once per machine: Docker Hub limits anonymous pulls.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import BuildError
from labkit.oci.build import build_image, load_recipe
from labkit.oci.model import (
    DEFAULT_PLATFORM,
    IMAGE_MEDIA_TYPES,
    Descriptor,
    Image,
    ImageIndex,
    Index,
    Manifest,
    Platform,
    parse_manifest,
    sha256_digest,
    validate_digest,
)
from labkit.oci.reference import Reference

if TYPE_CHECKING:
    from labkit.oci.client import RegistryClient  # the caller's: `labkit build` loads it only to build

PULL_BASE_ENV = "LABKIT_BUILD_PULL_BASE"
PULL_TIMEOUT = 300.0  # seconds per request: one is a base layer of tens of MB, maybe on a venue's Wi-Fi


def pull_base_by_default() -> bool:
    """Whether ``labkit build`` pulls ``FROM`` when neither ``--pull-base`` nor ``--no-pull-base`` is given."""
    return os.environ.get(PULL_BASE_ENV, "").strip() == "1"


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit" / "blobs"


def pinned_base(base_name: str | None) -> Reference | None:
    """``FROM``'s image as a reference by digest; None without a base (no ``FROM``, or ``scratch``)."""
    if not base_name or base_name == "scratch":
        return None
    ref = Reference.parse(base_name)
    if ref.digest is None:
        raise BuildError(
            f"FROM {base_name} is not pinned by digest: a tag can move, and learners building on it "
            "at different times would get different images",
            hint=f"pin it in the Dockerfile: FROM {base_name}@sha256:<index digest> "
            f"(`crane digest {base_name}` prints it), or build the app layer alone with --no-pull-base",
        )
    return ref


class _Blobs:
    """Manifests and blobs of one repository, by digest, through the on-disk cache."""

    def __init__(self, client: RegistryClient, ref: Reference, root: Path) -> None:
        self.client, self.ref, self.root = client, ref, root

    def _cached(self, digest: str) -> bytes | None:
        path = self.root / validate_digest(digest).replace(":", "/")
        if path.is_file():
            data = path.read_bytes()
            if sha256_digest(data) == digest:
                return data
        return None

    def _keep(self, digest: str, data: bytes) -> None:
        path = self.root / digest.replace(":", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{os.getpid()}")
        staged.write_bytes(data)
        os.replace(staged, path)  # a concurrent reader sees the whole blob or none

    def manifest(self, digest: str) -> bytes:
        data = self._cached(digest)
        if data is None:
            data = self.client.get_manifest(self.ref.with_digest(digest)).data  # re-hashed by the client
            self._keep(digest, data)
        return data

    def blob(self, desc: Descriptor) -> bytes:
        data = self._cached(desc.digest)
        if data is None:
            data = self.client.get_blob(self.ref, desc.digest, size=desc.size)
            self._keep(desc.digest, data)
        return data

    def image(self, digest: str) -> Image:
        raw = self.manifest(digest)
        manifest = parse_manifest(raw)
        assert isinstance(manifest, Manifest)  # the callers pass image manifests only
        return Image(manifest=manifest, config=self.blob(manifest.config),
                     layers=[self.blob(layer) for layer in manifest.layers], raw_manifest=raw)


def pull_base(client: RegistryClient, ref: Reference, platforms: list[Platform]) -> dict[Platform, Image]:
    """The base image for each platform, from ``ref`` (pinned by digest): an index gives each
    platform its own image; a single image is offered for every platform (the build checks it)."""
    assert ref.digest is not None  # pinned_base made it
    blobs = _Blobs(client, ref, cache_dir())
    top = parse_manifest(blobs.manifest(ref.digest))
    if isinstance(top, Manifest):
        image = blobs.image(ref.digest)
        return dict.fromkeys(platforms, image)
    return {platform: blobs.image(_child(top, ref, platform).digest) for platform in platforms}


def _child(index: Index, ref: Reference, want: Platform) -> Descriptor:
    images = [d for d in index.manifests if d.media_type in IMAGE_MEDIA_TYPES and d.platform]
    for desc in images:
        p = desc.platform
        assert p is not None
        if (p.os, p.architecture) == (want.os, want.architecture) and want.variant in (None, p.variant):
            return desc
    raise BuildError(
        f"FROM {ref} has no image for {want}",
        hint="it has " + ", ".join(str(d.platform) for d in images) + "; choose among those with --platform",
    )


def build_like_cli(context: str | os.PathLike[str], *, platforms: list[Platform] | None = None) -> Image | ImageIndex:
    """The image ``labkit build CONTEXT`` gives here with no base flag: on ``FROM``'s image when
    ``LABKIT_BUILD_PULL_BASE=1``, else the app layer alone. The checkpoints compare the learner's
    pushes with it, so they hold on every lab."""
    from labkit.oci.client import RegistryClient

    ref = pinned_base(load_recipe(Path(context).resolve()).base_name) if pull_base_by_default() else None
    if ref is None:
        return build_image(context, platforms=platforms)
    with RegistryClient(timeout=PULL_TIMEOUT) as client:  # no credentials: the lab's stay with the lab
        base = pull_base(client, ref, platforms or [DEFAULT_PLATFORM])
    return build_image(context, platforms=platforms, base=base)
