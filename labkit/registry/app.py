"""The OCI Distribution Spec v1.1 HTTP API as a plain ASGI application.

Plain ASGI rather than a framework: a blob is streamed from ``receive()`` straight into the
upload file and its running hash, and served from disk in 1 MiB ``send()`` calls, with no request
or response objects in between; the routes are eight regular expressions.

Errors are :class:`~labkit.errors.RegistryAPIError` and leave as the spec's error body.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from labkit.errors import RegistryAPIError
from labkit.oci.model import OCI_INDEX
from labkit.registry.auth import REALM, BasicAuth
from labkit.registry.names import check_digest, check_name, check_reference
from labkit.registry.storage import MANIFEST_MAX_BYTES, Storage, Upload

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_SEND_CHUNK = 1024 * 1024
# A request body must arrive within BODY_TIMEOUT seconds plus one per MiB received, so a client
# trickling bytes (or none) cannot hold a connection and an upload open indefinitely; a real push
# over loopback moves many MiB a second.
BODY_TIMEOUT = 60.0
_BODY_BYTES_PER_EXTRA_SECOND = 1024 * 1024
_API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")

# Order matters where names could end like a route: ".../blobs/uploads" before ".../blobs".
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"/v2/?"), "base"),
    (re.compile(r"/v2/_catalog"), "catalog"),
    (re.compile(r"/v2/(?P<name>.+)/tags/list"), "tags"),
    (re.compile(r"/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)"), "manifest"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/?"), "upload_start"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/uploads/(?P<upload>[^/]+)"), "upload"),
    (re.compile(r"/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)"), "blob"),
    (re.compile(r"/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)"), "referrers"),
]


class ClientDisconnected(Exception):
    """The client went away mid-request; there is nobody to answer."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    receive: Receive
    body_timeout: float = BODY_TIMEOUT

    @classmethod
    def from_scope(cls, scope: dict[str, Any], receive: Receive, body_timeout: float = BODY_TIMEOUT) -> Request:
        headers: dict[str, str] = {}
        for k, v in scope["headers"]:
            key = k.decode("latin-1").lower()
            value = v.decode("latin-1")
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        return cls(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True),
            headers=headers,
            receive=receive,
            body_timeout=body_timeout,
        )

    def param(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None

    async def body(self) -> AsyncIterator[bytes]:
        started, received = time.monotonic(), 0
        while True:
            remaining = started + self.body_timeout + received / _BODY_BYTES_PER_EXTRA_SECOND - time.monotonic()
            try:
                message = await asyncio.wait_for(self.receive(), max(remaining, 0.0))
            except TimeoutError:
                raise RegistryAPIError(
                    "UNKNOWN",
                    f"request body not received within {self.body_timeout:.0f} s (plus 1 s per MiB); "
                    "the connection is closed, send the request again",
                    status=408,
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientDisconnected
            chunk = message.get("body", b"")
            if chunk:
                received += len(chunk)
                yield chunk
            if not message.get("more_body"):
                return

    async def read(self, limit: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        async for chunk in self.body():
            size += len(chunk)
            if size > limit:
                raise RegistryAPIError(
                    "MANIFEST_INVALID",
                    f"manifest is larger than the {limit // (1024 * 1024)} MiB limit",
                    status=413,
                    detail={"limit": limit},
                )
            parts.append(chunk)
        return b"".join(parts)

    async def drain(self) -> None:
        async for _ in self.body():
            pass


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # A byte range of a file to stream instead of ``body``: (path, offset, length).
    file: tuple[Path, int, int] | None = None

    async def send(self, send: Send, *, head: bool) -> None:
        length = self.file[2] if self.file else len(self.body)
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers]
        headers += [_API_VERSION, (b"content-length", str(length).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if head or self.file is None or length == 0:
            await send({"type": "http.response.body", "body": b"" if head else self.body})
            return
        path, offset, remaining = self.file
        with path.open("rb") as f:
            f.seek(offset)
            while remaining > 0:
                chunk = f.read(min(_SEND_CHUNK, remaining))
                if not chunk:  # the file shrank under us: end the response short, not hang
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        if remaining > 0:
            await send({"type": "http.response.body", "body": b""})


def _json(status: int, doc: Any, headers: list[tuple[str, str]] | None = None,
          content_type: str = "application/json") -> Response:
    return Response(status, [("Content-Type", content_type), *(headers or [])], json.dumps(doc).encode())


def error_response(exc: RegistryAPIError) -> Response:
    entry = {"code": exc.code, "message": exc.message, "detail": exc.detail}
    headers = [("WWW-Authenticate", f'Basic realm="{REALM}"')] if exc.status == 401 else []
    if exc.status == 408:  # the rest of the body may still trickle in: end the connection
        headers.append(("Connection", "close"))
    return _json(exc.status or 500, {"errors": [entry]}, headers)


def _unsupported(method: str) -> RegistryAPIError:
    return RegistryAPIError("UNSUPPORTED", f"method {method} is not supported here", status=405)


def _upload_headers(name: str, upload: Upload) -> list[tuple[str, str]]:
    # distribution's convention: "0-0" for an empty upload, else the last byte offset.
    return [
        ("Location", f"/v2/{name}/blobs/uploads/{upload.id}"),
        ("Range", f"0-{max(upload.size - 1, 0)}"),
        ("Docker-Upload-UUID", upload.id),
    ]


def _parse_content_range(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    m = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?", value.strip())
    if not m or int(m.group(1)) > int(m.group(2)):
        raise RegistryAPIError(
            "BLOB_UPLOAD_INVALID", "invalid Content-Range header", status=416, detail={"Content-Range": value}
        )
    return int(m.group(1)), int(m.group(2))


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (first, last) clamped to the blob; None when unsatisfiable."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        suffix = int(m.group(2))
        return (max(size - suffix, 0), size - 1) if suffix and size else None
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first > last or first >= size:
        return None
    return first, min(last, size - 1)


class RegistryApp:
    """ASGI callable serving one :class:`Storage`, optionally behind basic auth."""

    def __init__(self, storage: Storage, auth: BasicAuth | None = None, *, body_timeout: float = BODY_TIMEOUT) -> None:
        self.storage = storage
        self.auth = auth
        self.body_timeout = body_timeout

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request.from_scope(scope, receive, self.body_timeout)
        try:
            if self.auth is not None and not await self.auth.check(request.headers.get("authorization")):
                raise RegistryAPIError("UNAUTHORIZED", "authentication required", status=401)
            response = await self._dispatch(request)
        except RegistryAPIError as exc:
            response = error_response(exc)
        except ClientDisconnected:
            return
        await response.send(send, head=request.method == "HEAD")

    async def _dispatch(self, request: Request) -> Response:
        for pattern, route in _ROUTES:
            m = pattern.fullmatch(request.path)
            if m:
                args = m.groupdict()
                if "name" in args:
                    check_name(args["name"])
                response: Response = await getattr(self, f"_{route}")(request, **args)
                return response
        raise RegistryAPIError("UNSUPPORTED", f"no registry API at {request.path}", status=404)

    # --- base and listings --------------------------------------------------------------------

    async def _base(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise _unsupported(request.method)
        return _json(200, {})

    def _page(self, request: Request, items: list[str], path: str) -> tuple[list[str], list[tuple[str, str]]]:
        """distribution's pagination: entries after ``last``, at most ``n``, Link to the rest."""
        n_text = request.param("n")
        last = request.param("last")
        if last:
            items = [i for i in items if i > last]
        if n_text is None or n_text == "":
            return items, []
        if not n_text.isdigit():
            raise RegistryAPIError(
                "PAGINATION_NUMBER_INVALID", "invalid number of results requested", status=400, detail={"n": n_text}
            )
        n = int(n_text)
        if len(items) <= n or n == 0:
            return items[:n], []
        items = items[:n]
        link = f'<{path}?n={n}&last={quote(items[-1], safe="")}>; rel="next"'
        return items, [("Link", link)]

    async def _catalog(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise _unsupported(request.method)
        repos, headers = self._page(request, self.storage.repositories(), "/v2/_catalog")
        return _json(200, {"repositories": repos}, headers)

    async def _tags(self, request: Request, name: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise _unsupported(request.method)
        tags, headers = self._page(request, self.storage.tags(name), f"/v2/{name}/tags/list")
        return _json(200, {"name": name, "tags": tags}, headers)

    async def _referrers(self, request: Request, name: str, digest: str) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise _unsupported(request.method)
        check_digest(digest)
        descriptors = self.storage.referrers(name, digest)
        headers = []
        artifact_type = request.param("artifactType")
        if artifact_type is not None:
            descriptors = [d for d in descriptors if d.get("artifactType") == artifact_type]
            headers.append(("OCI-Filters-Applied", "artifactType"))
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return _json(200, index, headers, content_type=OCI_INDEX)

    # --- manifests ----------------------------------------------------------------------------

    async def _manifest(self, request: Request, name: str, reference: str) -> Response:
        check_reference(reference)
        if request.method in ("GET", "HEAD"):
            stored = self.storage.get_manifest(name, reference)
            headers = [("Content-Type", stored.media_type), ("Docker-Content-Digest", stored.digest),
                       ("Etag", f'"{stored.digest}"')]
            return Response(200, headers, stored.body)
        if request.method == "PUT":
            body = await request.read(MANIFEST_MAX_BYTES)
            content_type = request.headers.get("content-type", "").split(";")[0].strip() or None
            tags = request.query.get("tag", [])
            result = self.storage.put_manifest(name, reference, body, content_type, tags)
            headers = [("Location", f"/v2/{name}/manifests/{result.digest}"),
                       ("Docker-Content-Digest", result.digest)]
            if result.subject:
                headers.append(("OCI-Subject", result.subject))
            headers += [("OCI-Tag", tag) for tag in tags]
            return Response(201, headers)
        if request.method == "DELETE":
            self.storage.delete_manifest(name, reference)
            return Response(202)
        raise _unsupported(request.method)

    # --- blobs --------------------------------------------------------------------------------

    async def _blob(self, request: Request, name: str, digest: str) -> Response:
        check_digest(digest)
        if request.method == "DELETE":
            self.storage.delete_blob(name, digest)
            return Response(202)
        if request.method not in ("GET", "HEAD"):
            raise _unsupported(request.method)
        size = self.storage.blob_size(name, digest)
        path = self.storage.blob_path(digest)
        headers = [("Content-Type", "application/octet-stream"), ("Docker-Content-Digest", digest),
                   ("Etag", f'"{digest}"'), ("Accept-Ranges", "bytes")]
        range_header = request.headers.get("range")
        if range_header is None:
            return Response(200, headers, file=(path, 0, size))
        span = _parse_range(range_header, size)
        if span is None:
            raise RegistryAPIError(
                "SIZE_INVALID",
                "requested range not satisfiable",
                status=416,
                detail={"range": range_header, "size": size},
            )
        first, last = span
        headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
        return Response(206, headers, file=(path, first, last - first + 1))

    # --- uploads ------------------------------------------------------------------------------

    async def _upload_start(self, request: Request, name: str) -> Response:
        if request.method != "POST":
            raise _unsupported(request.method)
        mount = request.param("mount")
        if mount is not None:
            check_digest(mount)
            source = request.param("from")
            source_ok = source is None or _valid_name(source)
            if source_ok and self.storage.mount_blob(name, mount, source):
                await request.drain()
                return _blob_created(name, mount)
            # Not mountable: fall back to a fresh upload session (202), as the spec allows.
        digest = request.param("digest")
        upload = self.storage.start_upload(name)
        if digest is None:
            await request.drain()
            return Response(202, _upload_headers(name, upload))
        try:
            return await self._finish(request, name, upload, digest)
        except BaseException:
            self.storage.cancel_upload(upload)  # a monolithic upload leaves no session behind
            raise

    async def _upload(self, request: Request, name: str, upload: str) -> Response:
        session = self.storage.get_upload(name, upload)
        if request.method == "GET":
            return Response(204, _upload_headers(name, session))
        if request.method == "DELETE":
            self.storage.cancel_upload(session)
            return Response(204)
        if request.method == "PATCH":
            await self._append(request, session, await self._chunk_range(request, session))
            return Response(202, _upload_headers(name, session))
        if request.method == "PUT":
            digest = request.param("digest")
            if digest is None:
                raise RegistryAPIError(
                    "DIGEST_INVALID", "a PUT that completes an upload needs ?digest=", status=400
                )
            return await self._finish(request, name, session, digest)
        raise _unsupported(request.method)

    @staticmethod
    async def _chunk_range(request: Request, upload: Upload) -> tuple[int, int] | None:
        """The chunk's Content-Range, which must start where the upload ends: else 416, as the
        spec orders for out-of-order chunks, and the upload stays as it was."""
        content_range = _parse_content_range(request.headers.get("content-range"))
        if content_range is not None and content_range[0] != upload.size:
            await request.drain()
            raise RegistryAPIError(
                "BLOB_UPLOAD_INVALID",
                f"chunk starts at byte {content_range[0]}, the upload has {upload.size} bytes",
                status=416,
                detail={"Content-Range": request.headers["content-range"], "size": upload.size},
            )
        return content_range

    @staticmethod
    async def _append(request: Request, upload: Upload, content_range: tuple[int, int] | None) -> None:
        """Append the request body to the upload, whole or not at all."""
        start = upload.size
        f = upload.open()
        try:
            async for chunk in request.body():
                upload.append(f, chunk)
        except BaseException:
            f.close()
            upload.truncate(start)
            raise
        f.close()
        if content_range is not None and upload.size - start != content_range[1] - start + 1:
            received = upload.size - start
            upload.truncate(start)
            raise RegistryAPIError(
                "BLOB_UPLOAD_INVALID",
                f"Content-Range announces {content_range[1] - start + 1} bytes, the body had {received}",
                status=400,
                detail={"Content-Range": request.headers["content-range"]},
            )

    async def _finish(self, request: Request, name: str, upload: Upload, digest: str) -> Response:
        """Append any final body and turn the upload into a blob; any failure discards it."""
        content_range = await self._chunk_range(request, upload)
        try:
            check_digest(digest)
            await self._append(request, upload, content_range)
            await asyncio.to_thread(self.storage.commit_upload, upload, digest)
        except BaseException:
            self.storage.cancel_upload(upload)
            raise
        return _blob_created(name, digest)


def _blob_created(name: str, digest: str) -> Response:
    return Response(201, [("Location", f"/v2/{name}/blobs/{digest}"), ("Docker-Content-Digest", digest)])


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except RegistryAPIError:
        return False
    return True
