"""The registry's content on disk: content-addressed blobs, per-repository links, tags, referrers.

Layout under ``root`` (modelled on distribution's filesystem driver, so a restart loses nothing)::

    blobs/<alg>/<hex[:2]>/<hex>                              blob and manifest bytes
    repositories/<name>/_layers/<alg>/<hex>                  the blob is in this repository
    repositories/<name>/_manifests/revisions/<alg>/<hex>     the manifest is here; holds its media type
    repositories/<name>/_manifests/tags/<tag>                holds the tagged digest
    repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>   a referrer's descriptor (JSON)
    uploads/<uuid>/data, uploads/<uuid>/repository           blob uploads in progress

Every file is written to a temporary name in its final directory, fsynced and renamed, so a
reader never sees half a file; an upload becomes a blob only after its digest checked out.
Names, tags and digests reach this module validated by :mod:`labkit.registry.names`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from labkit._internal.files import TEMP_PREFIX, write_atomic
from labkit.errors import RegistryAPIError
from labkit.oci.model import (
    IMAGE_MEDIA_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
)
from labkit.registry.names import DIGEST_RE, check_digest, check_tag, is_digest

# distribution's maxManifestBodySize: a manifest is metadata, 4 MiB is plenty.
MANIFEST_MAX_BYTES = 4 * 1024 * 1024
_HASH_CHUNK = 1024 * 1024
# Upload sessions: distribution purges those older than a week, daily. A lab pushes over loopback
# in seconds, so an hour idle means abandoned; and a cap keeps a client that opens sessions and
# walks away from filling the disk with directories (three inodes each) in the meantime.
UPLOAD_MAX_AGE = 3600.0
MAX_UPLOADS = 256
_PURGE_INTERVAL = 60.0

# A descriptor's size is an int64 in Go's structs (distribution, containerd): larger is invalid.
_MAX_SIZE = 2**63 - 1
# image-spec: a media type follows RFC 6838's restricted-name grammar. The manifest's own is sent
# back as Content-Type, so anything else (CR/LF, non-Latin-1) could be stored but never served.
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")

# Layers that registries never hold (image-spec "non-distributable", Docker "foreign"): a
# manifest may reference them without pushing them, as distribution allows.
_NONDISTRIBUTABLE_PREFIXES = (
    "application/vnd.oci.image.layer.nondistributable.",
    "application/vnd.docker.image.rootfs.foreign.",
)


def _split(digest: str) -> tuple[str, str]:
    algorithm, _, hexpart = digest.partition(":")
    return algorithm, hexpart


def _hash_file(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return f"{algorithm}:{h.hexdigest()}"


def _parse_int(text: str) -> int | float:
    """Integers past int64 become floats (inf past float's range) instead of Python's
    ValueError beyond 4300 digits: a size that large is then refused as not an integer, and an
    unknown field is left alone, as Go's decoder leaves it."""
    return int(text) if len(text) <= 19 else float(text)


def _loads(body: bytes) -> Any:
    return json.loads(body, parse_int=_parse_int)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, mode=0o600, durable=True)


def _unknown(code: str, message: str, **detail: str) -> RegistryAPIError:
    return RegistryAPIError(code, message, status=404, detail=detail or None)


def _manifest_invalid(message: str, **detail: Any) -> RegistryAPIError:
    return RegistryAPIError("MANIFEST_INVALID", f"manifest invalid: {message}", status=400, detail=detail or None)


@dataclass
class Upload:
    """A blob upload session. ``sha256`` follows the bytes as they arrive, so the common case
    never reads the data back; it is dropped (None) when the data is truncated or after a
    restart, and the digest is then computed from the file."""

    id: str
    repository: str
    directory: Path
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)

    @property
    def data_path(self) -> Path:
        return self.directory / "data"

    def open(self) -> BinaryIO:
        return self.data_path.open("ab")

    def append(self, f: BinaryIO, chunk: bytes) -> None:
        f.write(chunk)
        if self.sha256 is not None:
            self.sha256.update(chunk)
        self.size += len(chunk)

    def truncate(self, size: int) -> None:
        """Drop bytes a failed request appended: a chunk is stored whole or not at all."""
        if size != self.size:
            os.truncate(self.data_path, size)
            self.size = size
            self.sha256 = None


@dataclass(frozen=True)
class StoredManifest:
    body: bytes
    media_type: str
    digest: str


@dataclass(frozen=True)
class PutManifestResult:
    digest: str
    subject: str | None


class Storage:
    def __init__(self, root: Path, *, purge_interval: float = _PURGE_INTERVAL) -> None:
        self.root = Path(root)
        self._uploads: dict[str, Upload] = {}
        for sub in ("blobs", "repositories", "uploads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._purge_interval = purge_interval
        self._next_purge = 0.0
        self._purge_idle_uploads()  # sessions abandoned before a restart

    # --- paths --------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        algorithm, hexpart = _split(digest)
        return self.root / "blobs" / algorithm / hexpart[:2] / hexpart

    def _repo(self, repository: str) -> Path:
        return self.root / "repositories" / repository

    def _layer_link(self, repository: str, digest: str) -> Path:
        return self._repo(repository).joinpath("_layers", *_split(digest))

    def _revision(self, repository: str, digest: str) -> Path:
        return self._repo(repository).joinpath("_manifests", "revisions", *_split(digest))

    def _tag(self, repository: str, tag: str) -> Path:
        return self._repo(repository) / "_manifests" / "tags" / tag

    def _referrer_dir(self, repository: str, subject: str) -> Path:
        return self._repo(repository).joinpath("_referrers", *_split(subject))

    # --- blobs --------------------------------------------------------------------------------

    def blob_size(self, repository: str, digest: str) -> int:
        """Size of a blob this repository holds, else BLOB_UNKNOWN."""
        if self._layer_link(repository, digest).exists():
            try:
                return self.blob_path(digest).stat().st_size
            except FileNotFoundError:
                pass
        raise _unknown("BLOB_UNKNOWN", "blob unknown to registry", digest=digest)

    def mount_blob(self, repository: str, digest: str, source: str | None) -> bool:
        """Link an existing blob into ``repository``: from ``source`` when given (it must hold
        it), else from anywhere in this registry. False when there is nothing to mount."""
        if source is not None and not self._layer_link(source, digest).exists():
            return False
        if not self.blob_path(digest).exists():
            return False
        _write(self._layer_link(repository, digest), b"")
        return True

    def delete_blob(self, repository: str, digest: str) -> None:
        """Unlink the blob from the repository; the bytes stay for other repositories."""
        try:
            self._layer_link(repository, digest).unlink()
        except FileNotFoundError:
            raise _unknown("BLOB_UNKNOWN", "blob unknown to registry", digest=digest) from None

    # --- uploads ------------------------------------------------------------------------------

    def start_upload(self, repository: str) -> Upload:
        """A new session; TOOMANYREQUESTS (429) while MAX_UPLOADS are open and none is idle."""
        if time.monotonic() >= self._next_purge or self._open_uploads() >= MAX_UPLOADS:
            self._purge_idle_uploads()
        if self._open_uploads() >= MAX_UPLOADS:
            raise RegistryAPIError(
                "TOOMANYREQUESTS",
                f"too many requests: {MAX_UPLOADS} blob uploads are open; finish or cancel one, "
                f"or wait for idle ones to expire ({UPLOAD_MAX_AGE / 60:.0f} min)",
                status=429,
            )
        upload_id = str(uuid.uuid4())
        directory = self.root / "uploads" / upload_id
        directory.mkdir(parents=True)
        (directory / "data").touch()
        (directory / "repository").write_text(repository)
        upload = Upload(upload_id, repository, directory)
        self._uploads[upload_id] = upload
        return upload

    def _open_uploads(self) -> int:
        with os.scandir(self.root / "uploads") as entries:
            return sum(1 for _ in entries)

    def _purge_idle_uploads(self) -> None:
        """Remove sessions idle (no byte appended) for UPLOAD_MAX_AGE; one pass over one directory."""
        self._next_purge = time.monotonic() + self._purge_interval
        cutoff = time.time() - UPLOAD_MAX_AGE
        with os.scandir(self.root / "uploads") as entries:
            sessions = [Path(e.path) for e in entries]
        for directory in sessions:
            try:
                active = max(directory.stat().st_mtime, (directory / "data").stat().st_mtime)
            except FileNotFoundError:  # half-made or half-removed: only its directory's age counts
                try:
                    active = directory.stat().st_mtime
                except FileNotFoundError:
                    continue
            if active < cutoff:
                self._uploads.pop(directory.name, None)
                shutil.rmtree(directory, ignore_errors=True)

    def get_upload(self, repository: str, upload_id: str) -> Upload:
        upload = self._uploads.get(upload_id)
        if upload is None:
            upload = self._reload_upload(upload_id)
        if upload is None or upload.repository != repository:
            raise _unknown("BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry", session=upload_id)
        return upload

    def _reload_upload(self, upload_id: str) -> Upload | None:
        """An upload begun before a restart: its bytes are on disk, its running hash is not."""
        try:
            uuid.UUID(upload_id)
            directory = self.root / "uploads" / upload_id
            repository = (directory / "repository").read_text()
            size = (directory / "data").stat().st_size
        except (ValueError, OSError):
            return None
        upload = Upload(upload_id, repository, directory, size=size, sha256=None)
        self._uploads[upload_id] = upload
        return upload

    def cancel_upload(self, upload: Upload) -> None:
        self._uploads.pop(upload.id, None)
        shutil.rmtree(upload.directory, ignore_errors=True)

    def commit_upload(self, upload: Upload, digest: str) -> None:
        """Check the uploaded bytes against ``digest`` and make them a blob of the repository.
        On a mismatch the upload is discarded (DIGEST_INVALID): nothing partial stays."""
        algorithm, _ = _split(digest)
        if algorithm == "sha256" and upload.sha256 is not None:
            actual = "sha256:" + upload.sha256.hexdigest()
        else:
            actual = _hash_file(upload.data_path, algorithm)
        if actual != digest:
            self.cancel_upload(upload)
            raise RegistryAPIError(
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                status=400,
                detail={"expected": digest, "actual": actual},
            )
        with upload.data_path.open("rb") as f:
            os.fsync(f.fileno())
        target = self.blob_path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(upload.data_path, target)
        self.cancel_upload(upload)
        _write(self._layer_link(upload.repository, digest), b"")

    # --- manifests ----------------------------------------------------------------------------

    def put_manifest(
        self, repository: str, reference: str, body: bytes, content_type: str | None, tags: list[str]
    ) -> PutManifestResult:
        if is_digest(reference):
            algorithm, _ = _split(check_digest(reference))
            digest = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
            if digest != reference:
                raise RegistryAPIError(
                    "DIGEST_INVALID",
                    "manifest content does not match the digest in the URL",
                    status=400,
                    detail={"expected": reference, "actual": digest},
                )
            tags = [check_tag(t) for t in tags]
        else:
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            tags = [check_tag(reference), *(check_tag(t) for t in tags)]
        doc = self._parse_manifest(body)
        media_type = self._media_type(doc, content_type)
        if media_type in INDEX_MEDIA_TYPES or (media_type not in IMAGE_MEDIA_TYPES and "manifests" in doc):
            self._check_index(repository, doc)
        else:
            self._check_image(repository, doc)
        subject = doc.get("subject")
        if subject is not None:
            _check_descriptor(subject, "subject")
        _check_annotations(doc, "manifest")

        target = self.blob_path(digest)
        if not target.exists():
            _write(target, body)
        _write(self._revision(repository, digest), media_type.encode())
        for tag in tags:
            _write(self._tag(repository, tag), digest.encode())
        if subject is not None:
            descriptor = _referrer_descriptor(doc, media_type, digest, len(body))
            algorithm, hexpart = _split(digest)
            _write(
                self._referrer_dir(repository, subject["digest"]) / f"{algorithm}-{hexpart}",
                json.dumps(descriptor).encode(),
            )
        return PutManifestResult(digest, subject["digest"] if subject else None)

    @staticmethod
    def _parse_manifest(body: bytes) -> dict[str, Any]:
        try:
            doc = _loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _manifest_invalid(f"not valid JSON: {exc}") from None
        except RecursionError:
            raise _manifest_invalid("JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise _manifest_invalid("not a JSON object")
        if doc.get("schemaVersion") != 2:
            raise _manifest_invalid(
                "schemaVersion must be 2 (Docker schema 1 is not supported)",
                schemaVersion=doc.get("schemaVersion"),
            )
        return doc

    @staticmethod
    def _media_type(doc: dict[str, Any], content_type: str | None) -> str:
        declared = doc.get("mediaType")
        if declared is not None and not isinstance(declared, str):
            raise _manifest_invalid("mediaType must be a string")
        # As distribution: a manifest type in the header must agree with the one in the body.
        if declared and content_type in MANIFEST_MEDIA_TYPES and content_type != declared:
            raise _manifest_invalid(
                f"mediaType in manifest is {declared}, Content-Type header is {content_type}"
            )
        media_type = declared or content_type
        if not media_type:
            raise _manifest_invalid("no mediaType in the manifest and no Content-Type header")
        if not _MEDIA_TYPE_RE.fullmatch(media_type):
            raise _manifest_invalid("mediaType is not a type/subtype media type (RFC 6838)",
                                    mediaType=media_type[:200])
        return media_type

    def _check_image(self, repository: str, doc: dict[str, Any]) -> None:
        config = doc.get("config")
        layers = doc.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise _manifest_invalid("an image manifest needs a config descriptor and a layers list")
        _check_descriptor(config, "config")
        self._require_blob(repository, config["digest"])
        for i, layer in enumerate(layers):
            _check_descriptor(layer, f"layers[{i}]")
            if layer.get("urls") or layer["mediaType"].startswith(_NONDISTRIBUTABLE_PREFIXES):
                continue
            self._require_blob(repository, layer["digest"])

    def _check_index(self, repository: str, doc: dict[str, Any]) -> None:
        manifests = doc.get("manifests")
        if not isinstance(manifests, list):
            raise _manifest_invalid("an index needs a manifests list")
        for i, child in enumerate(manifests):
            _check_descriptor(child, f"manifests[{i}]")
            if not self._revision(repository, child["digest"]).exists():
                raise RegistryAPIError(
                    "MANIFEST_BLOB_UNKNOWN",
                    "manifest references a manifest not in this repository",
                    status=400,
                    detail={"digest": child["digest"]},
                )

    def _require_blob(self, repository: str, digest: str) -> None:
        if not self._layer_link(repository, digest).exists():
            raise RegistryAPIError(
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a blob not in this repository",
                status=400,
                detail={"digest": digest},
            )

    def resolve(self, repository: str, reference: str) -> str:
        """The digest a tag or digest reference names in this repository, else MANIFEST_UNKNOWN."""
        if is_digest(reference):
            if self._revision(repository, reference).exists():
                return reference
        else:
            try:
                return self._tag(repository, reference).read_text()
            except FileNotFoundError:
                pass
        raise _unknown("MANIFEST_UNKNOWN", "manifest unknown to registry", reference=reference)

    def get_manifest(self, repository: str, reference: str) -> StoredManifest:
        digest = self.resolve(repository, reference)
        try:
            media_type = self._revision(repository, digest).read_text()
            body = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise _unknown("MANIFEST_UNKNOWN", "manifest unknown to registry", reference=reference) from None
        return StoredManifest(body, media_type, digest)

    def delete_manifest(self, repository: str, reference: str) -> None:
        """By tag: remove the tag. By digest: remove the manifest, every tag on it and its
        referrers entry (as distribution untags a deleted manifest)."""
        if not is_digest(reference):
            try:
                self._tag(repository, reference).unlink()
            except FileNotFoundError:
                raise _unknown("MANIFEST_UNKNOWN", "manifest unknown to registry", reference=reference) from None
            return
        stored = self.get_manifest(repository, reference)
        self._revision(repository, reference).unlink()
        for tag in self.tags(repository):
            path = self._tag(repository, tag)
            if path.read_text() == reference:
                path.unlink(missing_ok=True)
        subject = self._subject_of(stored.body)
        if subject:
            algorithm, hexpart = _split(reference)
            (self._referrer_dir(repository, subject) / f"{algorithm}-{hexpart}").unlink(missing_ok=True)

    @staticmethod
    def _subject_of(body: bytes) -> str | None:
        doc = _loads(body)
        subject = doc.get("subject")
        return subject["digest"] if isinstance(subject, dict) else None

    # --- listings -----------------------------------------------------------------------------

    def tags(self, repository: str) -> list[str]:
        if not self._repo(repository).is_dir():
            raise _unknown("NAME_UNKNOWN", "repository name not known to registry", name=repository)
        try:
            return sorted(p.name for p in (self._repo(repository) / "_manifests" / "tags").iterdir()
                          if not p.name.startswith(TEMP_PREFIX))
        except FileNotFoundError:
            return []

    def referrers(self, repository: str, subject: str) -> list[dict[str, Any]]:
        directory = self._referrer_dir(repository, subject)
        if not directory.is_dir():
            return []
        return [json.loads(p.read_bytes()) for p in sorted(directory.iterdir())
                if not p.name.startswith(TEMP_PREFIX)]

    def repositories(self) -> list[str]:
        base = self.root / "repositories"
        found = []
        for dirpath, dirnames, _ in os.walk(base):
            if "_manifests" in dirnames or "_layers" in dirnames:
                found.append(Path(dirpath).relative_to(base).as_posix())
            dirnames[:] = [d for d in dirnames if not d.startswith("_")]
        return sorted(found)


def _check_descriptor(d: Any, where: str) -> None:
    if not isinstance(d, dict):
        raise _manifest_invalid(f"{where} is not a descriptor object")
    if not isinstance(d.get("mediaType"), str) or not d["mediaType"]:
        raise _manifest_invalid(f"{where} has no mediaType")
    if not isinstance(d.get("digest"), str) or not DIGEST_RE.fullmatch(d["digest"]):
        raise _manifest_invalid(f"{where} has an invalid digest", digest=str(d.get("digest"))[:200])
    size = d.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_SIZE:
        raise _manifest_invalid(f"{where} has an invalid size", size=str(size)[:200])
    _check_annotations(d, where)


def _check_annotations(d: dict[str, Any], where: str) -> None:
    """image-spec: a map of strings to strings (Go clients cannot decode anything else)."""
    annotations = d.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise _manifest_invalid(f"{where} annotations must map strings to strings")


def _referrer_descriptor(doc: dict[str, Any], media_type: str, digest: str, size: int) -> dict[str, Any]:
    """image-spec: artifactType, else (image manifests) the config media type."""
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    artifact_type = doc.get("artifactType")
    if not artifact_type and isinstance(doc.get("config"), dict):
        artifact_type = doc["config"].get("mediaType")
    if artifact_type:
        descriptor["artifactType"] = artifact_type
    if doc.get("annotations"):
        descriptor["annotations"] = doc["annotations"]
    return descriptor
