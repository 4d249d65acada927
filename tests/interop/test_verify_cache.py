"""The verification cache never serves a stale signature set: cosign changes the ``.sig`` image
between two cached verifications, and labkit's answer must follow what real cosign then says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit import keys
from labkit.errors import NoMatchingSignaturesError, NoSignaturesError
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.signing.artifact import SignatureImage, attachment_ref
from labkit.signing.sign import sign_image
from labkit.signing.verify import VerificationCache, verify_image

from tests.conftest import COSIGN_V2_PIN, RunningRegistry, reference_tool
from tests.interop.cosign import PASSWORD, Cosign

pytestmark = pytest.mark.interop


@pytest.fixture
def cosign(tmp_path: Path) -> Cosign:
    return Cosign(reference_tool(COSIGN_V2_PIN), tmp_path)


@pytest.fixture
def client() -> RegistryClient:
    return RegistryClient()


@pytest.fixture
def image(registry: RunningRegistry, client: RegistryClient, request: pytest.FixtureRequest) -> Reference:
    content = request.node.nodeid.encode()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}).encode()
    img = Image(Manifest(Descriptor.of(OCI_CONFIG, config), (Descriptor.of(OCI_LAYER, content),)),
                config, [content])
    ref = Reference.parse(f"{registry.host}/cache/{request.node.name.split('[')[0].replace('_', '-')}:v1")
    return ref.with_digest(client.push_image(ref, img))


def labkit_pair(tmp_path: Path) -> tuple[Path, keys.PrivateKey, keys.PublicKey]:
    paths = keys.generate_key_pair(tmp_path / "labkit", PASSWORD.encode())
    return (Path(paths.public_key), keys.load_private_key(paths.private_key, PASSWORD.encode()),
            keys.load_public_key(paths.public_key))


def cosign_pair(cosign: Cosign) -> tuple[Path, Path]:
    assert cosign.run("generate-key-pair").returncode == 0
    return cosign.cwd / "cosign.key", cosign.cwd / "cosign.pub"


def test_repeat_is_a_hit_equal_to_a_fresh_verification(cosign, image, client, tmp_path):
    pub_path, private, public = labkit_pair(tmp_path)
    sign_image(image, private, client=client)
    assert cosign.verify(pub_path, str(image)).returncode == 0
    cache = VerificationCache()
    tagged = image.with_tag("v1")
    first = verify_image(tagged, public, client=client, cache=cache)
    second = verify_image(tagged, public, client=client, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert second == first == verify_image(tagged, public, client=client)
    assert second.digest == image.digest


def test_signature_added_by_cosign_is_seen(cosign, image, client, tmp_path):
    pub_path, private, public = labkit_pair(tmp_path)
    sign_image(image, private, client=client)
    cache = VerificationCache()
    assert len(verify_image(image, public, client=client, cache=cache).signatures) == 1
    key, pub = cosign_pair(cosign)
    assert cosign.sign(key, str(image)).returncode == 0
    # The same question again is a miss: the .sig manifest changed under the same tag.
    again = verify_image(image, public, client=client, cache=cache)
    assert (cache.misses, cache.hits, len(again.signatures)) == (2, 0, 1)
    both = verify_image(image, [public, keys.load_public_key(pub)], client=client, cache=cache)
    assert len(both.signatures) == 2
    assert cosign.verify(pub, str(image)).returncode == 0


def test_tampered_signature_fails_after_a_cached_success(cosign, image, client, tmp_path):
    pub_path, private, public = labkit_pair(tmp_path)
    (result,) = sign_image(image, private, client=client)
    cache = VerificationCache()
    verify_image(image, public, client=client, cache=cache)
    sig = SignatureImage.fetch(client, result.signature_ref, with_config=True)
    assert sig is not None
    layer = sig.layers[0]
    forged = layer.payload.replace(b"cosign container image signature", b"cosign container image signaturE")
    sig.layers[0] = type(layer)(payload=forged, annotations=layer.annotations)
    sig.config["rootfs"]["diff_ids"] = [sha256_digest(forged)]
    sig.push(client, result.signature_ref)
    assert cosign.verify(pub_path, str(image)).returncode == 12
    with pytest.raises(NoMatchingSignaturesError):
        verify_image(image, public, client=client, cache=cache)


def test_deleted_signatures_are_not_served(cosign, image, client, tmp_path):
    pub_path, private, public = labkit_pair(tmp_path)
    sign_image(image, private, client=client)
    cache = VerificationCache()
    verify_image(image, public, client=client, cache=cache)
    sig_ref = attachment_ref(image, image.digest)
    client.delete_manifest(sig_ref.with_digest(client.resolve(sig_ref)))
    assert cosign.verify(pub_path, str(image)).returncode == 10
    with pytest.raises(NoSignaturesError):
        verify_image(image, public, client=client, cache=cache)
