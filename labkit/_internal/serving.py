"""uvicorn in a background thread on a socket bound up front, for the registry and the webhook.

Binding before uvicorn starts means ``port=0`` yields the real port at once and a taken port is
an error naming it (with a free one to try), not a log line in a thread; running in a daemon
thread keeps a notebook or a test going while the server serves.

uvicorn closes a connection idle between requests (``timeout_keep_alive``) but sets no deadline
for the request headers themselves, so a client sending them slowly, or never, holds a
connection and a file descriptor for good. :class:`_HeaderDeadlineProtocol` adds one, as Go's
``http.Server.ReadHeaderTimeout`` does for distribution; request bodies are the application's
to bound (the registry's ``RegistryApp`` does).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from labkit.errors import LabError

# Seconds a client has to send a request's whole header block: from connecting, and after a
# response from the end of the keep-alive time. Local clients send it in one packet.
HEADER_TIMEOUT = 10.0


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


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, what uvicorn[standard] picks) closing a
    connection whose next request's headers are not complete ``header_timeout`` seconds after
    it could have begun; a request being served is never cut."""

    header_timeout = HEADER_TIMEOUT
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._header_deadline is not None:
            self._header_deadline.cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.timeout_keep_alive + self.header_timeout)

    def _arm(self, delay: float) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = self.loop.call_later(delay, self._expire, self.cycle)

    def _expire(self, waiting_after: object) -> None:
        # No request began since the deadline was armed (the current cycle is the same one,
        # finished or none): the client is still on its headers.
        idle = self.cycle is waiting_after and (self.cycle is None or self.cycle.response_complete)
        if idle and not self.transport.is_closing():
            self.transport.close()


def _protocol_with(header_timeout: float) -> type[_HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout": header_timeout})


class BackgroundServer:
    """An ASGI app served by uvicorn from a daemon thread; started when the constructor returns."""

    def __init__(
        self,
        app: Callable[..., Any],
        sock: socket.socket,
        what: str,
        *,
        startup_timeout: float = 15.0,
        header_timeout: float = HEADER_TIMEOUT,
        **uvicorn_options: Any,
    ) -> None:
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            http=_protocol_with(header_timeout),
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
