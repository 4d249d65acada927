"""Lab state handling: lab.json, stale pids, port collisions, connecting to nothing.

Oracles: the kernel (a real exited child's pid, a real bound socket, /proc start times) and
the error texts this module promises users.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from labkit.errors import LabError
from labkit.lab import Lab, LabHome, ports
from labkit.lab.apiserver import NAME_LABEL, ObjectStore
from labkit.lab.state import LabState, Service, process_start_time


def _exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_connect_without_a_lab_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(LabError) as err:
        Lab.connect(tmp_path)
    assert f"no lab is running in {tmp_path.resolve()}" in str(err.value)
    assert "labkit lab up" in (err.value.hint or "")


def test_connect_to_a_stale_lab_names_the_dead_services(tmp_path: Path) -> None:
    home = LabHome.resolve(tmp_path)
    home.create()
    dead = _exited_pid()
    LabState("embedded", {"registry": Service(dead, 5, 1.0), "webhook": Service(dead, 6, 1.0)}).save(home)
    with pytest.raises(LabError) as err:
        Lab.connect(tmp_path)
    assert f"registry (pid {dead})" in str(err.value) and "not running" in str(err.value)


def test_a_reused_pid_is_not_our_process() -> None:
    me = os.getpid()
    started = process_start_time(me)
    assert started is not None
    assert Service(me, 1, started).alive()
    assert not Service(me, 1, started + 1).alive()  # same pid, another process
    assert not Service(_exited_pid(), 1, started).alive()


def test_a_corrupt_state_file_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(LabError) as err:
        Lab.connect(tmp_path)
    assert "lab.json is not a lab state file" in str(err.value)


def test_start_replaces_stale_state_and_retries_a_taken_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = LabHome.resolve(tmp_path)
    home.create()
    LabState("embedded", {"registry": Service(_exited_pid(), 5, 1.0)}).save(home)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    picks = iter([port])
    real = ports.pick_port
    monkeypatch.setattr(ports, "pick_port", lambda avoid: next(picks, None) or real(avoid))
    try:
        lab = Lab.start("embedded", tmp_path)
        try:
            assert lab.registry.host != f"127.0.0.1:{port}"
            assert "already in use" in (home.logs / "registry.log").read_text()
            assert json.loads(home.state_file.read_text())["services"]["registry"]["port"] != port
            assert Lab.connect(tmp_path).registry == lab.registry
        finally:
            lab.stop()
    finally:
        taken.close()
    assert not home.state_file.exists()


def test_object_store_labels_and_secrets(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path / "p", tmp_path / "s")
    store.initialise()
    assert store.label_namespace("pc", {"policy.sigstore.dev/include": "true"}) is True
    assert store.label_namespace("pc", {"policy.sigstore.dev/include": None, "team": "a"}) is False
    assert store.namespaces()["pc"] == {NAME_LABEL: "pc", "team": "a"}
    store.put_secret({"kind": "Secret", "metadata": {"name": "regcred", "namespace": "kyverno"},
                      "type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{}"}})
    secrets = json.loads((tmp_path / "s" / "secrets.json").read_text())
    assert secrets == {"kyverno/regcred": {"type": "kubernetes.io/dockerconfigjson",
                                           "data": {".dockerconfigjson": "e30="}}}


def test_secrets_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """Issue 13 item 11: the pull Secrets hold registry passwords, so ``secrets.json`` is 0600
    (as kubectl's kubeconfig and docker's config.json are), from creation and after each write,
    whatever the umask."""
    store = ObjectStore(tmp_path / "p", tmp_path / "s")
    old = os.umask(0o022)
    try:
        store.initialise()
        assert (store.secrets_file.stat().st_mode & 0o777) == 0o600
        store.put_secret({"kind": "Secret", "metadata": {"name": "regcred"},
                          "stringData": {".dockerconfigjson": '{"auths": {}}'}})
        assert (store.secrets_file.stat().st_mode & 0o777) == 0o600
        store.reset()
        assert (store.secrets_file.stat().st_mode & 0o777) == 0o600
        store.secrets_file.chmod(0o644)  # a lab made before this fix
        store.initialise()
        assert (store.secrets_file.stat().st_mode & 0o777) == 0o600
    finally:
        os.umask(old)
