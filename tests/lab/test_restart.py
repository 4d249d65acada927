"""A lab restart keeps its addresses, so what was denied stays denied (issue 14 §2); a port it cannot
have is an error naming who holds it; a policy naming a registry the lab does not serve is reported.

Oracles: the kernel (a listening socket held by a child whose pid we know, /v2/ answering on a
port), the seed scenario's expectations (tests/scenario_expectations.yaml) for every decision, and
bash itself for ``labkit lab env``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from labkit import keys
from labkit.errors import LabError, UsageError
from labkit.lab import Lab, StalePolicy
from labkit.lab.stale import stale_policies
from labkit.lab.state import process_start_time
from tests.lab import scenario

CASES = {c.object: c for c in scenario.cases()}


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit", "lab", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "LABKIT_HOME": str(home), **(env or {})})


def renamed(case: scenario.Case, subs: dict[str, str], name: str) -> dict[str, object]:
    obj = scenario.pod(case, subs)
    obj["metadata"]["name"] = name
    return obj


def unused_port() -> int:
    """A port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    yield home
    with contextlib.suppress(LabError):
        Lab.connect(home).stop()


def hold(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", "import socket, sys, time\n"
                             "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
                             "print('ready', flush=True); time.sleep(300)", str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    return proc


def test_a_denied_pod_stays_denied_after_lab_down_and_up(home: Path, tmp_path: Path) -> None:
    """The issue's story: policies applied, an unsigned pod denied, `lab down`, `lab up` (after
    lunch), the same unsigned image denied again; a signed one is still admitted, so the engines
    still reach the registry the policies name."""
    lab = Lab.start("embedded", home)
    subs = scenario.prepare(lab, tmp_path)
    before = [lab.create(renamed(CASES[name], subs, f"{name}-before")) for name in ("kyverno-unsigned", "ivp-unsigned")]
    assert [r.admitted for r in before] == [False, False], [r.message for r in before]

    down = cli(home, "down")
    assert down.returncode == 0, down.stderr
    with pytest.raises(LabError, match="no lab is running"):
        Lab.connect(home)
    up = cli(home, "up")
    assert up.returncode == 0 and "Warning" not in up.stderr, up.stderr

    again = Lab.connect(home)  # as a restarted kernel finds it
    assert again.stale_policies() == []
    with httpx.Client(trust_env=False) as http:  # the address the policies name answers as a registry
        assert http.get(f"http://{subs['registry']}/v2/").status_code == 200
    for name in ("kyverno-unsigned", "ivp-unsigned", "pc-unsigned"):
        result = again.create(renamed(CASES[name], subs, f"{name}-after"))
        assert not result.admitted, (name, result.message)
    signed = again.create(renamed(CASES["kyverno-signed"], subs, "kyverno-signed-after"))
    assert signed.admitted, signed.message


def test_the_ports_survive_a_crash_as_after_a_reboot(home: Path) -> None:
    """Every process killed, lab.json left behind (a reboot): the next start has the same ports."""
    lab = Lab.start("embedded", home)
    first = {name: s.port for name, s in lab.state.services.items()}
    for service in lab.state.services.values():
        os.kill(service.pid, signal.SIGKILL)
    for service in lab.state.services.values():
        os.waitpid(service.pid, 0)  # our children: reaped once their last thread has gone
        assert process_start_time(service.pid) is None
    assert home.joinpath("lab.json").exists()
    again = Lab.start("embedded", home)
    assert {name: s.port for name, s in again.state.services.items()} == first
    assert {s.pid for s in again.state.services.values()}.isdisjoint(s.pid for s in lab.state.services.values())


def test_a_kept_port_taken_is_an_error_naming_its_holder_then_a_chosen_port(home: Path) -> None:
    lab = Lab.start("embedded", home)
    port = lab.state.services["registry"].port
    lab.stop()
    stranger = hold(port)
    try:
        with pytest.raises(LabError) as err:
            Lab.start("embedded", home)
        assert f"port {port}" in err.value.message and "registry" in err.value.message
        assert f"pid {stranger.pid} " in err.value.message, err.value.message
        assert "--port registry=" in (err.value.hint or "") and "--fresh-ports" in (err.value.hint or "")
        assert not home.joinpath("lab.json").exists()  # nothing was started

        up = cli(home, "up")  # the CLI says the same, message and hint apart
        assert up.returncode == 1 and f"pid {stranger.pid} " in up.stderr and "Hint: " in up.stderr, up.stderr

        chosen = unused_port()
        up = cli(home, "up", "--port", f"registry={chosen}")
        assert up.returncode == 0, up.stderr
        assert f" registry={chosen} " in up.stdout  # status lists the kept ports by the names --port takes
        with httpx.Client(trust_env=False) as http:
            assert http.get(f"http://127.0.0.1:{chosen}/v2/").status_code == 200
        assert cli(home, "down").returncode == 0
    finally:
        stranger.kill()
        stranger.wait()
    again = Lab.start("embedded", home)  # the chosen port is kept, though the old one is free again
    assert again.registry.host == f"127.0.0.1:{chosen}"


def test_ports_are_chosen_from_the_environment_and_fresh_ones_on_request(home: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = unused_port()
    monkeypatch.setenv("LABKIT_PORTS", f"private-registry={chosen}")
    lab = Lab.start("embedded", home)
    assert lab.private_registry.host == f"127.0.0.1:{chosen}"
    with pytest.raises(UsageError, match="already running"):
        Lab.start("embedded", home, fresh_ports=True)
    lab.stop()
    monkeypatch.delenv("LABKIT_PORTS")
    stranger = hold(chosen)
    try:
        fresh = Lab.start("embedded", home, fresh_ports=True)
        assert fresh.private_registry.host != f"127.0.0.1:{chosen}"
    finally:
        stranger.kill()
        stranger.wait()
    with pytest.raises(UsageError, match="no port named"):
        Lab.start("embedded", home.parent / "other", ports={"regsitry": 5001})


def test_status_warns_of_a_policy_naming_a_registry_the_lab_does_not_serve(home: Path, tmp_path: Path) -> None:
    lab = Lab.start("embedded", home)
    keys.generate_key_pair(tmp_path / "k", b"")
    pem = (tmp_path / "k.pub").read_text().strip()
    old = unused_port()
    assert f"127.0.0.1:{old}" not in lab.served_registries()

    def cip(name: str, host: str) -> dict[str, object]:
        return {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": name},
                "spec": {"images": [{"glob": f"{host}/**"}], "authorities": [{"key": {"data": pem}}]}}

    ivp = {"apiVersion": "policies.kyverno.io/v1beta1", "kind": "ImageValidatingPolicy",
           "metadata": {"name": "old-ivp"},
           "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                            "operations": ["CREATE"], "resources": ["pods"]}]},
                    "matchImageReferences": [{"glob": f"localhost:{old}/*"}],
                    "attestors": [{"name": "lab", "cosign": {"key": {"data": pem + "\n"}}}],
                    "validations": [{"expression": "true"}]}}
    policies = [cip("current", lab.registry.pod_host), cip("old", f"127.0.0.1:{old}"), ivp]
    results = lab.apply(yaml.safe_dump_all(policies))
    assert all(r.admitted for r in results), [r.message for r in results]

    stale = lab.stale_policies()
    assert sorted((s.kind, s.name, s.host) for s in stale) == [
        ("ClusterImagePolicy", "old", f"127.0.0.1:{old}"), ("ImageValidatingPolicy", "old-ivp", f"localhost:{old}")]
    status = cli(home, "status")
    assert status.returncode == 0, status.stderr
    assert f"ClusterImagePolicy/old names the registry 127.0.0.1:{old}" in status.stderr, status.stderr
    assert "current" not in status.stderr and "labkit lab reset" in status.stderr
    assert "Warning" not in status.stdout
    assert cli(home, "down").returncode == 0
    up = cli(home, "up")  # the policies are kept across down/up: so is the warning
    assert up.returncode == 0 and f"ImageValidatingPolicy/old-ivp names the registry localhost:{old}" in up.stderr

    lab = Lab.connect(home)
    lab.reset()
    assert lab.stale_policies() == []
    assert "Warning" not in cli(home, "status").stderr


def test_stale_policies_compare_loopback_ports_only() -> None:
    policy = {"kind": "ClusterPolicy", "metadata": {"name": "p"},
              "spec": {"rules": [{"verifyImages": [{"imageReferences": [
                  "127.0.0.1:50011/a/*", "localhost:5001/b/*", "ghcr.io:5002/c/*", "127.0.0.1:5001/d/*"]}]}]}}
    assert stale_policies([policy], ["127.0.0.1:5001"]) == [
        StalePolicy("ClusterPolicy", "p", "", "127.0.0.1:50011", ("127.0.0.1:5001",))]
    assert stale_policies([policy], ["127.0.0.1:5001", "localhost:50011"]) == []


def test_env_gives_bash_labkit_and_the_lab_without_kubeconfig_on_embedded(home: Path, tmp_path: Path) -> None:
    lab = Lab.start("embedded", home)
    env = lab.env()
    assert "KUBECONFIG" not in env and env["LAB_BACKEND"] == "embedded"
    printed = cli(home, "env", env={"PATH": os.environ["PATH"]})
    assert printed.returncode == 0, printed.stderr
    assert "# embedded: no API server; use labkit lab apply" in printed.stdout
    (tmp_path / "env.sh").write_text(printed.stdout)
    script = ('eval "$(cat "$1")"; set -e; command -v labkit; labkit lab status; '
              'echo "kubeconfig=${KUBECONFIG-unset}"; echo "registry=$LABKIT_REGISTRY"; '
              'if command -v cosign >/dev/null; then cosign version 2>&1 | grep GitVersion; fi')
    bare = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}  # no venv, no LABKIT_HOME
    out = subprocess.run(["bash", "-c", script, "bash", str(tmp_path / "env.sh")], capture_output=True, text=True,
                         env=bare, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert os.access(lines[0], os.X_OK) and Path(lines[0]).name == "labkit"
    assert f"home:     {lab.home.root}" in out.stdout  # the shell's labkit found this lab
    assert "kubeconfig=unset" in lines
    registry = next(line.split("=", 1)[1] for line in lines if line.startswith("registry="))
    with httpx.Client(trust_env=False) as http:
        assert http.get(f"http://{registry}/v2/").status_code == 200
    if any(line.startswith("GitVersion") for line in lines):  # the real cosign, when `make tools` built it
        assert "GitVersion:    v2.6.1" in out.stdout
