"""Shared fixtures: the reference tools (test oracles) and the registries tests run against.

Reference tools are built by ``tools/reference-tools.sh`` into a cache outside the repo. A tool
that cannot exist here (no Go) skips with that reason; a tool missing although Go is present is
a broken setup and fails, so a green run never hides an oracle that did not run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers import PeerMissing, RunningRegistry, run_distribution

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


@pytest.fixture(scope="session")
def distribution_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """Debian's docker-registry (distribution 2.8): an independent registry without referrers."""
    try:
        with run_distribution(tmp_path_factory.mktemp("distribution")) as registry:
            yield registry
    except PeerMissing as exc:
        pytest.skip(str(exc))


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
