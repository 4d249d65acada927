"""What the kind lab creates, as data: pure functions :mod:`labkit.lab.kind` runs, checked without
Docker in ``tests/unit/test_kind_setup.py`` against kind's recipe and the charts' own files.

Sources (each fact below names its file): kind v0.32.0 (``site/static/examples/kind-with-registry.sh``,
``images/base``), containerd v2.3.1 (the node image's), the Kyverno chart 3.9.1 and Kyverno v1.19.1,
the policy-controller chart 0.10.6 and policy-controller v0.13.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labkit._internal.files import write_atomic

KIND_VERSION = "v0.32.0"
NODE_IMAGE = "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
CLUSTER = "labkit"
KIND_NETWORK = "kind"  # the Docker network kind puts its nodes on
REGISTRY_IMAGE = "registry:3.0.0"
CONTAINER_PORT = 5000  # distribution's port inside its container
RECIPE_REGISTRY, RECIPE_PORT = "kind-registry", 5001  # kind's local-registry recipe
OWN_REGISTRY, PRIVATE_REGISTRY = "labkit-registry", "labkit-registry-private"
ALIAS, PRIVATE_ALIAS = "registry.local", "registry-private.local"
DELETE_ENABLED = "REGISTRY_STORAGE_DELETE_ENABLED=true"  # lab reset deletes signatures
CERTS_D = "/etc/containerd/certs.d"


@dataclass(frozen=True)
class Registry:
    """A registry container: published on ``localhost:port`` for pushes from this machine, and
    ``alias:5000`` on the kind network for nodes (through ``hosts.toml``) and pods (through DNS)."""

    container: str
    port: int
    alias: str

    @property
    def push_host(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pod_host(self) -> str:
        return f"{self.alias}:{CONTAINER_PORT}"

    @property
    def names(self) -> tuple[str, str]:
        return self.push_host, self.pod_host


def registries(registry_port: int | None = None) -> tuple[Registry, Registry]:
    """The lab registry and the private one. By default the lab registry is kind's recipe one
    (``kind-registry`` on 5001, reused when one fits); with ``registry_port`` both are the lab's own
    containers, on that port and the next."""
    main = (Registry(RECIPE_REGISTRY, RECIPE_PORT, ALIAS) if registry_port is None
            else Registry(OWN_REGISTRY, registry_port, ALIAS))
    return main, Registry(PRIVATE_REGISTRY, main.port + 1, PRIVATE_ALIAS)


def kind_config() -> dict[str, Any]:
    """The cluster's kind config: kind's recipe without its ``containerdConfigPatches``.

    The recipe's patch sets ``config_path = "/etc/containerd/certs.d"``, which its own comment calls
    unnecessary for node images from kind v0.27.0 on. kind v0.32.0's node image runs containerd
    v2.3.1 (``images/base/Dockerfile``), whose CRI images plugin defaults ``config_path`` to
    ``/etc/containerd/certs.d:/etc/docker/certs.d`` when neither it nor mirrors are set
    (``plugins/cri/images/plugin.go``), and kind's ``config.toml`` sets neither. A patch would
    only restate the default, under a containerd 1.x key the node migrates."""
    return {"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "name": CLUSTER}


def hosts_toml(registry: Registry) -> str:
    """containerd's ``hosts.toml`` sending pulls to the registry container over HTTP, as kind's recipe writes it."""
    return f'[host."http://{registry.container}:{CONTAINER_PORT}"]\n'


def hosts_files(regs: Iterable[Registry]) -> dict[str, str]:
    """Every ``hosts.toml`` a node needs: one per name of each registry (pushes and pods use different names)."""
    return {f"{CERTS_D}/{name}/hosts.toml": hosts_toml(reg) for reg in regs for name in reg.names}


def local_registry_hosting(main: Registry) -> dict[str, Any]:
    """KEP-1755's ``local-registry-hosting`` ConfigMap, as kind's recipe writes it, with the names
    the container runtime and the cluster network use."""
    hosting = {"host": main.push_host, "hostFromContainerRuntime": main.pod_host,
               "hostFromClusterNetwork": main.pod_host, "help": "https://kind.sigs.k8s.io/docs/user/local-registry/"}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "local-registry-hosting", "namespace": "kube-public"},
            "data": {"localRegistryHosting.v1": yaml.safe_dump(hosting)}}


def _repository(image: str) -> str:
    name = image.split("@", 1)[0]
    head, _, tail = name.rpartition("/")
    return f"{head}/{tail.split(':', 1)[0]}" if head else tail.split(":", 1)[0]


def registry_mismatches(inspect: Mapping[str, Any], registry: Registry) -> list[str]:
    """Why an existing container (its ``docker inspect`` object) cannot serve as ``registry``; empty
    when it can. The lab changes nothing in a container it did not create, except connecting it
    to the kind network under the alias when it is not on that network yet."""
    config, host = inspect.get("Config") or {}, inspect.get("HostConfig") or {}
    problems = []
    image = str(config.get("Image", ""))
    if _repository(image) not in ("registry", "library/registry", "docker.io/library/registry"):
        problems.append(f"its image is {image!r}, not distribution's registry")
    if not (inspect.get("State") or {}).get("Running"):
        problems.append("it is not running")
    bindings = (host.get("PortBindings") or {}).get(f"{CONTAINER_PORT}/tcp") or []
    if str(registry.port) not in [b.get("HostPort") for b in bindings]:
        problems.append(f"it does not publish its port {CONTAINER_PORT} on {registry.port}")
    if DELETE_ENABLED not in (config.get("Env") or []):
        problems.append(f"deletes are off (no {DELETE_ENABLED}), so `lab reset` could not remove signatures")
    network = ((inspect.get("NetworkSettings") or {}).get("Networks") or {}).get(KIND_NETWORK)
    if network is not None and registry.alias not in (network.get("Aliases") or []):
        problems.append(f"it is on the {KIND_NETWORK} network without the alias {registry.alias} "
                        "(Docker adds aliases only when connecting)")
    return problems


def resolved_elsewhere(getent_ahosts: str, address: str) -> list[str]:
    """Addresses other than ``address`` that ``getent ahostsv4 NAME`` printed: another container
    holds the same alias on the network, and pulls would go to either."""
    return sorted({line.split()[0] for line in getent_ahosts.splitlines() if line.strip()} - {address})


@dataclass
class Created:
    """What this lab created, kept in ``$LABKIT_HOME/kind/created.json``: the only things ``stop`` removes."""

    cluster: str | None = None
    containers: list[str] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)  # containers it did not create, connected to kind
    helm_releases: list[str] = field(default_factory=list)  # "namespace/name", inside the cluster

    @classmethod
    def load(cls, path: Path) -> Created:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return cls()

    def save(self, path: Path) -> None:
        write_atomic(path, (json.dumps(asdict(self), indent=2) + "\n").encode())


def teardown_commands(created: Created) -> list[list[str]]:
    """The commands that remove what ``created`` lists, and nothing else. Helm releases live in the
    cluster and go with it, so they are uninstalled only where the cluster is not the lab's."""
    commands = []
    if created.cluster is None:
        for release in created.helm_releases:
            namespace, _, name = release.partition("/")
            commands.append(["helm", "uninstall", name, "--namespace", namespace])
    else:
        commands.append(["kind", "delete", "cluster", "--name", created.cluster])
    commands += [["docker", "network", "disconnect", KIND_NETWORK, name] for name in created.connections]
    commands += [["docker", "rm", "-f", name] for name in created.containers]
    return commands


# --- the engines (Helm) ----------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    release: str
    chart: str
    repo: str
    version: str
    app_version: str
    namespace: str

    @property
    def release_id(self) -> str:
        return f"{self.namespace}/{self.release}"


KYVERNO = Chart("kyverno", "kyverno", "https://kyverno.github.io/kyverno/", "3.9.1", "v1.19.1", "kyverno")
POLICY_CONTROLLER = Chart("policy-controller", "policy-controller", "https://sigstore.github.io/helm-charts",
                          "0.10.6", "0.13.1", "cosign-system")
CHARTS = (KYVERNO, POLICY_CONTROLLER)

# policy-controller v0.13.1's webhook configurations (cmd/webhook/main.go flag defaults; the chart
# 0.10.6 names them from cosign.webhookName and webhook.webhookNames). Helm creates them without a
# CA bundle; the webhook's knative reconcilers fill it in once it runs, and until then the API
# server cannot call them.
PC_WEBHOOKS = (("mutatingwebhookconfiguration", "policy.sigstore.dev"),
               ("validatingwebhookconfiguration", "policy.sigstore.dev"),
               ("mutatingwebhookconfiguration", "defaulting.clusterimagepolicy.sigstore.dev"),
               ("validatingwebhookconfiguration", "validating.clusterimagepolicy.sigstore.dev"))


def helm_values(chart: Chart) -> dict[str, Any]:
    """The values labkit gives ``chart`` (checked against the chart's values in tests/unit).

    Kyverno v1.19.1's go-containerregistry (v0.21.8) treats only ``*.localhost`` as plain HTTP, no
    longer ``*.local``, so it needs ``features.registryClient.allowInsecure``: the chart turns it
    into ``--allowInsecureRegistry`` on the admission and reports controllers
    (``templates/_helpers.tpl``), and policies stay as learners write them. policy-controller
    v0.13.1 needs nothing: its go-containerregistry (v0.20.3) still treats ``*.local`` as HTTP."""
    if chart == KYVERNO:
        return {"features": {"registryClient": {"allowInsecure": True}}}
    return {}


def helm_environment(helm_dir: Path) -> dict[str, str]:
    """Helm's own directories under the lab's home, so the user's Helm configuration, repositories
    and cache are never read or written."""
    return {"HELM_CONFIG_HOME": str(helm_dir / "config"), "HELM_CACHE_HOME": str(helm_dir / "cache"),
            "HELM_DATA_HOME": str(helm_dir / "data")}


def helm_install_args(chart: Chart, kubeconfig: Path | None, values: Path | None, timeout: float) -> list[str]:
    """``helm upgrade --install`` straight from the chart's repository URL (no ``helm repo add``);
    without ``kubeconfig``/``values``, Helm's own default and the chart's values."""
    return ["helm", "upgrade", "--install", chart.release, chart.chart, "--repo", chart.repo,
            "--version", chart.version, "--namespace", chart.namespace, "--create-namespace",
            *(["--kubeconfig", str(kubeconfig)] if kubeconfig else []), *(["--values", str(values)] if values else []),
            "--wait", "--timeout", f"{int(timeout)}s"]


def webhooks_without_ca(configurations: Sequence[Mapping[str, Any]],
                        wanted: Iterable[tuple[str, str]] = PC_WEBHOOKS) -> list[str]:
    """Which of ``wanted`` (kind, name) are missing from ``configurations`` (kubectl's items) or have
    an entry whose ``clientConfig.caBundle`` is still empty."""
    ready = {(str(c.get("kind", "")).lower(), c.get("metadata", {}).get("name")) for c in configurations
             if c.get("webhooks") and all((w.get("clientConfig") or {}).get("caBundle") for w in c["webhooks"])}
    return [f"{kind}/{name}" for kind, name in wanted if (kind, name) not in ready]


def deployment_health(deployments: Mapping[str, Any]) -> str:
    """``name=ready/wanted`` for every Deployment in kubectl's list, ``0`` where none is ready
    (the API server omits ``readyReplicas`` then)."""
    return " ".join(f"{d['metadata']['name']}={(d.get('status') or {}).get('readyReplicas') or 0}/"
                    f"{(d.get('spec') or {}).get('replicas', 1)}" for d in deployments.get("items") or [])
