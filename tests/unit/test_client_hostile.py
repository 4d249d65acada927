"""The registry client against hostile loopback registries: raw paths, size limits, deadlines.

Each registry here is a few lines on a plain socket, so it can do what no real registry does on
purpose: trickle bytes, send more than it declared, or record the exact request line it got.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from labkit.errors import NotFoundError
from labkit.oci.client import RegistryClient

Answer = Callable[[socket.socket, str], None]


def _send(conn: socket.socket, status: str, body: bytes = b"", headers: str = "") -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)


@contextmanager
def hostile_registry(answer: Answer) -> Iterator[str]:
    """A loopback registry: ``/v2/`` answers 200, every other request line goes to ``answer``
    (one thread per connection; the server stops when the block ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def connection(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while not stop.is_set():
                line = reader.readline().decode("latin-1").strip()
                while reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                if not line:
                    return
                try:
                    if line.split(" ")[1] == "/v2/":
                        _send(conn, "200 OK")
                    else:
                        answer(conn, line)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=connection, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()


def test_dot_segments_go_to_the_registry_unnormalised() -> None:
    """ggcr sends the repository as parsed (``team/../other/renamed`` is a valid ggcr name) and Go
    never cleans a request path, so the registry judges it (distribution's NAME_INVALID, cosign
    v2.6.1 and v3.1.3 alike). Resolving the dots here verified another repository's signature."""
    seen: list[str] = []

    def not_found(conn: socket.socket, line: str) -> None:
        seen.append(line)
        _send(conn, "404 Not Found")

    with hostile_registry(not_found) as host, RegistryClient() as client:
        with suppress(NotFoundError):
            client.get_manifest(f"{host}/team/../other/renamed:v1")
    assert seen == ["GET /v2/team/../other/renamed/manifests/v1 HTTP/1.1"]
