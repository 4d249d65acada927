"""Image references against ggcr's published cases, Kyverno's, and real crane as an oracle.

The tables re-express inputs and expected outputs from go-containerregistry ``pkg/name/*_test.go``
(v0.22.1) and Kyverno ``pkg/utils/image/infos_test.go``; where ggcr's tests only say "valid" we
wrote the normalised form by hand from the rules in ``pkg/name``. ``test_crane_agrees`` runs the
real crane against a loopback stand-in registry (and proxy) so crane itself tells us the registry,
repository and identifier it derived.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from labkit.errors import InvalidReferenceError
from labkit.oci.reference import Reference, kyverno_normalize
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3, CRANE, reference_tool
from tests.peers import free_port

D = "sha256:deadb33fdeadb33fdeadb33fdeadb33fdeadb33fdeadb33fdeadb33fdeadb33f"

# input → (registry, repository, tag, digest); str() and .name follow from these.
VALID = {
    # ggcr tag_test.go goodStrictValidationTagNames
    "gcr.io/g-convoy/hello-world:latest": ("gcr.io", "g-convoy/hello-world", "latest", None),
    "gcr.io/google.com/g-convoy/hello-world:latest": ("gcr.io", "google.com/g-convoy/hello-world", "latest", None),
    "us.gcr.io/project-id/image:with.period.in.tag": ("us.gcr.io", "project-id/image", "with.period.in.tag", None),
    "gcr.io/project-id/image:w1th-alpha_num3ric.PLUScaps": ("gcr.io", "project-id/image", "w1th-alpha_num3ric.PLUScaps", None),
    "domain.with.port:9001/image:latest": ("domain.with.port:9001", "image", "latest", None),
    # goodWeakValidationTagNames
    "namespace/pathcomponent/image": ("index.docker.io", "namespace/pathcomponent/image", "latest", None),
    "library/ubuntu": ("index.docker.io", "library/ubuntu", "latest", None),
    "www.example.test:12345/repo/path": ("www.example.test:12345", "repo/path", "latest", None),
    # TestAllDefaults, registry aliases, repository_test single characters
    "ubuntu": ("index.docker.io", "library/ubuntu", "latest", None),
    "docker.io/nginx": ("index.docker.io", "library/nginx", "latest", None),
    "index.docker.io/nginx:1.27": ("index.docker.io", "library/nginx", "1.27", None),
    "a": ("index.docker.io", "library/a", "latest", None),
    "example.com/a/b": ("example.com", "a/b", "latest", None),
    # ref_test.go: localhost is a registry even without a port (#2316)
    "localhost/testimage:mytag": ("localhost", "testimage", "mytag", None),
    # and without a '/', "localhost:5000" is Docker Hub's library/localhost tagged 5000
    "localhost:5000": ("index.docker.io", "library/localhost", "5000", None),
    "localhost:5000/app": ("localhost:5000", "app", "latest", None),
    "127.0.0.1:5001/labkit/hello:v1": ("127.0.0.1:5001", "labkit/hello", "v1", None),
    "[::1]:5000/x": ("[::1]:5000", "x", "latest", None),
    # digest_test.go
    f"gcr.io/g-convoy/hello-world@{D}": ("gcr.io", "g-convoy/hello-world", None, D),
    f"library/ubuntu@{D}": ("index.docker.io", "library/ubuntu", None, D),
    # name:tag@digest parses as a digest reference and drops the tag (TestParseReferenceWithTagAndDigest)
    f"example.text/foo/bar:v1.0.0@{D}": ("example.text", "foo/bar", None, D),
    f"example.text:8443/foo/bar:latest@{D}": ("example.text:8443", "foo/bar", None, D),
    f"nginx:latest@{D}": ("index.docker.io", "library/nginx", None, D),
}

# input → a fragment of the message naming the part that failed (ggcr's own wording).
INVALID = {
    "gcr.io/project-id/bad_chars:c@n'tuse": "unsupported digest algorithm: n'tuse",
    "gcr.io/project-id/wrong-length:white space": "tag can only contain the characters",
    "gcr.io/project-id/too-many-chars:" + "t" * 129: "tag must be between 1 and 128 characters in length",
    "library/ubuntu:": "library/ubuntu: must specify a tag name after the colon",
    "gcr.io/project-id/unknown-alg@unknown:abc123": "unsupported digest algorithm: unknown:abc123",
    "gcr.io/project-id/wrong-length@sha256:d34db33fd34db33f": "invalid checksum digest length",
    "gcr.io/project-id/missing-digest@": "unsupported digest algorithm: ",
    "repo@sha256:" + ":" * 64: "invalid checksum digest format",
    "repo@sha256:" + "sh" * 32: "invalid checksum digest format",
    f"repo@{D}@{D}": "exactly one '@' separator",
    # the tag parse fails, then the digest parse's repository check is what ggcr reports
    f"library/nginx:@{D}": "repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: library/nginx:",
    "white space": "repository can only contain the characters",
    "b@char/image": "",  # any message; ggcr's badRepositoryNames
    "": "a repository name must be specified",
    "Foo/bar": "repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Foo/bar",
    "gcr?.com/x": "registries must be valid RFC 3986 URI authorities: gcr?.com",
    "[127.0.0.1]:5000/x": "registries must be valid RFC 3986 URI authorities",
    "x/" + "y" * 255: "repository must be between 1 and 255 characters in length",
    f"nginx@sha256:{'A' * 64}": "invalid checksum digest format",
}


@pytest.mark.parametrize("text", sorted(VALID))
def test_valid(text: str) -> None:
    registry, repository, tag, digest = VALID[text]
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ref.name == f"{registry}/{repository}"
    assert str(ref) == (f"{ref.name}@{digest}" if digest else f"{ref.name}:{tag}")
    assert ref.identifier == (digest or tag)
    assert Reference.parse(str(ref)) == ref  # the normalised form is a fixed point


@pytest.mark.parametrize("text", sorted(INVALID))
def test_invalid_names_the_part(text: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        Reference.parse(text)
    assert INVALID[text] in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "text",
    [
        "gcr.io/g-convoy/hello-world:latest",
        "domain.with.port:9001/image:latest",
        f"gcr.io/g-convoy/hello-world@{D}",
        f"example.text/foo/bar:latest@{D}",
        "localhost:9090/x:y",
    ],
)
def test_strict_accepts_fully_specified(text: str) -> None:
    assert Reference.parse(text, strict=True) == Reference.parse(text)


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("namespace/pathcomponent/image", "tag must be between 1 and 128"),
        ("ubuntu:1", "strict validation requires the registry to be explicitly defined"),
        ("index.docker.io/foo:1", "missing 'library'"),
    ],
)
def test_strict_rejects_defaulting(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment):
        Reference.parse(text, strict=True)


def test_default_registry_option() -> None:
    # ggcr ref_test.go TestParseReferenceDefaulting (tag default left as "latest")
    cases = {
        "crossplane/provider-gcp:v0.14.0": "registry.upbound.io/crossplane/provider-gcp:v0.14.0",
        "ubuntu": "registry.upbound.io/ubuntu:latest",
        "gcr.io/crossplane/provider-gcp:latest": "gcr.io/crossplane/provider-gcp:latest",
        "localhost/testimage:mytag": "localhost/testimage:mytag",
        "docker.io/nginx": "index.docker.io/library/nginx:latest",
    }
    for text, want in cases.items():
        assert str(Reference.parse(text, default_registry="registry.upbound.io")) == want


def test_with_digest_drops_tag_and_with_tag_drops_digest() -> None:
    ref = Reference.parse("ghcr.io/org/app:v1")
    by_digest = ref.with_digest(D)
    assert str(by_digest) == f"ghcr.io/org/app@{D}" and by_digest.tag is None
    assert str(by_digest.with_tag("v2")) == "ghcr.io/org/app:v2"
    with pytest.raises(InvalidReferenceError, match="invalid checksum digest length"):
        ref.with_digest("sha256:abc")
    with pytest.raises(InvalidReferenceError, match="tag can only contain"):
        ref.with_tag("no/slashes")


@pytest.mark.parametrize(
    "registry,loopback,insecure",
    [
        # ggcr registry_test.go TestRegistryScheme (and Scheme() for the loopback forms)
        ("localhost", True, False),
        ("localhost:5000", True, True),
        ("foo.localhost:8080", True, True),
        ("127.0.0.1:5001", True, True),
        ("[::1]:5000", True, True),
        ("10.0.0.5:5000", False, True),
        ("192.168.1.1", False, True),
        ("172.32.0.1", False, False),
        ("gcr.io", False, False),
        ("index.docker.io", False, False),
    ],
)
def test_loopback_and_scheme(registry: str, loopback: bool, insecure: bool) -> None:
    ref = Reference.parse(f"{registry}/app:v1")
    assert ref.registry_is_loopback is loopback
    assert ref.is_insecure_by_default is insecure
    assert ref.api_host == registry


# Kyverno pkg/utils/image/infos_test.go, plus the §1.3 rules of ../shared/reference/kyverno.md
KYVERNO = {
    "nginx": "docker.io/nginx:latest",
    "docker.io/library/nginx:1.27": "docker.io/library/nginx:1.27",
    "localhost:4443/test/nginx": "localhost:4443/test/nginx:latest",
    "ghcr.io/org/app:v1": "ghcr.io/org/app:v1",
    f"ghcr.io/org/app:v1@{D}": f"ghcr.io/org/app@{D}",
    f"nginx@{D}": f"docker.io/nginx@{D}",
    "test.example.com/kyverno/nginx:1.2.3": "test.example.com/kyverno/nginx:1.2.3",
}


F64 = "f" * 64
# distribution/reference reference_test.go TestReferenceParse inputs, as Kyverno sees them
# (docker.io prefixed first where Kyverno's addDefaultRegistry does it).
KYVERNO.update({
    "test_com": "docker.io/test_com:latest",
    "test.com:tag": "docker.io/test.com:tag",
    "test:5000/repo": "test:5000/repo:latest",
    f"test:5000/repo:tag@sha256:{F64}": f"test:5000/repo@sha256:{F64}",
    "lowercase:Uppercase": "docker.io/lowercase:Uppercase",
    "b.gcr.io/test.example.com/my-app:test.example.com": "b.gcr.io/test.example.com/my-app:test.example.com",
    f"xn--7o8h.com/myimage:xn--7o8h.com@sha512:{'f' * 128}": f"xn--7o8h.com/myimage@sha512:{'f' * 128}",
    "192.168.1.1:5000/repo:5050": "192.168.1.1:5000/repo:5050",
    "[2001:db8::1]:5000/repo:tag": "[2001:db8::1]:5000/repo:tag",
    "[::1]:5000/repo": "[::1]:5000/repo:latest",
})


@pytest.mark.parametrize("text", sorted(KYVERNO))
def test_kyverno_normalize(text: str) -> None:
    assert kyverno_normalize(text) == KYVERNO[text]


@pytest.mark.parametrize(
    "text",
    [
        "nginx/App", "ghcr.io/Org/app", "nginx@sha256:abc", "nginx:",
        # distribution/reference reference_test.go error cases
        ":justtag", f"@sha256:{F64}", "repo@sha256:" + "f" * 34, f"validname@invaliddigest:{F64}",
        "Uppercase:tag", "test:5000/Uppercase/lowercase:tag", "aa/asdf$$^/aa",
        "[fe80::1%eth0]:5000/repo", "a/" * 128 + "a:tag",
    ],
)
def test_kyverno_normalize_rejects(text: str) -> None:
    # ("Nginx/app" is accepted: an uppercase first component counts as a registry there)
    with pytest.raises(InvalidReferenceError, match="bad image"):
        kyverno_normalize(text)


# --- crane as the oracle ---------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers as a registry (and as an HTTP proxy, for non-loopback names) and records the
    manifest request crane makes. It never forwards anything: every byte stays on loopback."""

    seen: list[tuple[str, str]] = []

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        host = parts.netloc or self.headers["Host"]
        if parts.path == "/v2/":
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.seen.append((host, parts.path))
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Docker-Content-Digest", D)
        self.send_header("Content-Length", "2")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def recorder() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


CRANE_CASES = [
    "nginx",
    "docker.io/nginx:1.27",
    "library/ubuntu",
    "namespace/pathcomponent/image",
    "gcr.io/google.com/g-convoy/hello-world:latest",
    "us.gcr.io/project-id/image:w1th-alpha_num3ric.PLUScaps",
    "localhost:5000",
    "www.example.test:12345/repo/path",
    f"nginx:latest@{D}",
    f"example.text/foo/bar:v1.0.0@{D}",
    "LOOPBACK/labkit/hello:v1",
    "LOOPBACK/a",
]


@pytest.mark.interop
@pytest.mark.parametrize("text", CRANE_CASES)
def test_crane_agrees(text: str, recorder: int) -> None:
    """crane (ggcr v0.22.1) asks the stand-in for /v2/<repository>/manifests/<identifier> on
    <registry>: compare that with labkit's parse."""
    crane = reference_tool(CRANE)
    text = text.replace("LOOPBACK", f"127.0.0.1:{recorder}")
    proxy = f"http://127.0.0.1:{recorder}"
    # Names off loopback go to the recording proxy; Go never proxies loopback names, which
    # therefore point at the recorder's own port. --insecure keeps it plain HTTP so the path shows.
    env = {**os.environ, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "NO_PROXY": "", "no_proxy": ""}
    _Recorder.seen.clear()
    out = subprocess.run(
        [str(crane), "digest", "--insecure", text], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == D
    ref = Reference.parse(text)
    assert _Recorder.seen[-1] == (ref.registry, f"/v2/{ref.repository}/manifests/{ref.identifier}")


@pytest.mark.interop
@pytest.mark.parametrize("text", ["Foo/bar", "gcr.io/x:", "x@sha256:abc", "ex{a}.com/x", "[127.0.0.1]:1/x"])
def test_crane_rejects_what_labkit_rejects(text: str) -> None:
    """crane's parse error is only "could not parse reference"; both must refuse, offline."""
    crane = reference_tool(CRANE)
    out = subprocess.run([str(crane), "digest", text], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f'parsing reference "{text}"' in out.stderr
    with pytest.raises(InvalidReferenceError):
        Reference.parse(text)


@pytest.mark.interop
@pytest.mark.parametrize(
    "tool,text,expected",
    [
        # cosign v3.1.3's ggcr agrees with labkit (and crane v0.22.1) on bare localhost ...
        (COSIGN_V3, "localhost/foo", 'Get "https://localhost/v2/"'),
        # ... the tutorial's cosign v2.6.1 pins an older ggcr that sends it to Docker Hub
        (COSIGN_V2_PIN, "localhost/foo", 'Get "https://index.docker.io/v2/"'),
        # and both still refuse one-character repositories, which labkit and crane accept
        (COSIGN_V3, "127.0.0.1:5001/a", "could not parse reference: 127.0.0.1:5001/a"),
        (COSIGN_V2_PIN, "127.0.0.1:5001/a", "could not parse reference: 127.0.0.1:5001/a"),
    ],
)
def test_where_cosign_parses_differently(tool: str, text: str, expected: str) -> None:
    """Pins the divergences documented in labkit.oci.reference. A closed loopback proxy makes
    every non-loopback connection fail at once, so the error names the registry chosen."""
    cosign = reference_tool(tool)
    closed = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "NO_PROXY": "", "no_proxy": ""}
    out = subprocess.run([str(cosign), "triangulate", text], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert expected in out.stderr
    assert Reference.parse(text).registry == text.split("/")[0]
