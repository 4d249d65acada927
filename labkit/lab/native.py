"""The native backend: the real kube-apiserver, etcd, Kyverno and policy-controller as local processes.

No Docker, no kubelet: etcd and kube-apiserver on loopback, a kube-controller-manager running only the
namespace and ClusterRole-aggregation controllers (so namespaces can be deleted and the built-in
``view`` role has rules), Kyverno's admission and reports
controllers registering their webhooks by URL, and policy-controller reached through an
ExternalName Service that the API server resolves to ``127.0.0.1`` (``docs/native-backend.md``
says why each is wired so). Every binary is built from the Go module proxy by
``tools/reference-tools.sh native``; the engines' CRDs and configuration come from their own
release sources, copied beside the binaries by the same script.

Pods are admitted or denied by the real webhooks and stored by the real API server, but never
run: there is no scheduler and no kubelet. The registries are labkit's own (as in the embedded
lab), so ``lab.registry.host`` is what pushes, pods and policies all name.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit._internal.tools import tools_dir
from labkit.admission.tls import ensure_tls
from labkit.errors import LabError
from labkit.lab.base import PrivateRegistry, RegistryInfo
from labkit.lab.kubectl import KubectlLab, run_kubectl
from labkit.lab.ports import PortPlan
from labkit.lab.processes import require_alive, require_running_ports, running_lab, spawn, terminate
from labkit.lab.registries import REGISTRY_PORTS, start_registries
from labkit.lab.sockets import holder, listening
from labkit.lab.state import PRIVATE_USER, LabHome, LabState, Service, clear

KUBERNETES = "v1.36.3"
ETCD = "v3.6.8"
KYVERNO = "v1.19.1"
POLICY_CONTROLLER = "v0.13.1"
# name in the tools cache → what it is (for errors and `lab status`)
BINARIES = {
    f"etcd-{ETCD}": "etcd",
    f"kube-apiserver-{KUBERNETES}": "kube-apiserver",
    f"kube-controller-manager-{KUBERNETES}": "kube-controller-manager",
    f"kubectl-{KUBERNETES}": "kubectl",
    f"kyverno-admission-controller-{KYVERNO}": "Kyverno admission controller",
    f"kyverno-reports-controller-{KYVERNO}": "Kyverno reports controller",
    f"policy-controller-webhook-{POLICY_CONTROLLER}": "policy-controller webhook",
}
KYVERNO_CONFIG = f"kyverno-{KYVERNO}-config"  # config/crds/** and charts/kyverno/values.yaml
# Kyverno versions a native lab can run: the default, and v1.17.0, the last release whose
# ImageValidatingPolicy looked up credentials.secrets with no namespace (#15120, fixed in v1.17.1 by
# #15136). v1.17.0 is built only on request: `tools/reference-tools.sh kyverno-v1.17.0`.
KYVERNO_VERSIONS = (KYVERNO, "v1.17.0")
KYVERNO_VERSION_ENV = "LABKIT_NATIVE_KYVERNO"  # e.g. v1.17.0; what launch(kyverno=None) runs
POLICY_CONTROLLER_CONFIG = f"policy-controller-{POLICY_CONTROLLER}-config"  # config/*.yaml
SERVICE_CIDR = "10.96.0.0/24"  # required by kube-apiserver; nothing routes to it (no kube-proxy)
PC_SERVICE = ("cosign-system", "webhook")
PC_WEBHOOKS = ("policy.sigstore.dev", "defaulting.clusterimagepolicy.sigstore.dev",
               "validating.clusterimagepolicy.sigstore.dev")
KYVERNO_ENV = {"KYVERNO_NAMESPACE": "kyverno", "KYVERNO_SERVICEACCOUNT_NAME": "kyverno-admission-controller",
               "KYVERNO_DEPLOYMENT": "kyverno-admission-controller", "INIT_CONFIG": "kyverno",
               "METRICS_CONFIG": "kyverno-metrics"}
START_TIMEOUT = 180.0
STOP_ORDER = (("policy-controller", "kyverno-reports", "kyverno"), ("kube-controller-manager", "kube-apiserver"),
              ("etcd",), ("registry", "private-registry"))
# policy-controller v0.13.1 listens on all interfaces on fixed ports: its --secure-port flag is
# parsed after knative has copied the server options (cmd/webhook/main.go), so 8443 it is.
PC_PORT = 8443
# what `labkit lab up --port NAME=PORT` can choose; kept in LABKIT_HOME/ports.json
PORT_NAMES = (*REGISTRY_PORTS, "etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kyverno",
              "kyverno-metrics", "kyverno-reports", "policy-controller-profiling")
# The ports the stored cluster depends on: a cluster made with others is made afresh.
CLUSTER_PORTS = ("etcd", "etcd-peer", "kube-apiserver", "kyverno")
CLUSTER_FILE = "cluster.json"  # written once a start has finished: its key (_Starter.cluster_key)
PC_FIXED_PORTS = {PC_PORT: "policy-controller's webhook always listens on :8443",
                  8080: "policy-controller's health probes always listen on :8080 (knative injection/health_check.go)"}


def kyverno_version(choice: str | None = None) -> str:
    """The Kyverno version a native lab runs: ``choice``, else ``LABKIT_NATIVE_KYVERNO``, else
    :data:`KYVERNO`; one of :data:`KYVERNO_VERSIONS` (a leading ``v`` may be left out)."""
    version = choice or os.environ.get(KYVERNO_VERSION_ENV) or KYVERNO
    version = version if version.startswith("v") else f"v{version}"
    if version not in KYVERNO_VERSIONS:
        raise LabError(f"the native lab runs Kyverno {' or '.join(KYVERNO_VERSIONS)}, not {version}",
                       hint=f"unset {KYVERNO_VERSION_ENV} for the default, {KYVERNO}")
    return version


def binaries(kyverno: str = KYVERNO) -> dict[str, str]:
    """:data:`BINARIES` with Kyverno at ``kyverno``."""
    return {name.replace(KYVERNO, kyverno) if "kyverno" in name else name: what for name, what in BINARIES.items()}


def missing_binaries(directory: Path | None = None, kyverno: str = KYVERNO) -> list[str]:
    directory = directory or tools_dir()
    wanted = [*binaries(kyverno), f"kyverno-{kyverno}-config", POLICY_CONTROLLER_CONFIG]
    return [name for name in wanted if not (directory / name).exists()]


class NativeLab(KubectlLab):
    backend = "native"

    def __init__(self, home: LabHome, state: LabState) -> None:
        super().__init__(home, state)
        self.kubectl_binary = str(tools_dir() / f"kubectl-{KUBERNETES}")

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def launch(cls, home: LabHome, *, timeout: float = START_TIMEOUT, ports: Mapping[str, int] | None = None,
               fresh_ports: bool = False, kyverno: str | None = None) -> NativeLab:
        """Start the control plane and engines in ``home``, or return the lab already running there.
        Ports are kept in ``home`` as on the embedded lab (:mod:`labkit.lab.ports`). ``kyverno``:
        the Kyverno version to run (:func:`kyverno_version`; a cluster made with another is made afresh)."""
        version = kyverno_version(kyverno)
        chosen = bool(kyverno or os.environ.get(KYVERNO_VERSION_ENV))  # else any running Kyverno will do
        state = running_lab(home, cls.backend)
        if state is not None:
            require_running_ports(state, ports, fresh_ports)
            running = state.info.get("kyverno", KYVERNO)
            if chosen and running != version:
                raise LabError(f"the native lab in {home.root} runs Kyverno {running}, not {version}",
                               hint="`labkit lab down` first to start it with another Kyverno")
            return cls(home, state)
        missing = missing_binaries(kyverno=version)
        if missing:
            build = ("`make tools` (needs Go; ~15-30 min cold)" if version == KYVERNO
                     else f"`tools/reference-tools.sh kyverno-{version}` (needs Go; see docs/native-backend.md)")
            raise LabError(f"the native lab needs {', '.join(missing)} in {tools_dir()}",
                           hint=f"build them from the Go module proxy: {build}, or use the embedded backend")
        plan = PortPlan(home, PORT_NAMES, ports, fresh_ports)
        _require_free(PC_FIXED_PORTS)
        plan.require_free()
        home.create()
        return _Starter(home, timeout, plan, version).run(cls)

    @classmethod
    def attach(cls, home: LabHome, state: LabState) -> NativeLab:
        require_alive(home, state, hint="`labkit lab up --backend native` starts it again (`labkit lab down` "
                                        f"first clears what is left); logs are in {home.logs}")
        return cls(home, state)

    def stop_services(self) -> None:
        _stop(self.state.services)
        clear(self.home)

    def restart_kyverno(self) -> None:
        """Start Kyverno's admission controller afresh, with an empty TUF cache. Its TUF client is
        one per process and keeps the first mirror any attestor names (sigstore v1.10.9
        pkg/tuf/client.go: a ``sync.Once``, and the mirror remembered in the cache's
        ``remote.json``): once a keyless ImageValidatingPolicy has named the lab's TUF repository,
        every other attestor of that process looks there too, and the other way round."""
        _stop({"kyverno": self.state.services["kyverno"]})
        starter = _Starter(self.home, START_TIMEOUT, PortPlan(self.home, PORT_NAMES, {}),
                           self.state.info.get("kyverno", KYVERNO))
        shutil.rmtree(starter.kyverno_home, ignore_errors=True)
        starter.kyverno_admission()
        self.state.services["kyverno"] = starter.services["kyverno"]
        self.state.save(self.home)

    # --- the interface ---------------------------------------------------------------------

    @property
    def registry(self) -> RegistryInfo:
        host = f"127.0.0.1:{self.state.services['registry'].port}"
        return RegistryInfo(host=host, pod_host=host)  # the engines run on this machine too

    @property
    def private_registry(self) -> PrivateRegistry:
        host = f"127.0.0.1:{self.state.services['private-registry'].port}"
        return PrivateRegistry(host=host, pod_host=host, username=PRIVATE_USER, password=self.home.private_password())

    def status(self) -> dict[str, Any]:
        services = self.state.services
        listens = {name: listening(s.pid) for name, s in services.items()}
        processes = {name: {"pid": s.pid, "alive": s.alive(), "listens": listens[name]} for name, s in services.items()}
        health = {name: "ok" if p["alive"] else "exited (see its log in logs/)" for name, p in processes.items()}
        ready = self.kubectl("get", "--raw", "/readyz")
        health["kube-apiserver"] = "ok" if ready.returncode == 0 else f"not ready: {ready.stderr.strip()}"
        beyond = sorted({addr for addrs in listens.values() for addr in addrs
                         if not addr.startswith(("127.", "[::1]:"))})
        return {"backend": self.backend, "home": str(self.home.root), "registry": self.registry.host,
                "webhook": f"kyverno https://127.0.0.1:{services['kyverno'].port}, policy-controller "
                           f"https://127.0.0.1:{services['policy-controller'].port} "
                           "(via Service cosign-system/webhook)",
                "kubeconfig": self.kubeconfig, "kubectl": self.kubectl_binary, "processes": processes,
                "beyond_loopback": beyond, "health": health}


class _Starter:
    """One bring-up: each step starts a process or creates the objects the next one needs."""

    def __init__(self, home: LabHome, timeout: float, ports: PortPlan, kyverno: str = KYVERNO) -> None:
        self.home, self.timeout, self.ports, self.kyverno_version = home, timeout, ports, kyverno
        self.dir = home.root / "native"
        self.tools = tools_dir()
        self.services: dict[str, Service] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}  # loopback only
        self.kubeconfig = self.dir / "kubeconfig"
        self.kubectl_binary = str(self.tools / f"kubectl-{KUBERNETES}")
        self.timings: dict[str, float] = {}
        self.kyverno_home = self.dir / "kyverno-home"

    def run(self, cls: type[NativeLab]) -> NativeLab:
        try:
            for name, step in self.steps():
                began = time.monotonic()
                step()
                self.timings[name] = round(time.monotonic() - began, 1)
            self.ports.save()
            _write(self.dir / CLUSTER_FILE, json.dumps(self.cluster_key()).encode(), 0o644)
            state = LabState(cls.backend, self.services,
                             info={"kubeconfig": str(self.kubeconfig), "timings": json.dumps(self.timings),
                                   "kyverno": self.kyverno_version})
            state.save(self.home)
            return cls(self.home, state)
        except BaseException:
            _stop(self.services)  # nothing half-started is left
            raise

    def steps(self) -> Iterator[tuple[str, Callable[[], None]]]:
        yield "certificates", self.certificates
        yield "registries", self.registries
        yield "etcd", self.etcd
        yield "kube-apiserver", self.apiserver
        yield "kube-controller-manager", self.controller_manager
        yield "engine objects", self.engine_objects
        yield "kyverno", self.kyverno
        yield "policy-controller", self.policy_controller

    # --- steps -----------------------------------------------------------------------------

    def cluster_key(self) -> dict[str, Any]:
        """What the stored cluster depends on: the versions, and the ports etcd, the API server and
        the engines' registered webhooks were made with."""
        return {"versions": sorted(binaries(self.kyverno_version)),
                "ports": {n: self.ports.port(n) for n in CLUSTER_PORTS}}

    def reusable(self) -> bool:
        """The last start's cluster (etcd's data, its credentials, the engines' objects) can serve
        again: it finished starting, with these versions and these kept ports."""
        if not all(n in self.ports.fixed for n in CLUSTER_PORTS):
            return False
        try:
            return bool(json.loads((self.dir / CLUSTER_FILE).read_text()) == self.cluster_key())
        except (OSError, ValueError):
            return False

    def certificates(self) -> None:
        self.reuse = self.reusable()
        if self.reuse:  # policies, namespaces and Secrets survive `lab down` / `lab up`
            self.tls = ensure_tls(self.dir / "pki", ["kubernetes.default.svc"])
            self.token = (self.dir / "tokens.csv").read_text().split(",", 1)[0]
            return
        if self.dir.exists():
            shutil.rmtree(self.dir)  # a fresh etcd and fresh credentials
        self.dir.mkdir(parents=True)
        self.tls = ensure_tls(self.dir / "pki", ["kubernetes.default.svc"])
        sa = ec.generate_private_key(ec.SECP256R1())
        _write(self.dir / "sa.key", sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), 0o600)
        sa_pub = sa.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        _write(self.dir / "sa.pub", sa_pub, 0o644)
        self.token = secrets.token_urlsafe(32)
        _write(self.dir / "tokens.csv", f'{self.token},admin,admin,"system:masters"\n'.encode(), 0o600)

    def registries(self) -> None:
        self.services.update(start_registries(self.home, self.env, self.timeout, self.ports))

    def etcd(self) -> None:
        client, peer = self.ports.port("etcd"), self.ports.port("etcd-peer")
        url = f"http://127.0.0.1:{client}"
        self.etcd_url = url
        self._spawn("etcd", f"etcd-{ETCD}", client, [
            "--name=labkit", f"--data-dir={self.dir / 'etcd'}", f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}", f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=labkit=http://127.0.0.1:{peer}", "--listen-metrics-urls=",
            "--unsafe-no-fsync=true", "--log-level=warn"],
            healthy=lambda: _get_ok(f"{url}/health"))

    def apiserver(self) -> None:
        port = self.ports.port("kube-apiserver")
        self.api_url = f"https://127.0.0.1:{port}"
        self._spawn("kube-apiserver", f"kube-apiserver-{KUBERNETES}", port, [
            f"--etcd-servers={self.etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={port}", "--endpoint-reconciler-type=none",
            f"--tls-cert-file={self.tls.cert}", f"--tls-private-key-file={self.tls.key}",
            f"--client-ca-file={self.tls.ca_cert}", f"--token-auth-file={self.dir / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # no kube-controller-manager token controller, so no default ServiceAccount to admit pods with
            "--disable-admission-plugins=ServiceAccount", "--allow-privileged=true"],
            healthy=lambda: _get_ok(f"{self.api_url}/readyz", self.tls.ca_cert, self.token))
        self._write_kubeconfig()

    def controller_manager(self) -> None:
        port = self.ports.port("kube-controller-manager")
        self._spawn("kube-controller-manager", f"kube-controller-manager-{KUBERNETES}", port, [
            f"--kubeconfig={self.kubeconfig}", "--controllers=namespace,clusterrole-aggregation",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={port}", "--use-service-account-credentials=false"],
            healthy=lambda: _get_ok(f"https://127.0.0.1:{port}/healthz", None))

    def engine_objects(self) -> None:
        self.pc_port = PC_PORT
        if self.reuse:
            # The engines' objects are stored; the leases their previous processes held are not
            # theirs any more: without this the new ones wait out the leases (up to a minute)
            # before they reconcile (policy-controller compiles ClusterImagePolicies only then).
            for namespace in ("kyverno", PC_SERVICE[0]):
                self.kubectl("delete", "leases", "--all", "-n", namespace, "--wait=false")
            self._until("every CRD is Established", self._established)
            return
        kyverno = self.tools / f"kyverno-{self.kyverno_version}-config"
        self.kubectl("create", "namespace", "kyverno")
        # Kyverno marks a policy ready only once its reports controller may read what the policy
        # matches (policystatus controller, a SubjectAccessReview): the chart's RBAC, in short.
        self.kubectl("create", "clusterrolebinding", "kyverno-reports-controller", "--clusterrole=view",
                     "--serviceaccount=kyverno:kyverno-reports-controller")
        self.kubectl("create", "-f", "-", stdin=yaml.safe_dump(_kyverno_configmap(kyverno / "values.yaml")))
        self.kubectl("create", "-R", "-f", str(kyverno / "crds"))  # two CRDs are too large for client-side apply
        pc_objects = list(_policy_controller_objects(self.tools / POLICY_CONTROLLER_CONFIG / "config", self.pc_port))
        self.kubectl("create", "-f", "-", stdin=yaml.safe_dump_all(pc_objects))
        self._until("every CRD is Established", self._established)

    def kyverno(self) -> None:
        self.kyverno_admission()
        reports_metrics = self.ports.port("kyverno-reports")
        self._spawn("kyverno-reports", f"kyverno-reports-controller-{self.kyverno_version}", reports_metrics, [
            *self._kyverno_common(), f"--metricsPort={reports_metrics}"],
            env={**self._kyverno_env(), "KYVERNO_POD_NAME": "kyverno-reports-controller-native",
                 "KYVERNO_DEPLOYMENT": "kyverno-reports-controller",
                 "KYVERNO_SERVICEACCOUNT_NAME": "kyverno-reports-controller"},
            healthy=lambda: _get_ok(f"http://127.0.0.1:{reports_metrics}/metrics"))

    def _kyverno_env(self) -> dict[str, str]:
        self.kyverno_home.mkdir(exist_ok=True)
        # an attestor's TUF client caches in $TUF_ROOT and $HOME/.sigstore: the lab's own, never the user's
        return {**self.env, **KYVERNO_ENV, "HOME": str(self.kyverno_home),
                "TUF_ROOT": str(self.kyverno_home / ".sigstore" / "root")}

    def _kyverno_common(self) -> list[str]:
        return [f"--kubeconfig={self.kubeconfig}", "--metricsHost=127.0.0.1", "--loggingFormat=text"]

    def kyverno_admission(self) -> None:
        port, metrics = self.ports.port("kyverno"), self.ports.port("kyverno-metrics")
        env, common = self._kyverno_env(), self._kyverno_common()
        self._spawn("kyverno", f"kyverno-admission-controller-{self.kyverno_version}", port, [
            *common, f"--metricsPort={metrics}", f"--serverIP=127.0.0.1:{port}", "--webhookServerHost=127.0.0.1",
            f"--webhookServerPort={port}", "--caSecretName=kyverno-svc.kyverno.svc.kyverno-tls-ca",
            "--tlsSecretName=kyverno-svc.kyverno.svc.kyverno-tls-pair", "--controllerRuntimeMetricsAddress=0",
            "--reportsServiceAccountName=system:serviceaccount:kyverno:kyverno-reports-controller"],
            env={**env, "KYVERNO_POD_NAME": "kyverno-admission-controller-native"},
            healthy=lambda: _get_ok(f"https://127.0.0.1:{port}/health/readiness")
            and self._exists("validatingwebhookconfiguration", "kyverno-policy-validating-webhook-cfg"))

    def policy_controller(self) -> None:
        env = {**self.env, "KUBECONFIG": str(self.kubeconfig), "SYSTEM_NAMESPACE": PC_SERVICE[0],
               "WEBHOOK_NAME": "webhook", "METRICS_DOMAIN": "sigstore.dev/policy",
               "CONFIG_LOGGING_NAME": "config-logging", "CONFIG_OBSERVABILITY_NAME": "config-observability",
               "KUBERNETES_MIN_VERSION": "1.21.0", "HOME": str(self.dir),
               "PROFILING_PORT": str(self.ports.port("policy-controller-profiling"))}
        self._spawn("policy-controller", f"policy-controller-webhook-{POLICY_CONTROLLER}", self.pc_port,
                    ["--disable-tuf"], env=env, healthy=self._pc_ready)

    # --- helpers ---------------------------------------------------------------------------

    def _spawn(self, name: str, binary: str, port: int, args: list[str], *, healthy: Callable[[], bool],
               env: Mapping[str, str] | None = None) -> None:
        self.services[name] = spawn(name, [str(self.tools / binary), *args], log=self.home.logs / f"{name}.log",
                                    env=env or self.env, cwd=self.dir, port=port, healthy=healthy,
                                    timeout=self.timeout)

    def _write_kubeconfig(self) -> None:
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "labkit-native",
                  "clusters": [{"name": "labkit-native", "cluster": {
                      "server": self.api_url, "certificate-authority-data": self.tls.ca_bundle}}],
                  "users": [{"name": "admin", "user": {"token": self.token}}],
                  "contexts": [{"name": "labkit-native", "context": {"cluster": "labkit-native", "user": "admin"}}]}
        _write(self.kubeconfig, yaml.safe_dump(config).encode(), 0o600)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        out = run_kubectl(self.kubectl_binary, self.kubeconfig, args, stdin=stdin, timeout=self.timeout)
        if out.returncode != 0:
            raise LabError(f"setting up the native lab: kubectl {' '.join(args[:4])} failed: {out.stderr.strip()}",
                           hint=f"logs are in {self.home.logs}")
        return out.stdout

    def _until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.timeout
        while not ready():
            if time.monotonic() > deadline:
                raise LabError(f"setting up the native lab: waited {self.timeout:g}s until {what}",
                               hint=f"logs are in {self.home.logs}")
            time.sleep(0.2)

    def _established(self) -> bool:
        """``kubectl wait --for=condition=Established`` fails outright on a CRD with no status yet."""
        listed = json.loads(self.kubectl("get", "customresourcedefinitions", "-o", "json"))["items"]
        return all(any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in (crd.get("status") or {}).get("conditions") or []) for crd in listed)

    def _exists(self, *what: str) -> bool:
        try:
            self.kubectl("get", *what, "-o", "name")
            return True
        except LabError:
            return False

    def _pc_ready(self) -> bool:
        """knative fills every caBundle (and the CRD conversion's) once its certificates exist; on a
        kept cluster they are filled already, so the webhook must also be listening."""
        try:
            socket.create_connection(("127.0.0.1", self.pc_port), timeout=1).close()
        except OSError:
            return False
        try:
            bundles = self.kubectl("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-o",
                                   "jsonpath={range .items[*]}{.metadata.name}={.webhooks[0].clientConfig.caBundle}"
                                   "{\"\\n\"}{end}")
        except LabError:
            return False
        filled = {line.split("=", 1)[0] for line in bundles.splitlines() if line.partition("=")[2]}
        return all(name in filled for name in PC_WEBHOOKS)


def _stop(services: Mapping[str, Service]) -> None:
    """Stop in dependency order, each stage with a bounded wait before SIGKILL: the engines (knative
    drains for over 30 s after SIGTERM), then the control plane, then etcd, then the registries."""
    for stage in STOP_ORDER:
        terminate({name: services[name] for name in stage if name in services}, grace=5.0)
    terminate({name: s for name, s in services.items() if not any(name in stage for stage in STOP_ORDER)})


def _require_free(ports: Mapping[int, str]) -> None:
    for port, why in ports.items():
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))
            except OSError:
                raise LabError(f"port {port} is in use by {holder(port) or 'another process'}: {why}",
                               hint="stop what holds it (another native lab? `labkit lab down` in its "
                                    "LABKIT_HOME), or run the lab in a network namespace of its own "
                                    "(tools/netns-run)") from None


def _kyverno_configmap(values: Path) -> dict[str, Any]:
    """The chart's ``kyverno`` ConfigMap, rendered from its values.yaml for what decides admission:
    the default resourceFilters (those not naming the chart's own objects) and the webhooks'
    namespaceSelector with the Kyverno namespace excluded (charts/kyverno/templates/config/)."""
    config = yaml.safe_load(values.read_text())["config"]
    filters = "".join(f for f in config["resourceFilters"] if "{{" not in f)
    selector = json.loads(json.dumps(config["webhooks"]["namespaceSelector"]))
    selector.setdefault("matchExpressions", []).append(
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kyverno"]})
    data = {"enableDefaultRegistryMutation": str(config["enableDefaultRegistryMutation"]).lower(),
            "defaultRegistry": config["defaultRegistry"],
            "generateSuccessEvents": str(config["generateSuccessEvents"]).lower(),
            "excludeGroups": ",".join(config["excludeGroups"]), "resourceFilters": filters,
            "webhooks": json.dumps({"namespaceSelector": selector}),
            "webhookAnnotations": json.dumps(config["webhookAnnotations"])}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kyverno", "namespace": "kyverno"},
            "data": data}


def _policy_controller_objects(config: Path, port: int) -> Iterator[dict[str, Any]]:
    """policy-controller's release objects that must exist before its webhook starts: the namespace,
    CRDs, ConfigMaps, webhook configurations and the empty certificate Secret, with every service
    reference given the webhook's port; plus the ExternalName Service that resolves to loopback."""
    for path in sorted(config.glob("*.yaml")):
        if not path.name.startswith(("100-", "300-", "500-", "501-", "config-")):
            continue  # RBAC, ServiceAccount, Service and Deployment are a cluster's business
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                if doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "config-observability":
                    doc["data"] = {"metrics.backend-destination": "none"}  # no metrics listener on :9090
                yield _with_port(doc, port)
    namespace, name = PC_SERVICE
    yield {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
           "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}}


def _with_port(node: Any, port: int) -> Any:
    if isinstance(node, dict):
        out = {k: _with_port(v, port) for k, v in node.items()}
        service = out.get("clientConfig", {}).get("service") if isinstance(out.get("clientConfig"), dict) else None
        if isinstance(service, dict):
            service["port"] = port
        return out
    if isinstance(node, list):
        return [_with_port(v, port) for v in node]
    return node


def _get_ok(url: str, ca: Path | None = None, token: str | None = None) -> bool:
    verify: Any = ssl.create_default_context(cafile=str(ca)) if ca else not url.startswith("https")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return httpx.get(url, timeout=1, trust_env=False, verify=verify, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
