"""Registries that tests and benchmarks run on loopback: Debian's distribution and labkit's own,
each in its own process. Shared so every suite starts them the same way."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

DISTRIBUTION_MISSING = "Debian's docker-registry is not installed (make system-deps installs it as root)"


class PeerMissing(RuntimeError):
    """The peer's program is not installed on this machine."""


@dataclass(frozen=True)
class RunningRegistry:
    """A registry on loopback. ``host`` is what goes into image references (``127.0.0.1:PORT``)."""

    name: str
    host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_registry(url: str, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/v2/", timeout=1.0).status_code in (200, 401):
                return
        except httpx.TransportError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"registry at {url} did not answer within {timeout}s")
        time.sleep(0.05)


@contextmanager
def _process(name: str, argv: list[str], host: str) -> Iterator[RunningRegistry]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        registry = RunningRegistry(name, host)
        wait_for_registry(registry.url, proc=proc)
        yield registry
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def run_distribution(root: Path, *, host: str = "127.0.0.1", extra_config: str = "") -> Iterator[RunningRegistry]:
    """distribution 2.8 with its storage under ``root``; ``extra_config`` is appended YAML (e.g. auth)."""
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        raise PeerMissing(DISTRIBUTION_MISSING)
    root.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{host}:{port}'}}\n{extra_config}"
    )
    with _process("distribution", [binary, "serve", str(config)], f"{host}:{port}") as registry:
        yield registry


@contextmanager
def run_labkit_registry(root: Path) -> Iterator[RunningRegistry]:
    """``labkit registry serve`` in its own process, as learners run it."""
    port = free_port()
    argv = [sys.executable, "-m", "labkit", "registry", "serve", "--port", str(port), "--root", str(root)]
    with _process("labkit", argv, f"127.0.0.1:{port}") as registry:
        yield registry
