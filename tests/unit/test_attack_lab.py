"""The attack lab's tarpit is bounded: it holds at most ``limit`` connections, each at most
``hold`` seconds, and ``close()`` lets every held one go (the kernel observes each)."""

from __future__ import annotations

import socket
import time

from labkit.attack_lab import Tarpit


def _connect(host: str) -> socket.socket:
    address, port = host.rsplit(":", 1)
    conn = socket.create_connection((address, int(port)), timeout=5)
    conn.settimeout(5)
    return conn


def _hung_up(conn: socket.socket) -> bool:
    """The peer closed: end of stream, or a reset (it closed with our request unread)."""
    try:
        return conn.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_held_connection_gets_no_answer_until_the_hold_ends() -> None:
    with Tarpit(hold=1.5) as tarpit, _connect(tarpit.host) as conn:
        conn.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        assert _hung_up(conn)  # never answered
        assert 1.0 < time.monotonic() - start < 5


def test_connections_past_the_limit_are_closed_at_once() -> None:
    with Tarpit(hold=30, limit=2) as tarpit:
        held = [_connect(tarpit.host) for _ in range(2)]
        with _connect(tarpit.host) as extra:
            start = time.monotonic()
            assert _hung_up(extra)
            assert time.monotonic() - start < 4
        for conn in held:
            conn.close()


def test_close_releases_what_it_holds() -> None:
    tarpit = Tarpit(hold=30)
    with _connect(tarpit.host) as conn:
        time.sleep(0.2)  # let the tarpit accept it
        tarpit.close()
        assert _hung_up(conn)
    with socket.socket() as probe:
        address, port = tarpit.host.rsplit(":", 1)
        assert probe.connect_ex((address, int(port))) != 0
