"""HTTP/1.1 for the registry client, on the standard library's ``socket``.

``ssl`` is imported only for an https URL, and neither httpx nor ``http.client`` (with its
``email`` parser) is loaded: together they cost a short ``labkit verify`` more start-up time than
its requests take (bench/README.md). This does what the client needs and no more: keep-alive
connections pooled per origin (thread-safe: the admission webhook shares one client across its
workers), bodies by Content-Length, chunked or up to the close, redirects followed as httpx's
``follow_redirects=True`` did. Time is bounded per request, not per read: a request and its
redirects finish within ``timeout`` or fail, however slowly a server trickles bytes, and within
an enclosing :func:`deadline` (a webhook's review, a CLI command) too. No proxies (the client
never used the environment's), no compression (none is asked for).

A test observes or alters traffic by subclassing :class:`Transport` and overriding
:meth:`Transport.handle_request`, which sees every exchange, redirect hops included.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from labkit import __version__

if TYPE_CHECKING:
    import ssl

USER_AGENT = f"labkit/{__version__}"
MAX_REDIRECTS = 20  # httpx's limit
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_INTERIM = 8  # 1xx answers skipped before the final one
_MAX_IDLE = 8  # idle connections kept per origin
_ONE_SEND = 65536  # a request up to this size goes out in one send
_RECV = 65536

# The monotonic time by which every request in this context must be answered (see deadline()).
_DEADLINE: ContextVar[float | None] = ContextVar("labkit_transport_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Requests sent inside the block, in this thread or task, end within ``seconds`` from now
    (or the enclosing block's deadline, if sooner): a stuck exchange fails with "timed out"."""
    outer = _DEADLINE.get()
    end = time.monotonic() + seconds
    token = _DEADLINE.set(end if outer is None else min(outer, end))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class TransportError(Exception):
    """The exchange failed below HTTP: connect, TLS, timeout, or a malformed or cut-off answer.
    The message is the cause's (``timed out``, ``[Errno 111] Connection refused``); the cause
    itself (e.g. an ``ssl.SSLCertVerificationError``) is chained."""

    @classmethod
    def of(cls, exc: BaseException) -> TransportError:
        return cls(str(exc) or type(exc).__name__)


class BodyTooLargeError(TransportError):
    """The answer's body is longer than the request allowed (``Request.max_body``); reading
    stopped at the limit (ggcr ``internal/limit.ReadAll``'s words)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body exceeds {limit} byte limit")


class _Disconnected(TransportError):
    """The server closed the connection before the status line: a reused keep-alive connection
    it had dropped, so the request may be sent again on a new one."""


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # as sent: Host, User-Agent, Content-Length too
    content: bytes = b""
    max_body: int | None = None  # the most body bytes read before BodyTooLargeError
    # Past max_body, keep the first max_body bytes and drop the connection instead of raising:
    # how ggcr reads a blob (verify.ReadCloser's io.LimitReader at the descriptor's size).
    truncate: bool = False
    deadline: float | None = None  # time.monotonic() by which the exchange must be complete


@dataclass(frozen=True)
class Response:
    status_code: int
    headers: Mapping[str, str]  # names lower-cased, a repeated field's values joined by ", "
    content: bytes
    request: Request  # of the last hop: its URL is where the answer came from

    @property
    def url(self) -> str:
        return self.request.url

    @property
    def reason_phrase(self) -> str:
        from http import HTTPStatus  # error messages only: its enum costs every verify ~1 ms

        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    def json(self) -> Any:
        return json.loads(self.content)


def with_params(url: str, params: Mapping[str, str] | list[tuple[str, str]] | None) -> str:
    """``url`` with ``params`` appended to its query string."""
    if not params:
        return url
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise TransportError(f"labkit speaks http and https only, not to {url}")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:  # a port out of range or not a number
        raise TransportError.of(exc) from exc
    return parts.scheme, parts.hostname, port


class _Reader:
    """Buffered reads from a socket in which every ``recv`` waits only for the time left before
    ``deadline``: a server sending a byte a second cannot stretch an answer past it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.deadline = float("inf")

    def _fill(self) -> bool:
        """Read once more; False at the end of the stream."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")  # the message a socket timeout has
        self.sock.settimeout(left)
        data = self.sock.recv(_RECV)
        self.buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def readline(self, limit: int) -> bytes:
        """Up to and including the next newline, at most ``limit`` bytes; less at the end."""
        while True:
            end = self.buffer.find(b"\n", 0, limit)
            if end >= 0:
                return self._take(end + 1)
            if len(self.buffer) >= limit or not self._fill():
                return self._take(limit)

    def read(self, size: int = -1) -> bytes:
        """``size`` bytes (all until the end with -1); fewer if the stream ends first."""
        while (size < 0 or len(self.buffer) < size) and self._fill():
            pass
        return self._take(len(self.buffer) if size < 0 else size)


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = _Reader(sock)

    def idle_and_open(self) -> bool:
        """An idle connection has nothing to read; if it has, the server closed it (EOF) or broke
        the protocol, and it is not reused."""
        if self.reader.buffer:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        self.sock.close()


def _time_left(end: float) -> float:
    left = end - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def _read_line(reader: _Reader) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if len(line) > _MAX_LINE:
        raise TransportError(f"an answer line longer than {_MAX_LINE} bytes")
    return line


def _read_headers(reader: _Reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS + 1):
        line = _read_line(reader)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name or name != name.strip():  # also refuses obsolete line folding
            raise TransportError(f"a malformed header line {line[:60]!r}")
        key, text = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raise TransportError(f"more than {_MAX_HEADERS} header fields")


def _read_exactly(reader: _Reader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) < size:
        raise TransportError(f"the connection closed after {len(data)} of {size} body bytes")
    return data


def _read_chunked(reader: _Reader, limit: int | None, truncate: bool = False) -> tuple[bytes, bool]:
    """The body, and whether it was read to its end (False: cut at ``limit``, ``truncate``)."""
    parts: list[bytes] = []
    total = 0
    while True:  # ends at the zero-size chunk, a stream cut short or one past the limit
        line = _read_line(reader)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise TransportError(f"a malformed chunk size line {line[:60]!r}") from None
        if size == 0:
            _read_headers(reader)  # trailer fields, unused
            return b"".join(parts), True
        if limit is not None and total + size > limit:
            if not truncate:
                raise BodyTooLargeError(limit)
            parts.append(_read_exactly(reader, limit - total))
            return b"".join(parts), False
        total += size
        parts.append(_read_exactly(reader, size))
        if _read_line(reader) not in (b"\r\n", b"\n"):
            raise TransportError("a chunk longer than its size line says")


def _receive(conn: _Connection, method: str, limit: int | None,
             truncate: bool = False) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body, and whether the connection can carry another request."""
    for _ in range(_MAX_INTERIM + 1):
        line = _read_line(conn.reader)
        if not line:
            raise _Disconnected("the server closed the connection without answering")
        version, _, rest = line.decode("latin-1").partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise TransportError(f"not an HTTP/1.x answer: {line[:40]!r}")
        status, headers = int(code), _read_headers(conn.reader)
        if status >= 200:
            break
    else:
        raise TransportError(f"more than {_MAX_INTERIM} interim (1xx) answers")
    tokens = headers.get("connection", "").lower()
    keep = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    length = headers.get("content-length")
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body, whole = _read_chunked(conn.reader, limit, truncate)
        keep = keep and whole
    elif length is not None:
        if not length.isdigit():
            raise TransportError(f"a malformed Content-Length {length!r}")
        if limit is not None and int(length) > limit:
            if not truncate:
                raise BodyTooLargeError(limit)  # refused unread
            body, keep = _read_exactly(conn.reader, limit), False
        else:
            body = _read_exactly(conn.reader, int(length))
    else:
        body, keep = conn.reader.read(-1 if limit is None else limit + 1), False  # delimited by the close
        if limit is not None and len(body) > limit:
            if not truncate:
                raise BodyTooLargeError(limit)
            body = body[:limit]
    return status, headers, body, keep


class Transport:
    """Sends requests over pooled keep-alive connections. ``verify=False`` skips TLS certificate
    and host name checks; ``timeout`` (seconds) bounds each request, redirects included, from
    connect to the last body byte."""

    def __init__(self, *, verify: bool = True, timeout: float = 30.0) -> None:
        self.verify = verify
        self.timeout = timeout
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, content: bytes = b"",
        max_body: int | None = None, truncate: bool = False,
    ) -> Response:
        """Send a request, following redirects: 303 (and 301/302 after a POST) turn it into a
        body-less GET; Authorization goes only to the origin it was meant for. An answer body
        longer than ``max_body`` raises :class:`BodyTooLargeError` without being read past it
        (``truncate``: is cut to its first ``max_body`` bytes)."""
        end = time.monotonic() + self.timeout
        outer = _DEADLINE.get()
        request = replace(self._build(method, url, headers or {}, content), max_body=max_body, truncate=truncate,
                          deadline=end if outer is None else min(outer, end))
        for _ in range(MAX_REDIRECTS + 1):
            response = self.handle_request(request)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            request = self._redirect(request, response.status_code, urljoin(request.url, location))
        raise TransportError(f"more than {MAX_REDIRECTS} redirects from {url}")

    @staticmethod
    def _build(method: str, url: str, headers: Mapping[str, str], content: bytes) -> Request:
        sent = {"Host": urlsplit(url).netloc, "User-Agent": USER_AGENT, "Accept": "*/*"}
        sent.update(headers)
        if content or method in ("POST", "PUT", "PATCH"):
            sent["Content-Length"] = str(len(content))
        return Request(method, url, sent, content)

    def _redirect(self, request: Request, status: int, url: str) -> Request:
        method = request.method
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
        dropped = {"host", "content-length"}
        if _origin(url) != _origin(request.url):
            dropped.add("authorization")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
        redirected = self._build(method, url, headers, request.content if method == request.method else b"")
        return replace(redirected, max_body=request.max_body, truncate=request.truncate, deadline=request.deadline)

    def handle_request(self, request: Request) -> Response:
        """One exchange, no redirects followed."""
        origin = _origin(request.url)
        parts = urlsplit(request.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = f"{request.method} {target} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
        data = head.encode("latin-1")
        end = request.deadline or time.monotonic() + self.timeout
        conn, reused = self._checkout(origin, end)
        try:
            try:
                status, headers, body, keep = self._exchange(conn, request, data, end)
            except (_Disconnected, ConnectionError):
                if not reused:
                    raise
                # The server had dropped the idle connection: once more, on a new one.
                conn = self._connect(*origin, end)
                status, headers, body, keep = self._exchange(conn, request, data, end)
        except OSError as exc:
            raise TransportError.of(exc) from exc
        if keep:
            self._checkin(origin, conn)
        else:
            conn.close()
        return Response(status, headers, body, request)

    @staticmethod
    def _exchange(
        conn: _Connection, request: Request, data: bytes, end: float
    ) -> tuple[int, dict[str, str], bytes, bool]:
        try:
            conn.reader.deadline = end
            conn.sock.settimeout(_time_left(end))  # sendall's timeout bounds the whole send
            if len(request.content) <= _ONE_SEND:
                conn.sock.sendall(data + request.content)
            else:
                conn.sock.sendall(data)
                conn.sock.sendall(request.content)
            return _receive(conn, request.method, request.max_body, request.truncate)
        except BaseException:
            conn.close()
            raise

    def _checkout(self, origin: tuple[str, str, int], end: float) -> tuple[_Connection, bool]:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                conn = idle.pop()
                if conn.idle_and_open():
                    return conn, True
                conn.close()
        return self._connect(*origin, end), False

    def _checkin(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < _MAX_IDLE:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, scheme: str, host: str, port: int, end: float) -> _Connection:
        try:
            sock = socket.create_connection((host, port), timeout=_time_left(end))
        except OSError as exc:
            raise TransportError.of(exc) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # head and body go in two sends
            if scheme == "https":
                sock = self._tls_context().wrap_socket(sock, server_hostname=host)
        except OSError as exc:  # ssl.SSLError is one
            sock.close()
            raise TransportError.of(exc) from exc
        return _Connection(sock)

    def _tls_context(self) -> ssl.SSLContext:
        """Built on first use: loading the CA store costs more than a whole loopback verify."""
        if self._tls is None:
            import ssl

            if self.verify:  # the system's CAs, or SSL_CERT_FILE / SSL_CERT_DIR, as Go reads them
                self._tls = ssl.create_default_context()
            else:
                self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        return self._tls

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
