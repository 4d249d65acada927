"""Reproducible builds: same input, same digests; the layer and config are what the spec says.

Truth here is the byte layout itself (tar and gzip headers read back with the stdlib readers,
the OCI image-spec field names) and a digest pinned from a reviewed build of the sample; crane's
view of the same images is in tests/interop/test_build_crane.py.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
from importlib import resources
from pathlib import Path

import pytest

from labkit.errors import BuildError
from labkit.oci.build import build_image, parse_dockerfile, write_oci_layout
from labkit.oci.model import OCI_INDEX, OCI_LAYER_GZIP, Image, ImageIndex, Platform

SAMPLE = Path(str(resources.files("labkit") / "samples" / "hello-app"))

# Pinned from the first reviewed build (SOURCE_DATE_EPOCH unset). Any change to the sample, the
# tar or gzip settings, or the config layout moves these: update them only on purpose.
SAMPLE_DIGEST = "sha256:53c08e9d8bbcb9eb79bbe8431a50c6e411309733b246a9d2a7ac945c4f7be2cb"
SAMPLE_INDEX_DIGEST = "sha256:ecba1714ea5725b362e00dc59dad0e68a58de5ceddd8e3c7aac8eb1c3564f49e"


def _copy_sample(dest: Path, *, mtime: int, umask: int) -> Path:
    """Copy the sample with different file times and permission bits, as another checkout would."""
    old = os.umask(umask)
    try:
        target = dest / "ctx"
        target.mkdir()
        for src in sorted(SAMPLE.iterdir()):
            if src.is_file():
                (target / src.name).write_bytes(src.read_bytes())
                os.utime(target / src.name, (mtime, mtime))
    finally:
        os.umask(old)
    return target


def _members(image: Image) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layers[-1]))) as tar:
        return tar.getmembers()


def test_same_input_same_digest_across_mtimes_and_umasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = build_image(_copy_sample(tmp_path / "a", mtime=1, umask=0o022))
    b_ctx = _copy_sample(tmp_path / "b", mtime=1_700_000_000, umask=0o077)
    (b_ctx / "__pycache__").mkdir()  # bytecode caches never reach the layer
    (b_ctx / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00")
    b = build_image(b_ctx)
    assert isinstance(a, Image) and isinstance(b, Image)
    assert a.digest == b.digest
    assert a.layers == b.layers and a.config == b.config


def test_sample_digest_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert build_image(SAMPLE).digest == SAMPLE_DIGEST


def test_sample_index_digest_is_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    index = build_image(SAMPLE, platforms=[Platform("linux", "amd64"), Platform("linux", "arm64", "v8")])
    assert isinstance(index, ImageIndex)
    assert index.digest == SAMPLE_INDEX_DIGEST
    # the amd64 child is byte-for-byte the single-platform build
    assert index.images[0].digest == SAMPLE_DIGEST


def test_layer_entries_are_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    ctx = tmp_path / "ctx"
    (ctx / "bin").mkdir(parents=True)
    (ctx / "bin" / "run").write_text("#!/bin/sh\n")
    (ctx / "bin" / "run").chmod(0o700)
    (ctx / "z.txt").write_text("z")
    (ctx / "z.txt").chmod(0o600)
    (ctx / "a.txt").write_text("a")
    (ctx / "link").symlink_to("a.txt")
    (ctx / "Dockerfile").write_text("FROM scratch\nWORKDIR /srv/app\nCOPY . .\n")
    image = build_image(ctx)
    assert isinstance(image, Image)
    members = _members(image)
    assert [m.name for m in members] == [
        "srv", "srv/app", "srv/app/Dockerfile", "srv/app/a.txt", "srv/app/bin", "srv/app/bin/run",
        "srv/app/link", "srv/app/z.txt",
    ]
    by_name = {m.name: m for m in members}
    assert by_name["srv/app/bin/run"].mode == 0o755
    assert by_name["srv/app/z.txt"].mode == 0o644
    assert by_name["srv/app/bin"].isdir() and by_name["srv/app/bin"].mode == 0o755
    assert by_name["srv/app/link"].issym() and by_name["srv/app/link"].linkname == "a.txt"
    for m in members:
        assert (m.uid, m.gid, m.uname, m.gname, m.mtime) == (0, 0, "", "", 0)
    # gzip header: no name, mtime 0 (RFC 1952: FLG at byte 3, MTIME at bytes 4-7)
    blob = image.layers[-1]
    assert blob[:3] == b"\x1f\x8b\x08" and blob[3] & 0x08 == 0 and blob[4:8] == b"\0\0\0\0"


def test_source_date_epoch_sets_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    image = build_image(SAMPLE)
    assert isinstance(image, Image)
    assert {m.mtime for m in _members(image)} == {1_700_000_000}
    config = json.loads(image.config)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert image.digest != SAMPLE_DIGEST
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        build_image(SAMPLE)


def test_config_follows_the_dockerfile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    image = build_image(SAMPLE, labels={"org.opencontainers.image.title": "hello-app"})
    assert isinstance(image, Image)
    config = json.loads(image.config)
    layer = image.layers[-1]
    assert image.manifest.layers[-1].media_type == OCI_LAYER_GZIP
    assert image.manifest.layers[-1].digest == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert config["rootfs"] == {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()],
    }
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"] == {
        "Env": ["PYTHONUNBUFFERED=1"],
        "Cmd": ["python", "app.py"],
        "WorkingDir": "/app",
        "ExposedPorts": {"5000/tcp": {}},
        "Labels": {"org.opencontainers.image.title": "hello-app"},
    }
    assert [m.name for m in _members(image)] == ["app", "app/Dockerfile", "app/app.py"]


def test_dockerfile_subset() -> None:
    recipe = parse_dockerfile(
        "# comment\nFROM python:3.12-slim\nWORKDIR /app\nWORKDIR sub\n"
        "COPY --chown=1000 a.txt b.txt ./\nENV A=1 B=\"two words\"\nENV LEGACY some value\n"
        "EXPOSE 80 53/udp\nRUN apt-get update && \\\n    apt-get install -y curl\nUSER 1000\n"
        "ENTRYPOINT [\"/bin/app\"]\nCMD serve --port 80\n"
    )
    assert recipe.base_name == "python:3.12-slim"
    assert recipe.workdir == "/app/sub"
    assert recipe.copies == [(["a.txt", "b.txt"], "/app/sub/")]
    assert recipe.env == {"A": "1", "B": "two words", "LEGACY": "some value"}
    assert recipe.exposed_ports == ["80/tcp", "53/udp"]
    assert recipe.entrypoint == ["/bin/app"]
    assert recipe.cmd == ["/bin/sh", "-c", "serve --port 80"]
    assert recipe.ignored == ["RUN apt-get update &&  apt-get install -y curl", "USER 1000"]


@pytest.mark.parametrize(
    "dockerfile,fragment",
    [
        ("FROM a AS build\nFROM b\n", "multi-stage"),
        ("FROM a\nCOPY --from=build /x /y\n", "--from"),
        ("FROM a\nADD https://example.com/x /x\n", "local sources"),
    ],
)
def test_dockerfile_refusals(dockerfile: str, fragment: str) -> None:
    with pytest.raises(BuildError, match=fragment):
        parse_dockerfile(dockerfile)


def test_copy_source_outside_context_is_refused(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (tmp_path / "secret").write_text("no")
    (ctx / "Dockerfile").write_text("COPY ../secret /x\n")
    with pytest.raises(BuildError, match="outside the build directory"):
        build_image(ctx)


def test_dockerignore(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    shutil.copytree(SAMPLE, ctx)
    (ctx / "notes").mkdir()
    (ctx / "notes" / "todo.md").write_text("x")
    (ctx / "README.md").write_text("x")
    (ctx / "sub" / "deep").mkdir(parents=True)
    (ctx / "sub" / "keep.md").write_text("x")  # "*.md" is anchored at the root, as in Docker
    (ctx / "sub" / "deep" / "x.log").write_text("x")
    (ctx / ".dockerignore").write_text("# docs\nnotes\n*.md\n**/*.log\n")
    image = build_image(ctx)
    assert isinstance(image, Image)
    names = [m.name for m in _members(image)]
    assert names == [
        "app", "app/.dockerignore", "app/Dockerfile", "app/app.py",
        "app/sub", "app/sub/deep", "app/sub/keep.md",
    ]
    # as in Docker, an ignored file is not in the context at all, so naming it fails
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY app.py /app/\n")
    (ctx / ".dockerignore").write_text("app.py\n")
    with pytest.raises(BuildError, match="excluded by"):
        build_image(ctx)


def test_base_image_gets_the_app_layer_on_top(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    base_ctx = tmp_path / "base"
    base_ctx.mkdir()
    (base_ctx / "os-release").write_text("ID=test\n")
    base = build_image(base_ctx, platforms=[Platform("linux", "arm64")])
    assert isinstance(base, Image)
    base_config = json.loads(base.config)
    base_config["config"] = {"Env": ["PATH=/usr/bin", "PYTHONUNBUFFERED=0"], "Cmd": ["sh"]}
    base.config = json.dumps(base_config).encode()
    image = build_image(SAMPLE, base=base)
    assert isinstance(image, Image)
    config = json.loads(image.config)
    assert config["architecture"] == "arm64"  # the base's platform is the default
    assert config["rootfs"]["diff_ids"][0] == base_config["rootfs"]["diff_ids"][0]
    assert len(config["rootfs"]["diff_ids"]) == len(image.manifest.layers) == 2
    assert image.layers[0] == base.layers[0]
    assert config["config"]["Env"] == ["PATH=/usr/bin", "PYTHONUNBUFFERED=1"]
    assert config["config"]["Cmd"] == ["python", "app.py"]
    assert len(config["history"]) == 2
    with pytest.raises(BuildError, match="no variant for linux/amd64"):
        build_image(SAMPLE, base=base, platforms=[Platform("linux", "amd64")])


def test_oci_layout_is_content_addressed(tmp_path: Path) -> None:
    index = build_image(SAMPLE, platforms=[Platform("linux", "amd64"), Platform("linux", "arm64")])
    root = write_oci_layout(index, tmp_path / "layout")
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    top = json.loads((root / "index.json").read_text())["manifests"]
    assert [(d["mediaType"], d["digest"]) for d in top] == [(OCI_INDEX, index.digest)]
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    # index, 2 manifests, 2 configs, 1 shared layer
    assert len(list((root / "blobs" / "sha256").iterdir())) == 6


def test_docker_builder_absent_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from labkit.cli import main

    monkeypatch.setenv("PATH", "/nonexistent")  # no docker on PATH, whatever the machine has
    assert main(["build", str(SAMPLE), "--tag", "127.0.0.1:1/x:v1", "--builder", "docker"]) == 1
    assert "--builder docker needs docker with the buildx plugin" in capsys.readouterr().err
