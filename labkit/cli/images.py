"""``labkit build`` and ``labkit digest``: build an image reproducibly; print a manifest digest
exactly as ``crane digest`` does."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from labkit.cli._flags import registry_flags
from labkit.errors import BuildError, UsageError
from labkit.oci.model import DEFAULT_PLATFORM, Image, ImageIndex, Platform
from labkit.oci.reference import Reference


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    build = subparsers.add_parser(
        "build",
        help="build an image from a directory, reproducibly (no Docker needed)",
        description="Build DIR into an OCI image: one layer with the files its Dockerfile COPYs, "
        "config from WORKDIR/ENV/EXPOSE/CMD; FROM is pulled only with --pull-base. Same directory, "
        "same digest, on any machine. "
        "Prints the digest, and REF@DIGEST when pushed.",
    )
    build.add_argument("dir", metavar="DIR", help="the build directory (with an optional Dockerfile)")
    build.add_argument("-t", "--tag", required=True, metavar="REF", help="the image reference to build for")
    build.add_argument("--platform", metavar="LIST",
                       help="comma-separated os/arch[/variant]; several give a multi-platform index "
                       f"(default: {DEFAULT_PLATFORM}, or the base image's platform)")
    build.add_argument("--push", action="store_true", help="push the image to REF's registry")
    build.add_argument("--base", metavar="IMAGE", help="pull IMAGE and put the app layer on top of it")
    build.add_argument("--pull-base", action=argparse.BooleanOptionalAction, default=None,
                       help="pull the Dockerfile's FROM, which must be pinned by digest, and put the app "
                       "layer on top of it (default: off; on when LABKIT_BUILD_PULL_BASE=1, as the kind lab "
                       "sets it; --base wins)")
    build.add_argument("--builder", choices=("labkit", "docker"), default="labkit",
                       help="labkit's own builder (default) or `docker buildx build`")
    registry_flags(build)
    build.set_defaults(func=_build)

    digest = subparsers.add_parser(
        "digest",
        help="print the manifest digest of an image in a registry",
        description="Resolve REF (HEAD, GET as fallback) and print its manifest digest, as crane digest.",
    )
    digest.add_argument("ref", metavar="REF")
    registry_flags(digest)
    digest.set_defaults(func=_digest)


def _platforms(text: str | None) -> list[Platform] | None:
    if not text:
        return None
    return [Platform.parse(p.strip()) for p in text.split(",") if p.strip()]


def _build(args: argparse.Namespace) -> int:
    ref = Reference.parse(args.tag)
    platforms = _platforms(args.platform)
    if args.builder == "docker":
        return _docker_build(args, ref, platforms)

    context = Path(args.dir)
    if not context.is_dir():
        raise BuildError(f"build directory {context} does not exist or is not a directory")
    from labkit.oci.base_image import PULL_TIMEOUT, pinned_base, pull_base, pull_base_by_default
    from labkit.oci.build import build_image, load_recipe
    from labkit.oci.client import RegistryClient  # imported per verb: only registry verbs load the client

    recipe = load_recipe(context.resolve())
    for line in recipe.ignored:
        print(f"labkit build: skipped, needs a builder that runs containers: {line}", file=sys.stderr)
    pull = pull_base_by_default() if args.pull_base is None else args.pull_base
    from_ref = pinned_base(recipe.base_name) if pull and not args.base else None
    with RegistryClient(allow_insecure=args.allow_insecure_registry) as client:
        base: dict[Platform, Image] | None = None
        if args.base:
            base_ref = Reference.parse(args.base)
            base = {}
            for platform in platforms or [DEFAULT_PLATFORM]:
                pulled = client.pull_image(base_ref, platform=platform)
                assert isinstance(pulled, Image)  # a platform always selects one image
                base[platform] = pulled
        elif from_ref is not None:
            with RegistryClient(allow_insecure=args.allow_insecure_registry, timeout=PULL_TIMEOUT) as puller:
                base = pull_base(puller, from_ref, platforms or [DEFAULT_PLATFORM])
        elif recipe.base_name and recipe.base_name != "scratch" and not pull:
            print(f"labkit build: FROM {recipe.base_name} is not pulled; the image holds only the app "
                  "layer (--pull-base builds on it)", file=sys.stderr)
        image = build_image(context, platforms=platforms, base=base)
        if args.push:
            from labkit._internal.progress import byte_bar

            images = image.images if isinstance(image, ImageIndex) else [image]
            total = sum(len(b) for img in images for b in img.blobs().values())
            # A bar only on a terminal: captured output stays exactly what docker/crane users see.
            with byte_bar(total, f"pushing {ref}", enabled=sys.stderr.isatty()) as advance:
                pushed = client.push_image(ref, image, progress=advance)
            print(ref.with_digest(pushed))
        else:
            print(image.digest)
    return 0


def _docker_build(args: argparse.Namespace, ref: Reference, platforms: list[Platform] | None) -> int:
    if args.base:
        raise UsageError("--base works with --builder labkit only; with docker, FROM chooses the base")
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "buildx", "version"], capture_output=True).returncode:
        raise BuildError(
            "--builder docker needs docker with the buildx plugin, and it was not found",
            hint="install Docker and buildx, or build with labkit's own builder (--builder labkit)",
        )
    with tempfile.TemporaryDirectory() as tmp:
        metadata = Path(tmp) / "metadata.json"
        cmd = [docker, "buildx", "build", "-t", str(ref), "--metadata-file", str(metadata)]
        if platforms:
            cmd += ["--platform", ",".join(str(p) for p in platforms)]
        cmd += ["--push" if args.push else "--load", args.dir]
        if subprocess.run(cmd).returncode:
            raise BuildError(f"docker buildx build of {args.dir} failed (its output is above)")
        digest = json.loads(metadata.read_text()).get("containerimage.digest")
    if not digest:
        raise BuildError("docker buildx did not report an image digest in its metadata file")
    print(ref.with_digest(digest) if args.push else digest)
    return 0


def _digest(args: argparse.Namespace) -> int:
    from labkit.oci.client import RegistryClient

    ref = Reference.parse(args.ref)
    with RegistryClient(allow_insecure=args.allow_insecure_registry) as client:
        print(client.resolve(ref))
    return 0
