"""The registry client against real distribution (Debian's docker-registry 2.8).

distribution is the independent truth here: it computes digests itself (``Docker-Content-Digest``),
enforces the upload protocol, paginates tags, and has no referrers API, so referrers go through
the tag-schema fallback. Traffic is observed by a recording subclass of the client's own
transport; nothing is faked except where a test tampers with bytes on purpose.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import io
import json
import os
import re
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from labkit.errors import (
    AuthenticationError,
    DigestMismatchError,
    InsecureRegistryError,
    NotFoundError,
    RegistryUnreachableError,
)
from labkit.oci.auth import Credentials
from labkit.oci.client import RegistryClient
from labkit.oci.model import (
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Image,
    ImageIndex,
    Index,
    Manifest,
    Platform,
    sha256_digest,
)
from labkit.oci.reference import Reference
from labkit.oci.transport import Request, Response, Transport

from tests.peers import PeerMissing, RunningRegistry, free_port, run_distribution

pytestmark = pytest.mark.interop

PASSWORD = "s3cret-pa55"


class Recorder(Transport):
    """The real transport, remembering (method, url, status, request headers) of every exchange
    (httpx's URL and Headers, for their parsing)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, httpx.URL, int, httpx.Headers]] = []

    def handle_request(self, request: Request) -> Response:
        response = super().handle_request(request)
        self.log.append((request.method, httpx.URL(request.url), response.status_code, httpx.Headers(request.headers)))
        return response

    def calls(self, method: str, path_part: str = "") -> list[tuple[httpx.URL, int, httpx.Headers]]:
        return [(u, s, h) for m, u, s, h in self.log if m == method and path_part in u.path]


class Tamper(Transport):
    """A man in the middle: flips the last byte of every body served from ``/blobs/`` or ``/manifests/``."""

    def __init__(self, part: str) -> None:
        super().__init__()
        self.part = part

    def handle_request(self, request: Request) -> Response:
        response = super().handle_request(request)
        if request.method == "GET" and self.part in httpx.URL(request.url).path and response.status_code == 200:
            body = bytearray(response.content)
            body[-1] ^= 0x01
            return dataclasses.replace(response, content=bytes(body))
        return response


def make_image(seed: str, *, docker: bool = False, arch: str = "amd64") -> Image:
    """A valid image (``crane validate`` passes): a gzipped tar layer and a config naming its diff_id."""
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        content = f"layer for {seed} on {arch}\n".encode() * 50
        info = tarfile.TarInfo("seed.txt")
        info.size = len(content)
        t.addfile(info, io.BytesIO(content))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = json.dumps({
        "architecture": arch, "os": "linux", "config": {"Labels": {"seed": seed}},
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar.getvalue())]},
    }).encode()
    manifest = Manifest(
        config=Descriptor.of(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        layers=(Descriptor.of(DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP, layer),),
        media_type=DOCKER_MANIFEST if docker else OCI_MANIFEST,
    )
    return Image(manifest=manifest, config=config, layers=[layer])


def make_index(seed: str, *, docker: bool = False) -> ImageIndex:
    images = [make_image(seed, docker=docker, arch=arch) for arch in ("amd64", "arm64")]
    index = Index(
        manifests=tuple(
            Descriptor(img.manifest.media_type, img.digest, len(img.manifest_bytes), platform=Platform("linux", arch))
            for img, arch in zip(images, ("amd64", "arm64"))
        ),
        media_type=DOCKER_LIST if docker else OCI_INDEX,
    )
    return ImageIndex(index=index, images=images)


def raw_get(registry: RunningRegistry, path: str, accept: str = "") -> httpx.Response:
    """What distribution itself says, bypassing labkit."""
    return httpx.get(f"{registry.url}{path}", headers={"Accept": accept} if accept else {})


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient() as c:
        yield c


@pytest.fixture
def repo(distribution_registry: RunningRegistry, request: pytest.FixtureRequest) -> Reference:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return Reference.parse(f"{distribution_registry.host}/client/{name}:latest")


# --- manifests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, media_type",
    [("oci-image", OCI_MANIFEST), ("oci-index", OCI_INDEX), ("docker-image", DOCKER_MANIFEST), ("docker-list", DOCKER_LIST)],
)
def test_manifest_round_trip(
    kind: str, media_type: str, client: RegistryClient, repo: Reference, distribution_registry: RunningRegistry
) -> None:
    docker = kind.startswith("docker")
    content = make_index(kind, docker=docker) if kind.endswith(("index", "list")) else make_image(kind, docker=docker)
    digest = client.push_image(repo, content)

    served = raw_get(distribution_registry, f"/v2/{repo.repository}/manifests/latest", media_type)
    assert served.headers["docker-content-digest"] == digest == sha256_digest(content.manifest_bytes)
    assert served.headers["content-type"] == media_type
    assert served.content == content.manifest_bytes

    fetched = client.get_manifest(repo)
    assert (fetched.data, fetched.media_type, fetched.digest) == (content.manifest_bytes, media_type, digest)
    assert client.resolve(repo) == digest
    head = client.head_manifest(repo.with_digest(digest))
    assert (head.media_type, head.digest, head.size) == (media_type, digest, len(content.manifest_bytes))

    pulled = client.pull_image(repo)
    assert type(pulled) is type(content) and pulled.digest == digest
    if isinstance(content, ImageIndex):
        assert [i.layers for i in pulled.images] == [i.layers for i in content.images]
        arm = client.pull_image(repo, platform="linux/arm64")
        assert arm.digest == content.images[1].digest
    else:
        assert (pulled.config, pulled.layers) == (content.config, content.layers)


def test_absent_things_raise_not_found(client: RegistryClient, repo: Reference) -> None:
    client.push_image(repo, make_image("present"))
    with pytest.raises(NotFoundError) as err:
        client.get_manifest(repo.with_tag("missing"))
    assert err.value.code == "MANIFEST_UNKNOWN" and err.value.status == 404
    assert "missing" in str(err.value)
    with pytest.raises(NotFoundError):
        client.head_manifest(repo.with_tag("missing"))
    absent = sha256_digest(b"never pushed")
    assert client.blob_exists(repo, absent) is False
    with pytest.raises(NotFoundError) as err:
        client.get_blob(repo, absent)
    assert err.value.code == "BLOB_UNKNOWN"


def test_delete_manifest(client: RegistryClient, repo: Reference) -> None:
    digest = client.push_image(repo, make_image("doomed"))
    client.delete_manifest(repo.with_digest(digest))
    with pytest.raises(NotFoundError) as err:
        client.get_manifest(repo.with_digest(digest))
    assert err.value.code == "MANIFEST_UNKNOWN"


# --- blobs ----------------------------------------------------------------------------------


def test_monolithic_upload_is_one_put(distribution_registry: RunningRegistry, repo: Reference) -> None:
    rec = Recorder()
    data = os.urandom(5000)
    with RegistryClient(transport=rec) as c:
        digest = c.push_blob(repo, data)
        assert c.get_blob(repo, digest) == data
    assert digest == sha256_digest(data)
    puts = rec.calls("PUT", "/blobs/uploads/")
    assert len(puts) == 1 and puts[0][1] == 201 and puts[0][2]["content-length"] == "5000"
    assert rec.calls("PATCH") == []
    served = raw_get(distribution_registry, f"/v2/{repo.repository}/blobs/{digest}")
    assert served.content == data and served.headers["docker-content-digest"] == digest


def test_chunked_upload_patches_in_order(distribution_registry: RunningRegistry, repo: Reference) -> None:
    rec = Recorder()
    data = os.urandom(10_000)
    with RegistryClient(transport=rec) as c:
        digest = c.push_blob(repo, data, chunk_size=4096)
    patches = rec.calls("PATCH", "/blobs/uploads/")
    assert [h["content-range"] for _, _, h in patches] == ["0-4095", "4096-8191", "8192-9999"]
    assert all(status == 202 for _, status, _ in patches)
    (put_url, put_status, _), = rec.calls("PUT", "/blobs/uploads/")
    assert put_status == 201 and put_url.params["digest"] == digest
    assert raw_get(distribution_registry, f"/v2/{repo.repository}/blobs/{digest}").content == data


def test_existing_blob_is_not_uploaded_again(repo: Reference) -> None:
    rec = Recorder()
    with RegistryClient(transport=rec) as c:
        c.push_blob(repo, b"once")
        c.push_blob(repo, b"once")
    assert len(rec.calls("POST", "/blobs/uploads/")) == 1


def test_cross_repo_mount_201(distribution_registry: RunningRegistry, repo: Reference) -> None:
    rec = Recorder()
    data = os.urandom(3000)
    target = Reference.parse(f"{distribution_registry.host}/client/mount-target:latest")
    with RegistryClient(transport=rec) as c:
        digest = c.push_blob(repo, data)
        assert c.push_blob(target, data, mount_from=repo.repository) == digest
    (url, status, _), = [c for c in rec.calls("POST", "/blobs/uploads/") if "mount-target" in c[0].path]
    assert status == 201 and url.params["mount"] == digest and url.params["from"] == repo.repository
    assert not [c for c in rec.calls("PUT") if "mount-target" in c[0].path]
    assert raw_get(distribution_registry, f"/v2/client/mount-target/blobs/{digest}").content == data


def test_cross_repo_mount_falls_back_to_upload_on_202(
    distribution_registry: RunningRegistry, repo: Reference
) -> None:
    rec = Recorder()
    data = os.urandom(3000)
    with RegistryClient(transport=rec) as c:
        digest = c.push_blob(repo, data, mount_from="client/has-nothing")
    (_, status, _), = rec.calls("POST", "/blobs/uploads/")
    assert status == 202
    assert rec.calls("PUT", "/blobs/uploads/")[0][1] == 201
    assert raw_get(distribution_registry, f"/v2/{repo.repository}/blobs/{digest}").content == data


# --- tags -----------------------------------------------------------------------------------


def push_tags(c: RegistryClient, repo: Reference, tags: list[str]) -> None:
    image = make_image("tags")
    for tag in tags:
        c.push_image(repo.with_tag(tag), image)


def test_list_tags_where_the_registry_ignores_n(distribution_registry: RunningRegistry, repo: Reference) -> None:
    # distribution 2.8 paginates only the catalog; its tags handler ignores n and sends no Link.
    rec = Recorder()
    tags = ["a1", "b2", "c3"]
    with RegistryClient(transport=rec) as c:
        push_tags(c, repo, tags)
        listed = c.list_tags(repo, page_size=2)
    assert listed == raw_get(distribution_registry, f"/v2/{repo.repository}/tags/list").json()["tags"]
    assert sorted(listed) == tags
    (url, _, _), = rec.calls("GET", "/tags/list")
    assert url.params["n"] == "2"


def test_list_tags_follows_link_pagination(labkit_registry: RunningRegistry) -> None:
    # labkit's embedded registry pages tags as distribution-spec describes (n, last, Link).
    rec = Recorder()
    repo = Reference.parse(f"{labkit_registry.host}/client/paged:latest")
    tags = ["a1", "b2", "c3", "d4", "e5"]
    with RegistryClient(transport=rec) as c:
        push_tags(c, repo, tags)
        listed = c.list_tags(repo, page_size=2)
    assert listed == tags
    pages = rec.calls("GET", "/tags/list")
    assert [(u.params.get("n"), u.params.get("last")) for u, _, _ in pages] == [
        ("2", None), ("2", "b2"), ("2", "d4")
    ]


# --- referrers (distribution 2.8 has no API: the tag schema is used) ------------------------


def artifact(subject: Image, artifact_type: str, payload: bytes, annotations: dict[str, str] | None = None) -> Manifest:
    return Manifest(
        config=Descriptor.of(OCI_EMPTY, EMPTY_JSON),
        layers=(Descriptor.of("text/plain", payload),),
        artifact_type=artifact_type,
        annotations=annotations,
        subject=Descriptor(OCI_MANIFEST, subject.digest, len(subject.manifest_bytes)),
    )


def test_referrers_via_tag_schema_fallback(
    distribution_registry: RunningRegistry, client: RegistryClient, repo: Reference
) -> None:
    subject = make_image("subject")
    subject_digest = client.push_image(repo, subject)
    subject_ref = repo.with_digest(subject_digest)
    assert client.referrers(subject_ref).manifests == ()

    pushed = {}
    for artifact_type, payload in (("application/x-sbom", b"sbom"), ("application/x-sig", b"sig")):
        manifest = artifact(subject, artifact_type, payload, {"org.example.kind": artifact_type})
        client.push_blob(repo, EMPTY_JSON)
        client.push_blob(repo, payload)
        pushed[artifact_type] = client.push_referrer(repo, manifest.to_json(), OCI_MANIFEST)
        client.push_referrer(repo, manifest.to_json(), OCI_MANIFEST)  # again: no duplicate entry

    # distribution has no referrers API …
    assert raw_get(distribution_registry, f"/v2/{repo.repository}/referrers/{subject_digest}").status_code == 404
    # … so the fallback index sits under the tag sha256-<hex>, descriptors sorted by digest.
    fallback_tag = subject_digest.replace(":", "-")
    served = raw_get(distribution_registry, f"/v2/{repo.repository}/manifests/{fallback_tag}", OCI_INDEX)
    doc = served.json()
    assert served.headers["content-type"] == OCI_INDEX and doc["mediaType"] == OCI_INDEX
    assert [d["digest"] for d in doc["manifests"]] == sorted(pushed.values())
    assert {d["artifactType"] for d in doc["manifests"]} == set(pushed)
    assert all(d["annotations"] == {"org.example.kind": d["artifactType"]} for d in doc["manifests"])

    found = client.referrers(subject_ref)
    assert sorted(d.digest for d in found.manifests) == sorted(pushed.values())
    only = client.referrers(subject_ref, artifact_type="application/x-sig")
    assert [d.digest for d in only.manifests] == [pushed["application/x-sig"]]
    assert client.referrers(subject_ref, artifact_type="application/x-none").manifests == ()
    assert fallback_tag in client.list_tags(repo)


# --- trust and failure ----------------------------------------------------------------------


def test_tampered_blob_and_manifest_are_refused(repo: Reference) -> None:
    image = make_image("tamper")
    with RegistryClient() as c:
        digest = c.push_image(repo, image)
    layer_digest = image.manifest.layers[0].digest
    with RegistryClient(transport=Tamper("/blobs/")) as c:
        with pytest.raises(DigestMismatchError) as err:
            c.get_blob(repo, layer_digest)
        assert layer_digest in str(err.value)
    with RegistryClient(transport=Tamper("/manifests/")) as c:
        with pytest.raises(DigestMismatchError):
            c.get_manifest(repo.with_digest(digest))  # checked against the requested digest
        with pytest.raises(DigestMismatchError):
            c.get_manifest(repo)  # by tag: checked against Docker-Content-Digest
        with pytest.raises(DigestMismatchError):
            c.pull_image(repo)


def test_closed_port_is_unreachable() -> None:
    port = free_port()  # bound and released: nothing listens there
    with RegistryClient() as c, pytest.raises(RegistryUnreachableError) as err:
        c.get_manifest(f"127.0.0.1:{port}/app:v1")
    message = err.value.diagnostics()  # the message, then the hint
    assert f"127.0.0.1:{port}" in message and "labkit lab status" in message


# --- extra distribution instances: plain HTTP off loopback, basic auth ----------------------


@contextmanager
def distribution(root: Path, host: str, extra: str = "") -> Iterator[RunningRegistry]:
    try:
        with run_distribution(root, host=host, extra_config=extra) as registry:
            yield registry
    except PeerMissing as exc:
        pytest.skip(str(exc))


def test_plain_http_off_loopback_needs_allow_insecure(tmp_path: Path) -> None:
    # 127.0.0.2 routes to this machine, but ggcr's Scheme() treats only 127.0.0.1 as loopback.
    with distribution(tmp_path, "127.0.0.2") as registry:
        ref = Reference.parse(f"{registry.host}/app:v1")
        assert not ref.is_insecure_by_default
        with RegistryClient() as c, pytest.raises(InsecureRegistryError) as err:
            c.push_image(ref, make_image("insecure"))
        assert "--allow-insecure-registry" in (err.value.hint or "")
        with RegistryClient(allow_insecure=True) as c:
            assert c.push_image(ref, make_image("insecure")) == c.resolve(ref)


@pytest.fixture(scope="module")
def basic_auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    bcrypt = pytest.importorskip("bcrypt", reason="bcrypt (test extra) writes the htpasswd file")
    root = tmp_path_factory.mktemp("htpasswd-registry")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(f"learner:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    with distribution(root, "127.0.0.1", f"auth: {{htpasswd: {{realm: labkit-test, path: {htpasswd}}}}}\n") as reg:
        yield reg


def test_basic_auth_with_explicit_credentials(basic_auth_registry: RunningRegistry) -> None:
    ref = Reference.parse(f"{basic_auth_registry.host}/private/app:v1")
    image = make_image("basic")
    with RegistryClient(credentials=Credentials("learner", PASSWORD)) as c:
        digest = c.push_image(ref, image)
        assert c.pull_image(ref).digest == digest
    assert httpx.get(f"{basic_auth_registry.url}/v2/").status_code == 401  # it really demands auth


@pytest.mark.parametrize("credentials", [None, Credentials("learner", "wrong-password")])
def test_basic_auth_refusal(
    basic_auth_registry: RunningRegistry, credentials: Credentials | None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no config.json there
    ref = Reference.parse(f"{basic_auth_registry.host}/private/app:v1")
    with RegistryClient(credentials=credentials) as c, pytest.raises(AuthenticationError) as err:
        c.get_manifest(ref)
    assert err.value.status == 401 and err.value.code == "UNAUTHORIZED"
    assert "wrong-password" not in str(err.value) and "wrong-password" not in repr(err.value)


def test_basic_auth_from_docker_config(
    basic_auth_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    auth = base64.b64encode(f"learner:{PASSWORD}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {f"http://{basic_auth_registry.host}/v2/": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    ref = Reference.parse(f"{basic_auth_registry.host}/private/from-config:v1")
    with RegistryClient() as c:
        digest = c.push_image(ref, make_image("config"))
        assert c.resolve(ref) == digest


def test_docker_config_repository_key_wins(
    basic_auth_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    host = basic_auth_registry.host
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        host: {"username": "learner", "password": "not-the-password"},
        f"{host}/private/scoped": {"username": "learner", "password": PASSWORD},
    }}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with RegistryClient() as c:
        c.push_image(f"{host}/private/scoped:v1", make_image("scoped"))
        with pytest.raises(AuthenticationError) as err:
            c.push_image(f"{host}/private/elsewhere:v1", make_image("scoped"))
    assert "not-the-password" not in str(err.value)


# --- bearer tokens: a token-checking gateway in front of real distribution ------------------


class TokenGateway(ThreadingHTTPServer):
    """Serves ``/token`` (basic-authenticated, grants the asked scopes) and forwards every
    ``/v2/`` request carrying a token that covers it to distribution; otherwise answers 401 with
    a Bearer challenge, as distribution's token auth does."""

    def __init__(self, upstream: RunningRegistry) -> None:
        super().__init__(("127.0.0.1", 0), _GatewayHandler)
        self.upstream = upstream
        self.tokens: dict[str, set[str]] = {}
        self.token_requests: list[list[str]] = []
        self.host = f"127.0.0.1:{self.server_address[1]}"


class _GatewayHandler(BaseHTTPRequestHandler):
    server: TokenGateway

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _needed_scope(self) -> str:
        repo = self.path.split("?")[0][len("/v2/") :].rsplit("/", 2)[0].removesuffix("/blobs")
        return f"repository:{repo}:{'pull' if self.command in ('GET', 'HEAD') else 'push'}"

    def _handle(self) -> None:
        url = httpx.URL(self.path)
        if url.path == "/token":
            expected = "Basic " + base64.b64encode(f"learner:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                return self._reply(401, {})
            scopes = url.params.get_list("scope")
            self.server.token_requests.append(scopes)
            token = f"token-{len(self.server.tokens)}"
            self.server.tokens[token] = {
                f"repository:{s.split(':')[1]}:{a}" for s in scopes for a in s.split(":")[2].split(",")
            }
            return self._reply(200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode())
        auth = self.headers.get("Authorization", "")
        granted = self.server.tokens.get(auth.removeprefix("Bearer "), set())
        if url.path != "/v2/" and self._needed_scope() in granted:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
            resp = httpx.request(
                self.command, f"{self.server.upstream.url}{self.path}", headers=headers, content=body
            )
            out = {k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "connection")}
            if "location" in out:
                out["location"] = out["location"].replace(self.server.upstream.host, self.server.host)
            return self._reply(resp.status_code, out, resp.content)
        challenge = f'Bearer realm="http://{self.server.host}/token",service="gateway"'
        if url.path != "/v2/":
            challenge += f',scope="{self._needed_scope().replace(":push", ":push,pull")}"'
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
        self._reply(401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


@pytest.fixture
def gateway(distribution_registry: RunningRegistry) -> Iterator[TokenGateway]:
    server = TokenGateway(distribution_registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_bearer_token_flow(gateway: TokenGateway) -> None:
    ref = Reference.parse(f"{gateway.host}/bearer/app:v1")
    image = make_image("bearer")
    with RegistryClient(credentials=Credentials("learner", PASSWORD)) as c:
        digest = c.push_image(ref, image)
        assert c.pull_image(ref).digest == digest
    # The first HEAD needs pull; the upload needs push (asked push-first, as ggcr does); from then
    # on the push,pull token also serves every pull, so no third token is fetched.
    assert gateway.token_requests == [["repository:bearer/app:pull"], ["repository:bearer/app:push,pull"]]


def test_bearer_token_refused_without_credentials(
    gateway: TokenGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with RegistryClient() as c, pytest.raises(AuthenticationError) as err:
        c.get_manifest(f"{gateway.host}/bearer/app:v1")
    assert "anonymous" in str(err.value) and "/token" in str(err.value)


def test_referrers_api_is_preferred_when_the_registry_has_it(labkit_registry: RunningRegistry) -> None:
    # labkit's embedded registry implements the referrers API: no fallback tag may appear.
    rec = Recorder()
    repo = Reference.parse(f"{labkit_registry.host}/client/with-api:latest")
    subject = make_image("api-subject")
    with RegistryClient(transport=rec) as c:
        subject_digest = c.push_image(repo, subject)
        c.push_blob(repo, EMPTY_JSON)
        c.push_blob(repo, b"sig")
        referrer = c.push_referrer(repo, artifact(subject, "application/x-sig", b"sig").to_json(), OCI_MANIFEST)
        found = c.referrers(repo.with_digest(subject_digest), artifact_type="application/x-sig")
        tags = c.list_tags(repo)
    assert [d.digest for d in found.manifests] == [referrer]
    assert tags == ["latest"]
    assert not [u for u, _, _ in rec.calls("GET", "/manifests/sha256-")]
