"""The kind backend: a real cluster with kind's local registry, Kyverno and policy-controller.

Pinned: kind v0.32.0 and its default node image (by digest), ``registry:3.0.0``, Kyverno chart
3.9.1 (Kyverno v1.19.1, the engine version labkit's policy corpus is checked against) and the
policy-controller chart 0.10.6 (policy-controller v0.13.1, as the ``tester`` oracle).

The registry has two names (docs/kind-backend.md says why): learners push to ``localhost:5001``
(kind's recipe), pods and policies name it ``registry.local:5000``: the registry container is
aliased ``registry.local`` on the ``kind`` network, so containerd on the nodes (through
``hosts.toml``) and the controllers' pods (through cluster DNS → Docker's DNS) reach the same
registry. policy-controller's go-containerregistry falls back to plain HTTP for ``*.local``;
Kyverno's rules on the lab registry get ``imageRegistryCredentials.allowInsecureRegistry``.

The private registry (the credentials exercise) is a second ``registry:3.0.0`` with htpasswd
basic auth, wired the same way: ``localhost:5002`` from the host, ``registry-private.local:5000``
from nodes and pods. Its password is made per lab and kept 0600 in ``LABKIT_HOME``; pods and
policies get it only through the dockerconfigjson Secret learners create from
``lab.private_registry.pull_secret()``.

Workloads are created with ``kubectl create``, so messages are kubectl's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from labkit._internal.progress import interactive, step_bar
from labkit.errors import LabError
from labkit.lab.base import PrivateRegistry, RegistryInfo
from labkit.lab.kubectl import KubectlLab
from labkit.lab.state import PRIVATE_USER, LabHome, LabState, clear

KIND_VERSION = "v0.32.0"
NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
REGISTRY_IMAGE = "registry:3.0.0"
REGISTRY_NAME, REGISTRY_ALIAS = "kind-registry", "registry.local"
PUSH_HOST, POD_HOST = "localhost:5001", "registry.local:5000"
PRIVATE_NAME, PRIVATE_ALIAS = "kind-registry-private", "registry-private.local"
PRIVATE_PUSH_HOST, PRIVATE_POD_HOST = "localhost:5002", "registry-private.local:5000"
# container → (its host port, the names nodes and pods use for it)
REGISTRIES = {REGISTRY_NAME: (5001, REGISTRY_ALIAS, (PUSH_HOST, POD_HOST)),
              PRIVATE_NAME: (5002, PRIVATE_ALIAS, (PRIVATE_PUSH_HOST, PRIVATE_POD_HOST))}
CLUSTER = "labkit"
KYVERNO_CHART = ("kyverno", "https://kyverno.github.io/kyverno/", "kyverno/kyverno", "3.9.1", "kyverno")
POLICY_CONTROLLER_CHART = ("sigstore", "https://sigstore.github.io/helm-charts", "sigstore/policy-controller",
                           "0.10.6", "cosign-system")
REQUIRED_TOOLS = {"docker": "https://docs.docker.com/engine/install/",
                  "kind": f"https://kind.sigs.k8s.io/docs/user/quick-start/#installation ({KIND_VERSION})",
                  "helm": "https://helm.sh/docs/intro/install/",
                  "kubectl": "https://kubernetes.io/docs/tasks/tools/"}
_CONTAINERD_PATCH = """[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
"""


def preflight() -> None:
    """Every tool the backend drives must be there, and Docker must be running."""
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError("the kind backend needs " + ", ".join(missing) + ", not found on PATH: install "
                       + "; ".join(f"{t} from {REQUIRED_TOOLS[t]}" for t in missing),
                       hint="or use the embedded backend, which needs nothing: labkit lab up --backend embedded")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        raise LabError("the kind backend needs a running Docker daemon (`docker info` failed)",
                       hint="start Docker, or use the embedded backend: labkit lab up --backend embedded")
    try:
        import sh  # noqa: F401
    except ImportError as exc:
        raise LabError(f"the kind backend needs the Python package {exc.name!r}",
                       hint="pip install 'labkit[kind]', or use the embedded backend") from None


class KindLab(KubectlLab):
    backend = "kind"
    pulls_base_images = True  # its pods run the images: builds put the app on its pinned FROM

    @classmethod
    def launch(cls, home: LabHome, *, timeout: float = 600.0) -> KindLab:
        state = LabState.load(home)
        if state is not None:
            if state.backend != cls.backend:
                raise LabError(f"a {state.backend} lab is already recorded in {home.root}",
                               hint="stop it first (`labkit lab down`) or use another LABKIT_HOME")
            return cls.attach(home, state)
        preflight()
        import sh

        home.create()
        home.kind.mkdir(exist_ok=True)
        kubeconfig = home.kind / "kubeconfig"
        created: list[str] = []
        steps = ["registries", "kind cluster", "registry wiring", "Kyverno and policy-controller (Helm)"]
        try:
            with step_bar(steps, "kind lab", enabled=interactive()) as step:
                step(steps[0])
                _ensure_registry(sh, REGISTRY_NAME, [], created)
                sh.docker("rm", "-f", PRIVATE_NAME, _ok_code=[0, 1])  # its htpasswd is this lab's: start afresh
                htpasswd = _write_htpasswd(home.kind / "htpasswd", home.new_private_password())
                _ensure_registry(sh, PRIVATE_NAME, ["-v", f"{htpasswd}:/auth/htpasswd:ro",
                                                    "-e", "REGISTRY_AUTH=htpasswd",
                                                    "-e", "REGISTRY_AUTH_HTPASSWD_REALM=labkit",
                                                    "-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd"], created)
                step(steps[1])
                _create_cluster(sh, kubeconfig, home.kind, timeout, created)
                step(steps[2])
                _wire_registry(sh)
                state = LabState(cls.backend, info={"cluster": CLUSTER, "kubeconfig": str(kubeconfig)})
                lab = cls(home, state)
                lab._publish_registry()
                step(steps[3])
                lab._install_controllers(sh, timeout)
            state.save(home)
            return lab
        except BaseException:
            _teardown(sh, created)  # nothing half-made is left behind
            clear(home)
            raise

    @classmethod
    def attach(cls, home: LabHome, state: LabState) -> KindLab:
        preflight()
        import sh

        clusters = str(sh.kind("get", "clusters")).split()
        if state.info.get("cluster") not in clusters:
            raise LabError(f"the kind cluster {state.info.get('cluster')!r} recorded in {home.root} is gone",
                           hint="`labkit lab down` then `labkit lab up --backend kind`")
        return cls(home, state)

    def stop(self) -> None:
        import sh

        _teardown(sh, [f"cluster:{CLUSTER}", *(f"container:{name}" for name in REGISTRIES)])
        clear(self.home)

    @property
    def registry(self) -> RegistryInfo:
        return RegistryInfo(host=PUSH_HOST, pod_host=POD_HOST)

    @property
    def private_registry(self) -> PrivateRegistry:
        return PrivateRegistry(host=PRIVATE_PUSH_HOST, pod_host=PRIVATE_POD_HOST, username=PRIVATE_USER,
                               password=self.home.private_password())

    def prepare_policy(self, doc: dict[str, Any]) -> dict[str, Any]:
        return _allow_lab_registry(doc)

    def status(self) -> dict[str, Any]:
        health = {}
        for name, ns in (("kyverno", "kyverno"), ("policy-controller", "cosign-system")):
            ready = self.kubectl("get", "deployments", "-n", ns, "-o", "jsonpath={range .items[*]}"
                                 "{.metadata.name}={.status.readyReplicas}/{.spec.replicas} {end}")
            health[name] = ready.stdout.strip() if ready.returncode == 0 else ready.stderr.strip()
        return {"backend": self.backend, "home": str(self.home.root), "registry": PUSH_HOST,
                "webhook": "in-cluster: kyverno-svc.kyverno, policy-controller-webhook.cosign-system",
                "kubeconfig": self.kubeconfig, "health": health}

    def _publish_registry(self) -> None:
        """KEP-1755's ``local-registry-hosting`` ConfigMap, as kind's recipe writes it."""
        hosting = {"host": PUSH_HOST, "hostFromContainerRuntime": POD_HOST, "hostFromClusterNetwork": POD_HOST,
                   "help": "https://kind.sigs.k8s.io/docs/user/local-registry/"}
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
                "data": {"localRegistryHosting.v1": yaml.safe_dump(hosting)}}
        self.must("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def _install_controllers(self, sh: Any, timeout: float) -> None:
        helm = sh.Command("helm").bake("--kubeconfig", self.kubeconfig)
        for repo, url, chart, version, namespace in (KYVERNO_CHART, POLICY_CONTROLLER_CHART):
            helm("repo", "add", "--force-update", repo, url)
            helm("upgrade", "--install", chart.split("/")[1], chart, "--version", version, "--namespace", namespace,
                 "--create-namespace", "--wait", "--timeout", f"{int(timeout)}s")
        # The webhooks answer once their Deployments are available and configurations exist.
        for namespace in ("kyverno", "cosign-system"):
            self.must("wait", "--for=condition=Available", "deployment", "--all", "-n", namespace,
                       f"--timeout={int(timeout)}s")
        self.must("wait", "--for=create", "mutatingwebhookconfiguration/policy.sigstore.dev",
                   f"--timeout={int(timeout)}s")


def _allow_lab_registry(doc: dict[str, Any]) -> dict[str, Any]:
    """Kyverno verifies from a pod over HTTPS unless told the lab registries are plain HTTP."""
    doc = json.loads(json.dumps(doc))
    spec = doc.get("spec") or {}
    pod_hosts = (POD_HOST, PRIVATE_POD_HOST)
    if doc.get("kind") == "ImageValidatingPolicy":
        if any(host in str(g) for g in spec.get("matchImageReferences") or [] for host in pod_hosts):
            spec.setdefault("credentials", {})["allowInsecureRegistry"] = True
        return doc
    for rule in spec.get("rules") or []:
        for verify in rule.get("verifyImages") or []:
            if any(str(ref).startswith(pod_hosts) for ref in verify.get("imageReferences") or []):
                verify.setdefault("imageRegistryCredentials", {})["allowInsecureRegistry"] = True
    return doc


def _ensure_registry(sh: Any, name: str, extra: list[str], created: list[str]) -> None:
    port = REGISTRIES[name][0]
    running = str(sh.docker("inspect", "-f", "{{.State.Running}}", name, _ok_code=[0, 1])).strip()
    if running == "false":
        sh.docker("start", name)
    elif running != "true":
        sh.docker("run", "-d", "--restart=always", "-p", f"127.0.0.1:{port}:5000", "--network", "bridge",
                  "-e", "REGISTRY_STORAGE_DELETE_ENABLED=true", *extra, "--name", name, REGISTRY_IMAGE)
        created.append(f"container:{name}")


def _write_htpasswd(path: Path, password: str) -> Path:
    """distribution's htpasswd file: bcrypt only (it refuses other hash types)."""
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    path.write_text(f"{PRIVATE_USER}:{hashed}\n")
    path.chmod(0o644)  # read by the registry process inside its container
    return path


def _create_cluster(sh: Any, kubeconfig: Path, workdir: Path, timeout: float, created: list[str]) -> None:
    config = workdir / "kind-config.yaml"
    config.write_text(yaml.safe_dump({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4",
                                      "containerdConfigPatches": [_CONTAINERD_PATCH]}))
    created.append(f"cluster:{CLUSTER}")
    sh.kind("create", "cluster", "--name", CLUSTER, "--image", NODE_IMAGE, "--config", str(config),
            "--kubeconfig", str(kubeconfig), "--wait", f"{int(timeout)}s")


def _wire_registry(sh: Any) -> None:
    """hosts.toml on every node for both names of each registry, and the registries on the kind network."""
    nodes = str(sh.kind("get", "nodes", "--name", CLUSTER)).split()
    for container, (_port, alias, names) in REGISTRIES.items():
        hosts = f'[host."http://{container}:5000"]\n'
        for node in nodes:
            for name in names:
                directory = f"/etc/containerd/certs.d/{name}"
                sh.docker("exec", node, "mkdir", "-p", directory)
                sh.docker("exec", "-i", node, "cp", "/dev/stdin", f"{directory}/hosts.toml", _in=hosts)
        networks = str(sh.docker("inspect", "-f", "{{json .NetworkSettings.Networks}}", container))
        if '"kind"' not in networks:
            sh.docker("network", "connect", "--alias", alias, "kind", container)
        _wait_resolves(sh, container, alias)


def _wait_resolves(sh: Any, container: str, alias: str) -> None:
    for _ in range(60):  # Docker's DNS answers for the alias once the connection is made
        if sh.docker("exec", f"{CLUSTER}-control-plane", "getent", "hosts", alias, _ok_code=[0, 2]).strip():
            return
        time.sleep(1)
    raise LabError(f"{alias} does not resolve on the kind network",
                   hint=f"check `docker network inspect kind` lists {container} with alias {alias}")


def _teardown(sh: Any, created: list[str]) -> None:
    for item in reversed(created):
        what, _, name = item.partition(":")
        if what == "cluster":
            sh.kind("delete", "cluster", "--name", name, _ok_code=[0, 1])
        else:
            sh.docker("rm", "-f", name, _ok_code=[0, 1])
