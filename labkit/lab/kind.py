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
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from labkit._internal.progress import interactive, step_bar
from labkit.errors import LabError
from labkit.lab.apiserver import POLICY_GROUPS, kind_slash_name
from labkit.lab.base import WORKLOAD_KINDS, AdmissionResult, Lab, PrivateRegistry, RegistryInfo, load_documents
from labkit.lab.signatures import delete_signatures
from labkit.lab.state import PRIVATE_USER, LabHome, LabState, clear
from labkit.policy.images import Engine, extract_images

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
LAB_NAMESPACES_KEEP = {"default", "kube-system", "kube-public", "kube-node-lease", "local-path-storage",
                       "kyverno", "cosign-system"}
POLICY_RESOURCES = ("clusterpolicies.kyverno.io", "policies.kyverno.io",
                    "imagevalidatingpolicies.policies.kyverno.io", "clusterimagepolicies.policy.sigstore.dev")
_CONTAINERD_PATCH = """[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
"""
_DENIED_BY = re.compile(r'admission webhook "([^"]+)" denied the request')


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
        import kubernetes  # noqa: F401
        import sh  # noqa: F401
    except ImportError as exc:
        raise LabError(f"the kind backend needs the Python package {exc.name!r}",
                       hint="pip install 'labkit[kind]', or use the embedded backend") from None


class KindLab(Lab):
    backend = "kind"

    def __init__(self, home: LabHome, state: LabState) -> None:
        super().__init__(home, state)
        from kubernetes import client, config

        self.kubeconfig = state.info["kubeconfig"]
        api = config.new_client_from_config(config_file=self.kubeconfig)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    @classmethod
    def start(cls, home: LabHome, *, timeout: float = 600.0) -> KindLab:
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
                _ensure_registry(sh, PRIVATE_NAME, ["-v", f"{htpasswd}:/auth/htpasswd:ro", "-e", "REGISTRY_AUTH=htpasswd",
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

    # --- objects ---------------------------------------------------------------------------

    def apply(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        docs, where = load_documents(source)
        results = []
        for doc in docs:
            if doc.get("kind") in WORKLOAD_KINDS:
                results.append(self._create(doc, where))
            else:
                results.append(self._apply(doc))
        return results

    def create(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        docs, where = load_documents(resource)
        if len(docs) != 1:
            raise LabError(f"lab.create takes one object, got {len(docs)}", hint="use lab.apply for several")
        return self._create(docs[0], where, dry_run=dry_run)

    def _apply(self, doc: dict[str, Any]) -> AdmissionResult:
        group = str(doc.get("apiVersion", "")).rpartition("/")[0]
        if group in ("kyverno.io", "policies.kyverno.io"):
            doc = _allow_lab_registry(doc)
        out = self._kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        meta = doc.get("metadata") or {}
        if out.returncode != 0:
            return AdmissionResult(False, out.stderr.strip(), kind=str(doc["kind"]), name=str(meta.get("name", "")),
                                   controller=POLICY_GROUPS.get(group))
        if group in ("kyverno.io", "policies.kyverno.io"):
            # Kyverno registers a policy's webhooks asynchronously; Ready means they are in place.
            self._kubectl("wait", "--for=condition=Ready", f"{str(doc['kind']).lower()}.{group}/{meta.get('name')}",
                          "--timeout=120s", *(["-n", meta["namespace"]] if meta.get("namespace") else []))
        return AdmissionResult(True, out.stdout.strip(), kind=str(doc["kind"]), name=str(meta.get("name", "")),
                               namespace=str(meta.get("namespace", "")))

    def _create(self, doc: Mapping[str, Any], source: str | None, *, dry_run: bool = False) -> AdmissionResult:
        meta = doc.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        # One document at a time through stdin; kubectl names the file as it would have read it.
        out = self._kubectl("create", "-o", "json", *(["--dry-run=server"] if dry_run else []), "-f", "-",
                            stdin=json.dumps(doc))
        warnings = tuple(line[len("Warning: "):] for line in out.stderr.splitlines() if line.startswith("Warning: "))
        base = dict(kind=str(doc.get("kind")), name=str(meta.get("name", "")), namespace=namespace, warnings=warnings)
        if out.returncode != 0:
            message = "\n".join(line for line in out.stderr.splitlines() if not line.startswith("Warning: "))
            # an object, not a file: no `error when creating "…"`, as in the embedded lab
            message = message.replace('error when creating "STDIN": ',
                                      f'error when creating "{source}": ' if source else "")
            webhook = _DENIED_BY.search(message)
            name = webhook.group(1) if webhook else None
            controller = None if name is None else ("policy-controller" if "sigstore" in name else "kyverno")
            return AdmissionResult(False, message.strip(), denied_by=name, controller=controller, **base)
        created = json.loads(out.stdout)
        images = tuple(c.image for c in extract_images(created, Engine.KYVERNO) or [])
        message = f"{kind_slash_name(created)} created" + (" (server dry run)" if dry_run else "")
        return AdmissionResult(True, message, images=images, object=created, **base)

    def delete(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        results = []
        for doc in load_documents(source)[0]:
            meta = doc.get("metadata") or {}
            out = self._kubectl("delete", "-f", "-", stdin=yaml.safe_dump(doc))
            ok = out.returncode == 0
            results.append(AdmissionResult(ok, (out.stdout if ok else out.stderr).strip(), kind=str(doc.get("kind")),
                                           name=str(meta.get("name", "")), namespace=str(meta.get("namespace", ""))))
        return results

    def policies(self) -> list[dict[str, Any]]:
        out = self._kubectl("get", ",".join(POLICY_RESOURCES), "--all-namespaces", "-o", "json")
        if out.returncode != 0:
            raise LabError(f"kubectl get policies failed: {out.stderr.strip()}")
        return list(json.loads(out.stdout).get("items", []))

    def label_namespace(self, namespace: str, labels: Mapping[str, str | None]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise LabError(f"cannot read namespace {namespace}: {exc.reason}") from None
            self.core.create_namespace({"metadata": {"name": namespace}})
        self.core.patch_namespace(namespace, {"metadata": {"labels": dict(labels)}})  # None deletes a label

    def reports(self, *, settle: float = 30.0) -> list[dict[str, Any]]:
        """PolicyReports once Kyverno's reports controller has caught up: it aggregates admission
        results asynchronously, so poll until the result count stops changing (at most ``settle`` s)."""
        deadline, last = time.monotonic() + settle, None
        while True:
            listed = self.custom.list_cluster_custom_object("wgpolicyk8s.io", "v1alpha2", "policyreports")
            items = list(listed.get("items", []))
            count = sum(len(r.get("results") or []) for r in items)
            if (count and count == last) or time.monotonic() > deadline:
                return items
            last = count
            time.sleep(3)

    def status(self) -> dict[str, Any]:
        health = {}
        for name, ns in (("kyverno", "kyverno"), ("policy-controller", "cosign-system")):
            ready = self._kubectl("get", "deployments", "-n", ns, "-o",
                                  "jsonpath={range .items[*]}{.metadata.name}={.status.readyReplicas}/{.spec.replicas} {end}")
            health[name] = ready.stdout.strip() if ready.returncode == 0 else ready.stderr.strip()
        return {"backend": self.backend, "home": str(self.home.root), "registry": PUSH_HOST,
                "webhook": "in-cluster: kyverno-svc.kyverno, policy-controller-webhook.cosign-system",
                "kubeconfig": self.kubeconfig, "health": health}

    def reset(self) -> None:
        for resource in POLICY_RESOURCES:
            self._kubectl("delete", resource, "--all", "--all-namespaces", "--ignore-not-found")
        for ns in self.core.list_namespace().items:
            if ns.metadata.name not in LAB_NAMESPACES_KEEP:
                self.core.delete_namespace(ns.metadata.name)
        self._kubectl("delete", "pods,deployments,statefulsets,daemonsets,jobs,cronjobs", "--all", "-n", "default",
                      "--ignore-not-found")
        self._kubectl("delete", "secrets", "-n", "default", "--field-selector", "type=kubernetes.io/dockerconfigjson")
        delete_signatures(PUSH_HOST)
        delete_signatures(PRIVATE_PUSH_HOST, self.private_registry.credentials())

    # --- set-up steps ----------------------------------------------------------------------

    def _kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=stdin,
                              capture_output=True, text=True, timeout=300)

    def _publish_registry(self) -> None:
        """KEP-1755's ``local-registry-hosting`` ConfigMap, as kind's recipe writes it."""
        hosting = {"host": PUSH_HOST, "hostFromContainerRuntime": POD_HOST, "hostFromClusterNetwork": POD_HOST,
                   "help": "https://kind.sigs.k8s.io/docs/user/local-registry/"}
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
                "data": {"localRegistryHosting.v1": yaml.safe_dump(hosting)}}
        self._must("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def _install_controllers(self, sh: Any, timeout: float) -> None:
        helm = sh.Command("helm").bake("--kubeconfig", self.kubeconfig)
        for repo, url, chart, version, namespace in (KYVERNO_CHART, POLICY_CONTROLLER_CHART):
            helm("repo", "add", "--force-update", repo, url)
            helm("upgrade", "--install", chart.split("/")[1], chart, "--version", version, "--namespace", namespace,
                 "--create-namespace", "--wait", "--timeout", f"{int(timeout)}s")
        # The webhooks answer once their Deployments are available and configurations exist.
        for namespace in ("kyverno", "cosign-system"):
            self._must("wait", "--for=condition=Available", "deployment", "--all", "-n", namespace,
                       f"--timeout={int(timeout)}s")
        self._must("wait", "--for=create", "mutatingwebhookconfiguration/policy.sigstore.dev",
                   f"--timeout={int(timeout)}s")

    def _must(self, *args: str, stdin: str | None = None) -> None:
        out = self._kubectl(*args, stdin=stdin)
        if out.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")


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
