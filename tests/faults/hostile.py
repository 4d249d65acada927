"""A hostile loopback registry on a plain socket: it can do what no real registry does on
purpose (trickle bytes, send more than it declared, record the exact request line it got)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

Answer = Callable[[socket.socket, str], None]


def send(conn: socket.socket, status: str, body: bytes = b"", headers: str = "") -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)


@contextmanager
def hostile_registry(answer: Answer) -> Iterator[str]:
    """A loopback registry: ``/v2/`` answers 200, every other request line goes to ``answer``
    (one thread per connection; the server stops when the block ends)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def connection(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader, suppress(OSError):  # the client may hang up
            while not stop.is_set():
                line = reader.readline().decode("latin-1").strip()
                while reader.readline() not in (b"\r\n", b"\n", b""):
                    pass
                if not line:
                    return
                if line.split(" ")[1] == "/v2/":
                    send(conn, "200 OK")
                else:
                    answer(conn, line)

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
