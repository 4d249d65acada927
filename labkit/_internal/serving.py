"""uvicorn in a background thread on a socket bound up front, for the registry and the webhook.

Binding before uvicorn starts means ``port=0`` yields the real port at once and a taken port is
an error naming it (with a free one to try), not a log line in a thread; running in a daemon
thread keeps a notebook or a test going while the server serves.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from labkit.errors import LabError


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def free_port(address: str = "127.0.0.1") -> int:
    """A port free on ``address`` right now; the service binding it is the real test."""
    with socket.socket(_family(address)) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def bind(address: str, port: int, what: str) -> socket.socket:
    """A listening, non-blocking socket on ``address:port``; ``what`` names the server in errors."""
    sock = socket.socket(_family(address))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            try:
                hint = f"port {(free := free_port(address))} is free: try --port {free}"
            except OSError:
                hint = "choose another --port"
            raise LabError(f"cannot serve {what} on {address}:{port}: the port is already in use", hint=hint) from None
        raise LabError(f"cannot serve {what} on {address}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class BackgroundServer:
    """An ASGI app served by uvicorn from a daemon thread; started when the constructor returns."""

    def __init__(
        self,
        app: Callable[..., Any],
        sock: socket.socket,
        what: str,
        *,
        startup_timeout: float = 15.0,
        **uvicorn_options: Any,
    ) -> None:
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=30,
            **uvicorn_options,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"labkit-{what}-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                sock.close()
                raise LabError(f"{what} on port {self.port} did not start", hint="see the log above")
            time.sleep(0.01)

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
