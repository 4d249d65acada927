"""The kind backend: a real cluster with kind's local registry, Kyverno and policy-controller.

Pinned (:mod:`labkit.lab.kind_setup`): kind v0.32.0 and its default node image (by digest),
``registry:3.0.0``, Kyverno chart 3.9.1 (Kyverno v1.19.1, the engine version labkit's policy
corpus is checked against) and the policy-controller chart 0.10.6 (policy-controller v0.13.1, as
the ``tester`` oracle).

The registry has two names (docs/kind-backend.md says why): learners push to ``localhost:5001``
(kind's recipe), pods and policies name it ``registry.local:5000``: the registry container is
aliased ``registry.local`` on the ``kind`` network, so containerd on the nodes (through
``hosts.toml``) and the controllers' pods (through cluster DNS → Docker's DNS) reach the same
registry. Kyverno is installed with its chart's insecure-registry value, so policies are stored as
learners write them (:func:`labkit.lab.kind_setup.helm_values` says why).

The lab never touches what it did not create: what it creates is recorded in
``$LABKIT_HOME/kind/created.json`` as it goes, and ``stop`` (or a failed start) removes exactly that.
An existing cluster named ``labkit`` is refused; an existing ``kind-registry`` (kind's recipe name)
is reused only when it fits, else ``--registry-port`` gives the lab registries of its own.

The private registry (the credentials exercise) is a second ``registry:3.0.0`` with htpasswd
basic auth, wired the same way: ``localhost:5002`` from the host, ``registry-private.local:5000``
from nodes and pods. Its password is made per lab and kept 0600 in ``LABKIT_HOME``; pods and
policies get it only through the dockerconfigjson Secret learners create from
``lab.private_registry.pull_secret()``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from labkit._internal.progress import interactive, step_bar
from labkit.errors import LabError, UsageError
from labkit.lab import commands, engines
from labkit.lab.base import PrivateRegistry, RegistryInfo
from labkit.lab.commands import COMMAND_TIMEOUT
from labkit.lab.cosign_artifacts import delete_cosign_artifacts
from labkit.lab.kind_setup import (
    CLUSTER,
    CONTAINER_PORT,
    DELETE_ENABLED,
    KIND_NETWORK,
    KIND_VERSION,
    KYVERNO,
    NODE_IMAGE,
    POLICY_CONTROLLER,
    REGISTRY_IMAGE,
    Created,
    Registry,
    deployment_health,
    hosts_files,
    kind_config,
    local_registry_hosting,
    registries,
    registry_mismatches,
    resolved_elsewhere,
    teardown_commands,
)
from labkit.lab.kubectl import KubectlLab
from labkit.lab.ports import bindable
from labkit.lab.state import PRIVATE_USER, LabHome, LabState, clear

REQUIRED_TOOLS = {"docker": "https://docs.docker.com/engine/install/",
                  "kind": f"https://kind.sigs.k8s.io/docs/user/quick-start/#installation ({KIND_VERSION})",
                  "helm": "https://helm.sh/docs/intro/install/",
                  "kubectl": "https://kubernetes.io/docs/tasks/tools/"}
_AFTER_FAILURE = ("`labkit lab down` removes what the lab created (check Docker with `docker ps`); "
                  "then try `labkit lab up` again")
EXAMPLE_PORT = 5101  # what the hints suggest for --registry-port
KEEP_ON_FAILURE = "LABKIT_KEEP_CLUSTER_ON_FAILURE"  # CI: a failed start leaves its cluster to diagnose
_WAY_OUT = (f"labkit never changes or deletes what it did not create; give the lab registries of its own on "
            f"other ports: `labkit lab up --backend kind --registry-port {EXAMPLE_PORT}` "
            f"(Lab.start('kind', registry_port={EXAMPLE_PORT}))")


def preflight() -> None:
    """Every tool the backend drives must be there, and Docker must be running."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError("the kind backend needs " + ", ".join(missing) + ", not found on PATH: install "
                       + "; ".join(f"{t} from {REQUIRED_TOOLS[t]}" for t in missing),
                       hint="or use the embedded backend, which needs nothing: labkit lab up --backend embedded")
    try:
        import sh  # noqa: F401
    except ImportError:
        raise LabError("the kind backend drives docker, kind and helm with the Python package 'sh'",
                       hint="pip install 'labkit[kind]', or use the embedded backend") from None
    if run("docker", "info", ok=range(256), timeout=30).returncode != 0:
        raise LabError("the kind backend needs a running Docker daemon (`docker info` failed)",
                       hint="start Docker, or use the embedded backend: labkit lab up --backend embedded")


def run(*args: str, stdin: str | None = None, ok: Collection[int] = (0,), env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """:func:`labkit.lab.commands.run`, with the kind lab's way back when it fails."""
    return commands.run(*args, stdin=stdin, ok=ok, env=env, timeout=timeout, hint=_AFTER_FAILURE)


class KindLab(KubectlLab):
    backend = "kind"
    pulls_base_images = True  # its pods run the images: builds put the app on its pinned FROM

    @classmethod
    def launch(cls, home: LabHome, *, timeout: float = 600.0, registry_port: int | None = None) -> KindLab:
        state = LabState.load(home)
        if state is not None:
            if state.backend != cls.backend:
                raise LabError(f"a {state.backend} lab is already recorded in {home.root}",
                               hint="stop it first (`labkit lab down`) or use another LABKIT_HOME")
            if registry_port is not None and str(registry_port) != state.info.get("registry_port"):
                raise UsageError(f"the kind lab in {home.root} runs its registry on "
                                 f"{state.info.get('registry_port')}, not {registry_port}",
                                 hint="`labkit lab down` first to change --registry-port")
            return cls.attach(home, state)
        if registry_port is not None and not 1024 <= registry_port < 65535:
            raise UsageError(f"--registry-port {registry_port} is out of range",
                             hint=f"choose a port from 1024 to 65534 (it and the next one), e.g. {EXAMPLE_PORT}")
        preflight()
        home.create()
        home.kind.mkdir(exist_ok=True)
        ledger = _Ledger(home.kind / "created.json")
        ledger.teardown()  # left by an interrupted start or stop: this lab's, so remove it first
        main, private = registries(registry_port)
        reuse = _check_clashes(main, private)  # before anything is created
        kubeconfig = home.kind / "kubeconfig"
        steps = ["registries", "kind cluster", "registry wiring", "Kyverno and policy-controller (Helm)"]
        try:
            with step_bar(steps, "kind lab", enabled=interactive()) as step:
                step(steps[0])
                if not reuse:
                    _start_registry(main, [], ledger)
                htpasswd = _write_htpasswd(home.kind / "htpasswd", home.new_private_password())
                _start_registry(private, ["-v", f"{htpasswd}:/auth/htpasswd:ro", "-e", "REGISTRY_AUTH=htpasswd",
                                          "-e", "REGISTRY_AUTH_HTPASSWD_REALM=labkit",
                                          "-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd"], ledger)
                step(steps[1])
                _create_cluster(kubeconfig, home.kind, timeout, ledger)
                step(steps[2])
                _wire_registries((main, private), ledger)
                state = LabState(cls.backend, info={"cluster": CLUSTER, "kubeconfig": str(kubeconfig),
                                                    "registry_port": str(main.port)})
                lab = cls(home, state)
                lab.must("apply", "-f", "-", stdin=yaml.safe_dump(local_registry_hosting(main)))
                step(steps[3])
                lab._install_engines(timeout, ledger)
            state.save(home)
            return lab
        except BaseException:
            if os.environ.get(KEEP_ON_FAILURE) != "1":
                ledger.teardown()  # nothing half-made is left behind, and nothing else is touched
            clear(home)  # kept or not, created.json lists it: the next `up` removes it first
            raise

    @classmethod
    def attach(cls, home: LabHome, state: LabState) -> KindLab:
        preflight()
        clusters = run("kind", "get", "clusters").stdout.split()
        if state.info.get("cluster") not in clusters:
            raise LabError(f"the kind cluster {state.info.get('cluster')!r} recorded in {home.root} is gone",
                           hint="`labkit lab down` then `labkit lab up --backend kind`")
        return cls(home, state)

    def stop_services(self) -> None:
        _Ledger(self.home.kind / "created.json").teardown()
        clear(self.home)

    @property
    def _registries(self) -> tuple[Registry, Registry]:
        port = self.state.info.get("registry_port")
        return registries(int(port) if port else None)

    @property
    def registry(self) -> RegistryInfo:
        main = self._registries[0]
        return RegistryInfo(host=main.push_host, pod_host=main.pod_host)

    @property
    def private_registry(self) -> PrivateRegistry:
        private = self._registries[1]
        return PrivateRegistry(host=private.push_host, pod_host=private.pod_host, username=PRIVATE_USER,
                               password=self.home.private_password())

    def prepare_policy(self, doc: dict[str, Any]) -> dict[str, Any]:
        return allow_http_where_credentials_are_own(doc)

    def delete_signatures(self) -> None:
        """Only in the registries this lab created: a reused ``kind-registry`` is the user's, and
        what is stored there (signatures included) stays as it is."""
        created = Created.load(self.home.kind / "created.json").containers
        main, private = self._registries
        if main.container in created:
            delete_cosign_artifacts(main.push_host)
        if private.container in created:
            delete_cosign_artifacts(private.push_host, self.private_registry.credentials())

    def status(self) -> dict[str, Any]:
        health = {}
        for name, chart in (("kyverno", KYVERNO), ("policy-controller", POLICY_CONTROLLER)):
            listed = self.kubectl("get", "deployments", "-n", chart.namespace, "-o", "json")
            health[name] = (deployment_health(json.loads(listed.stdout)) if listed.returncode == 0
                            else listed.stderr.strip())
        return {"backend": self.backend, "home": str(self.home.root), "registry": self.registry.host,
                "webhook": "in-cluster: kyverno-svc.kyverno, webhook.cosign-system",
                "kubeconfig": self.kubeconfig, "health": health}

    def _install_engines(self, timeout: float, ledger: _Ledger) -> None:
        engines.install(self.kubectl, self.home.kind, Path(self.kubeconfig), timeout=timeout, insecure_registry=True,
                        before=lambda chart: ledger.note("helm_releases", chart.release_id))


class _Ledger:
    """``created.json``, written after every step, so even an interrupted start knows what is its own."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.created = Created.load(path)

    def note(self, what: str, name: str) -> None:
        if what == "cluster":
            self.created.cluster = name
        else:
            getattr(self.created, what).append(name)
        self.created.save(self.path)

    def teardown(self) -> None:
        for command in teardown_commands(self.created):
            run(*command, ok=(0, 1))  # already gone is fine
        self.created = Created()
        self.path.unlink(missing_ok=True)


def allow_http_where_credentials_are_own(doc: dict[str, Any]) -> dict[str, Any]:
    """Kyverno v1.19.1 ignores the global ``--allowInsecureRegistry`` where a policy brings its own
    registry credentials: a ClusterPolicy/Policy ``verifyImages`` entry with ``imageRegistryCredentials``
    gets a client built from those alone (pkg/engine/factories/registryclientfactory.go,
    ``WithAllowInsecureRegistry(creds.AllowInsecureRegistry)``), and an ImageValidatingPolicy with
    ``credentials`` its options from those alone (pkg/image/verification/evaluator/compiler.go →
    the SDK's regcreds.RemoteOptsFromIvpolCredentials). Exactly those entries get
    ``allowInsecureRegistry: true`` unless they say otherwise; everything else is stored as written."""
    doc = json.loads(json.dumps(doc))
    spec = doc.get("spec") or {}
    if doc.get("kind") == "ImageValidatingPolicy":
        if isinstance(spec.get("credentials"), dict):
            spec["credentials"].setdefault("allowInsecureRegistry", True)
        return doc
    for rule in spec.get("rules") or []:
        for verify in rule.get("verifyImages") or []:
            if isinstance(verify.get("imageRegistryCredentials"), dict):
                verify["imageRegistryCredentials"].setdefault("allowInsecureRegistry", True)
    return doc


def _inspect(container: str) -> dict[str, Any] | None:
    out = run("docker", "inspect", "--type", "container", container, ok=(0, 1))
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def _check_clashes(main: Registry, private: Registry) -> bool:
    """Refuse, before anything is created, a cluster or container of ours by name but not ours in
    fact, and ports held by others; whether ``main`` is an existing registry that fits (reused)."""
    if CLUSTER in run("kind", "get", "clusters").stdout.split():
        raise LabError(f"a kind cluster named {CLUSTER!r} exists and this lab did not create it",
                       hint=f"labkit never deletes what it did not create: if that cluster is a leftover you no "
                            f"longer need, `kind delete cluster --name {CLUSTER}`, then start again")
    existing = _inspect(main.container)
    if existing is not None:
        problems = registry_mismatches(existing, main)
        if problems:
            raise LabError(f"the container {main.container} exists but cannot be the lab's registry: "
                           + "; ".join(problems), hint=_WAY_OUT)
    else:
        _require_port(main.port, "the registry")
    if _inspect(private.container) is not None:
        raise LabError(f"a container named {private.container} exists and this lab did not create it",
                       hint=f"if it is an earlier labkit lab's, `docker rm -f {private.container}`, then start again")
    _require_port(private.port, "the private registry")
    return existing is not None


def _require_port(port: int, what: str) -> None:
    """``port`` free on loopback, or an error naming the container that publishes it, if one does."""
    if bindable(port):
        return
    holders = run("docker", "ps", "--filter", f"publish={port}", "--format", "{{.Names}}").stdout.split()
    holder = f"the container {', '.join(holders)}" if holders else "another program"
    raise LabError(f"port {port}, for {what}, is taken by {holder}",
                   hint=(f"if {holders[0]} is an earlier labkit lab's, `docker rm -f {holders[0]}`; otherwise "
                         if holders else "") + _WAY_OUT)


def _start_registry(registry: Registry, extra: list[str], ledger: _Ledger) -> None:
    _create_noting(ledger, "containers", registry.container, "is already in use",
                   "docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{registry.port}:{CONTAINER_PORT}",
                   "--network", "bridge", "-e", DELETE_ENABLED, *extra, "--name", registry.container, REGISTRY_IMAGE)


def _create_noting(ledger: _Ledger, what: str, name: str, clash: str, *command: str,
                   timeout: float = COMMAND_TIMEOUT) -> None:
    """Run a command that creates ``name`` and record it as the lab's, even when the command fails
    half-way (a container created but not started, a cluster half made), unless it failed because
    ``name`` already existed (``clash`` in its message): then it belongs to someone else."""
    try:
        run(*command, timeout=timeout)
    except LabError as exc:
        if clash not in str(exc):
            ledger.note(what, name)
        raise
    ledger.note(what, name)


def _write_htpasswd(path: Path, password: str) -> Path:
    """distribution's htpasswd file: bcrypt only (it refuses other hash types)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    path.write_text(f"{PRIVATE_USER}:{hashed}\n")
    path.chmod(0o644)  # read by the registry process inside its container
    return path


def _create_cluster(kubeconfig: Path, workdir: Path, timeout: float, ledger: _Ledger) -> None:
    config = workdir / "kind-config.yaml"
    config.write_text(yaml.safe_dump(kind_config()))
    # --name as well as the config's name: KIND_CLUSTER_NAME in the environment would override the latter
    _create_noting(ledger, "cluster", CLUSTER, "already exist", "kind", "create", "cluster", "--name", CLUSTER,
                   "--image", NODE_IMAGE, "--config", str(config), "--kubeconfig", str(kubeconfig),
                   "--wait", f"{int(timeout)}s", timeout=timeout + 120)


def _wire_registries(regs: tuple[Registry, ...], ledger: _Ledger) -> None:
    """hosts.toml on every node for both names of each registry; each registry on the kind network
    under its alias, resolving to it alone."""
    nodes = run("kind", "get", "nodes", "--name", CLUSTER).stdout.split()
    for path, content in hosts_files(regs).items():
        for node in nodes:
            run("docker", "exec", node, "mkdir", "-p", str(Path(path).parent))
            run("docker", "exec", "-i", node, "cp", "/dev/stdin", path, stdin=content)
    for reg in regs:
        networks = run("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", reg.container).stdout
        if KIND_NETWORK not in json.loads(networks):
            if reg.container not in ledger.created.containers:  # a registry the lab reuses: undone on stop
                ledger.note("connections", reg.container)
            run("docker", "network", "connect", "--alias", reg.alias, KIND_NETWORK, reg.container)
        _wait_resolves(reg)


def _wait_resolves(reg: Registry) -> None:
    address = run("docker", "inspect", "-f", "{{(index .NetworkSettings.Networks \"" + KIND_NETWORK + "\").IPAddress}}",
                  reg.container).stdout.strip()
    for _ in range(60):  # Docker's DNS answers for the alias once the connection is made
        found = run("docker", "exec", f"{CLUSTER}-control-plane", "getent", "ahostsv4", reg.alias, ok=(0, 2)).stdout
        others = resolved_elsewhere(found, address)
        if others:
            raise LabError(f"{reg.alias} resolves on the kind network to {', '.join(others)} as well as to "
                           f"{reg.container} ({address}): another container holds that alias",
                           hint=f"`docker network inspect {KIND_NETWORK}` lists the containers; disconnect the "
                                f"other one, then start the lab again")
        if found.strip():
            return
        time.sleep(1)
    raise LabError(f"{reg.alias} does not resolve on the kind network",
                   hint=f"check `docker network inspect {KIND_NETWORK}` lists {reg.container} "
                        f"with alias {reg.alias}")
