"""labkit's builds, read by crane (go-containerregistry v0.22.1) from an OCI layout and pushed
to Debian's distribution registry: crane must accept them unchanged and agree on every digest."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from importlib import resources
from pathlib import Path

import pytest

from labkit.oci.build import build_image, write_oci_layout
from labkit.oci.model import Image, ImageIndex, Platform
from tests.conftest import CRANE, RunningRegistry, reference_tool

pytestmark = pytest.mark.interop

SAMPLE = Path(str(resources.files("labkit") / "samples" / "hello-app"))


def crane(*args: str, binary: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    out = subprocess.run(
        [str(reference_tool(CRANE)), *args], capture_output=True, timeout=120, input=binary
    )
    assert out.returncode == 0, out.stderr.decode()
    return out


def one_file_layer(path: Path, name: str, data: bytes) -> Path:
    """A layer tarball holding one file, for crane to append."""
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_crane_pushes_single_platform_layout(
    tmp_path: Path, registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    image = build_image(SAMPLE)
    assert isinstance(image, Image)
    layout = write_oci_layout(image, tmp_path / "layout")
    ref = f"{registry.host}/labkit/hello-app:v1"

    pushed = crane("push", str(layout), ref).stdout.decode().strip()
    assert pushed == f"{registry.host}/labkit/hello-app@{image.digest}"
    assert crane("digest", ref).stdout.decode().strip() == image.digest
    assert crane("manifest", ref).stdout == image.manifest_bytes
    assert crane("config", ref).stdout == image.config
    # validate re-downloads every layer and checks its digest and its diff_id
    crane("validate", "--remote", ref)
    exported = tarfile.open(fileobj=io.BytesIO(crane("export", ref, "-").stdout))
    assert {m.name: m.size for m in exported.getmembers() if m.isfile()} == {
        f"app/{p.name}": p.stat().st_size for p in SAMPLE.iterdir() if p.is_file()
    }


def test_crane_pushes_multi_platform_index(
    tmp_path: Path, registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    platforms = [Platform("linux", "amd64"), Platform("linux", "arm64", "v8")]
    index = build_image(SAMPLE, platforms=platforms)
    assert isinstance(index, ImageIndex)
    layout = write_oci_layout(index, tmp_path / "layout")
    ref = f"{registry.host}/labkit/hello-app:multi"

    crane("push", str(layout), ref)
    assert crane("digest", ref).stdout.decode().strip() == index.digest
    crane("validate", "--remote", ref)
    for platform, child in zip(platforms, index.images):
        got = crane("digest", "--platform", str(platform), ref).stdout.decode().strip()
        assert got == child.digest
        config = json.loads(crane("config", "--platform", str(platform), ref).stdout)
        assert (config["os"], config["architecture"], config.get("variant")) == (
            platform.os, platform.architecture, platform.variant,
        )


def test_cli_build_push_and_digest_match_crane(
    tmp_path: Path,
    registry: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from labkit.cli import main

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    ref = f"{registry.host}/labkit/cli-build:v1"
    assert main(["build", str(SAMPLE), "--tag", ref]) == 0
    out, err = capsys.readouterr()
    local_digest = out.strip()
    assert "skipped" not in err  # the sample has nothing labkit's builder cannot honour
    assert "FROM python:3.12-slim@sha256:" in err and "is not pulled" in err

    assert main(["build", str(SAMPLE), "--tag", ref, "--push"]) == 0
    pushed = capsys.readouterr().out.strip()
    assert pushed == f"{registry.host}/labkit/cli-build@{local_digest}"
    assert crane("digest", ref).stdout.decode().strip() == local_digest

    assert main(["build", str(SAMPLE), "--tag", ref + "-multi", "--platform", "linux/amd64,linux/arm64", "--push"]) == 0
    capsys.readouterr()
    for r in (ref, ref + "-multi"):
        assert main(["digest", r]) == 0
        assert capsys.readouterr().out == crane("digest", r).stdout.decode()


def test_cli_build_on_a_base_pushed_by_crane(
    tmp_path: Path,
    registry: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """crane makes the base (an appended layer, platform and env set by crane mutate)."""
    from labkit.cli import main

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    base_ref = f"{registry.host}/labkit/base:1"
    layer = one_file_layer(tmp_path / "base.tar", "etc/os-release", b"ID=crane-made\n")
    crane("append", "--oci-empty-base", "-f", str(layer), "-t", base_ref)
    crane("mutate", base_ref, "--set-platform", "linux/arm64", "--env", "PATH=/usr/bin", "-t", base_ref)
    base_config = json.loads(crane("config", base_ref).stdout)

    ref = f"{registry.host}/labkit/on-base:v1"
    assert main(["build", str(SAMPLE), "--tag", ref, "--base", base_ref, "--platform", "linux/arm64", "--push"]) == 0
    capsys.readouterr()
    crane("validate", "--remote", ref)
    config = json.loads(crane("config", ref).stdout)
    assert config["rootfs"]["diff_ids"][:-1] == base_config["rootfs"]["diff_ids"]
    assert config["config"]["Env"] == ["PATH=/usr/bin", "PYTHONUNBUFFERED=1"]
    assert config["architecture"] == "arm64"
    files = {m.name for m in tarfile.open(fileobj=io.BytesIO(crane("export", ref, "-").stdout))}
    assert {"etc/os-release", "app/app.py"} <= files

    # a base of another platform is refused, naming both
    assert main(["build", str(SAMPLE), "--tag", ref, "--base", base_ref]) == 1
    assert "the base image for linux/amd64 is a linux/arm64 image" in capsys.readouterr().err


def test_cli_build_pull_base_on_a_from_pinned_by_digest(
    tmp_path: Path,
    registry: RunningRegistry,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The sample's Dockerfile with FROM pointing at a crane-made base by digest: crane reads the
    result as the base's layers and then the app layer, the config merged, the same digest twice."""
    from labkit.cli import main

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base_tag = f"{registry.host}/labkit/pybase:1"
    layer = one_file_layer(tmp_path / "base.tar", "usr/local/bin/python", b"#!/bin/sh\n")
    crane("append", "--oci-empty-base", "-f", str(layer), "-t", base_tag)
    crane("mutate", base_tag, "--set-platform", "linux/amd64", "--env", "PATH=/usr/local/bin",
          "--cmd", "python3", "-t", base_tag)
    base_digest = crane("digest", base_tag).stdout.decode().strip()
    base_config = json.loads(crane("config", base_tag).stdout)
    base_layers = [d["digest"] for d in json.loads(crane("manifest", base_tag).stdout)["layers"]]

    ctx = tmp_path / "hello-app"
    ctx.mkdir()
    for src in SAMPLE.iterdir():
        text = src.read_text()
        if src.name == "Dockerfile":
            text = "\n".join(f"FROM {registry.host}/labkit/pybase@{base_digest}" if line.startswith("FROM ") else line
                             for line in text.splitlines()) + "\n"
        (ctx / src.name).write_text(text)
    ref = f"{registry.host}/labkit/on-pinned-base:v1"
    assert main(["build", str(ctx), "--tag", ref, "--pull-base", "--push"]) == 0
    pushed = capsys.readouterr().out.strip()
    crane("validate", "--remote", ref)
    assert pushed == f"{registry.host}/labkit/on-pinned-base@{crane('digest', ref).stdout.decode().strip()}"
    layers = [d["digest"] for d in json.loads(crane("manifest", ref).stdout)["layers"]]
    assert layers[:-1] == base_layers and len(layers) == len(base_layers) + 1
    config = json.loads(crane("config", ref).stdout)
    assert config["rootfs"]["diff_ids"][:-1] == base_config["rootfs"]["diff_ids"]
    assert config["config"]["Env"] == ["PATH=/usr/local/bin", "PYTHONUNBUFFERED=1"]
    assert config["config"]["Cmd"] == ["python", "app.py"] and config["config"]["WorkingDir"] == "/app"
    with tarfile.open(fileobj=io.BytesIO(crane("export", ref, "-").stdout)) as exported:
        assert {"usr/local/bin/python", "app/app.py"} <= set(exported.getnames())

    assert main(["build", str(ctx), "--tag", ref, "--pull-base"]) == 0
    assert capsys.readouterr().out.strip() == pushed.rsplit("@", 1)[1]
