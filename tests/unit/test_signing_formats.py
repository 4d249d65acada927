"""Byte-for-byte checks of the payload and .sig artifact against what real cosign v2.6.1 wrote.

The vectors below were captured from `cosign sign --key … --tlog-upload=false` against a local
distribution registry (the signature bytes are cosign's; ECDSA is randomised, so labkit's own
signatures differ, but everything around them must not).
"""

from __future__ import annotations

import pytest

from labkit.errors import VerificationError
from labkit.oci.model import InvalidDigestError, sha256_digest
from labkit.signing.artifact import SIGNATURE_ANNOTATION, SignatureImage, SignatureLayer, attachment_tag
from labkit.signing.payload import SimpleSigningPayload

REPO = "127.0.0.1:5099/demo/app"

PLAIN_DIGEST = "sha256:613c1afaf2bf74208af31d85f6556d2ec74e8413cb8c71232300a455b83a94f8"
PLAIN_PAYLOAD = (
    b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5099/demo/app"},"image":{"docker-manifest-digest":'
    b'"sha256:613c1afaf2bf74208af31d85f6556d2ec74e8413cb8c71232300a455b83a94f8"},"type":"cosign container image'
    b' signature"},"optional":null}'
)
PLAIN_SIGNATURE = "MEQCIGALbcSrFI/DuUEvYz03NcLqPwohFlDQ+6mDWBrOt9smAiAly1FG08ex2Vdc19WAOkkFKQ6HkqzpZwfSgGB0yMqX9Q=="
PLAIN_LAYER_DIGEST = "sha256:e66219d750fa8a1a7d0870cb6d3c6ce4cd88efdc30500e99c7014deb9915aaf5"
PLAIN_CONFIG_DIGEST = "sha256:4cdc90d7f10fb53a0fca8b4a5ffe7b5a087b0632098f54c7e06c48e5f7c550e1"
PLAIN_MANIFEST_DIGEST = "sha256:29ab5b06fdb1ba009e105223cbcce7c43cecf599064848bc4edda0cae8ff21a3"

ANNOTATED_DIGEST = "sha256:5967d73eb5c36e7e6bdff7a08a4bbabb38bf4de6c164b14bbbd753d9d91c3a6a"
ANNOTATED_SIGNATURE = (
    "MEYCIQCVjt5bnYMJetDGfo2V+fciVfnL+mBD6j0Yhq8jbjUKGgIhANATqwQVOmFQee6i4aBiSCcnm5L3WFg537bgwuEHMd8B"
)
ANNOTATED_LAYER_DIGEST = "sha256:523b6bf72d0b4b983826b1772531d0aa62d79742ed9693a06c26fa702c6c4ebd"
ANNOTATED_MANIFEST_DIGEST = "sha256:e56269db22313d5bc83122f39eaad9e9d80c6cc3b135987b8146d5d8498b61c6"


def test_payload_matches_cosign_bytes():
    assert SimpleSigningPayload(REPO, PLAIN_DIGEST).to_json() == PLAIN_PAYLOAD
    assert sha256_digest(PLAIN_PAYLOAD) == PLAIN_LAYER_DIGEST


def test_annotated_payload_sorts_optional_keys_like_go():
    # cosign was given -a foo=bar -a abc=1; Go marshals the map with sorted keys.
    payload = SimpleSigningPayload(REPO, ANNOTATED_DIGEST, {"foo": "bar", "abc": "1"}).to_json()
    assert sha256_digest(payload) == ANNOTATED_LAYER_DIGEST
    assert payload.endswith(b'"optional":{"abc":"1","foo":"bar"}}')


def test_payload_round_trip_and_garbage():
    parsed = SimpleSigningPayload.from_json(PLAIN_PAYLOAD)
    assert (parsed.docker_reference, parsed.digest, parsed.optional) == (REPO, PLAIN_DIGEST, None)
    # As cosign reads it (Go json.Unmarshal into a struct): absent members are empty, the claim
    # check then refuses the empty digest; members of another JSON type are errors.
    assert SimpleSigningPayload.from_json(b'{"critical":{}}') == SimpleSigningPayload("", "", None, "")
    for garbage, wording in ((b"[1]", "not a JSON object"), (b'{"critical":[]}', "critical is not an object"),
                             (b'{"optional":"x"}', "optional is not an object"), (b"{", "not valid JSON")):
        with pytest.raises(VerificationError, match=wording):
            SimpleSigningPayload.from_json(garbage)


@pytest.mark.parametrize(
    "payload, signature, manifest_digest",
    [
        (PLAIN_PAYLOAD, PLAIN_SIGNATURE, PLAIN_MANIFEST_DIGEST),
        (
            SimpleSigningPayload(REPO, ANNOTATED_DIGEST, {"abc": "1", "foo": "bar"}).to_json(),
            ANNOTATED_SIGNATURE,
            ANNOTATED_MANIFEST_DIGEST,
        ),
    ],
)
def test_signature_manifest_matches_cosign_bytes(payload, signature, manifest_digest):
    image = SignatureImage()
    image.append(SignatureLayer(payload=payload, annotations={SIGNATURE_ANNOTATION: signature}))
    assert sha256_digest(image.manifest().to_json()) == manifest_digest


def test_signature_config_is_ggcr_empty_image_plus_layer():
    image = SignatureImage()
    image.append(SignatureLayer(payload=PLAIN_PAYLOAD, annotations={SIGNATURE_ANNOTATION: PLAIN_SIGNATURE}))
    assert sha256_digest(image.config_bytes()) == PLAIN_CONFIG_DIGEST
    assert image.config_bytes() == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        b'"os":"","rootfs":{"type":"layers","diff_ids":["' + PLAIN_LAYER_DIGEST.encode() + b'"]},"config":{}}'
    )


def test_attachment_tag():
    assert attachment_tag(PLAIN_DIGEST) == "sha256-" + PLAIN_DIGEST[7:] + ".sig"
    assert attachment_tag(PLAIN_DIGEST, "att").endswith(".att")
    with pytest.raises(InvalidDigestError, match="invalid digest"):
        attachment_tag("sha256:xyz")


def test_bad_signature_annotation_is_a_verification_error():
    layer = SignatureLayer(payload=PLAIN_PAYLOAD, annotations={SIGNATURE_ANNOTATION: "not base64!"})
    with pytest.raises(VerificationError, match="not valid base64"):
        layer.signature_bytes()
