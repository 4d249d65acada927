"""``labkit build --pull-base``: the Dockerfile's FROM, pulled by digest from a loopback registry.

Truth here is the base image this test writes itself (its layers, config and index, pushed to
labkit's registry on loopback) and the OCI image-spec's rules for stacking an image on another:
the base's layers first, its diff_ids kept, its config with the Dockerfile's settings on top.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from labkit import workshop
from labkit.cli import main
from labkit.errors import NotFoundError
from labkit.oci.client import RegistryClient
from labkit.oci.model import (
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
)
from labkit.registry import serve

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64", "v8")


def _layer(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def _diff_id(layer: bytes) -> str:
    return "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()


def _base_image(platform: Platform) -> Image:
    """A two-layer 'python' image of our own: an os-release, then a python stand-in."""
    layers = [_layer({"etc/os-release": f"ID=test-{platform.architecture}\n".encode()}),
              _layer({"usr/local/bin/python": b"#!/bin/sh\n"})]
    config = json.dumps({
        **platform.to_dict(),
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"], "Cmd": ["python3"]},
        "rootfs": {"type": "layers", "diff_ids": [_diff_id(x) for x in layers]},
    }).encode()
    manifest = Manifest(config=Descriptor.of(OCI_CONFIG, config),
                        layers=tuple(Descriptor.of(OCI_LAYER_GZIP, x) for x in layers))
    return Image(manifest=manifest, config=config, layers=layers)


class Base(NamedTuple):
    host: str
    images: dict[Platform, Image]
    digest: str  # the index's
    stop: Callable[[], None]  # the registry's


@pytest.fixture
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Base]:
    """A loopback registry holding a two-platform base index. The blob cache is this test's own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.delenv("LABKIT_BUILD_PULL_BASE", raising=False)
    images = {p: _base_image(p) for p in (AMD64, ARM64)}
    index = ImageIndex(index=Index(manifests=tuple(
        Descriptor(OCI_MANIFEST, img.digest, len(img.manifest_bytes), platform=p) for p, img in images.items()),
        media_type=OCI_INDEX), images=list(images.values()))
    handle = serve(root=tmp_path / "registry", port=0)
    try:
        with RegistryClient() as client:
            digest = client.push_image(f"{handle.host}/library/python:3.12-slim", index)
        yield Base(handle.host, images, digest, handle.stop)
    finally:
        handle.stop()


def _context(tmp_path: Path, from_line: str) -> Path:
    ctx = tmp_path / "hello-app"
    shutil.copytree(workshop.SAMPLE_APP, ctx)
    dockerfile = ctx / "Dockerfile"
    lines = [f"FROM {from_line}" if line.startswith("FROM ") else line for line in dockerfile.read_text().splitlines()]
    dockerfile.write_text("\n".join(lines) + "\n")
    return ctx


def _build(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["build", *args])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def test_pull_base_puts_the_app_layer_on_each_platform_of_the_pinned_index(
        tmp_path: Path, base: Base, capsys: pytest.CaptureFixture[str]) -> None:
    host, images, digest, _ = base
    ctx = _context(tmp_path, f"{host}/library/python:3.12-slim@{digest}")
    ref = f"{host}/workshop/hello:v1"
    platforms = ("--platform", "linux/amd64,linux/arm64/v8")
    code, pushed, err = _build(capsys, str(ctx), "-t", ref, *platforms, "--pull-base", "--push")
    assert code == 0, err
    assert "is not pulled" not in err
    with RegistryClient() as client:
        built = client.pull_image(pushed)
    assert isinstance(built, ImageIndex)
    assert [d.platform for d in built.index.manifests] == [AMD64, ARM64]
    for platform, image in zip((AMD64, ARM64), built.images, strict=True):
        want = images[platform]
        assert image.manifest.layers[:2] == want.manifest.layers
        assert image.layers[:2] == want.layers
        assert len(image.layers) == 3
        config = json.loads(image.config)
        base_config = json.loads(want.config)
        assert config["rootfs"]["diff_ids"][:2] == base_config["rootfs"]["diff_ids"]
        assert config["rootfs"]["diff_ids"][2] == _diff_id(image.layers[2])
        assert Platform.from_dict(config) == platform
        assert config["config"]["Env"] == ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"]
        assert config["config"]["Cmd"] == ["python", "app.py"]
        assert config["config"]["WorkingDir"] == "/app"
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[2]))) as tar:
            assert "app/app.py" in tar.getnames()

    code, again, err = _build(capsys, str(ctx), "-t", ref, *platforms, "--pull-base")
    assert (code, again) == (0, built.digest), err


def test_a_second_build_needs_no_registry(tmp_path: Path, base: Base,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Pulled manifests and blobs are kept by digest: the workshop's many builds ask Docker Hub once."""
    ctx = _context(tmp_path, f"{base.host}/library/python:3.12-slim@{base.digest}")
    monkeypatch.setenv("LABKIT_BUILD_PULL_BASE", "1")  # what the kind lab exports
    code, first, err = _build(capsys, str(ctx), "-t", "example.invalid/hello:v1")
    assert code == 0, err
    base.stop()  # only the cache can give the base now
    code, second, err = _build(capsys, str(ctx), "-t", "example.invalid/hello:v1")
    assert (code, second) == (0, first), err
    code, bare, _ = _build(capsys, str(ctx), "-t", "example.invalid/hello:v1", "--no-pull-base")
    assert code == 0 and bare != first


def test_pull_base_refuses_a_from_not_pinned_by_digest(tmp_path: Path, base: Base,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    host = base.host
    ctx = _context(tmp_path, f"{host}/library/python:3.12-slim")
    code, out, err = _build(capsys, str(ctx), "-t", f"{host}/workshop/hello:v1", "--pull-base", "--push")
    assert (code, out) == (1, "")
    assert f"FROM {host}/library/python:3.12-slim is not pinned by digest" in err
    assert f"FROM {host}/library/python:3.12-slim@sha256:<index digest>" in err
    with RegistryClient() as client, pytest.raises(NotFoundError):  # nothing was pushed
        client.list_tags(f"{host}/workshop/hello")


def test_pull_base_names_the_platforms_the_base_has(tmp_path: Path, base: Base,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    host, digest = base.host, base.digest
    ctx = _context(tmp_path, f"{host}/library/python:3.12-slim@{digest}")
    code, _, err = _build(capsys, str(ctx), "-t", "example.invalid/h:v1", "--pull-base", "--platform", "linux/s390x")
    assert code == 1
    assert "has no image for linux/s390x" in err and "linux/amd64, linux/arm64/v8" in err


def test_without_pull_base_the_image_is_the_app_layer_alone(tmp_path: Path, base: Base,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    host, digest = base.host, base.digest
    ctx = _context(tmp_path, f"{host}/library/python:3.12-slim@{digest}")
    ref = f"{host}/workshop/bare:v1"
    code, pushed, err = _build(capsys, str(ctx), "-t", ref, "--push")
    assert code == 0, err
    assert f"FROM {host}/library/python:3.12-slim@{digest} is not pulled" in err
    with RegistryClient() as client:
        image = client.pull_image(pushed)
    assert isinstance(image, Image) and len(image.layers) == 1
    assert json.loads(image.config)["config"]["Env"] == ["PYTHONUNBUFFERED=1"]


def test_the_checkpoints_build_as_the_cli_does(tmp_path: Path, base: Base, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """check.image and the exercises compare a learner's push with ``build_like_cli``: on a lab that
    pulls bases it must give what ``labkit build`` pushed there, and elsewhere the app layer alone."""
    from labkit.oci.base_image import build_like_cli

    ctx = _context(tmp_path, f"{base.host}/library/python:3.12-slim@{base.digest}")
    platforms = [AMD64, ARM64]
    code, bare, _ = _build(capsys, str(ctx), "-t", "example.invalid/h:v1", "--platform", "linux/amd64,linux/arm64/v8")
    assert code == 0 and build_like_cli(ctx, platforms=platforms).digest == bare
    monkeypatch.setenv("LABKIT_BUILD_PULL_BASE", "1")
    code, pulled, _ = _build(capsys, str(ctx), "-t", "example.invalid/h:v1", "--platform", "linux/amd64,linux/arm64/v8")
    assert code == 0 and pulled != bare
    assert build_like_cli(ctx, platforms=platforms).digest == pulled
