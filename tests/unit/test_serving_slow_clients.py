"""Slow clients cannot hold the registry's (and the webhook's) connections open indefinitely.

Issue 13 item 12: 400 slow-header and slow-body connections stayed open for good (open files
22 -> 422). Oracle: the kernel, through raw loopback sockets (a closed connection reads b"")
and this process's descriptor count in /proc/self/fd; Go's http.Server, which distribution runs
on, likewise closes a connection whose headers miss ReadHeaderTimeout.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit._internal.serving import BackgroundServer, bind
from labkit.registry.app import RegistryApp
from labkit.registry.storage import Storage

DEADLINE = 1.0  # the server's header/body deadline in these tests
BOUND = 10.0  # generous: how long the test waits for the server to act on it


def _open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def _closed_by_server(sock: socket.socket, timeout: float = BOUND) -> tuple[bool, bytes]:
    """(True, what the server sent) once the server closes ``sock``; False if it stays open."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return False, received
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[BackgroundServer, Storage]]:
    storage = Storage(tmp_path)
    running = BackgroundServer(RegistryApp(storage, body_timeout=DEADLINE), bind("127.0.0.1", 0, "the registry"),
                               "registry", header_timeout=DEADLINE)
    yield running, storage
    running.stop()


def test_slow_header_connections_are_closed_and_their_files_released(
        server: tuple[BackgroundServer, Storage]) -> None:
    running, _ = server
    baseline = _open_files()
    clients = [socket.create_connection(("127.0.0.1", running.port)) for _ in range(100)]
    try:
        for sock in clients:
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n")  # and never the blank line
        assert all(_closed_by_server(sock)[0] for sock in clients)
    finally:
        for sock in clients:
            sock.close()
    deadline = time.monotonic() + BOUND
    while _open_files() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_files() <= baseline


def test_a_header_trickled_byte_by_byte_still_meets_the_deadline(server: tuple[BackgroundServer, Storage]) -> None:
    """The header deadline is for the whole header block, not between bytes (slowloris)."""
    running, _ = server
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(b"GET /v2/ HTTP/1.1\r\n")
        began = time.monotonic()
        closed = False
        while not closed and time.monotonic() - began < BOUND:
            try:
                sock.sendall(b"X-Drip: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                closed = sock.recv(1) == b""
            except TimeoutError:
                pass
            except ConnectionResetError:
                closed = True
        assert time.monotonic() - began < BOUND


def test_idle_keep_alive_connection_is_not_cut_by_the_header_deadline(
        server: tuple[BackgroundServer, Storage]) -> None:
    """Between requests a client has the keep-alive time before the header deadline starts."""
    running, _ = server
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        for _ in range(2):
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
            sock.settimeout(BOUND)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(DEADLINE * 2)


def test_slow_body_is_answered_408_and_closed_leaving_the_upload_as_it_was(
        server: tuple[BackgroundServer, Storage]) -> None:
    running, storage = server
    upload = storage.start_upload("lab/app")
    with socket.create_connection(("127.0.0.1", running.port)) as sock:
        sock.sendall(f"PATCH /v2/lab/app/blobs/uploads/{upload.id} HTTP/1.1\r\nHost: registry\r\n"
                     "Content-Length: 1000\r\n\r\nonly ten b".encode())
        closed, answer = _closed_by_server(sock)
    assert closed
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert storage.get_upload("lab/app", upload.id).size == 0
    assert upload.data_path.stat().st_size == 0
