"""Image signatures, both directions, with real cosign as the oracle.

labkit signs → cosign verifies; cosign signs → labkit verifies; every tampering case fails in
both tools with the same exit code; ``verify``/``triangulate``/``tree`` print what cosign prints.
Runs against every registry the ``registry`` fixture offers.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit import keys
from labkit.cli import main as labkit_main
from labkit.oci.client import RegistryClient
from labkit.oci.model import COSIGN_SIMPLESIGNING, Descriptor, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.signing.artifact import SIGNATURE_ANNOTATION, SignatureImage, SignatureLayer, attachment_ref
from labkit.signing.sign import sign_image
from labkit.signing.verify import verify_image

from tests.conftest import RunningRegistry
from tests.interop.cosign import PASSWORD, Cosign, cosign  # noqa: F401 (fixture)

pytestmark = pytest.mark.interop

@dataclass(frozen=True)
class KeyPair:
    key: Path
    pub: Path

    def private(self) -> keys.PrivateKey:
        return keys.load_private_key(self.key, PASSWORD.encode())

    def public(self) -> keys.PublicKey:
        return keys.load_public_key(self.pub)


@pytest.fixture
def key_a(tmp_path: Path) -> KeyPair:
    paths = keys.generate_key_pair(tmp_path / "a", PASSWORD.encode())
    return KeyPair(Path(paths.private_key), Path(paths.public_key))


@pytest.fixture
def key_b(tmp_path: Path) -> KeyPair:
    paths = keys.generate_key_pair(tmp_path / "b", PASSWORD.encode())
    return KeyPair(Path(paths.private_key), Path(paths.public_key))


@pytest.fixture
def client() -> RegistryClient:
    return RegistryClient()


def push_image(client: RegistryClient, ref: Reference, content: bytes) -> Reference:
    """A one-layer image whose bytes are ``content``; returns ``ref`` pinned to its digest."""
    from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Image

    config = json.dumps(
        {"architecture": "amd64", "os": "linux",
         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}
    ).encode()
    image = Image(
        manifest=Manifest(
            config=Descriptor.of(OCI_CONFIG, config), layers=(Descriptor.of(OCI_LAYER, content),)
        ),
        config=config,
        layers=[content],
    )
    return ref.with_digest(client.push_image(ref, image))


@pytest.fixture
def image(registry: RunningRegistry, client: RegistryClient, request: pytest.FixtureRequest) -> Reference:
    repo = "interop/" + request.node.name.split("[")[0].replace("_", "-").lower()
    return push_image(client, Reference.parse(f"{registry.host}/{repo}:v1"), request.node.nodeid.encode())


def labkit_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = labkit_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cosign_header(stderr: str) -> list[str]:
    """The verification header lines, without cosign's TUF/network warnings."""
    start = stderr.index("Verification for")
    return [line for line in stderr[start:].splitlines() if line.strip()]


# --- labkit signs, cosign verifies -------------------------------------------------------------


def test_cosign_verifies_labkit_signature(cosign: Cosign, key_a: KeyPair, image: Reference, client):
    sign_image(image, key_a.private(), client=client)
    proc = cosign.verify(key_a.pub, str(image))
    assert proc.returncode == 0, proc.stderr
    payloads = json.loads(proc.stdout)
    assert payloads[0]["critical"]["image"]["docker-manifest-digest"] == image.digest
    assert payloads[0]["critical"]["identity"]["docker-reference"] == image.name


def test_labkit_verify_output_equals_cosign(
    cosign: Cosign, key_a: KeyPair, image: Reference, client, capsys, monkeypatch
):
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    tagged = str(image.with_tag("v1"))
    code, _, _ = labkit_cli(capsys, "sign", "--key", str(key_a.key), "--tlog-upload=false", "-a", "team=lab", str(image))
    assert code == 0
    for extra in ((), ("-a", "team=lab")):
        ours = labkit_cli(capsys, "verify", "--key", str(key_a.pub), "--insecure-ignore-tlog", *extra, tagged)
        theirs = cosign.verify(key_a.pub, tagged, *extra)
        assert (ours[0], theirs.returncode) == (0, 0), theirs.stderr
        assert ours[1] == theirs.stdout
        assert cosign_header(ours[2]) == cosign_header(theirs.stderr)


def test_recursive_signs_index_and_children(cosign: Cosign, key_a: KeyPair, registry, client):
    from labkit.oci.model import OCI_INDEX, Image, ImageIndex, Index, Platform

    repo = Reference.parse(f"{registry.host}/interop/multi:v1")
    children = [push_image(client, repo.with_tag(arch), arch.encode()) for arch in ("amd64", "arm64")]
    descs = []
    for child, arch in zip(children, ("amd64", "arm64")):
        fetched = client.get_manifest(child)
        descs.append(Descriptor(fetched.media_type, fetched.digest, len(fetched.data),
                                platform=Platform("linux", arch)))
    index = Index(manifests=tuple(descs), media_type=OCI_INDEX)
    digest = client.put_manifest(repo, index.to_json(), OCI_INDEX)
    results = sign_image(repo.with_digest(digest), key_a.private(), client=client, recursive=True)
    assert [r.digest for r in results] == [digest, *(c.digest for c in children)]
    for ref in (repo.with_digest(digest), *children):
        assert cosign.verify(key_a.pub, str(ref)).returncode == 0


# --- cosign signs, labkit verifies -------------------------------------------------------------


def cosign_keys(cosign: Cosign) -> KeyPair:
    proc = cosign.run("generate-key-pair")
    assert proc.returncode == 0, proc.stderr
    return KeyPair(cosign.cwd / "cosign.key", cosign.cwd / "cosign.pub")


def test_labkit_verifies_cosign_signature(cosign: Cosign, image: Reference, client):
    pair = cosign_keys(cosign)
    proc = cosign.sign(pair.key, str(image))
    assert proc.returncode == 0, proc.stderr
    result = verify_image(image, pair.public(), client=client)
    assert result.digest == image.digest
    assert len(result.signatures) == 1


def test_second_signature_is_appended(cosign: Cosign, key_a: KeyPair, image: Reference, client):
    sign_image(image, key_a.private(), client=client)
    pair = cosign_keys(cosign)
    assert cosign.sign(pair.key, str(image)).returncode == 0
    sig = SignatureImage.fetch(client, attachment_ref(image, image.digest))
    assert sig is not None and len(sig.layers) == 2
    # Each key verifies its own signature, in both tools; signing again adds nothing (dupe check).
    for pair_ in (key_a, pair):
        assert len(verify_image(image, pair_.public(), client=client).signatures) == 1
        assert cosign.verify(pair_.pub, str(image)).returncode == 0
    assert sign_image(image, key_a.private(), client=client)[0].appended is False


# --- failures agree ----------------------------------------------------------------------------


def assert_both_fail(cosign: Cosign, capsys, pub: Path, ref: str, exit_code: int, message: str):
    ours = labkit_cli(capsys, "verify", "--key", str(pub), "--insecure-ignore-tlog", ref)
    theirs = cosign.verify(pub, ref)
    assert (ours[0], theirs.returncode) == (exit_code, exit_code), theirs.stderr
    assert f"Error: {message}" in theirs.stderr
    assert f"Error: {message}" in ours[2]


def test_unsigned_image_fails_in_both(cosign: Cosign, key_a: KeyPair, image: Reference, capsys):
    assert_both_fail(cosign, capsys, key_a.pub, str(image), 10, "no signatures found")


def test_missing_tag_fails_in_both(cosign: Cosign, key_a: KeyPair, image: Reference, capsys):
    assert_both_fail(cosign, capsys, key_a.pub, str(image.with_tag("absent")), 11, "image tag not found")


def test_wrong_key_fails_in_both(cosign, key_a, key_b, image, client, capsys):
    sign_image(image, key_a.private(), client=client)
    assert_both_fail(cosign, capsys, key_b.pub, str(image), 12,
                     "no matching signatures: invalid signature when validating ASN.1 encoded signature")


def test_tampered_payload_fails_in_both(cosign, key_a, image, client, capsys):
    (result,) = sign_image(image, key_a.private(), client=client)
    sig = SignatureImage.fetch(client, result.signature_ref, with_config=True)
    layer = sig.layers[0]
    forged = layer.payload.replace(b"cosign container image signature", b"cosign container image signaturE")
    sig.layers[0] = type(layer)(payload=forged, annotations=layer.annotations)
    sig.config["rootfs"]["diff_ids"] = [sha256_digest(forged)]
    sig.push(client, result.signature_ref)
    assert_both_fail(cosign, capsys, key_a.pub, str(image), 12,
                     "no matching signatures: invalid signature when validating ASN.1 encoded signature")


def test_signature_copied_to_other_digest_fails_in_both(cosign, key_a, image, registry, client, capsys):
    other = push_image(client, image.with_tag("other"), b"another image")
    (result,) = sign_image(image, key_a.private(), client=client)
    sig = SignatureImage.fetch(client, result.signature_ref, with_config=True)
    sig.push(client, attachment_ref(other, other.digest))
    assert_both_fail(cosign, capsys, key_a.pub, str(other), 12,
                     f"no matching signatures: invalid or missing digest in claim: {image.digest}")


# --- sign CLI wording, triangulate, tree ---------------------------------------------------------


def test_tag_warning_matches_cosign(cosign: Cosign, key_a: KeyPair, image: Reference, capsys, monkeypatch):
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    tagged = str(image.with_tag("v1"))
    code, _, err = labkit_cli(capsys, "sign", "--key", str(key_a.key), "--tlog-upload=false", "-y", tagged)
    theirs = cosign.sign(key_a.key, tagged)
    assert (code, theirs.returncode) == (0, 0), theirs.stderr
    warning = theirs.stderr[theirs.stderr.index("WARNING: Image reference"):].split("\n\n")[0]
    assert warning in err
    assert f"Pushing signature to: {image.name}" in err
    assert f"Pushing signature to: {image.name}" in theirs.stderr


def test_triangulate_and_tree_match_cosign(cosign, key_a, image, client, capsys):
    tagged = str(image.with_tag("v1"))
    for kind in ("signature", "attestation", "sbom", "digest"):
        ours = labkit_cli(capsys, "triangulate", "--type", kind, tagged)
        theirs = cosign.run("triangulate", "--type", kind, tagged)
        assert (ours[0], ours[1]) == (0, theirs.stdout), theirs.stderr
    # Nothing attached yet, then one signature from each tool.
    assert labkit_cli(capsys, "tree", tagged)[1] == cosign.run("tree", tagged).stdout
    sign_image(image, key_a.private(), client=client)
    assert cosign.sign(key_a.key, str(image), "-a", "by=cosign").returncode == 0
    ours = labkit_cli(capsys, "tree", tagged)
    theirs = cosign.run("tree", tagged)
    assert ours[0] == 0 and ours[1] == theirs.stdout, theirs.stderr


def test_signature_layer_shape_matches_cosign(cosign: Cosign, key_a: KeyPair, image: Reference, client):
    """The .sig manifest labkit writes has cosign's layer media type and annotation; after cosign
    appends to it, the config keeps ggcr's shape with one diffID per layer."""
    (result,) = sign_image(image, key_a.private(), client=client)
    assert cosign.sign(key_a.key, str(image), "-a", "x=y").returncode == 0
    manifest = Manifest.from_dict(json.loads(client.get_manifest(result.signature_ref).data))
    assert [l.media_type for l in manifest.layers] == [COSIGN_SIMPLESIGNING] * 2
    assert all(base64.b64decode(l.annotations[SIGNATURE_ANNOTATION]) for l in manifest.layers)
    config = json.loads(client.get_blob(result.signature_ref, manifest.config.digest))
    assert config["rootfs"]["diff_ids"] == [l.digest for l in manifest.layers]
    assert list(config) == ["architecture", "created", "history", "os", "rootfs", "config"]


def test_signatures_in_another_repository(cosign, key_a, image, registry, client, capsys, monkeypatch):
    """COSIGN_REPOSITORY moves signatures elsewhere; both tools write and read them there."""
    elsewhere = {"COSIGN_REPOSITORY": f"{registry.host}/interop/signatures"}
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    monkeypatch.setenv("COSIGN_REPOSITORY", elsewhere["COSIGN_REPOSITORY"])
    code, _, err = labkit_cli(capsys, "sign", "--key", str(key_a.key), "--tlog-upload=false", str(image))
    assert code == 0 and f"Pushing signature to: {elsewhere['COSIGN_REPOSITORY']}" in err
    assert SignatureImage.fetch(client, attachment_ref(image, image.digest)) is None
    assert cosign.run("verify", "--key", str(key_a.pub), "--insecure-ignore-tlog", str(image),
                      env_extra=elsewhere).returncode == 0
    assert cosign.verify(key_a.pub, str(image)).returncode == 10  # not beside the image
    pair = cosign_keys(cosign)
    assert cosign.run("sign", "--key", str(pair.key), "-y", *cosign.legacy_sign_flags, str(image),
                      env_extra=elsewhere).returncode == 0
    result = verify_image(image, pair.public(), client=client,
                          signature_repository=elsewhere["COSIGN_REPOSITORY"])
    assert len(result.signatures) == 1


# --- crafted signed payloads: cosign's claim checks (issue 13, items 9 and 14) ------------------

_DIGEST = "@DIGEST@"
_TYPE = "cosign container image signature"
# name: (payload with @DIGEST@ for the image digest, verify flags); the signature is valid for
# each, so only the payload's claims decide. cosign unmarshals the payload into sigstore's
# SimpleContainerImage and checks only the digest (and the annotations it is asked for).
CRAFTED_PAYLOADS: dict[str, tuple[str, tuple[str, ...]]] = {
    "no-identity": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"},"type":"%s"},'
                    '"optional":null}' % _TYPE, ()),
    "no-type-no-optional": ('{"critical":{"identity":{"docker-reference":"x"},'
                            '"image":{"docker-manifest-digest":"@DIGEST@"}}}', ()),
    "optional-list": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"}},"optional":[1]}',
                      ("-a", "k=v")),
    "optional-string": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"}},"optional":"x"}',
                        ()),
    "optional-number": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"}},"optional":{"k":1}}',
                        ("-a", "k=1")),
    "optional-deep": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"}},"optional":{"k":'
                      + "[" * 10500 + "]" * 10500 + "}}", ("-a", "k=v")),
    "optional-huge-number": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"}},"optional":'
                             '{"k":' + "9" * 5000 + "}}", ("-a", "k=v")),
    "optional-match": ('{"critical":{"image":{"docker-manifest-digest":"@DIGEST@"}},'
                       '"optional":{"k":"v","n":null}}', ("-a", "k=v")),
    "critical-null": ('{"critical":null,"optional":null}', ()),
    "digest-number": ('{"critical":{"image":{"docker-manifest-digest":5}}}', ()),
    "not-an-object": ("[1]", ()),
}


@pytest.mark.parametrize("name", sorted(CRAFTED_PAYLOADS))
def test_crafted_payload_outcome_matches_cosign(cosign, key_a, image, client, capsys, name):
    template, flags = CRAFTED_PAYLOADS[name]
    payload = template.replace(_DIGEST, image.digest).encode()
    signature = base64.b64encode(keys.sign_message(key_a.private(), payload)).decode()
    sig = SignatureImage()
    sig.append(SignatureLayer(payload=payload, annotations={SIGNATURE_ANNOTATION: signature}))
    sig.push(client, attachment_ref(image, image.digest))
    ours = labkit_cli(capsys, "verify", "--key", str(key_a.pub), "--insecure-ignore-tlog", *flags, str(image))
    theirs = cosign.verify(key_a.pub, str(image), *flags)
    assert ours[0] == theirs.returncode, (theirs.stderr, ours[2])
    if ours[0]:  # one line, no traceback
        assert [line for line in ours[2].splitlines() if not line.startswith("WARNING")] == [
            ours[2].splitlines()[-1]]
    if theirs.returncode == 0:
        assert ours[1] == theirs.stdout
        assert cosign_header(ours[2]) == cosign_header(theirs.stderr)
    else:
        assert "Error: no matching signatures: " in theirs.stderr
        assert ours[2].splitlines()[-1].startswith("Error: no matching signatures: ")
        if "missing" in cosign.error(theirs):  # cosign's own wording, not Go's JSON decoder's
            assert ours[2].splitlines()[-1] == "Error: " + cosign.error(theirs)
