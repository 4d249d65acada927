"""The OCI distribution-spec conformance suite against ``labkit registry serve``.

The suite (``github.com/opencontainers/distribution-spec/conformance``, built by
tools/reference-tools.sh) is the oracle: it pushes, pulls, lists, mounts, deletes and queries
referrers with its own generated content and writes a JUnit report. Every API and data category
is switched on (``OCI_VERSION=dev`` adds upload cancel, required digest headers and tag
parameters); only sparse manifests stay off, because labkit, like distribution, refuses a
manifest whose blobs or child manifests were not pushed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import reference_tool
from tests.peers import free_port, wait_for_registry

OCI_CONFORMANCE = "oci-conformance-v0.0.0-20260831232431-97274622c111"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "conformance"


@pytest.mark.parametrize("auth", ["anonymous", "basic-auth"])
def test_conformance_suite_passes_every_category(tmp_path: Path, auth: str) -> None:
    suite = reference_tool(OCI_CONFORMANCE)
    port = free_port()
    command = [sys.executable, "-m", "labkit", "registry", "serve", "--port", str(port),
               "--root", str(tmp_path / "root")]
    env = dict(os.environ, OCI_REGISTRY=f"127.0.0.1:{port}", OCI_TLS="disabled", OCI_VERSION="dev",
               OCI_RESULTS_DIR=str(tmp_path / "results"), OCI_LOG="error")
    password = None
    if auth == "basic-auth":
        password = os.urandom(12).hex()
        command += ["--username", "learner", "--password-stdin"]
        env.update(OCI_USERNAME="learner", OCI_PASSWORD=password)
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if password is not None:
            server.stdin.write(password + "\n")
        server.stdin.close()
        wait_for_registry(f"http://127.0.0.1:{port}")
        run = subprocess.run([str(suite)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    finally:
        server.terminate()
        server.wait(timeout=30)

    results = tmp_path / "results"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in ("junit.xml", "report.html", "results.yaml"):
        if (results / name).exists():
            shutil.copy(results / name, ARTIFACTS / f"{auth}-{name}")
    junit = ET.parse(results / "junit.xml").getroot()
    suite_el = junit.find("testsuite")
    counts = {k: int(suite_el.get(k) or 0) for k in ("tests", "failures", "errors", "skipped")}
    failed = [tc.get("name") for tc in junit.iter("testcase") if tc.get("status") not in ("passed", None)]
    assert counts["tests"] > 0, run.stdout[-2000:]
    assert (counts["failures"], counts["errors"], failed) == (0, 0, []), run.stdout[-4000:]
    assert counts["skipped"] == 0, run.stdout[-4000:]
    assert run.returncode == 0 and "OCI Conformance Result: Pass" in run.stdout, run.stdout[-4000:]
