"""Shared fixtures: the reference tools (test oracles) and the registries tests run against.

Reference tools are built by ``tools/reference-tools.sh`` into a cache outside the repo. A tool
that cannot exist here (no Go) skips with that reason; a tool missing although Go is present is
a broken setup and fails, so a green run never hides an oracle that did not run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from labkit._internal.tools import tools_dir
from tests.peers import PeerMissing, RunningRegistry, run_distribution

if TYPE_CHECKING:
    from labkit.lab import Lab

TOOLS_DIR = tools_dir()

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


def loopback_only() -> bool:
    """True inside a network namespace whose only interface is loopback (``tools/netns-run``).
    ``/proc/net/dev`` is the reader's own namespace's, unlike ``/sys/class/net``."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return [line.split(":")[0].strip() for line in lines] == ["lo"]


@pytest.fixture(scope="session")
def native_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One native lab (the real kube-apiserver, etcd, Kyverno, policy-controller) for the whole
    session, started in a loopback-only network namespace so no engine reaches beyond the machine."""
    from labkit.lab import Lab
    from labkit.lab.native import missing_binaries

    if not loopback_only():
        pytest.skip("the native lab runs only inside a loopback-only network namespace: "
                    "run the suite with `make test` (tools/netns-run)")
    missing = missing_binaries()
    if missing:
        if shutil.which("go") is None:
            pytest.skip(f"the native lab's {', '.join(missing)} are built from Go modules and Go is not installed")
        pytest.fail(f"{', '.join(missing)} missing from {TOOLS_DIR} although Go is installed: run `make tools`")
    lab = Lab.start("native", tmp_path_factory.mktemp("native-home"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def local_sigstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An embedded lab with its own Sigstore (OIDC issuer, Fulcio, Rekor on Trillian and MariaDB,
    TesseraCT), as ``labkit lab up --sigstore`` starts it, for the whole session; its home is
    yielded (``LocalSigstore.find`` gives the running services, which a test may restart)."""
    from labkit.lab import Lab, mariadb
    from labkit.lab.sigstore import missing_binaries

    missing = missing_binaries()
    if missing:
        if shutil.which("go") is None:
            pytest.skip(f"the local Sigstore's {', '.join(missing)} are built from Go modules and Go is not installed")
        pytest.fail(f"{', '.join(missing)} missing from {TOOLS_DIR} although Go is installed: run `make tools`")
    try:
        mariadb.find(mariadb.SERVER)
    except Exception as exc:  # noqa: BLE001 (LabError: not installed, with the apt line)
        pytest.skip(f"the local Sigstore needs MariaDB: {exc}")
    lab = Lab.start("embedded", tmp_path_factory.mktemp("sigstore-home"), sigstore=True)
    try:
        yield lab.home.root
    finally:
        lab.stop()
