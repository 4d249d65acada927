"""labkit's two lab registries, started as background services: the open one learners push to, and
the private one (basic auth) for the credentials exercise. The embedded and native labs share them."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from labkit.lab.ports import PortPlan
from labkit.lab.processes import spawn_labkit
from labkit.lab.state import PRIVATE_USER, LabHome, Service

REGISTRY_PORTS = ("registry", "private-registry")  # names of their ports in the lab's PortPlan


def start_registries(home: LabHome, env: Mapping[str, str], timeout: float, ports: PortPlan) -> dict[str, Service]:
    services = {"registry": spawn_labkit(home, "registry", env, timeout, lambda port: [
        "registry", "serve", "--port", str(port), "--root", str(home.registry)], registry_healthy, ports=ports)}
    password = home.new_private_password()
    services["private-registry"] = spawn_labkit(home, "private-registry", env, timeout, lambda port: [
        "registry", "serve", "--port", str(port), "--root", str(home.root / "private-registry"),
        "--username", PRIVATE_USER, "--password-stdin"], lambda port: registry_healthy(port, auth=True),
        ports=ports, stdin=password + "\n")
    return services


def registry_healthy(port: int, auth: bool = False) -> bool:
    """``/v2/`` answers: 200, or 401 for a registry that wants credentials."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1, trust_env=False)
        return answer.status_code == (401 if auth else 200)
    except httpx.HTTPError:
        return False
