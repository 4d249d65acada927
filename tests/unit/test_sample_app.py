"""The workshop's sample app runs on any official Python image as it is, and only a lab whose pods
run images (kind) makes ``labkit build`` put it on its base.

Truth: the app answering HTTP when run by this machine's own Python, the interpreter's list of its
standard-library modules, and the Dockerfile's text as Docker reads it.
"""

from __future__ import annotations

import ast
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import workshop
from labkit.lab import Lab
from labkit.oci.build import load_recipe
from labkit.oci.reference import Reference

APP = workshop.SAMPLE_APP / "app.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_sample_answers_http_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    # -X faulthandler: if the app ever fails to stop, SIGABRT makes it print every thread's stack.
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", str(APP)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PORT": str(port), "HOSTNAME": "test-pod"})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/")
                resp = conn.getresponse()
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the app did not listen within 15 s"
                time.sleep(0.1)
        assert resp.status == 200
        assert resp.read() == b"Hello from a signed image! (host test-pod)\n"
        conn.close()
        proc.send_signal(signal.SIGTERM)  # what the kubelet sends a container's PID 1
        try:
            # generous: the suite's other processes may be loading both cores (one CI run took >10 s)
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, stderr = proc.communicate(timeout=10)
            pytest.fail("the app did not stop within 30 s of SIGTERM; its threads:\n" + stderr.decode(errors="replace"))
        assert code == 0
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def test_the_sample_needs_only_the_standard_library_and_no_run_step() -> None:
    imported = set()
    for node in ast.walk(ast.parse(APP.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported and imported <= sys.stdlib_module_names
    recipe = load_recipe(workshop.SAMPLE_APP)
    assert recipe.ignored == []  # no RUN (or anything else labkit's builder cannot honour)
    assert sorted(p.name for p in workshop.SAMPLE_APP.iterdir()) == ["Dockerfile", "app.py"]


def test_the_sample_base_is_the_official_python_image_by_digest() -> None:
    recipe = load_recipe(workshop.SAMPLE_APP)
    assert recipe.base_name is not None
    base = Reference.parse(recipe.base_name)
    assert (base.registry, base.repository) == ("index.docker.io", "library/python")
    assert base.digest is not None and recipe.base_name.startswith("python:3.12-slim@sha256:")
    assert recipe.cmd == ["python", "app.py"]


def test_only_a_lab_that_pulls_base_images_makes_builds_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # workshop.start changes directory; this puts it back
    monkeypatch.setenv("PATH", os.environ["PATH"])
    monkeypatch.setenv("COSIGN_PASSWORD", "not-a-secret")
    monkeypatch.setenv("LAB_BACKEND", "embedded")
    monkeypatch.setenv("LABKIT_BUILD_PULL_BASE", "1")  # left over from a kind lab in this kernel
    lab = workshop.start(tmp_path / "home")
    try:
        assert not lab.pulls_base_images
        assert "LABKIT_BUILD_PULL_BASE" not in os.environ  # an offline lab's builds stay offline
        assert "LABKIT_BUILD_PULL_BASE" not in lab.env()
        monkeypatch.setattr(type(lab), "pulls_base_images", True)  # as the kind lab is
        assert workshop.start(tmp_path / "home") is not None
        assert os.environ["LABKIT_BUILD_PULL_BASE"] == "1"
        assert Lab.connect(tmp_path / "home").env()["LABKIT_BUILD_PULL_BASE"] == "1"
    finally:
        lab.stop()
