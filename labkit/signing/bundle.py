"""Sign an image in cosign v3's default format: a Sigstore bundle attached as an OCI referrer.

``cosign sign`` v3 no longer writes a ``sha256-<hex>.sig`` image. It signs an in-toto statement
about the digest (DSSE), wraps it in a Sigstore bundle (v0.3) and pushes that as a manifest whose
``subject`` is the image: found through the referrers API, or the ``sha256-<hex>`` fallback index
where a registry lacks it. Engines that read only ``.sig`` tags (Kyverno ``type: Cosign``,
policy-controller key authorities) cannot see it; the attack notebook shows that. As with
``labkit sign``, nothing is uploaded to a transparency log (cosign v3's
``--use-signing-config=false --tlog-upload=false``), so the bundle holds no tlog entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from labkit import keys
from labkit.errors import LabkitError, VerificationError
from labkit.oci.client import RegistryClient
from labkit.oci.model import EMPTY_JSON, OCI_EMPTY, OCI_MANIFEST, Descriptor, Manifest
from labkit.oci.reference import Reference
from labkit.signing.artifact import MAX_PAYLOAD_SIZE

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"  # what cosign's GetBundles looks for
MAX_REFERRERS = 1000  # referrers looked at per image, as the layers of a .sig image are capped
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO_PAYLOAD = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT = "https://in-toto.io/Statement/v1"


@dataclass(frozen=True)
class BundleResult:
    digest: str  # the signed image's
    referrer: Reference  # the bundle's manifest, by digest
    bundle: bytes


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(digest: str) -> bytes:
    """cosign v3's signing statement: the digest only; the image's name is not signed."""
    algorithm, _, hex_digest = digest.partition(":")
    return json.dumps({"_type": IN_TOTO_STATEMENT, "subject": [{"digest": {algorithm: hex_digest}, "annotations": {}}],
                       "predicateType": SIGN_PREDICATE, "predicate": {}}, separators=(",", ":")).encode()


def key_hint(public_key: keys.PublicKey) -> str:
    """``verificationMaterial.publicKey.hint``: base64 of the SHA-256 of the PKIX DER key."""
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def sign_bundle(ref: Reference | str, private_key: keys.PrivateKey, *, client: RegistryClient) -> BundleResult:
    """Sign ``ref``'s digest (a tag is resolved first) and push the bundle as its referrer."""
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    subject = client.head_manifest(image)
    payload = statement(subject.digest)
    signature = keys.sign_message(private_key, pae(IN_TOTO_PAYLOAD, payload), ed25519ph=False)
    bundle = json.dumps({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(private_key.public_key())}},
        "dsseEnvelope": {"payload": base64.b64encode(payload).decode(), "payloadType": IN_TOTO_PAYLOAD,
                         "signatures": [{"sig": base64.b64encode(signature).decode()}]},
    }, separators=(",", ":")).encode()
    return push_bundle(client, image, subject, bundle)


def push_bundle(client: RegistryClient, image: Reference, subject: Descriptor, bundle: bytes) -> BundleResult:
    """Push ``bundle`` (signed over ``subject``, the image's manifest descriptor) as cosign v3's
    ``WriteReferrer`` does: an OCI manifest by digest whose ``subject`` is the image."""
    client.push_blob(image, EMPTY_JSON)
    client.push_blob(image, bundle)
    manifest = Manifest(
        config=Descriptor.of(OCI_EMPTY, EMPTY_JSON, artifact_type=BUNDLE_MEDIA_TYPE),
        layers=(Descriptor.of(BUNDLE_MEDIA_TYPE, bundle),),
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        artifact_type=BUNDLE_MEDIA_TYPE,
        annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                     "dev.sigstore.bundle.predicateType": SIGN_PREDICATE,
                     "org.opencontainers.image.created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
    ).to_json()
    digest = client.push_referrer(image, manifest, OCI_MANIFEST)
    return BundleResult(subject.digest, image.with_digest(digest), bundle)


def find_bundles(client: RegistryClient, image: Reference) -> list[bytes]:
    """cosign's ``GetBundles``: the Sigstore bundle of every referrer of ``image`` (a digest
    reference) whose first layer is one, whatever the referrer's artifactType says."""
    found = []
    for descriptor in client.referrers(image).manifests[:MAX_REFERRERS]:
        manifest = client.get_manifest(image.with_digest(descriptor.digest)).parsed()
        if not isinstance(manifest, Manifest) or not manifest.layers:
            continue
        layer = manifest.layers[0]
        if not layer.media_type.startswith(BUNDLE_PREFIX):
            continue
        if layer.size > MAX_PAYLOAD_SIZE:
            raise VerificationError(f"size of layer ({layer.size}) exceeded the limit ({MAX_PAYLOAD_SIZE})")
        found.append(client.get_blob(image, layer.digest, size=layer.size))
    return found


def verify_bundle(bundle: bytes, candidates: tuple[keys.PublicKey, ...],
                  digest: str) -> tuple[bytes, str, keys.PublicKey]:
    """(statement, base64 signature, key) when one of ``candidates`` signed this bundle's DSSE
    envelope and its statement names ``digest`` (cosign's ``IntotoSubjectClaimVerifier``);
    LabkitError saying why not otherwise."""
    try:
        envelope = json.loads(bundle)["dsseEnvelope"]
        payload, payload_type = base64.b64decode(envelope["payload"]), str(envelope["payloadType"])
        signature_b64 = str(envelope["signatures"][0]["sig"])
        subjects = json.loads(payload)["subject"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise LabkitError(f"not a DSSE bundle labkit can read: {exc}") from None
    signature, message = base64.b64decode(signature_b64), pae(payload_type, payload)
    first_error: LabkitError | None = None
    for key in candidates:
        try:
            keys.verify_message(key, signature, message)
        except LabkitError as exc:
            first_error = first_error or exc
            continue
        algorithm, _, hex_digest = digest.partition(":")
        if not any(isinstance(s, dict) and (s.get("digest") or {}).get(algorithm) == hex_digest for s in subjects):
            raise LabkitError(f"no subject of the statement names {digest}")
        return payload, signature_b64, key
    assert first_error is not None  # candidates is never empty
    raise first_error
