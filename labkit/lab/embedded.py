"""The embedded lab: labkit's registry and admission webhook as loopback background services.

Each service is ``python -m labkit …`` in its own session, so it outlives the notebook kernel
or shell that started it; ``lab.json`` records pids and ports so ``Lab.connect()`` finds them
again. Workloads go through :class:`labkit.lab.apiserver.ApiServer`: real HTTPS
AdmissionReviews to the webhook, mutating then validating, as kube-apiserver orders them.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from labkit.admission.tls import DEFAULT_DNS_NAME, ensure_tls
from labkit.errors import LabError
from labkit.lab.apiserver import ApiServer, ObjectStore, delete_object, store_object
from labkit.lab.base import WORKLOAD_KINDS, AdmissionResult, Lab, PrivateRegistry, RegistryInfo, load_documents
from labkit.lab.signatures import delete_signatures
from labkit.lab.state import PRIVATE_USER, LabHome, LabState, Service, clear, free_port, process_start_time

_PORT_ATTEMPTS = 3


class EmbeddedLab(Lab):
    backend = "embedded"

    def __init__(self, home: LabHome, state: LabState) -> None:
        super().__init__(home, state)
        self.store = ObjectStore(home.policies, home.state)
        self.tls = ensure_tls(home.admission, [DEFAULT_DNS_NAME])
        self.api = ApiServer(self.store, self.webhook_url, self.tls.ca_cert)

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, home: LabHome, *, timeout: float = 15.0) -> EmbeddedLab:
        """Start the lab in ``home``, or return the one already running there."""
        state = LabState.load(home)
        if state is not None:
            if state.backend != cls.backend:
                raise LabError(f"a {state.backend} lab is already recorded in {home.root}",
                               hint="stop it first (`labkit lab down`) or use another LABKIT_HOME")
            if not state.stale():
                return cls(home, state)
            _terminate(state.services)  # half-dead lab: stop what is left, then start afresh
            clear(home)
        home.create()
        ObjectStore(home.policies, home.state).initialise()
        ca = ensure_tls(home.admission, [DEFAULT_DNS_NAME]).ca_cert  # made once here, reused by the webhook
        env = {**os.environ, "LABKIT_HOME": str(home.root)}
        services: dict[str, Service] = {}
        try:
            services["registry"] = _spawn(home, "registry", env, timeout, lambda port: [
                "registry", "serve", "--port", str(port), "--root", str(home.registry)],
                lambda port: _registry_healthy(port))
            password = home.new_private_password()
            services["private-registry"] = _spawn(home, "private-registry", env, timeout, lambda port: [
                "registry", "serve", "--port", str(port), "--root", str(home.root / "private-registry"),
                "--username", PRIVATE_USER, "--password-stdin"], lambda port: _registry_healthy(port, auth=True),
                stdin=password + "\n")
            services["webhook"] = _spawn(home, "webhook", env, timeout, lambda port: [
                "admission", "serve", "--port", str(port), "--policies", str(home.policies),
                "--state", str(home.state)], lambda port: _webhook_healthy(port, ca))
        except BaseException:
            _terminate(services)
            raise
        state = LabState(cls.backend, services)
        state.save(home)
        return cls(home, state)

    @classmethod
    def attach(cls, home: LabHome, state: LabState) -> EmbeddedLab:
        stale = state.stale()
        if stale:
            gone = ", ".join(f"{name} (pid {s.pid})" for name, s in stale.items())
            raise LabError(f"the embedded lab in {home.root} is not running: {gone} exited",
                           hint="`labkit lab up` (or Lab.start()) starts it again; its images and policies are kept")
        return cls(home, state)

    def stop(self) -> None:
        self.api.close()
        _terminate(self.state.services)
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
        return list(self.api.http.get("/reports").json().get("items", []))

    def status(self) -> dict[str, Any]:
        services = self.state.services
        health: dict[str, Any] = {
            "registry": "ok" if _registry_healthy(services["registry"].port) else "not answering",
            "private-registry": "ok" if _registry_healthy(services["private-registry"].port, auth=True)
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
        delete_signatures(self.registry.host)
        private = self.private_registry
        delete_signatures(private.host, private.credentials())


def _spawn(home: LabHome, name: str, env: Mapping[str, str], timeout: float,
           argv: Any, healthy: Any, stdin: str | None = None) -> Service:
    """Start ``python -m labkit ARGV(port)`` detached; a port taken in the meantime means another try."""
    log_path = home.logs / f"{name}.log"
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "labkit", *argv(port)],
                                    stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                    stdout=log, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True,
                                    cwd=home.root)
        if stdin is not None and proc.stdin is not None:  # a password: never on the command line
            proc.stdin.write(stdin.encode())
            proc.stdin.close()
        service = Service(proc.pid, port, process_start_time(proc.pid))
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if healthy(port):
                return service
            time.sleep(0.05)
        if proc.poll() is None:
            _terminate({name: service})
            raise LabError(f"the lab {name} did not become healthy within {timeout:g}s",
                           hint=f"see {log_path}")
        proc.wait()
        if b"already in use" not in _tail(log_path):
            raise LabError(f"the lab {name} exited at start (status {proc.returncode}): "
                           f"{_tail(log_path).decode(errors='replace').strip()}", hint=f"full log: {log_path}")
    raise LabError(f"no free port for the lab {name} after {_PORT_ATTEMPTS} tries", hint=f"see {log_path}")


def _tail(path: Path, size: int = 1500) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - size))
        return f.read()


def _registry_healthy(port: int, auth: bool = False) -> bool:
    """``/v2/`` answers: 200, or 401 for a registry that wants credentials."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1, trust_env=False).status_code == (401 if auth else 200)
    except httpx.HTTPError:
        return False


def _webhook_healthy(port: int, ca: Path) -> bool:
    try:
        return httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=1, trust_env=False,
                         verify=ssl.create_default_context(cafile=str(ca))).status_code == 200
    except httpx.HTTPError:
        return False


def _terminate(services: Mapping[str, Service], grace: float = 5.0) -> None:
    """SIGTERM then SIGKILL each service that is still the process the lab started."""
    live = [s for s in services.values() if s.alive()]
    for s in live:
        _signal(s.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(s.alive() for s in live) and time.monotonic() < deadline:
        time.sleep(0.05)
    for s in live:
        if s.alive():
            _signal(s.pid, signal.SIGKILL)
    for s in live:  # reap our own children so they do not linger as zombies
        try:
            os.waitpid(s.pid, os.WNOHANG)
        except ChildProcessError:
            pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
