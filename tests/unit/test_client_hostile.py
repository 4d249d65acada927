"""The registry client against hostile loopback registries: raw paths, size limits, deadlines.

Each registry here is a few lines on a plain socket, so it can do what no real registry does on
purpose: trickle bytes, send more than it declared, or record the exact request line it got.
"""

from __future__ import annotations

import socket
import time
from contextlib import suppress

import pytest

from labkit.errors import (
    DigestMismatchError,
    LabkitError,
    NotFoundError,
    RegistryError,
    RegistryUnreachableError,
    VerificationError,
)
from labkit.oci.client import MANIFEST_LIMIT, RegistryClient
from labkit.oci.model import COSIGN_SIMPLESIGNING, OCI_CONFIG, OCI_MANIFEST, Descriptor, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.oci.transport import deadline
from labkit.signing.artifact import MAX_PAYLOAD_SIZE, SignatureImage
from tests.faults.hostile import hostile_registry
from tests.faults.hostile import send as _send


def test_dot_segments_go_to_the_registry_unnormalised() -> None:
    """ggcr sends the repository as parsed (``team/../other/renamed`` is a valid ggcr name) and Go
    never cleans a request path, so the registry judges it (distribution's NAME_INVALID, cosign
    v2.6.1 and v3.1.3 alike). Resolving the dots here verified another repository's signature."""
    seen: list[str] = []

    def not_found(conn: socket.socket, line: str) -> None:
        seen.append(line)
        _send(conn, "404 Not Found")

    with hostile_registry(not_found) as host, RegistryClient() as client, suppress(NotFoundError):
        client.get_manifest(f"{host}/team/../other/renamed:v1")
    assert seen == ["GET /v2/team/../other/renamed/manifests/v1 HTTP/1.1"]


def test_a_manifest_declared_larger_than_ggcrs_limit_is_refused_unread() -> None:
    """ggcr reads at most 100 MiB of a manifest (``manifestLimit``) and says so in these words."""
    def huge(conn: socket.socket, line: str) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {500 * 1024 * 1024}\r\n\r\n{{".encode())

    refused = pytest.raises(RegistryError, match=f"body exceeds {MANIFEST_LIMIT} byte limit")
    with hostile_registry(huge) as host, RegistryClient() as client, refused:
        client.get_manifest(f"{host}/team/app:v1")


def test_an_endless_chunked_manifest_is_read_no_further_than_the_limit() -> None:
    sent = [0]

    def endless(conn: socket.socket, line: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
        while sent[0] < 4 * MANIFEST_LIMIT:  # stops when the client hangs up, or at 400 MiB
            conn.sendall(chunk)
            sent[0] += 1 << 20

    refused = pytest.raises(RegistryError, match=f"body exceeds {MANIFEST_LIMIT} byte limit")
    with hostile_registry(endless) as host, RegistryClient() as client, refused:
        client.get_manifest(f"{host}/team/app:v1")
    assert sent[0] < MANIFEST_LIMIT + 32 * (1 << 20)  # the limit, plus what socket buffers held


def test_a_blob_is_read_no_further_than_its_descriptor_size() -> None:
    sent = [0]

    def close_delimited(conn: socket.socket, line: str) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        while sent[0] < 64 * (1 << 20):  # stops when the client hangs up, or at 64 MiB
            conn.sendall(b"x" * (1 << 20))
            sent[0] += 1 << 20

    refused = pytest.raises(DigestMismatchError, match="hashes to sha256:")
    with hostile_registry(close_delimited) as host, RegistryClient() as client, refused:
        client.get_blob(f"{host}/team/app", sha256_digest(b"0123456789"), size=10)
    assert sent[0] < 32 * (1 << 20)  # what socket buffers held


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_bytes_after_a_blobs_descriptor_size_are_not_read(framing: str) -> None:
    """ggcr reads a layer through an ``io.LimitReader`` at its descriptor's size and hashes that
    (cosign v2.6.1 verifies a signature whose payload blob comes with a byte more)."""
    blob = b"0123456789"

    def longer(conn: socket.socket, line: str) -> None:
        body = blob + b"\n"
        if framing == "length":
            _send(conn, "200 OK", body)
        elif framing == "chunked":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"6\r\n012345\r\n5\r\n6789\n\r\n0\r\n\r\n")
        else:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body)
            conn.shutdown(socket.SHUT_WR)

    with hostile_registry(longer) as host, RegistryClient() as client:
        assert client.get_blob(f"{host}/team/app", sha256_digest(blob), size=len(blob)) == blob
        assert client.get_blob(f"{host}/team/app", sha256_digest(blob), size=len(blob)) == blob  # a new connection


def test_a_signature_payload_larger_than_cosigns_limit_is_not_fetched() -> None:
    """cosign refuses a payload over 128 MiB by its descriptor, before fetching it."""
    seen: list[str] = []
    big = Descriptor(COSIGN_SIMPLESIGNING, sha256_digest(b"p"), MAX_PAYLOAD_SIZE + 1)
    manifest = Manifest(config=Descriptor.of(OCI_CONFIG, b"{}"), layers=(big,)).to_json()

    def sig_image(conn: socket.socket, line: str) -> None:
        seen.append(line)
        _send(conn, "200 OK", manifest, f"Content-Type: {OCI_MANIFEST}\r\n")

    with hostile_registry(sig_image) as host, RegistryClient() as client, pytest.raises(VerificationError) as caught:
        SignatureImage.fetch(client, Reference.parse(f"{host}/team/app:sha256-0.sig"))
    assert caught.value.message == f"size of layer ({MAX_PAYLOAD_SIZE + 1}) exceeded the limit (134217728)"
    assert seen == ["GET /v2/team/app/manifests/sha256-0.sig HTTP/1.1"]


def trickle_manifest(conn: socket.socket, line: str) -> None:
    """A manifest answer whose 40 body bytes come one a second: each read is quick, the whole slow."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n")
    for _ in range(40):
        conn.sendall(b" ")
        time.sleep(1)


def test_a_trickling_registry_fails_the_request_within_its_timeout() -> None:
    """``timeout`` bounds the whole request: a byte a second never trips a per-read timeout."""
    with hostile_registry(trickle_manifest) as host, RegistryClient(timeout=2) as client:
        start = time.monotonic()
        with pytest.raises(RegistryUnreachableError, match=r"on registry .* failed: timed out"):
            client.get_manifest(f"{host}/team/app:v1")
    assert time.monotonic() - start < 10  # 2 s, on a loaded machine


def test_an_enclosing_deadline_bounds_every_request_in_it() -> None:
    with hostile_registry(trickle_manifest) as host, RegistryClient(timeout=30) as client, deadline(1):
        start = time.monotonic()
        with pytest.raises(RegistryUnreachableError, match="timed out"):
            client.get_manifest(f"{host}/team/app:v1")
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("status", ["200 OK", "500 Internal Server Error"])
def test_a_manifest_or_error_nested_past_the_decoder_is_one_error(status: str) -> None:
    """JSON nested 100,000 deep (Go's decoder stops at 10,000, Python's about 1,000) is a registry
    answer labkit refuses in one line, never a RecursionError that ends the review."""
    nested = b'{"schemaVersion":2,"layers":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    def deep(conn: socket.socket, line: str) -> None:
        _send(conn, status, nested, f"Content-Type: {OCI_MANIFEST}\r\n")

    with hostile_registry(deep) as host, RegistryClient() as client, pytest.raises(LabkitError) as caught:
        SignatureImage.fetch(client, Reference.parse(f"{host}/team/app:sha256-0.sig"))
    assert "\n" not in caught.value.message
