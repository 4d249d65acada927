"""A fault-injecting reverse proxy on loopback, in front of a real registry.

Requests for ``/v2/<engine>/f-<fault>/…`` are forwarded to the upstream registry and the answer is spoilt
as the fault says; everything else passes through unchanged. So a correctly signed image (pushed
to the upstream, signed there by labkit) becomes faulty only when it is pulled through the proxy,
and an engine's decision can change only because of the fault.

Faults (``FAULTS``), each spoiling what an engine must read to verify a signature:

* ``ok``: nothing (the control: signed, verified).
* ``sluggish``: the ``.sig`` manifest's body trickles over ``SLUGGISH_SECONDS``, well within
  every webhook's timeoutSeconds (Kyverno's 10 s): slow, but an answer in time.
* ``between``: the ``.sig`` manifest's body trickles over ``BETWEEN_SECONDS``: past Kyverno's
  timeoutSeconds (10 s), within policy-controller's (25 s).
* ``slow``: the ``.sig`` manifest's body trickles over ``slow_seconds`` (longer than any
  webhook's timeoutSeconds, Kyverno's cap being 30 s), so each read is quick and the whole slow.
* ``5xx``: every request answers 503 with a distribution error body.
* ``lying-digest``: every body fetched by digest (manifests and blobs) has its last byte changed;
  the headers still claim the requested digest.
* ``trailing-bytes``: every blob comes with one byte more than its descriptor's size (ggcr reads
  a blob only to that size, so the content the digest names is still all an engine reads).
* ``oversized``: the ``.sig`` manifest declares and streams more than go-containerregistry's
  100 MiB manifest limit (stopping when the client hangs up, or at the limit plus 16 MiB).
* ``nested``: the ``.sig`` manifest is JSON nested 100,000 deep (Go's decoder stops at 10,000).
* ``redirect-loop``: every request is redirected to itself.
* ``many-layers``: the ``.sig`` manifest lists its one valid layer 20,000 times (cosign's limit
  is 1,000).

Plain sockets and threads, loopback only; every loop is bounded by count and by the stop event.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from tests.faults.hostile import send

FAULTS = ("ok", "sluggish", "between", "slow", "5xx", "lying-digest", "trailing-bytes", "oversized", "nested",
          "redirect-loop", "many-layers")
MANIFEST_LIMIT = 100 * 1024 * 1024  # go-containerregistry pkg/v1/remote manifestLimit
OVERSIZE = MANIFEST_LIMIT + 16 * 1024 * 1024
NESTING = 100_000
LAYERS = 20_000
MAX_HEADER_LINES = 100
SLOW_PIECES = 33
SLUGGISH_SECONDS = 6.0
BETWEEN_SECONDS = 15.0


def repository(fault: str, engine: str) -> str:
    return f"{engine}/f-{fault}"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def fault(self) -> str:
        parts = self.path.split("/")
        if len(parts) < 5 or parts[1] != "v2" or not parts[3].startswith("f-"):
            return "ok"
        return parts[3][2:]

    @property
    def manifest_reference(self) -> str | None:
        _, sep, ref = self.path.partition("/manifests/")
        return ref.split("?")[0] if sep else None

    @property
    def is_sig_manifest(self) -> bool:
        return (self.manifest_reference or "").endswith(".sig")

    @property
    def by_digest(self) -> bool:
        return "/sha256:" in self.path


class FaultProxy:
    """The proxy: ``host`` is what pods and tools name (``127.0.0.1:PORT``), ``upstream`` the
    registry it forwards to. Use as a context manager."""

    def __init__(self, upstream: str, *, slow_seconds: float = 33.0) -> None:
        self.upstream, self.slow_seconds = upstream, slow_seconds
        self.stop = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.seen: list[str] = []

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.server.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        # One request per connection (Connection: close): the engines reconnect as they need.
        conn.settimeout(60)
        with conn, conn.makefile("rb") as reader, suppress(OSError, ValueError):
            line = reader.readline(8192).decode("latin-1").strip()
            headers: dict[str, str] = {}
            for _ in range(MAX_HEADER_LINES):
                raw = reader.readline(8192)
                if raw in (b"\r\n", b"\n", b""):
                    break
                name, _, value = raw.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            if len(line.split(" ")) != 3:
                return
            method, path, _ = line.split(" ")
            request = Request(method, path, headers)
            self.seen.append(f"{method} {path}")
            self._answer(conn, request)

    # --- answers ---------------------------------------------------------------------------

    def _forward(self, request: Request) -> tuple[int, str, dict[str, str], bytes]:
        upstream = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            wanted = {k: v for k, v in request.headers.items() if k in ("accept", "authorization", "range")}
            upstream.request(request.method, request.path, headers=wanted)
            resp = upstream.getresponse()
            body = resp.read()
            headers = {k: v for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "connection", "transfer-encoding", "keep-alive")}
            return resp.status, resp.reason, headers, body
        finally:
            upstream.close()

    def _reply(self, conn: socket.socket, request: Request, status: int, reason: str, headers: dict[str, str],
               body: bytes) -> None:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{lines}\r\n"
        conn.sendall(head.encode("latin-1") + (b"" if request.method == "HEAD" else body))

    def _answer(self, conn: socket.socket, request: Request) -> None:
        fault = request.fault
        if fault == "5xx":
            body = json.dumps({"errors": [{"code": "UNAVAILABLE", "message": "service unavailable"}]}).encode()
            send(conn, "503 Service Unavailable", b"" if request.method == "HEAD" else body,
                 "Content-Type: application/json\r\nConnection: close\r\n")
            return
        if fault == "redirect-loop":
            send(conn, "307 Temporary Redirect", b"",
                 f"Location: http://{self.host}{request.path}\r\nConnection: close\r\n")
            return
        status, reason, headers, body = self._forward(request)
        if status != 200 or request.method != "GET":
            self._reply(conn, request, status, reason, headers, body)
            return
        if fault == "lying-digest" and request.by_digest and body:
            self._reply(conn, request, status, reason, headers, body[:-1] + bytes([body[-1] ^ 1]))
        elif fault == "trailing-bytes" and "/blobs/" in request.path:
            self._reply(conn, request, status, reason, headers, body + b"\n")
        elif fault == "slow" and request.is_sig_manifest:
            self._trickle(conn, headers, body, self.slow_seconds)
        elif fault == "sluggish" and request.is_sig_manifest:
            self._trickle(conn, headers, body, SLUGGISH_SECONDS)
        elif fault == "between" and request.is_sig_manifest:
            self._trickle(conn, headers, body, BETWEEN_SECONDS)
        elif fault == "oversized" and request.is_sig_manifest:
            self._oversized(conn, headers)
        elif fault == "nested" and request.is_sig_manifest:
            nested = b'{"schemaVersion":2,"layers":' + b"[" * NESTING + b"]" * NESTING + b"}"
            self._reply(conn, request, status, reason, _digest_of(headers, nested), nested)
        elif fault == "many-layers" and request.is_sig_manifest:
            manifest = json.loads(body)
            manifest["layers"] = manifest["layers"][:1] * LAYERS
            many = json.dumps(manifest).encode()
            self._reply(conn, request, status, reason, _digest_of(headers, many), many)
        else:
            self._reply(conn, request, status, reason, headers, body)

    def _trickle(self, conn: socket.socket, headers: dict[str, str], body: bytes, seconds: float) -> None:
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n{lines}\r\n"
                     .encode("latin-1"))
        pieces = min(SLOW_PIECES, len(body))
        step = -(-len(body) // pieces)
        for i in range(pieces):  # bounded: SLOW_PIECES waits, cut short when the proxy stops
            if self.stop.wait(seconds / pieces):
                return
            conn.sendall(body[i * step:(i + 1) * step])

    def _oversized(self, conn: socket.socket, headers: dict[str, str]) -> None:
        headers = {k: v for k, v in headers.items() if k.lower() != "docker-content-digest"}
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {OVERSIZE}\r\nConnection: close\r\n{lines}\r\n"
                     .encode("latin-1"))
        chunk = b" " * (1 << 20)
        for i in range(OVERSIZE >> 20):  # bounded by the declared size; ends when the client hangs up
            if self.stop.is_set():
                return
            conn.sendall(b"{" + chunk[1:] if i == 0 else chunk)


def _digest_of(headers: dict[str, str], body: bytes) -> dict[str, str]:
    """The headers of a rewritten body, with its own digest: the fault is the content, not a lie."""
    kept = {k: v for k, v in headers.items() if k.lower() != "docker-content-digest"}
    return {**kept, "Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()}


@contextmanager
def fault_proxy(upstream: str, *, slow_seconds: float = 33.0) -> Iterator[FaultProxy]:
    with FaultProxy(upstream, slow_seconds=slow_seconds) as proxy:
        yield proxy
