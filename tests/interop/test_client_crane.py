"""The registry client with real crane (go-containerregistry v0.22.1) as the oracle, both ways,
on Debian's distribution registry.

crane writes → labkit reads: digests equal ``crane digest`` and blobs equal ``crane blob``.
labkit writes → crane reads: ``crane manifest`` is byte-identical, ``crane validate`` re-hashes
everything, ``crane ls`` sees the tags. For the referrers tag fallback, ggcr's own writer
(``crane edit manifest`` → ``remote.Put``) and labkit must produce the same index, byte for byte.
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from labkit.oci.auth import credentials_from_docker_config
from labkit.oci.client import RegistryClient
from labkit.oci.model import (
    DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    Image,
    ImageIndex,
    sha256_digest,
)
from labkit.oci.reference import Reference
from tests.conftest import CRANE, RunningRegistry, reference_tool
from tests.interop.test_client_distribution import artifact, make_image, make_index

pytestmark = pytest.mark.interop


def crane(*args: str, stdin: bytes | None = None) -> bytes:
    out = subprocess.run([str(reference_tool(CRANE)), *args], capture_output=True, timeout=120, input=stdin)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def layer_tar(tmp_path: Path, name: str, content: bytes) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    path = tmp_path / f"{name}.tar"
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def client() -> RegistryClient:
    return RegistryClient()


# --- crane writes, labkit reads -------------------------------------------------------------


@pytest.mark.parametrize("oci", [True, False], ids=["oci", "docker"])
def test_labkit_pulls_what_crane_pushed(
    oci: bool, tmp_path: Path, registry: RunningRegistry, client: RegistryClient
) -> None:
    ref = f"{registry.host}/crane/appended-{'oci' if oci else 'docker'}:v1"
    flags = ["--oci-empty-base"] if oci else []
    crane("append", *flags, "-f", str(layer_tar(tmp_path, "hello.txt", b"hello from crane\n")), "-t", ref)
    copy = ref.replace("appended", "copied")
    crane("copy", ref, copy)

    for name in (ref, copy):
        pulled = client.pull_image(name)
        assert isinstance(pulled, Image)
        assert pulled.digest == crane("digest", name).decode().strip() == client.resolve(name)
        assert pulled.manifest_bytes == crane("manifest", name)
        assert pulled.manifest.media_type == (OCI_MANIFEST if oci else DOCKER_MANIFEST)
        assert pulled.config == crane("config", name)
        for desc, blob in zip(pulled.manifest.layers, pulled.layers):
            assert blob == crane("blob", f"{Reference.parse(name).name}@{desc.digest}")


def test_labkit_pulls_an_index_crane_assembled(registry: RunningRegistry, client: RegistryClient) -> None:
    base = f"{registry.host}/crane/multi"
    refs = []
    for arch in ("amd64", "arm64"):
        image = make_image("crane-index", arch=arch)  # crane reads each platform from the config
        refs.append(f"{base}@{client.push_image(f'{base}:{arch}', image)}")
    crane("index", "append", *[a for r in refs for a in ("-m", r)], "-t", f"{base}:index")

    pulled = client.pull_image(f"{base}:index")
    assert isinstance(pulled, ImageIndex)
    assert pulled.digest == crane("digest", f"{base}:index").decode().strip()
    assert pulled.manifest_bytes == crane("manifest", f"{base}:index")
    assert pulled.index.media_type == OCI_INDEX
    assert [str(d.platform) for d in pulled.index.manifests] == ["linux/amd64", "linux/arm64"]
    arm = client.pull_image(f"{base}:index", platform="linux/arm64")
    assert arm.digest == refs[1].split("@")[1]


# --- labkit writes, crane reads -------------------------------------------------------------


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_crane_reads_what_labkit_pushed(
    docker: bool, registry: RunningRegistry, client: RegistryClient
) -> None:
    repo = f"{registry.host}/labkit/pushed-{'docker' if docker else 'oci'}"
    image = make_image(f"labkit-{docker}", docker=docker)
    index = make_index(f"labkit-index-{docker}", docker=docker)
    image_digest = client.push_image(f"{repo}:single", image)
    index_digest = client.push_image(f"{repo}:multi", index)

    assert crane("manifest", f"{repo}:single") == image.manifest_bytes
    assert crane("digest", f"{repo}:single").decode().strip() == image_digest == sha256_digest(image.manifest_bytes)
    assert crane("manifest", f"{repo}:multi") == index.manifest_bytes
    assert crane("digest", f"{repo}:multi").decode().strip() == index_digest
    crane("validate", "--remote", f"{repo}:single")  # re-hashes config and layers
    crane("validate", "--remote", f"{repo}:multi")
    assert crane("blob", f"{repo}@{image.manifest.layers[0].digest}") == image.layers[0]
    if docker:
        assert image.manifest.layers[0].media_type == DOCKER_LAYER_GZIP
    assert sorted(crane("ls", repo).decode().split()) == ["multi", "single"]


def test_chunked_upload_is_readable_by_crane(registry: RunningRegistry, client: RegistryClient) -> None:
    repo = f"{registry.host}/labkit/chunked"
    data = bytes(range(256)) * 200
    digest = client.push_blob(repo, data, chunk_size=1000)
    assert crane("blob", f"{repo}@{digest}") == data


# --- referrers: ggcr's fallback index and labkit's must be the same bytes -------------------


def test_fallback_index_matches_ggcr(distribution_registry: RunningRegistry, client: RegistryClient) -> None:
    host = distribution_registry.host
    subject = make_image("referred")
    payloads = {"application/x-one": b"one", "application/x-two": b"two"}
    referrers = [
        artifact(subject, "application/x-one", payloads["application/x-one"], {"org.example.n": "1"}),
        artifact(subject, "application/x-two", payloads["application/x-two"]),
    ]
    indexes = {}
    for writer in ("ggcr", "labkit"):
        repo = f"{host}/referrers/{writer}"
        subject_digest = client.push_image(f"{repo}:subject", subject)
        for manifest in referrers:
            client.push_blob(repo, EMPTY_JSON)
            client.push_blob(repo, payloads[manifest.artifact_type])
            data = manifest.to_json()
            if writer == "ggcr":
                # remote.Put of a manifest with a subject: ggcr updates the fallback tag itself.
                crane("edit", "manifest", f"{repo}:subject", "-t", f"{repo}@{sha256_digest(data)}", stdin=data)
            else:
                client.push_referrer(repo, data, OCI_MANIFEST)
        indexes[writer] = crane("manifest", f"{repo}:{subject_digest.replace(':', '-')}")
        found = client.referrers(Reference.parse(f"{repo}@{subject_digest}"))
        assert sorted(d.digest for d in found.manifests) == sorted(sha256_digest(m.to_json()) for m in referrers)
    assert indexes["labkit"] == indexes["ggcr"]


# --- docker config.json: the same credentials ggcr's default keychain finds -----------------

_B64 = {"u:p": "dTpw", "hub:hubpw": "aHViOmh1YnB3", "auth:wins": "YXV0aDp3aW5z"}

CONFIGS = {
    "hub-v1-key": {"https://index.docker.io/v1/": {"auth": _B64["hub:hubpw"]}},
    "hub-bare-key": {"index.docker.io": {"auth": _B64["hub:hubpw"]}},
    "url-key-with-path": {"http://127.0.0.1:5000/v2/": {"username": "a", "password": "b"}},
    "plain-host-port": {"127.0.0.1:5000": {"auth": _B64["u:p"]}},
    "auth-beats-username": {"127.0.0.1:5000": {"auth": _B64["auth:wins"], "username": "x", "password": "y"}},
    "host-without-port": {"127.0.0.1": {"auth": _B64["u:p"]}},
}


@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
@pytest.mark.parametrize("registry", ["index.docker.io", "127.0.0.1:5000"])
def test_docker_config_lookup_matches_crane(
    config: str, registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": CONFIGS[config]}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))  # crane checks ~/.docker too; keep it empty
    out = subprocess.run(
        [str(reference_tool(CRANE)), "auth", "get", registry], capture_output=True, timeout=60, text=True
    )
    expected = json.loads(out.stdout) if out.returncode == 0 else None
    if expected is None:
        assert "credentials not found" in out.stdout + out.stderr
    found = credentials_from_docker_config(registry)
    assert (found and {"Username": found.username, "Secret": found.password}) == (expected or None)
