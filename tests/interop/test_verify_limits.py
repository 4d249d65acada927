"""Hostile registry content that cosign bounds, verified by labkit and by real cosign.

A name with dot segments, a ``.sig`` image with too many layers: labkit must fail where cosign
fails (and succeed where it succeeds), with cosign's words where cosign has them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import keys
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, Descriptor, Manifest
from labkit.oci.reference import Reference
from labkit.signing.artifact import MAX_LAYERS, SignatureImage, attachment_ref
from labkit.signing.sign import sign_image
from tests.conftest import RunningRegistry
from tests.interop.cosign import PASSWORD, Cosign, cosign  # noqa: F401 (fixture)
from tests.interop.test_sign_cosign import labkit_cli, push_image

pytestmark = pytest.mark.interop


@pytest.fixture
def key_pair(tmp_path: Path) -> tuple[Path, keys.PrivateKey]:
    paths = keys.generate_key_pair(tmp_path / "k", PASSWORD.encode())
    return Path(paths.public_key), keys.load_private_key(paths.private_key, PASSWORD.encode())


def test_dot_segments_reach_the_registry_as_cosign_sends_them(
    cosign: Cosign, registry: RunningRegistry, key_pair: tuple[Path, keys.PrivateKey], capsys
) -> None:
    """``team/../other/renamed`` is a valid ggcr name; the registry decides. labkit's registry
    refuses it (NAME_INVALID) and both tools fail; distribution redirects to the clean path and
    both verify. labkit used to resolve the dots itself and verified ``other/renamed`` anywhere."""
    pub, private = key_pair
    client = RegistryClient()
    image = push_image(client, Reference.parse(f"{registry.host}/other/renamed:v1"), b"dots")
    sign_image(image, private, client=client)
    dotted = f"{registry.host}/team/../other/renamed:v1"
    theirs = cosign.verify(pub, dotted)
    code, _, err = labkit_cli(capsys, "verify", "--key", str(pub), "--insecure-ignore-tlog", dotted)
    assert (code == 0) == (theirs.returncode == 0), (err, theirs.stderr)
    if theirs.returncode:
        assert "NAME_INVALID: invalid repository name" in cosign.error(theirs)
        assert "NAME_INVALID: invalid repository name" in err


@pytest.mark.parametrize("layers", [MAX_LAYERS, MAX_LAYERS + 1])
def test_signature_layer_limit_is_cosigns(
    cosign: Cosign, registry: RunningRegistry, key_pair: tuple[Path, keys.PrivateKey], capsys,
    request: pytest.FixtureRequest, layers: int,
) -> None:
    """A ``.sig`` image of more than 1000 layers is refused before any payload is fetched
    (cosign pkg/oci/remote/signatures.go ``maxLayers``); 1000 layers still verify. Each layer
    here is the same valid signature, so only the count can make verification fail."""
    pub, private = key_pair
    client = RegistryClient()
    image = push_image(client, Reference.parse(f"{registry.host}/limits/layers:v1"), request.node.nodeid.encode())
    sign_image(image, private, client=client)
    sig_ref = attachment_ref(image, str(image.digest))
    signed = SignatureImage.fetch(client, sig_ref, with_config=True)
    assert signed is not None
    one = signed.layers[0].descriptor
    config = signed.config_bytes()
    client.push_blob(sig_ref, config)
    manifest = Manifest(config=Descriptor.of(OCI_CONFIG, config), layers=(one,) * layers)
    client.put_manifest(sig_ref, manifest.to_json(), manifest.media_type)

    theirs = cosign.verify(pub, str(image))
    code, _, err = labkit_cli(capsys, "verify", "--key", str(pub), "--insecure-ignore-tlog", str(image))
    if layers <= MAX_LAYERS:
        assert theirs.returncode == 0 and code == 0, (theirs.stderr, err)
        return
    assert theirs.returncode != 0
    assert code == theirs.returncode, (err, theirs.stderr)
    assert f"Error: {cosign.error(theirs)}" in err.splitlines()
