"""Run the registry under uvicorn in a background thread, so a notebook or a test keeps going.

The socket is bound here, before uvicorn starts, so ``port=0`` yields the real port at once and a
taken port is a clear error naming it (with a free one to try), not a log line in a thread.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from labkit.errors import LabError, UsageError
from labkit.registry.app import RegistryApp
from labkit.registry.auth import BasicAuth
from labkit.registry.storage import Storage

DEFAULT_PORT = 5001


def default_root() -> Path:
    """``$LABKIT_HOME/registry``, ``LABKIT_HOME`` defaulting to ``~/.labkit``."""
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit") / "registry"


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass
class RegistryHandle:
    """A running registry. ``host`` is what goes into image references (``127.0.0.1:PORT``)."""

    address: str
    port: int
    root: Path
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def host(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C stops it."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()
            raise


def _free_port(address: str) -> int | None:
    try:
        with socket.socket(_family(address)) as s:
            s.bind((address, 0))
            return s.getsockname()[1]
    except OSError:
        return None


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _bind(address: str, port: int) -> socket.socket:
    sock = socket.socket(_family(address))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            free = _free_port(address)
            raise LabError(
                f"cannot serve the registry on {address}:{port}: the port is already in use",
                hint=f"port {free} is free: try --port {free}" if free else "choose another --port",
            ) from None
        raise LabError(f"cannot serve the registry on {address}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def serve(
    root: Path | str | None = None,
    port: int = DEFAULT_PORT,
    address: str = "127.0.0.1",
    htpasswd: Path | str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    allow_non_loopback: bool = False,
    startup_timeout: float = 15.0,
) -> RegistryHandle:
    """Start the registry on ``address:port`` (``port=0``: any free port) storing under ``root``.

    Basic auth is on with ``htpasswd`` (bcrypt entries) or ``username``/``password``. A
    non-loopback ``address`` is refused unless ``allow_non_loopback``: the lab registry has no
    TLS and is meant for this machine only.
    """
    if not is_loopback(address) and not allow_non_loopback:
        raise UsageError(
            f"refusing to serve the registry on non-loopback address {address}",
            hint="it has no TLS; pass --allow-non-loopback if you really want it on the network",
        )
    if htpasswd is not None and username is not None:
        raise UsageError("give either an htpasswd file or a username/password, not both")
    auth = None
    if htpasswd is not None:
        auth = BasicAuth.from_htpasswd(Path(htpasswd))
    elif username is not None:
        auth = BasicAuth.single_user(username, password or "")
    root = Path(root) if root is not None else default_root()
    storage = Storage(root)
    sock = _bind(address, port)
    config = uvicorn.Config(
        RegistryApp(storage, auth),
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"labkit-registry-{sock.getsockname()[1]}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise LabError(f"the registry on {address}:{port} did not start", hint="see the log above")
        time.sleep(0.01)
    return RegistryHandle(address, sock.getsockname()[1], root, server, thread)
