"""Unit checks of the registry client and auth against published examples.

The client's behaviour against real registries is in ``tests/interop/test_client_distribution.py``
and ``test_client_crane.py``; here are the parts with a written spec to check against: the
``WWW-Authenticate`` grammar (distribution's token-auth docs, RFC 7235), the distribution-spec
error codes, ggcr's realm rules, and refusals that must happen before any byte is sent.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labkit.errors import (
    AuthenticationError,
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    UsageError,
)
from labkit.oci.auth import Challenge, Credentials, credentials_from_docker_config, parse_challenges, pick_challenge
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_MANIFEST, sha256_digest
from tests.mock_transport import MockTransport

REGISTRY = "127.0.0.1:5000"


# --- WWW-Authenticate ------------------------------------------------------------------------


def test_bearer_challenge_from_the_token_auth_spec() -> None:
    # distribution docs/spec/auth/token.md, "How to authenticate", step 3.
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    assert parse_challenges(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:samalba/my-app:pull,push",
            },
        )
    ]


def test_several_challenges_and_the_one_ggcr_picks() -> None:
    header = 'Negotiate, Basic realm="Registry Realm", Bearer realm="https://a.example/t",service="x"'
    challenges = parse_challenges(header)
    assert [c.scheme for c in challenges] == ["negotiate", "basic", "bearer"]
    assert challenges[1].params == {"realm": "Registry Realm"}
    assert pick_challenge(challenges) == challenges[1]  # first of basic/bearer, as ggcr's ping
    assert parse_challenges('Basic realm="say \\"hi\\""')[0].params == {"realm": 'say "hi"'}


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials("learner", "hunter2")
    assert "hunter2" not in repr(creds) and "learner" in repr(creds)
    assert creds.basic_header() == "Basic bGVhcm5lcjpodW50ZXIy"  # base64("learner:hunter2")


# --- docker config.json ----------------------------------------------------------------------


def test_docker_config_prefers_the_repository_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ggcr's keychain looks up "registry/repository" before "registry".
    (tmp_path / "config.json").write_text(json.dumps({"auths": {
        REGISTRY: {"username": "everyone", "password": "a"},
        f"{REGISTRY}/team/app": {"username": "team", "password": "b"},
    }}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert credentials_from_docker_config(REGISTRY, "team/app") == Credentials("team", "b")
    assert credentials_from_docker_config(REGISTRY, "other/app") == Credentials("everyone", "a")


def test_docker_config_problems_name_the_file_not_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    assert credentials_from_docker_config(REGISTRY, path=path) is None  # no file: anonymous
    path.write_text(json.dumps({"auths": {REGISTRY: {"auth": "bm8tY29sb24="}}}))  # "no-colon"
    with pytest.raises(AuthenticationError) as err:
        credentials_from_docker_config(REGISTRY, path=path)
    assert str(path) in str(err.value) and "no-colon" not in str(err.value)
    path.write_text("{not json")
    with pytest.raises(AuthenticationError, match="cannot read docker config"):
        credentials_from_docker_config(REGISTRY, path=path)


# --- responses from the distribution spec ----------------------------------------------------


def client_answering(status: int, body: dict[str, object], seen: list[httpx.Request] | None = None) -> RegistryClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(status, json=body)

    return RegistryClient(transport=MockTransport(handle))


@pytest.mark.parametrize(
    "status, code, error",
    [
        (404, "MANIFEST_UNKNOWN", NotFoundError),
        (404, "NAME_UNKNOWN", NotFoundError),
        (401, "UNAUTHORIZED", AuthenticationError),
        (403, "DENIED", AuthenticationError),
        (429, "TOOMANYREQUESTS", RegistryError),
    ],
)
def test_spec_error_codes_map_to_the_hierarchy(status: int, code: str, error: type[RegistryError]) -> None:
    # distribution-spec "Error Codes" table; the body shape is the spec's example.
    body = {"errors": [{"code": code, "message": "spec message", "detail": {}}]}
    with client_answering(status, body) as c, pytest.raises(error) as err:
        c.get_manifest(f"{REGISTRY}/app:v1")
    assert type(err.value) is error
    assert (err.value.status, err.value.code) == (status, code)
    assert f"{REGISTRY}/app:v1" in str(err.value) and "spec message" in str(err.value)


def test_wrong_digests_are_refused_before_sending() -> None:
    seen: list[httpx.Request] = []
    data = b'{"schemaVersion":2}'
    wrong = sha256_digest(b"something else")
    with client_answering(500, {}, seen) as c:
        with pytest.raises(DigestMismatchError):
            c.push_blob(f"{REGISTRY}/app", b"blob", digest=wrong)
        with pytest.raises(DigestMismatchError):
            c.put_manifest(f"{REGISTRY}/app@{wrong}", data, OCI_MANIFEST)
        with pytest.raises(UsageError):
            c.referrers(f"{REGISTRY}/app:v1")
        with pytest.raises(UsageError):
            c.push_referrer(f"{REGISTRY}/app", data, OCI_MANIFEST)  # no subject
    assert [r for r in seen if r.url.path != "/v2/"] == []


# --- ggcr's token-realm rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    "registry, realm, refused",
    [
        (REGISTRY, f"http://{REGISTRY}/token", False),  # the registry's own host:port
        (REGISTRY, "http://127.0.0.1:9999/token", True),  # another loopback port
        (REGISTRY, "http://10.1.2.3/token", True),  # private address
        (REGISTRY, "ftp://auth.example/token", True),
    ],
)
def test_token_realm_rules(registry: str, realm: str, refused: bool) -> None:
    token_asked: list[httpx.URL] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            token_asked.append(request.url)
            return httpx.Response(200, json={"access_token": "t"})
        if request.headers.get("authorization") == "Bearer t":
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "m"}]})
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})

    with RegistryClient(transport=MockTransport(handle)) as c:
        if refused:
            with pytest.raises(AuthenticationError, match="realm"):
                c.get_manifest(f"{registry}/app:v1")
            assert token_asked == []
        else:
            with pytest.raises(NotFoundError):  # got past auth with the access_token
                c.get_manifest(f"{registry}/app:v1")
            assert [u.params.get_list("scope") for u in token_asked] == [["repository:app:pull"]]


# --- TLS on loopback: plain HTTP is tried first, then HTTPS ----------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ))
    key_path.chmod(0o600)
    return cert_path, key_path


class _TLSRegistry(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, body = (200, b"{}") if self.path == "/v2/" else (
            404, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
        )
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_loopback_tls_registry_with_untrusted_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TLSRegistry)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ref = f"127.0.0.1:{server.server_address[1]}/app:v1"
    try:
        with RegistryClient() as c, pytest.raises(RegistryError) as err:
            c.get_manifest(ref)
        assert type(err.value) is RegistryError and "not trusted" in str(err.value)
        assert "--allow-insecure-registry" in (err.value.hint or "")
        with RegistryClient(allow_insecure=True) as c, pytest.raises(NotFoundError) as err:
            c.get_manifest(ref)  # reached over HTTPS without verification
        assert err.value.code == "MANIFEST_UNKNOWN"
    finally:
        server.shutdown()
        server.server_close()


# --- go-containerregistry's rendering of an error answer (what Kyverno and cosign quote) -----


def test_a_manifest_error_renders_as_ggcr_transport_error() -> None:
    # Kyverno v1.19.1 against labkit's registry (native lab, differential case
    # ivp-key-a-deny-fail/pod/missing:tag): "GET http://{registry}/v2/diff/missing/manifests/v1:
    # MANIFEST_UNKNOWN: manifest unknown to registry; map[reference:v1]"
    # (ggcr v0.21.8 pkg/v1/remote/transport/error.go: Error.Error, Diagnostic.String)
    body = {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown to registry",
                        "detail": {"reference": "v1"}}]}
    with client_answering(404, body) as c, pytest.raises(NotFoundError) as err:
        c.get_manifest(f"{REGISTRY}/diff/missing:v1")
    assert err.value.transport == (f"GET http://{REGISTRY}/v2/diff/missing/manifests/v1: MANIFEST_UNKNOWN: "
                                   "manifest unknown to registry; map[reference:v1]")


def test_ggcr_renders_several_errors_no_detail_and_raw_bodies() -> None:
    # error.go responseErr: several diagnostics joined; no detail, no "; "; not JSON: the raw body
    several = {"errors": [{"code": "DENIED", "message": "a"}, {"code": "UNKNOWN", "message": "b", "detail": None}]}
    with client_answering(403, several) as c, pytest.raises(RegistryError) as err:
        c.get_manifest(f"{REGISTRY}/app:v1")
    assert err.value.transport.endswith("/v2/app/manifests/v1: multiple errors returned: DENIED: a; UNKNOWN: b")
    # every diagnostic the registry sent is kept, and the CLI shows the ones after the first
    assert [(e.code, e.message) for e in err.value.registry_errors] == [("DENIED", "a"), ("UNKNOWN", "b")]
    assert err.value.diagnostics().splitlines()[1:3] == ["The registry also said:", "  UNKNOWN: b"]

    def raw(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else httpx.Response(502, text="bad gateway\n")

    with RegistryClient(transport=MockTransport(raw)) as c, pytest.raises(RegistryError) as err:
        c.get_manifest(f"{REGISTRY}/app:v1")
    assert err.value.transport.endswith(": unexpected status code 502 Bad Gateway: bad gateway\n")


def test_go_value_prints_decoded_json_as_fmt_v() -> None:
    from labkit.oci.client import go_value

    # go1 fmt.Printf("%v") of json.Unmarshal(`{"b":[1,2.5,1000000,123456789,0.00001,true,null,"x y"],
    # "a":{"z":1},"c":1e21}`) into any, run with the Go toolchain the engines are built with
    doc = {"b": [1, 2.5, 1000000, 123456789, 0.00001, True, None, "x y"], "a": {"z": 1}, "c": 1e21}
    assert go_value(doc) == "map[a:map[z:1] b:[1 2.5 1e+06 1.23456789e+08 1e-05 true <nil> x y] c:1e+21]"
