"""Shared fixtures: the reference tools (test oracles) and the registries tests run against.

Reference tools are built by ``tools/reference-tools.sh`` into a cache outside the repo. A tool
that cannot exist here (no Go) skips with that reason; a tool missing although Go is present is
a broken setup and fails, so a green run never hides an oracle that did not run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

TOOLS_DIR = Path(
    os.environ.get("LABKIT_TOOLS_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit" / "tools"
)

COSIGN_V2_PIN = "cosign-v2.6.1"  # the tutorial's pin (carries GHSA-whqx-f9j3-ch6m)
COSIGN_V2_NEWEST = "cosign-v2.6.5"
COSIGN_V3 = "cosign-v3.1.3"
CRANE = "crane-v0.22.1"
ALL_COSIGNS = (COSIGN_V2_PIN, COSIGN_V2_NEWEST, COSIGN_V3)


def reference_tool(name: str) -> Path:
    path = TOOLS_DIR / name
    if path.is_file():
        return path
    if shutil.which("go") is None:
        pytest.skip(f"{name} is built from Go modules and Go is not installed on this machine")
    pytest.fail(f"{name} is missing from {TOOLS_DIR} although Go is installed: run `make tools`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_registry(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/v2/", timeout=1.0).status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"registry at {url} did not answer within {timeout}s")
        time.sleep(0.05)


@dataclass(frozen=True)
class RunningRegistry:
    """A registry on loopback. ``host`` is what goes into image references (``127.0.0.1:PORT``)."""

    name: str
    host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@pytest.fixture(scope="session")
def distribution_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Debian's docker-registry (distribution 2.8): an independent registry without referrers."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        pytest.skip("Debian's docker-registry is not installed (make system-deps installs it as root)")
    root = tmp_path_factory.mktemp("distribution")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        registry = RunningRegistry("distribution", f"127.0.0.1:{port}")
        wait_for_registry(registry.url)
        yield registry
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def labkit_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """labkit's embedded registry (``labkit.registry.serve``) on a free loopback port."""
    from labkit.registry import serve

    handle = serve(root=tmp_path_factory.mktemp("labkit-registry"), port=0)
    try:
        yield RunningRegistry("labkit", handle.host)
    finally:
        handle.stop()


@pytest.fixture(params=["labkit", "distribution"])
def registry(request: pytest.FixtureRequest) -> RunningRegistry:
    """Each interop test runs against labkit's registry and against distribution."""
    return request.getfixturevalue(f"{request.param}_registry")
