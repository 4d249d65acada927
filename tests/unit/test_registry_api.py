"""The embedded registry refuses bad input with the distribution spec's error codes and statuses
("Error Codes" table, the <name>/<reference> grammars) and leaves nothing partial on disk.

Oracles: the spec's text (codes, statuses, headers) and hand-computed digests; the storage root
is inspected directly for leftovers.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from labkit.registry import RegistryHandle, serve
from labkit.registry.storage import MAX_UPLOADS, UPLOAD_MAX_AGE, Storage

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Registry:
    handle: RegistryHandle
    client: httpx.Client
    root: Path

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        r = self.client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        return digest

    def push_image(self, repo: str, tag: str, *, layer: bytes = b"layer", extra: dict | None = None) -> bytes:
        config = b'{"architecture":"amd64","os":"linux"}'
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": self.push_blob(repo, config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": self.push_blob(repo, layer), "size": len(layer)}],
            **(extra or {}),
        }
        body = json.dumps(manifest).encode()
        r = self.client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        return body

    def leftovers(self) -> list[Path]:
        """Upload sessions and temporary files still on disk."""
        return [p for p in self.root.rglob("*") if p.parent.name == "uploads" or p.name.startswith(".tmp-")]


def start(root: Path, **kwargs) -> Registry:
    handle = serve(root=root, port=0, **kwargs)
    return Registry(handle, httpx.Client(base_url=handle.url, timeout=10), root)


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    registry = start(tmp_path / "root")
    yield registry
    registry.client.close()
    registry.handle.stop()


def wait_until(condition, timeout: float = 10.0) -> bool:
    """Poll for a state the server reaches asynchronously (a disconnect being noticed)."""
    deadline = time.monotonic() + timeout
    while not _holds(condition):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _holds(condition) -> bool:
    try:
        return bool(condition())
    except FileNotFoundError:  # the server removed a directory while the condition scanned it
        return False


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"errors"} and set(body["errors"][0]) >= {"code", "message"}
    return body["errors"][0]["code"]


def raw_request(handle: RegistryHandle, method: str, path: str) -> tuple[int, dict]:
    """http.client sends the path as given: no dot-segment clean-up as httpx does."""
    conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
    try:
        conn.request(method, path, headers={"Content-Length": "0"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


# --- names and references -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "%2e%2e/evil", "Upper", "a//b", "_hidden", "a/", "-a"])
def test_invalid_names_are_refused_without_touching_the_disk(reg: Registry, name: str) -> None:
    for method, path in (("POST", f"/v2/{name}/blobs/uploads/"), ("GET", f"/v2/{name}/tags/list"),
                         ("PUT", f"/v2/{name}/manifests/latest")):
        status, body = raw_request(reg.handle, method, path)
        assert status in (400, 404), (method, path, status)
        if status == 400:
            assert body["errors"][0]["code"] == "NAME_INVALID"
    assert sorted(p.name for p in reg.root.parent.iterdir()) == ["root"]
    assert list((reg.root / "repositories").iterdir()) == []
    assert list((reg.root / "uploads").iterdir()) == []


def test_name_longer_than_distribution_allows_is_invalid(reg: Registry) -> None:
    r = reg.client.get(f"/v2/{'a' * 256}/tags/list")
    assert (r.status_code, error_code(r)) == (400, "NAME_INVALID")


@pytest.mark.parametrize(
    ("reference", "code"),
    [("-leading-dash", "TAG_INVALID"), ("t" * 129, "TAG_INVALID"), ("sha256:short", "DIGEST_INVALID"),
     ("md5:d41d8cd98f00b204e9800998ecf8427e", "DIGEST_INVALID"), ("sha256:" + "A" * 64, "DIGEST_INVALID")],
)
def test_invalid_manifest_references(reg: Registry, reference: str, code: str) -> None:
    r = reg.client.get(f"/v2/repo/manifests/{reference}")
    assert (r.status_code, error_code(r)) == (400, code)


def test_unknown_things_are_404_with_their_codes(reg: Registry) -> None:
    missing = sha256(b"never pushed")
    reg.push_image("known", "v1")
    cases = [
        (reg.client.get(f"/v2/known/manifests/{missing}"), "MANIFEST_UNKNOWN"),
        (reg.client.get("/v2/known/manifests/nope"), "MANIFEST_UNKNOWN"),
        (reg.client.get(f"/v2/known/blobs/{missing}"), "BLOB_UNKNOWN"),
        (reg.client.get("/v2/unknown/tags/list"), "NAME_UNKNOWN"),
        (reg.client.get("/v2/known/blobs/uploads/00000000-0000-0000-0000-000000000000"), "BLOB_UPLOAD_UNKNOWN"),
        (reg.client.delete("/v2/known/manifests/nope"), "MANIFEST_UNKNOWN"),
    ]
    assert [(r.status_code, error_code(r)) for r, _ in cases] == [(404, code) for _, code in cases]
    # HEAD answers like GET, without a body.
    head = reg.client.head(f"/v2/known/blobs/{missing}")
    assert (head.status_code, head.content) == (404, b"")


def test_every_response_carries_the_api_version_header(reg: Registry) -> None:
    for r in (reg.client.get("/v2/"), reg.client.get("/v2/nope/tags/list")):
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


# --- manifests ------------------------------------------------------------------------------


def test_malformed_manifests_are_manifest_invalid(reg: Registry) -> None:
    bodies = [b"{not json", b"[1, 2]", json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}).encode(),
              json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {"digest": "sha256:x"},
                          "layers": []}).encode()]
    for body in bodies:
        r = reg.client.put("/v2/repo/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert (r.status_code, error_code(r)) == (400, "MANIFEST_INVALID"), body
    assert reg.client.get("/v2/repo/manifests/v1").status_code == 404


def test_manifest_referencing_unpushed_content_is_manifest_blob_unknown(reg: Registry) -> None:
    missing = sha256(b"not pushed")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing, "size": 10},
                "layers": []}
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing, "size": 10}]}
    for doc, media_type in ((manifest, OCI_MANIFEST), (index, OCI_INDEX)):
        r = reg.client.put("/v2/repo/manifests/v1", content=json.dumps(doc), headers={"Content-Type": media_type})
        assert (r.status_code, error_code(r)) == (400, "MANIFEST_BLOB_UNKNOWN")
        assert r.json()["errors"][0]["detail"]["digest"] == missing


def test_manifest_digest_mismatch_is_digest_invalid(reg: Registry) -> None:
    body = reg.push_image("repo", "v1")
    r = reg.client.put(f"/v2/repo/manifests/{sha256(body + b' ')}", content=body,
                       headers={"Content-Type": OCI_MANIFEST})
    assert (r.status_code, error_code(r)) == (400, "DIGEST_INVALID")
    assert reg.client.get(f"/v2/repo/manifests/{sha256(body + b' ')}").status_code == 404


def test_oversize_manifest_is_413_and_not_stored(reg: Registry) -> None:
    config = b"{}"
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": reg.push_blob("repo", config), "size": 2},
                "layers": [], "annotations": {"pad": "x" * (4 * 1024 * 1024)}}
    r = reg.client.put("/v2/repo/manifests/big", content=json.dumps(manifest),
                       headers={"Content-Type": OCI_MANIFEST})
    assert (r.status_code, error_code(r)) == (413, "MANIFEST_INVALID")
    assert reg.client.get("/v2/repo/manifests/big").status_code == 404
    assert reg.leftovers() == []


def test_manifest_round_trip_headers(reg: Registry) -> None:
    body = reg.push_image("repo", "v1")
    for r in (reg.client.get("/v2/repo/manifests/v1"), reg.client.head(f"/v2/repo/manifests/{sha256(body)}")):
        assert r.status_code == 200
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == sha256(body)
        assert r.headers["Content-Length"] == str(len(body))
    assert reg.client.get("/v2/repo/manifests/v1").content == body


def test_delete_by_tag_keeps_manifest_delete_by_digest_removes_its_tags(reg: Registry) -> None:
    body = reg.push_image("repo", "v1")
    reg.client.put("/v2/repo/manifests/v2", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert reg.client.delete("/v2/repo/manifests/v1").status_code == 202
    assert reg.client.get("/v2/repo/manifests/v1").status_code == 404
    assert reg.client.get(f"/v2/repo/manifests/{sha256(body)}").status_code == 200
    assert reg.client.delete(f"/v2/repo/manifests/{sha256(body)}").status_code == 202
    assert reg.client.get("/v2/repo/tags/list").json()["tags"] == []


# --- blob uploads ---------------------------------------------------------------------------


def test_blob_digest_mismatch_discards_the_upload(reg: Registry) -> None:
    data = b"x" * 5000
    wrong = sha256(b"something else")
    r = reg.client.post("/v2/repo/blobs/uploads/", params={"digest": wrong}, content=data)
    assert (r.status_code, error_code(r)) == (400, "DIGEST_INVALID")
    session = reg.client.post("/v2/repo/blobs/uploads/")
    location = session.headers["Location"]
    assert reg.client.patch(location, content=data).status_code == 202
    r = reg.client.put(location, params={"digest": wrong})
    assert (r.status_code, error_code(r)) == (400, "DIGEST_INVALID")
    assert reg.client.get(location).status_code == 404  # the session is gone
    assert reg.client.head(f"/v2/repo/blobs/{wrong}").status_code == 404
    assert reg.client.head(f"/v2/repo/blobs/{sha256(data)}").status_code == 404
    assert list((reg.root / "blobs").rglob("*.*")) == [] and reg.leftovers() == []
    assert not any(p.is_file() for p in (reg.root / "blobs").rglob("*"))


def test_chunks_must_be_in_order_and_complete(reg: Registry) -> None:
    location = reg.client.post("/v2/repo/blobs/uploads/").headers["Location"]
    first = reg.client.patch(location, content=b"a" * 100, headers={"Content-Range": "0-99"})
    assert (first.status_code, first.headers["Range"]) == (202, "0-99")
    out_of_order = reg.client.patch(location, content=b"b" * 10, headers={"Content-Range": "200-209"})
    assert (out_of_order.status_code, error_code(out_of_order)) == (416, "BLOB_UPLOAD_INVALID")
    short = reg.client.patch(location, content=b"b" * 10, headers={"Content-Range": "100-199"})
    assert (short.status_code, error_code(short)) == (400, "BLOB_UPLOAD_INVALID")
    status = reg.client.get(location)
    assert (status.status_code, status.headers["Range"]) == (204, "0-99")  # neither chunk was kept
    done = reg.client.put(location, params={"digest": sha256(b"a" * 100 + b"c")}, content=b"c",
                          headers={"Content-Range": "100-100"})
    assert done.status_code == 201
    assert reg.client.get(f"/v2/repo/blobs/{sha256(b'a' * 100 + b'c')}").content == b"a" * 100 + b"c"


def test_truncated_upload_leaves_nothing(reg: Registry) -> None:
    """The client announces 100000 bytes, sends 1000 and hangs up."""
    data = b"z" * 100_000
    with socket.create_connection(("127.0.0.1", reg.handle.port)) as s:
        s.sendall(
            f"POST /v2/repo/blobs/uploads/?digest={sha256(data)} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
            + data[:1000]
        )
        # Hang up only once the server holds the partial upload, so the check below sees the
        # clean-up rather than a request not yet begun.
        assert wait_until(lambda: any((reg.root / "uploads").iterdir()))
    assert wait_until(lambda: reg.leftovers() == []), reg.leftovers()
    assert not any(p.is_file() for p in (reg.root / "blobs").rglob("*"))
    assert reg.client.head(f"/v2/repo/blobs/{sha256(data)}").status_code == 404


def test_cancelled_upload_is_removed(reg: Registry) -> None:
    location = reg.client.post("/v2/repo/blobs/uploads/").headers["Location"]
    reg.client.patch(location, content=b"partial")
    assert reg.client.delete(location).status_code == 204
    assert reg.client.get(location).status_code == 404
    assert reg.leftovers() == []


def test_range_requests(reg: Registry) -> None:
    data = bytes(range(256)) * 8
    digest = reg.push_blob("repo", data)
    r = reg.client.get(f"/v2/repo/blobs/{digest}", headers={"Range": "bytes=10-19"})
    assert (r.status_code, r.content, r.headers["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    r = reg.client.get(f"/v2/repo/blobs/{digest}", headers={"Range": "bytes=-5"})
    assert (r.status_code, r.content) == (206, data[-5:])
    assert reg.client.get(f"/v2/repo/blobs/{digest}", headers={"Range": "bytes=9999-"}).status_code == 416


def test_cross_repository_mount(reg: Registry) -> None:
    digest = reg.push_blob("source", b"shared layer")
    r = reg.client.post("/v2/target/blobs/uploads/", params={"mount": digest, "from": "source"})
    assert (r.status_code, r.headers["Location"]) == (201, f"/v2/target/blobs/{digest}")
    assert reg.client.get(f"/v2/target/blobs/{digest}").content == b"shared layer"
    missing = sha256(b"nowhere")
    fallback = reg.client.post("/v2/target/blobs/uploads/", params={"mount": missing, "from": "source"})
    assert fallback.status_code == 202 and "/blobs/uploads/" in fallback.headers["Location"]


# --- listings and referrers -----------------------------------------------------------------


def test_tag_list_pagination(reg: Registry) -> None:
    body = reg.push_image("repo", "a")
    for tag in ("e", "c", "b", "d"):
        reg.client.put(f"/v2/repo/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert reg.client.get("/v2/repo/tags/list").json() == {"name": "repo", "tags": ["a", "b", "c", "d", "e"]}
    page = reg.client.get("/v2/repo/tags/list", params={"n": 2})
    assert page.json()["tags"] == ["a", "b"]
    assert page.headers["Link"] == '</v2/repo/tags/list?n=2&last=b>; rel="next"'
    page = reg.client.get("/v2/repo/tags/list", params={"n": 2, "last": "d"})
    assert (page.json()["tags"], "Link" in page.headers) == (["e"], False)
    bad = reg.client.get("/v2/repo/tags/list", params={"n": "-1"})
    assert (bad.status_code, error_code(bad)) == (400, "PAGINATION_NUMBER_INVALID")


def test_referrers_and_artifact_type_filter(reg: Registry) -> None:
    subject_body = reg.push_image("repo", "v1")
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(subject_body), "size": len(subject_body)}
    sig = reg.push_image("repo", "sig", layer=b"sig", extra={"artifactType": "application/example.sig",
                                                              "subject": subject, "annotations": {"k": "v"}})
    sbom = reg.push_image("repo", "sbom", layer=b"sbom", extra={"subject": subject})
    put = reg.client.put(f"/v2/repo/manifests/{sha256(sig)}", content=sig, headers={"Content-Type": OCI_MANIFEST})
    assert put.headers["OCI-Subject"] == subject["digest"]

    r = reg.client.get(f"/v2/repo/referrers/{subject['digest']}")
    assert r.headers["Content-Type"] == OCI_INDEX and "OCI-Filters-Applied" not in r.headers
    assert sorted(r.json()["manifests"], key=lambda d: d["digest"]) == sorted([
        {"mediaType": OCI_MANIFEST, "digest": sha256(sig), "size": len(sig),
         "artifactType": "application/example.sig", "annotations": {"k": "v"}},
        # no artifactType: the image-spec says the config's media type stands in
        {"mediaType": OCI_MANIFEST, "digest": sha256(sbom), "size": len(sbom),
         "artifactType": "application/vnd.oci.image.config.v1+json"},
    ], key=lambda d: d["digest"])
    filtered = reg.client.get(f"/v2/repo/referrers/{subject['digest']}", params={"artifactType": "application/example.sig"})
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [d["digest"] for d in filtered.json()["manifests"]] == [sha256(sig)]
    reg.client.delete(f"/v2/repo/manifests/{sha256(sig)}")
    after = reg.client.get(f"/v2/repo/referrers/{subject['digest']}").json()["manifests"]
    assert [d["digest"] for d in after] == [sha256(sbom)]


# --- auth, persistence ----------------------------------------------------------------------

# crypt_blowfish's published test vector: "U*U" under this salt at cost 5.
HTPASSWD_VECTOR = "learner:$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW\n"


def test_basic_auth_from_htpasswd(tmp_path: Path) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(HTPASSWD_VECTOR)
    reg = start(tmp_path / "root", htpasswd=htpasswd)
    try:
        anonymous = reg.client.get("/v2/")
        assert (anonymous.status_code, error_code(anonymous)) == (401, "UNAUTHORIZED")
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="labkit"'
        assert reg.client.get("/v2/", auth=("learner", "U*V")).status_code == 401
        assert reg.client.get("/v2/", auth=("someone", "U*U")).status_code == 401
        assert reg.client.get("/v2/", auth=("learner", "U*U")).status_code == 200
        assert reg.client.get("/v2/", auth=("learner", "U*U")).status_code == 200  # remembered path
    finally:
        reg.handle.stop()


def test_single_user_password_over_bcrypt_limit_is_a_usage_error(tmp_path: Path) -> None:
    """Issue 13 item 7: ``--username`` with a 73-byte password crashed; Go's bcrypt (which
    distribution and htpasswd tooling use) refuses to hash it: "password length exceeds 72 bytes"."""
    from labkit.errors import UsageError

    with pytest.raises(UsageError, match="password length exceeds 72 bytes") as info:
        serve(root=tmp_path, port=0, username="learner", password="p" * 73)
    assert "72" in (info.value.hint or "")


def test_authenticated_client_is_answered_during_a_wrong_password_flood(tmp_path: Path) -> None:
    """Issue 13 item 7: each wrong password costs a bcrypt check (cost 12, ~0.3 s); a flood of
    them queued the remembered, right-password client behind them for seconds. Generous bound."""
    from concurrent.futures import ThreadPoolExecutor

    reg = start(tmp_path / "root", username="learner", password="right")
    try:
        assert reg.client.get("/v2/", auth=("learner", "right")).status_code == 200

        def wrong(i: int) -> int:
            return httpx.get(f"{reg.handle.url}/v2/", auth=("learner", f"wrong-{i}"), timeout=60).status_code

        with ThreadPoolExecutor(60) as pool:
            flood = [pool.submit(wrong, i) for i in range(120)]
            time.sleep(0.5)  # the flood is queued by now
            began = time.monotonic()
            assert reg.client.get("/v2/", auth=("learner", "right")).status_code == 200
            elapsed = time.monotonic() - began
            assert {f.result() for f in flood} == {401}
        assert elapsed < 2.0, f"an authenticated request took {elapsed:.1f} s during the flood"
    finally:
        reg.handle.stop()


def test_content_survives_a_restart(tmp_path: Path) -> None:
    first = start(tmp_path / "root")
    body = first.push_image("lab/app", "v1", layer=b"persistent layer")
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(body), "size": len(body)}
    first.push_image("lab/app", "sig", layer=b"s", extra={"subject": subject})
    unfinished = first.client.post("/v2/lab/app/blobs/uploads/").headers["Location"]
    first.client.patch(unfinished, content=b"half ")
    first.handle.stop()

    second = start(tmp_path / "root")
    try:
        assert second.client.get("/v2/lab/app/manifests/v1").content == body
        assert second.client.get(f"/v2/lab/app/blobs/{sha256(b'persistent layer')}").content == b"persistent layer"
        assert second.client.get("/v2/lab/app/tags/list").json()["tags"] == ["sig", "v1"]
        assert len(second.client.get(f"/v2/lab/app/referrers/{sha256(body)}").json()["manifests"]) == 1
        assert second.client.get("/v2/_catalog").json() == {"repositories": ["lab/app"]}
        # An upload begun before the restart resumes: its running hash is rebuilt from disk.
        done = second.client.put(unfinished, params={"digest": sha256(b"half done")}, content=b"done")
        assert done.status_code == 201
    finally:
        second.handle.stop()


def _age(session_dir: Path, seconds: float) -> None:
    """Make an upload session look idle for ``seconds``."""
    past = time.time() - seconds
    for path in (*session_dir.iterdir(), session_dir):
        os.utime(path, (past, past))


def test_abandoned_upload_sessions_are_purged_on_start(tmp_path: Path) -> None:
    """Issue 13 item 10: 2,000 abandoned sessions left 6,025 inodes that survived restarts.
    Sessions idle past UPLOAD_MAX_AGE go on start-up; a recent one still resumes."""
    first = start(tmp_path / "root")
    abandoned = [first.client.post("/v2/lab/app/blobs/uploads/").headers["Docker-Upload-UUID"] for _ in range(20)]
    recent = first.client.post("/v2/lab/app/blobs/uploads/").headers["Location"]
    first.client.patch(recent, content=b"half ")
    first.handle.stop()
    for session in abandoned:
        _age(tmp_path / "root" / "uploads" / session, UPLOAD_MAX_AGE + 60)

    second = start(tmp_path / "root")
    try:
        assert sorted(p.name for p in (tmp_path / "root" / "uploads").iterdir()) == [recent.rsplit("/", 1)[1]]
        gone = second.client.get(f"/v2/lab/app/blobs/uploads/{abandoned[0]}")
        assert (gone.status_code, error_code(gone)) == (404, "BLOB_UPLOAD_UNKNOWN")
        assert second.client.put(recent, params={"digest": sha256(b"half done")}, content=b"done").status_code == 201
    finally:
        second.handle.stop()


def test_upload_sessions_are_capped_and_idle_ones_make_room(tmp_path: Path) -> None:
    """Issue 13 item 10: at MAX_UPLOADS open sessions a new one is distribution's 429
    TOOMANYREQUESTS (the open ones keep working); once one has idled out, there is room again."""
    reg = start(tmp_path / "root")
    try:
        sessions = [reg.client.post("/v2/lab/app/blobs/uploads/") for _ in range(MAX_UPLOADS)]
        assert {r.status_code for r in sessions} == {202}
        refused = reg.client.post("/v2/lab/app/blobs/uploads/")
        assert (refused.status_code, error_code(refused)) == (429, "TOOMANYREQUESTS")
        assert reg.client.patch(sessions[0].headers["Location"], content=b"more").status_code == 202
        _age(tmp_path / "root" / "uploads" / sessions[1].headers["Docker-Upload-UUID"], UPLOAD_MAX_AGE + 60)
        assert reg.client.post("/v2/lab/app/blobs/uploads/").status_code == 202
        assert len(list((tmp_path / "root" / "uploads").iterdir())) == MAX_UPLOADS
    finally:
        reg.handle.stop()


def test_idle_upload_sessions_are_purged_while_serving(tmp_path: Path) -> None:
    """The purge also runs periodically (here every time) while the registry serves."""
    storage = Storage(tmp_path, purge_interval=0)
    idle = storage.start_upload("lab/app")
    _age(idle.directory, UPLOAD_MAX_AGE + 60)
    storage.start_upload("lab/app")
    assert not idle.directory.exists()
    assert len(list((tmp_path / "uploads").iterdir())) == 1


def test_port_in_use_names_the_port_and_a_free_one(reg: Registry) -> None:
    from labkit.errors import LabError

    with pytest.raises(LabError) as info:
        serve(root=reg.root, port=reg.handle.port)
    assert f"127.0.0.1:{reg.handle.port}" in str(info.value) and "try --port" in (info.value.hint or "")


def test_non_loopback_address_needs_explicit_consent(tmp_path: Path) -> None:
    from labkit.errors import UsageError

    with pytest.raises(UsageError, match="non-loopback"):
        serve(root=tmp_path, port=0, address="0.0.0.0")


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def test_docker_schema2_manifest_and_list_keep_their_media_types(reg: Registry) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"docker layer"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": reg.push_blob("d", config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": reg.push_blob("d", layer), "size": len(layer)}],
    }).encode()
    assert reg.client.put(f"/v2/d/manifests/{sha256(manifest)}", content=manifest,
                          headers={"Content-Type": DOCKER_MANIFEST}).status_code == 201
    listing = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"}}],
    }).encode()
    assert reg.client.put("/v2/d/manifests/multi", content=listing,
                          headers={"Content-Type": DOCKER_LIST}).status_code == 201
    assert reg.client.get(f"/v2/d/manifests/{sha256(manifest)}").headers["Content-Type"] == DOCKER_MANIFEST
    got = reg.client.get("/v2/d/manifests/multi")
    assert (got.headers["Content-Type"], got.content) == (DOCKER_LIST, listing)
    # The body's mediaType and the Content-Type header must agree, as distribution insists.
    r = reg.client.put("/v2/d/manifests/x", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert (r.status_code, error_code(r)) == (400, "MANIFEST_INVALID")


def test_monolithic_upload_with_bad_content_range_leaves_no_session(reg: Registry) -> None:
    data = b"abc"
    r = reg.client.post("/v2/repo/blobs/uploads/", params={"digest": sha256(data)}, content=data,
                        headers={"Content-Range": "5-7"})
    assert (r.status_code, error_code(r)) == (416, "BLOB_UPLOAD_INVALID")
    assert reg.leftovers() == []
