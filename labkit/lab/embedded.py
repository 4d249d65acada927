"""The embedded lab: labkit's registry and admission webhook as loopback background services.

Each service is ``python -m labkit …`` in its own session, so it outlives the notebook kernel
or shell that started it; ``lab.json`` records pids and ports so ``Lab.connect()`` finds them
again. Workloads go through :class:`labkit.lab.apiserver.ApiServer`: real HTTPS
AdmissionReviews to the webhook, mutating then validating, as kube-apiserver orders them.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from labkit.admission.tls import DEFAULT_DNS_NAME, ensure_tls
from labkit.errors import LabError
from labkit.lab.apiserver import ApiServer, ObjectStore, delete_object, store_object
from labkit.lab.base import WORKLOAD_KINDS, AdmissionResult, Lab, PrivateRegistry, RegistryInfo, load_documents
from labkit.lab.cosign_artifacts import delete_cosign_artifacts
from labkit.lab.ports import PortPlan
from labkit.lab.processes import require_alive, require_running_ports, running_lab, spawn_labkit, terminate
from labkit.lab.registries import REGISTRY_PORTS, registry_healthy, start_registries
from labkit.lab.state import PRIVATE_USER, LabHome, LabState, Service, clear

PORT_NAMES = (*REGISTRY_PORTS, "webhook")  # what `labkit lab up --port NAME=PORT` can choose

class EmbeddedLab(Lab):
    backend = "embedded"

    def __init__(self, home: LabHome, state: LabState) -> None:
        super().__init__(home, state)
        self.store = ObjectStore(home.policies, home.state)
        self.tls = ensure_tls(home.admission, [DEFAULT_DNS_NAME])
        self.api = ApiServer(self.store, self.webhook_url, self.tls.ca_cert)

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def launch(cls, home: LabHome, *, timeout: float = 15.0, ports: Mapping[str, int] | None = None,
               fresh_ports: bool = False) -> EmbeddedLab:
        """Start the lab in ``home``, or return the one already running there. Its ports are those
        kept in ``home`` (:mod:`labkit.lab.ports`); ``ports`` chooses some (default: ``LABKIT_PORTS``),
        ``fresh_ports`` picks new ones."""
        state = running_lab(home, cls.backend)
        if state is not None:
            require_running_ports(state, ports, fresh_ports)
            return cls(home, state)
        plan = PortPlan(home, PORT_NAMES, ports, fresh_ports)
        plan.require_free()
        home.create()
        ObjectStore(home.policies, home.state).initialise()
        ca = ensure_tls(home.admission, [DEFAULT_DNS_NAME]).ca_cert  # made once here, reused by the webhook
        env = {**os.environ, "LABKIT_HOME": str(home.root)}
        services: dict[str, Service] = {}
        try:
            services.update(start_registries(home, env, timeout, plan))
            services["webhook"] = spawn_labkit(home, "webhook", env, timeout, lambda port: [
                "admission", "serve", "--port", str(port), "--policies", str(home.policies),
                "--state", str(home.state)], lambda port: _webhook_healthy(port, ca), ports=plan)
        except BaseException:
            terminate(services)
            raise
        plan.save()
        state = LabState(cls.backend, services)
        state.save(home)
        return cls(home, state)

    @classmethod
    def attach(cls, home: LabHome, state: LabState) -> EmbeddedLab:
        require_alive(home, state, hint="`labkit lab up` (or Lab.start()) starts it again; its images and "
                                        "policies are kept")
        return cls(home, state)

    def stop_services(self) -> None:
        self.api.close()
        terminate(self.state.services)
        clear(self.home)

    # --- the interface ---------------------------------------------------------------------

    @property
    def registry(self) -> RegistryInfo:
        host = f"127.0.0.1:{self.state.services['registry'].port}"
        return RegistryInfo(host=host, pod_host=host)  # pods here are reviewed, never pulled

    @property
    def private_registry(self) -> PrivateRegistry:
        host = f"127.0.0.1:{self.state.services['private-registry'].port}"
        return PrivateRegistry(host=host, pod_host=host, username=PRIVATE_USER, password=self.home.private_password())

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.state.services['webhook'].port}"

    def apply(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        docs, where = load_documents(source)
        return [self.api.create(doc, where) if doc.get("kind") in WORKLOAD_KINDS else store_object(self.store, doc)
                for doc in docs]

    def delete(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        return [delete_object(self.store, doc) for doc in load_documents(source)[0]]

    def policies(self) -> list[dict[str, Any]]:
        return self.store.list_policies()

    def label_namespace(self, namespace: str, labels: Mapping[str, str | None]) -> None:
        self.store.label_namespace(namespace, labels)

    def create(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        docs, where = load_documents(resource)
        if len(docs) != 1:
            raise LabError(f"lab.create takes one object, got {len(docs)}", hint="use lab.apply for several")
        return self.api.create(docs[0], where, dry_run=dry_run)

    def update(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        docs, where = load_documents(resource)
        if len(docs) != 1:
            raise LabError(f"lab.update takes one object, got {len(docs)}", hint="replace one workload at a time")
        return self.api.update(docs[0], where, dry_run=dry_run)

    def reports(self) -> list[dict[str, Any]]:
        """The webhook's reports whose object the lab stored. Kyverno's reports controller only
        turns an admission report into a PolicyReport once it finds the object it names
        (``adopt``/``frontReconcile``, pkg/controllers/report/aggregate/controller.go:762-819);
        for an object another webhook then denied, it never does."""
        kept = []
        for report in self.api.http.get("/reports").json().get("items", []):
            scope = report.get("scope") or {}
            stored = self.store.workload(str(scope.get("kind", "")), str(scope.get("namespace", "")),
                                         str(scope.get("name", "")))
            uid = ((stored or {}).get("metadata") or {}).get("uid")
            if uid and uid in (scope.get("uid"), (report.get("metadata") or {}).get("name")):
                kept.append(report)
        return kept

    def status(self) -> dict[str, Any]:
        services = self.state.services
        health: dict[str, Any] = {
            "registry": "ok" if registry_healthy(services["registry"].port) else "not answering",
            "private-registry": "ok" if registry_healthy(services["private-registry"].port, auth=True)
            else "not answering"}
        try:
            health["webhook"] = self.api.http.get("/healthz").json()
        except httpx.HTTPError as exc:
            health["webhook"] = f"not answering ({exc})"
        return {"backend": self.backend, "home": str(self.home.root), "registry": self.registry.host,
                "webhook": self.webhook_url, "ca": str(self.tls.ca_cert),
                "pids": {n: s.pid for n, s in self.state.services.items()}, "health": health}

    def reset(self) -> None:
        self.store.reset()
        delete_cosign_artifacts(self.registry.host)
        private = self.private_registry
        delete_cosign_artifacts(private.host, private.credentials())


def _webhook_healthy(port: int, ca: Path) -> bool:
    try:
        return httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=1, trust_env=False,
                         verify=ssl.create_default_context(cafile=str(ca))).status_code == 200
    except httpx.HTTPError:
        return False
