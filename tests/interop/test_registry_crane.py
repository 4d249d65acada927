"""Real crane (go-containerregistry v0.22.1) against labkit's registry: push, list, read, copy,
validate and delete, with distribution as the second opinion on what crane pushed.

Oracles: crane's own checks (``crane validate --remote`` re-hashes every blob and the manifest)
and distribution holding the byte-identical manifest after ``crane copy``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import CRANE, RunningRegistry, reference_tool

pytestmark = pytest.mark.interop


def crane(*args: str) -> str:
    proc = subprocess.run([str(reference_tool(CRANE)), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"crane {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


def layer_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def pushed(labkit_registry: RunningRegistry, tmp_path: Path) -> str:
    """A two-layer image crane built and pushed to labkit's registry; its reference."""
    repo = f"{labkit_registry.host}/crane/app-{os.urandom(4).hex()}"
    first = layer_tar(tmp_path / "one.tar", {"hello.txt": b"hello from crane\n"})
    second = layer_tar(tmp_path / "two.tar", {"data.bin": os.urandom(300_000)})
    crane("append", "-f", str(first), "-t", f"{repo}:base")
    crane("append", "-b", f"{repo}:base", "-f", str(second), "-t", f"{repo}:v1")
    return repo


def test_crane_push_list_read_validate(pushed: str) -> None:
    assert crane("ls", pushed).split() == ["base", "v1"]
    digest = crane("digest", f"{pushed}:v1").strip()
    manifest = crane("manifest", f"{pushed}:v1").encode()
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert crane("digest", f"{pushed}@{digest}").strip() == digest
    layers = json.loads(manifest)["layers"]
    assert len(layers) == 2
    blob = subprocess.run([str(reference_tool(CRANE)), "blob", f"{pushed}@{layers[0]['digest']}"],
                          capture_output=True, check=True).stdout
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == layers[0]["digest"]
    crane("validate", "--remote", f"{pushed}:v1")


def test_crane_copy_within_and_to_distribution(
    pushed: str, labkit_registry: RunningRegistry, distribution_registry: RunningRegistry
) -> None:
    digest = crane("digest", f"{pushed}:v1").strip()
    copy = f"{labkit_registry.host}/crane/copied:latest"
    crane("copy", f"{pushed}:v1", copy)  # same registry: crane mounts the layers
    assert crane("digest", copy).strip() == digest
    elsewhere = f"{distribution_registry.host}/crane/copied:latest"
    crane("copy", f"{pushed}:v1", elsewhere)
    assert crane("digest", elsewhere).strip() == digest
    assert crane("manifest", elsewhere) == crane("manifest", f"{pushed}:v1")
    assert "crane/copied" in crane("catalog", labkit_registry.host).split()


def test_crane_delete(pushed: str) -> None:
    digest = crane("digest", f"{pushed}:base").strip()
    crane("delete", f"{pushed}@{digest}")
    assert crane("ls", pushed).split() == ["v1"]  # the tag on the deleted manifest went with it
    proc = subprocess.run([str(reference_tool(CRANE)), "manifest", f"{pushed}@{digest}"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "MANIFEST_UNKNOWN" in proc.stderr
