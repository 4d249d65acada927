"""Reproducible images from a directory, without Docker.

The same directory gives the same digests on any machine: one layer holding the files, as a
tar with sorted entries, a fixed mtime (``SOURCE_DATE_EPOCH`` if set, else 0), owner 0:0 with
empty user/group names, modes normalised to 0644/0755, PAX format, gzipped at a fixed level with
no timestamp or file name. The config's ``created`` is the same fixed time.

The directory's ``Dockerfile``, if any, is read for what can be honoured without running a
container: ``WORKDIR``, ``COPY``/``ADD`` of local paths, ``ENV``, ``EXPOSE``, ``CMD``,
``ENTRYPOINT``, ``LABEL``. Everything else — above all ``RUN``, which needs a builder executing
commands in the base image — is skipped and reported in ``BuildResult.ignored`` so the caller
can say so (``load_recipe``); ``FROM`` is not pulled implicitly (pass ``base``: ``labkit build
--base IMAGE``, or ``--pull-base`` for a ``FROM`` pinned by digest, :mod:`labkit.oci.base_image`).
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import os
import posixpath
import re
import shlex
import stat
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.errors import BuildError
from labkit.oci.model import (
    DEFAULT_PLATFORM,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Image,
    ImageIndex,
    Index,
    Manifest,
    Platform,
    canonical_json,
    sha256_digest,
)

GZIP_LEVEL = 6  # zlib's default; fixed here so a changed default elsewhere cannot move digests
# Bytecode caches and VCS metadata are machine output, never source: left out at any depth.
ALWAYS_EXCLUDED = ("__pycache__", "*.pyc", ".git")


def source_date_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` (reproducible-builds.org) if set, else 0."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise BuildError(
            f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds",
            hint="unset it or set it to e.g. $(git log -1 --format=%ct)",
        )
    return int(raw)


# --- the Dockerfile subset -------------------------------------------------------------------


@dataclass
class Recipe:
    """What a Dockerfile asks for that labkit can honour, and what it had to skip."""

    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, absolute dest)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    exposed_ports: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    entrypoint: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    base_name: str | None = None
    ignored: list[str] = field(default_factory=list)


def _logical_lines(text: str) -> Iterable[str]:
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending.strip():
        yield pending


def _command(args: str) -> list[str]:
    """Exec form (a JSON array) as is; shell form wrapped in ``/bin/sh -c`` as Docker does."""
    if args.startswith("["):
        try:
            parsed = json.loads(args)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return parsed
    return ["/bin/sh", "-c", args]


def _pairs(kind: str, args: str, line: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy "ENV key value with spaces"
        return {words[0]: args.split(None, 1)[1] if len(words) > 1 else ""}
    out = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise BuildError(f"Dockerfile {kind} needs key=value pairs: {line!r}")
        out[key] = value
    return out


def parse_dockerfile(text: str) -> Recipe:
    recipe = Recipe()
    workdir = "/"
    for line in _logical_lines(text):
        word, _, args = line.partition(" ")
        instruction, args = word.upper(), args.strip()
        if instruction == "FROM":
            if recipe.base_name is not None:
                raise BuildError(
                    "multi-stage Dockerfiles (a second FROM) need a real builder",
                    hint="use --builder docker, or reduce the Dockerfile to one stage",
                )
            recipe.base_name = args.split()[0] if args else None
        elif instruction == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, args))
            recipe.workdir = workdir
        elif instruction in ("COPY", "ADD"):
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            if any(f.startswith("--from") for f in flags):
                raise BuildError(f"{instruction} --from needs a multi-stage builder: {line!r}")
            if len(paths) < 2 or any("://" in p for p in paths):
                raise BuildError(
                    f"{instruction} needs local sources and a destination: {line!r}",
                    hint="labkit copies files from the build directory only",
                )
            # --chown/--chmod are moot: every entry is normalised to root and 0644/0755.
            dest = paths[-1]
            absolute = posixpath.normpath(posixpath.join(workdir, dest))
            if dest.endswith("/") or dest in (".", "./") or len(paths) > 2:
                absolute = absolute.rstrip("/") + "/"
            recipe.copies.append((paths[:-1], absolute))
        elif instruction == "ENV":
            recipe.env.update(_pairs("ENV", args, line))
        elif instruction == "LABEL":
            recipe.labels.update(_pairs("LABEL", args, line))
        elif instruction == "EXPOSE":
            for port in args.split():
                recipe.exposed_ports.append(port if "/" in port else f"{port}/tcp")
        elif instruction == "CMD":
            recipe.cmd = _command(args)
        elif instruction == "ENTRYPOINT":
            recipe.entrypoint = _command(args)
        else:
            recipe.ignored.append(line)
    return recipe


def load_recipe(context: Path) -> Recipe:
    """The directory's Dockerfile as a Recipe; without one, the directory is copied to ``/``."""
    dockerfile = context / "Dockerfile"
    if not dockerfile.is_file():
        return Recipe(copies=[(["."], "/")])
    return parse_dockerfile(dockerfile.read_text())


# --- the layer -------------------------------------------------------------------------------


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore line as Docker reads it: anchored at the context root, ``*`` and ``?``
    within one path component, ``**`` across any number of them."""
    out = ""
    for token in re.split(r"(\*\*/?|\*|\?)", posixpath.normpath(pattern).lstrip("/")):
        if token.startswith("**"):
            out += "(?:.*/)?" if token.endswith("/") else ".*"
        elif token == "*":
            out += "[^/]*"
        elif token == "?":
            out += "[^/]"
        else:
            out += re.escape(token)
    return re.compile(out)


def _excluded(relative: str, patterns: list[re.Pattern[str]]) -> bool:
    parts = relative.split("/")
    if any(fnmatch.fnmatchcase(part, always) for part in parts for always in ALWAYS_EXCLUDED):
        return True
    # Excluding a directory excludes everything under it.
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(p.fullmatch(prefix) for p in patterns for prefix in prefixes)


def _ignore_patterns(context: Path) -> list[re.Pattern[str]]:
    patterns = []
    ignore_file = context / ".dockerignore"
    if ignore_file.is_file():
        for line in ignore_file.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("!"):
                raise BuildError(
                    f"{ignore_file}: exception patterns ({line!r}) are not supported by labkit's builder",
                    hint="list what to exclude without '!' lines, or use --builder docker",
                )
            patterns.append(_dockerignore_regex(line))
    return patterns


def _collect(context: Path, recipe: Recipe) -> dict[str, Path | None]:
    """Map each entry path in the layer (no leading '/'; directories end in '/') to its source;
    ``None`` for directories the destination implies."""
    patterns = _ignore_patterns(context)
    entries: dict[str, Path | None] = {}

    def add_parents(path: str) -> None:
        parent = posixpath.dirname(path.rstrip("/"))
        while parent:
            entries.setdefault(parent + "/", None)
            parent = posixpath.dirname(parent)

    def add(source: Path, target: str) -> None:
        add_parents(target)
        if source.is_dir() and not source.is_symlink():
            if target:
                entries[target.rstrip("/") + "/"] = source
            for child in sorted(source.iterdir()):
                rel = child.relative_to(context).as_posix()
                if not _excluded(rel, patterns):
                    add(child, posixpath.join(target, child.name))
        else:
            entries[target] = source

    for sources, dest in recipe.copies:
        for src in sources:
            source = (context / src).resolve() if src not in (".", "./") else context
            if context != source and context not in source.parents:
                raise BuildError(f"COPY source {src!r} is outside the build directory {context}")
            if not source.exists():
                raise BuildError(f"COPY source {src!r} does not exist in {context}")
            if source != context and _excluded(source.relative_to(context).as_posix(), patterns):
                raise BuildError(
                    f"COPY source {src!r} is excluded by .dockerignore in {context}",
                    hint="remove it from .dockerignore or from the COPY line",
                )
            if source.is_dir():
                add(source, dest.strip("/"))
            else:
                target = posixpath.join(dest, source.name) if dest.endswith("/") else dest
                add(source, target.lstrip("/"))
    return entries


def _tar_entry(name: str, source: Path | None, mtime: int) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
    if source is None or (source.is_dir() and not source.is_symlink()):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        info.name += "/"  # as Go's archive/tar names directories
        return info, None
    st = source.lstat()
    if stat.S_ISLNK(st.st_mode):
        info.type, info.mode, info.linkname = tarfile.SYMTYPE, 0o777, os.readlink(source)
        return info, None
    if not stat.S_ISREG(st.st_mode):
        raise BuildError(f"{source} is neither a file, a directory nor a symlink; remove it from the build")
    data = source.read_bytes()
    info.type, info.size = tarfile.REGTYPE, len(data)
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    return info, data


def build_layer(context: Path, recipe: Recipe, mtime: int) -> tuple[bytes, bytes]:
    """Return (uncompressed tar, gzipped tar) for the recipe's COPYs."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, source in sorted(_collect(context, recipe).items()):
            info, data = _tar_entry(name, source, mtime)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    uncompressed = raw.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, compresslevel=GZIP_LEVEL, mtime=0) as gz:
        gz.write(uncompressed)
    return uncompressed, compressed.getvalue()


# --- config, manifest, index -----------------------------------------------------------------


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_config(base: dict[str, Any], recipe: Recipe, labels: Mapping[str, str]) -> dict[str, Any]:
    """The runtime config: the base's, with the Dockerfile's settings applied on top."""
    config = dict(base)
    env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)
    env.update(recipe.env)
    if env:
        config["Env"] = [f"{k}={v}" for k, v in env.items()]
    if recipe.entrypoint is not None:
        config["Entrypoint"] = recipe.entrypoint
        config.pop("Cmd", None)  # Docker resets an inherited CMD when ENTRYPOINT is set
    if recipe.cmd is not None:
        config["Cmd"] = recipe.cmd
    if recipe.workdir:
        config["WorkingDir"] = recipe.workdir
    ports = {**(config.get("ExposedPorts") or {}), **{p: {} for p in recipe.exposed_ports}}
    if ports:
        config["ExposedPorts"] = ports
    all_labels = {**(config.get("Labels") or {}), **recipe.labels, **labels}
    if all_labels:
        config["Labels"] = all_labels
    return config


def _image(
    platform: Platform,
    base: Image | None,
    recipe: Recipe,
    layer: tuple[bytes, bytes],
    labels: Mapping[str, str],
    created: str,
) -> Image:
    uncompressed, compressed = layer
    base_config: dict[str, Any] = json.loads(base.config) if base else {}
    docker = base is not None and base.manifest.media_type == DOCKER_MANIFEST
    history = list(base_config.get("history") or [])
    history.append({"created": created, "created_by": "labkit build", "comment": "the build directory"})
    config: dict[str, Any] = {"architecture": platform.architecture, "created": created, "history": history}
    config["os"] = platform.os
    config["rootfs"] = {
        "type": "layers",
        "diff_ids": [*(base_config.get("rootfs") or {}).get("diff_ids", []), sha256_digest(uncompressed)],
    }
    config["config"] = _merge_config(base_config.get("config") or {}, recipe, labels)
    if platform.variant:
        config["variant"] = platform.variant
    config_bytes = canonical_json(config)
    layer_desc = Descriptor.of(DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, compressed)
    manifest = Manifest(
        config=Descriptor.of(DOCKER_CONFIG if docker else OCI_CONFIG, config_bytes),
        layers=(*(base.manifest.layers if base else ()), layer_desc),
        media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST,
    )
    return Image(manifest=manifest, config=config_bytes, layers=[*(base.layers if base else []), compressed])


def _platform_of(image: Image) -> Platform:
    doc = json.loads(image.config)
    return Platform(doc.get("os") or "", doc.get("architecture") or "", doc.get("variant") or None)


def build_image(
    context_dir: str | os.PathLike[str],
    *,
    platforms: list[Platform] | None = None,
    base: Image | Mapping[Platform, Image] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Image | ImageIndex:
    """Build ``context_dir`` into one image per platform (an index when there are several).

    ``base`` is one image (its platform is then the default) or one image per platform; the
    app layer goes on top of it. Without a base the image holds only the app layer.
    """
    context = Path(context_dir).resolve()
    if not context.is_dir():
        raise BuildError(f"build directory {context} does not exist or is not a directory")
    recipe = load_recipe(context)
    bases: Mapping[Platform, Image] = {_platform_of(base): base} if isinstance(base, Image) else base or {}
    platforms = platforms or (list(bases) if len(bases) == 1 else [DEFAULT_PLATFORM])
    missing = [str(p) for p in platforms if bases and p not in bases]
    if missing:
        raise BuildError(
            f"the base image has no variant for {', '.join(missing)}",
            hint=f"it has {', '.join(str(p) for p in bases)}; choose among those with --platform",
        )
    for wanted, image in bases.items():
        actual = _platform_of(image)
        if (actual.os, actual.architecture) != (wanted.os, wanted.architecture) or (
            actual.variant and wanted.variant and actual.variant != wanted.variant
        ):
            raise BuildError(
                f"the base image for {wanted} is a {actual} image",
                hint="choose a base image (or index) that has the platforms you build for",
            )
    epoch = source_date_epoch()
    layer = build_layer(context, recipe, epoch)
    created = _rfc3339(epoch)
    images = [_image(p, bases.get(p), recipe, layer, labels or {}, created) for p in platforms]
    if len(images) == 1:
        return images[0]
    index = Index(
        manifests=tuple(
            Descriptor(img.manifest.media_type, img.digest, len(img.manifest_bytes), platform=p)
            for p, img in zip(platforms, images, strict=True)
        ),
        media_type=OCI_INDEX,
    )
    return ImageIndex(index=index, images=images)


# --- OCI image layout ------------------------------------------------------------------------


def write_oci_layout(image: Image | ImageIndex, directory: str | os.PathLike[str]) -> Path:
    """Write an OCI image layout (image-spec ``image-layout.md``) that crane/skopeo can read."""
    root = Path(directory)
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> None:
        (blobs / sha256_digest(data).removeprefix("sha256:")).write_bytes(data)

    images = image.images if isinstance(image, ImageIndex) else [image]
    for img in images:
        for data in img.blobs().values():
            put(data)
        put(img.manifest_bytes)
    put(image.manifest_bytes)
    media_type = image.index.media_type if isinstance(image, ImageIndex) else image.manifest.media_type
    top = Descriptor(media_type, image.digest, len(image.manifest_bytes))
    (root / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_bytes(Index(manifests=(top,)).to_json())
    return root
