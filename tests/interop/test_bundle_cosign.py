"""``labkit sign --new-bundle-format`` (cosign v3's default: a Sigstore bundle as an OCI referrer)
against real cosign: v3 verifies what labkit attaches, lays its own out the same way, and cosign
v2, like ``labkit verify``, cannot see it. On labkit's registry (referrers API) and distribution
(no referrers API: the ``sha256-<hex>`` fallback index)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3, RunningRegistry, reference_tool
from tests.interop.cosign import PASSWORD, Cosign
from tests.interop.test_sign_cosign import KeyPair, key_a, labkit_cli, push_image  # noqa: F401 (fixture)

pytestmark = pytest.mark.interop


@pytest.fixture
def cosign_v3(tmp_path: Path) -> Cosign:
    return Cosign(reference_tool(COSIGN_V3), tmp_path)


@pytest.fixture
def image(registry: RunningRegistry, request: pytest.FixtureRequest) -> Reference:
    with RegistryClient() as client:
        return push_image(client, Reference.parse(f"{registry.host}/bundle/app:v1"), request.node.nodeid.encode())


def _labkit_sign(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, key: Path, ref: str) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)
    code, _, err = labkit_cli(capsys, "sign", "--key", str(key), "--use-signing-config=false", "--tlog-upload=false",
                              "--new-bundle-format=true", ref)  # cosign v3's own flags for this, below
    assert code == 0, err


def _referrer(ref: Reference) -> tuple[dict, dict]:
    """The one referrer of ``ref`` and the bundle it carries, as the registry serves them."""
    with RegistryClient() as client:
        [descriptor] = client.referrers(ref).manifests
        manifest = json.loads(client.get_manifest(ref.with_digest(descriptor.digest)).data)
        layer = manifest["layers"][0]
        bundle = json.loads(client.get_blob(ref, layer["digest"], size=layer["size"]))
    return manifest, bundle


def test_cosign_v3_verifies_labkits_bundle(cosign_v3: Cosign, key_a: KeyPair, image: Reference,  # noqa: F811
                                           capsys, monkeypatch) -> None:
    _labkit_sign(capsys, monkeypatch, key_a.key, str(image))
    theirs = cosign_v3.verify(key_a.pub, str(image))
    assert theirs.returncode == 0, theirs.stderr
    assert json.loads(theirs.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == image.digest


def test_cosign_v3_refuses_it_with_another_key(cosign_v3: Cosign, key_a: KeyPair, image: Reference,  # noqa: F811
                                               tmp_path: Path, capsys, monkeypatch) -> None:
    from labkit import keys

    _labkit_sign(capsys, monkeypatch, key_a.key, str(image))
    other = keys.generate_key_pair(tmp_path / "other", PASSWORD.encode())
    assert cosign_v3.verify(Path(other.public_key), str(image)).returncode != 0


def test_legacy_readers_see_no_signature(key_a: KeyPair, image: Reference, tmp_path: Path,  # noqa: F811
                                         capsys, monkeypatch) -> None:
    """cosign v2 (and ``labkit verify``, which reads ``.sig`` images as v2 does) finds nothing."""
    _labkit_sign(capsys, monkeypatch, key_a.key, str(image))
    v2 = Cosign(reference_tool(COSIGN_V2_PIN), tmp_path).verify(key_a.pub, str(image))
    code, _, err = labkit_cli(capsys, "verify", "--key", str(key_a.pub), "--insecure-ignore-tlog", str(image))
    assert v2.returncode == code == 10, (v2.stderr, err)
    assert "Error: no signatures found" in v2.stderr and "Error: no signatures found" in err


def test_the_referrer_is_laid_out_as_cosign_v3_lays_out_its_own(
    cosign_v3: Cosign, key_a: KeyPair, registry: RunningRegistry, capsys, monkeypatch  # noqa: F811
) -> None:
    with RegistryClient() as client:
        theirs_ref = push_image(client, Reference.parse(f"{registry.host}/bundle/theirs:v1"), b"theirs")
        ours_ref = push_image(client, Reference.parse(f"{registry.host}/bundle/ours:v1"), b"ours")
    signed = cosign_v3.run("sign", "--key", str(key_a.key), "-y", "--use-signing-config=false",
                           "--tlog-upload=false", "--new-bundle-format=true", str(theirs_ref))
    assert signed.returncode == 0, signed.stderr
    _labkit_sign(capsys, monkeypatch, key_a.key, str(ours_ref))
    (theirs, their_bundle), (ours, our_bundle) = _referrer(theirs_ref), _referrer(ours_ref)

    def shape(manifest: dict) -> dict:
        return {"keys": sorted(manifest), "artifactType": manifest["artifactType"],
                "config": manifest["config"],
                "layers": [layer["mediaType"] for layer in manifest["layers"]],
                "subject": sorted(manifest["subject"]), "annotations": sorted(manifest["annotations"]),
                "content": manifest["annotations"]["dev.sigstore.bundle.content"],
                "predicate": manifest["annotations"]["dev.sigstore.bundle.predicateType"]}

    assert shape(ours) == shape(theirs)

    def statement(bundle: dict) -> dict:
        envelope = bundle["dsseEnvelope"]
        return json.loads(base64.b64decode(envelope["payload"]))

    assert sorted(our_bundle) == sorted(their_bundle)
    assert our_bundle["mediaType"] == their_bundle["mediaType"]
    assert our_bundle["verificationMaterial"]["publicKey"] == their_bundle["verificationMaterial"]["publicKey"]
    assert our_bundle["dsseEnvelope"]["payloadType"] == their_bundle["dsseEnvelope"]["payloadType"]
    # the same statement, but for the digest each signed; the image's name is in neither
    ours_statement, theirs_statement = statement(our_bundle), statement(their_bundle)
    assert ours_statement["subject"][0].pop("digest") == {"sha256": ours_ref.digest.split(":")[1]}
    assert theirs_statement["subject"][0].pop("digest") == {"sha256": theirs_ref.digest.split(":")[1]}
    assert ours_statement == theirs_statement
