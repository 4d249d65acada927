"""The kind backend on a machine that cannot run it: clear messages, nothing created, nothing
touched that the lab did not create.

Oracles: the PATH the test builds (tools present or not, a docker whose daemon is down, fake
docker/kind/helm/kubectl that log each call); the `docker inspect` shape kind's recipe reads; the
Kyverno field names in shared/reference/kyverno.md (imageRegistryCredentials, credentials) and
Kyverno v1.19.1's sources for which entries ignore the global insecure-registry flag.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import httpx
import pytest

from labkit.cli import main
from labkit.errors import LabError, UsageError
from labkit.lab import Lab
from labkit.lab.kind import _write_htpasswd, allow_http_where_credentials_are_own
from labkit.lab.kind_setup import Created, registries
from labkit.lab.ports import bindable, pick_port
from labkit.lab.state import PRIVATE_USER, LabHome, LabState
from tests.peers import PeerMissing, run_distribution

POD_HOST, PRIVATE_POD_HOST = (r.pod_host for r in registries())


def _tool(directory: Path, name: str, status: int) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {status}\n")
    path.chmod(0o755)


def test_missing_tools_are_named_and_embedded_is_offered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    _tool(tmp_path / "bin", "kubectl", 0)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(LabError) as err:
        Lab.start("kind", tmp_path / "home")
    text = str(err.value)
    assert "the kind backend needs docker, kind, helm, not found on PATH" in text
    assert "https://helm.sh/docs/intro/install/" in text
    assert "labkit lab up --backend embedded" in (err.value.hint or "")
    assert not (tmp_path / "home" / "lab.json").exists() and not (tmp_path / "home" / "kind").exists()


def test_docker_without_a_daemon_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    for tool in ("kind", "helm", "kubectl"):
        _tool(tmp_path / "bin", tool, 0)
    _tool(tmp_path / "bin", "docker", 1)  # `docker info` fails as it does with no daemon
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(LabError, match=r"needs a running Docker daemon \(`docker info` failed\)"):
        Lab.start("kind", tmp_path / "home")


def test_kyverno_entries_with_their_own_credentials_get_allow_insecure_and_nothing_else_changes() -> None:
    """Kyverno v1.19.1 builds a separate registry client for a verifyImages entry with
    imageRegistryCredentials (pkg/engine/factories/registryclientfactory.go) and separate options
    for an ImageValidatingPolicy with credentials (pkg/image/verification/evaluator/compiler.go),
    ignoring the global --allowInsecureRegistry the chart value sets: exactly those get it."""
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
              "spec": {"rules": [
                  {"name": "lab", "verifyImages": [{"imageReferences": [f"{POD_HOST}/app/*", "*/workshop/*"]}]},
                  {"name": "private", "verifyImages": [{"imageReferences": [f"{PRIVATE_POD_HOST}/private/*"],
                                                        "imageRegistryCredentials": {"secrets": ["regcred"]}}]},
                  {"name": "said-no", "verifyImages": [{
                      "imageReferences": ["ghcr.io/*"],
                      "imageRegistryCredentials": {"allowInsecureRegistry": False}}]}]}}
    out = allow_http_where_credentials_are_own(policy)
    lab_rule, private, said_no = (r["verifyImages"][0] for r in out["spec"]["rules"])
    assert lab_rule == policy["spec"]["rules"][0]["verifyImages"][0]  # as written: the global flag covers it
    assert private["imageRegistryCredentials"] == {"secrets": ["regcred"], "allowInsecureRegistry": True}
    assert said_no["imageRegistryCredentials"] == {"allowInsecureRegistry": False}
    assert "allowInsecureRegistry" not in policy["spec"]["rules"][1]["verifyImages"][0]["imageRegistryCredentials"]
    ivp = {"apiVersion": "policies.kyverno.io/v1beta1", "kind": "ImageValidatingPolicy", "metadata": {"name": "i"},
           "spec": {"matchImageReferences": [{"glob": f"{POD_HOST}/*"}]}}
    assert allow_http_where_credentials_are_own(ivp) == ivp
    ivp["spec"]["credentials"] = {"secrets": ["regcred"]}
    assert allow_http_where_credentials_are_own(ivp)["spec"]["credentials"] == {
        "secrets": ["regcred"], "allowInsecureRegistry": True}


def _fakes(directory: Path, *, clusters: str = "", inspect: dict[str, str] | None = None,
           run_fails: str | None = None, ps: str = "") -> Path:
    """docker, kind, helm and kubectl that log each call to ``calls`` and answer what the test says:
    ``kind get clusters`` prints ``clusters``; ``docker inspect --type container NAME`` prints
    ``inspect[NAME]`` (else fails as for a missing container); ``docker run`` fails with
    ``run_fails`` on stderr when given; ``docker ps`` prints ``ps``."""
    log = directory / "calls"
    directory.mkdir(exist_ok=True)
    cases = "".join(f"  'inspect --type container {name}') echo '{text}';;\n" for name, text in (inspect or {}).items())
    cases += f"  ps*) printf '{ps}';;\n"
    if run_fails is not None:
        cases += f"  run*) echo '{run_fails}' >&2; exit 125;;\n"
    scripts = {
        "docker": f"case \"$*\" in\n{cases}  inspect*) echo 'Error: No such object' >&2; exit 1;;\nesac\n",
        "kind": f"case \"$*\" in\n  'get clusters') printf '{clusters}';;\n  'get nodes --name labkit') "
                "echo labkit-control-plane;;\nesac\n",
        "helm": "", "kubectl": ""}
    for name, body in scripts.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {log}\n{body}exit 0\n")
        path.chmod(0o755)
    return log


def _created(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines()
            if line.startswith(("docker run", "kind create", "helm ", "docker network connect"))]


def test_a_kind_cluster_named_labkit_that_the_lab_did_not_create_is_refused_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fakes(tmp_path / "bin", clusters="other\nlabkit\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(LabError, match="a kind cluster named 'labkit' exists and this lab did not create it") as err:
        Lab.start("kind", tmp_path / "home")
    assert "kind delete cluster --name labkit" in (err.value.hint or "")
    assert _created(log) == [] and "kind delete" not in log.read_text()
    assert not (tmp_path / "home" / "lab.json").exists() and not (tmp_path / "home" / "kind" / "created.json").exists()


def test_kinds_recipe_registry_that_does_not_fit_is_named_with_the_way_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe_registry = json.dumps([{
        "Config": {"Image": "registry:3", "Env": ["PATH=/bin"]}, "State": {"Running": True},
        "HostConfig": {"PortBindings": {"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5001"}]}},
        "NetworkSettings": {"Networks": {"bridge": {}, "kind": {"Aliases": []}}}}])
    log = _fakes(tmp_path / "bin", inspect={"kind-registry": recipe_registry})
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(LabError) as err:
        Lab.start("kind", tmp_path / "home")
    assert str(err.value).startswith("the container kind-registry exists but cannot be the lab's registry: ")
    assert "deletes are off" in str(err.value) and "without the alias registry.local" in str(err.value)
    assert "labkit lab up --backend kind --registry-port 5101" in (err.value.hint or "")
    assert _created(log) == [] and "docker rm" not in log.read_text()


def test_stop_removes_what_the_lab_recorded_and_never_a_registry_it_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _fakes(tmp_path / "bin", clusters="labkit\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    home = LabHome.resolve(tmp_path / "home")
    home.create()
    home.kind.mkdir()
    LabState("kind", info={"cluster": "labkit", "kubeconfig": str(home.kind / "kubeconfig"),
                           "registry_port": "5001"}).save(home)
    Created(cluster="labkit", containers=["labkit-registry-private"], connections=["kind-registry"],
            helm_releases=["kyverno/kyverno", "cosign-system/policy-controller"]).save(home.kind / "created.json")
    Lab.connect(home.root).stop()
    removals = [line for line in log.read_text().splitlines() if " delete" in line or " rm" in line
                or "disconnect" in line or "uninstall" in line]
    assert removals == ["kind delete cluster --name labkit", "docker network disconnect kind kind-registry",
                        "docker rm -f labkit-registry-private"]
    assert not home.state_file.exists() and not (home.kind / "created.json").exists()


def _free_pair() -> int:
    """A port that, with the next one, nothing listens on (the lab's registries take both)."""
    port = pick_port(())
    while not (bindable(port) and bindable(port + 1)):
        port = pick_port((port,))
    return port


@pytest.mark.parametrize(("message", "kept"), [
    # docker's messages: a name clash (the container is someone else's), a port taken after it was created
    ('docker: Error response from daemon: Conflict. The container name "/labkit-registry" is already in use '
     'by container "0123abcd". You have to remove (or rename) that container to be able to reuse that name.', False),
    ("docker: Error response from daemon: driver failed programming external connectivity on endpoint "
     "labkit-registry: Bind for 127.0.0.1:5101 failed: port is already allocated.", True)])
def test_a_failed_docker_run_is_undone_only_when_the_container_is_the_labs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, message: str, kept: bool) -> None:
    log = _fakes(tmp_path / "bin", run_fails=message)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(LabError, match="docker run"):
        Lab.start("kind", tmp_path / "home", registry_port=_free_pair())
    removed = [line for line in log.read_text().splitlines() if line.startswith("docker rm")]
    assert removed == (["docker rm -f labkit-registry"] if kept else [])
    assert not (tmp_path / "home" / "kind" / "created.json").exists()


def test_a_taken_port_names_the_container_publishing_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_pair()
    log = _fakes(tmp_path / "bin", ps="kind-registry-private\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        with pytest.raises(LabError, match=f"port {port}, for the registry, is taken by the container "
                                           "kind-registry-private") as err:
            Lab.start("kind", tmp_path / "home", registry_port=port)
    assert (err.value.hint or "").startswith("if kind-registry-private is an earlier labkit lab's, "
                                             "`docker rm -f kind-registry-private`; otherwise ")
    assert f"docker ps --filter publish={port} --format {{{{.Names}}}}" in log.read_text()
    assert _created(log) == []


def test_registry_port_is_for_the_kind_lab_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="--registry-port is for the kind lab"):
        Lab.start("embedded", tmp_path / "home", registry_port=5101)
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    assert main(["lab", "up", "--backend", "native", "--registry-port", "5101"]) != 0
    assert "--registry-port is for the kind lab" in capsys.readouterr().err
    assert not (tmp_path / "home" / "lab.json").exists()


def test_the_kind_lab_refuses_a_registry_port_without_a_next_one(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--registry-port 65535 is out of range"):
        Lab.start("kind", tmp_path / "home", registry_port=65535)


def test_private_registry_htpasswd_is_accepted_by_distribution(tmp_path: Path) -> None:
    """The kind lab's private registry is distribution with this htpasswd file; Debian's
    distribution build reads it the same way (it accepts bcrypt entries only)."""
    htpasswd = _write_htpasswd(tmp_path / "htpasswd", "s3cret-pass")
    auth = f"auth: {{htpasswd: {{realm: labkit, path: {htpasswd}}}}}\n"
    try:
        with run_distribution(tmp_path / "registry", extra_config=auth) as registry:
            url = f"http://{registry.host}/v2/"
            assert httpx.get(url).status_code == 401
            assert httpx.get(url, auth=(PRIVATE_USER, "wrong")).status_code == 401
            assert httpx.get(url, auth=(PRIVATE_USER, "s3cret-pass")).status_code == 200
    except PeerMissing as exc:
        pytest.skip(str(exc))


def test_reset_deletes_signatures_only_in_registries_the_lab_created(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kind's recipe registry, reused, is the user's: reset leaves what is stored there alone."""
    from labkit.lab import kind

    _fakes(tmp_path / "bin", clusters="labkit\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    home = LabHome.resolve(tmp_path / "home")
    home.create()
    home.kind.mkdir()
    LabState("kind", info={"cluster": "labkit", "kubeconfig": str(home.kind / "kubeconfig")}).save(home)
    home.new_private_password()
    main, private = registries()
    Created(cluster="labkit", containers=[private.container], connections=[main.container]).save(
        home.kind / "created.json")
    cleared: list[str] = []
    monkeypatch.setattr(kind, "delete_cosign_artifacts", lambda host, *args, **kwargs: cleared.append(host) or 0)
    lab = Lab.connect(home.root)
    assert lab.registry.host == main.push_host == "localhost:5001"
    assert isinstance(lab, kind.KindLab)
    lab.delete_signatures()
    assert cleared == [private.push_host]
