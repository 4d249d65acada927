"""Keyless image signing: ``cosign sign`` with a Fulcio certificate instead of a key.

Signing asks Fulcio for a short-lived certificate for an OIDC identity, checks its SCT, signs, and
records the signature in Rekor (sigstore-python's Fulcio and Rekor clients do the talking). Two
formats, as cosign writes them:

- *legacy* (cosign v2's default): a layer of the ``sha256-<hex>.sig`` image holding the
  simple-signing payload, with the signature, the PEM certificate and chain, and the Rekor bundle
  (SET, body, integrated time, log index and ID) in its annotations;
- *bundle* (cosign v3's default, ``--new-bundle-format``): a Sigstore bundle v0.3 around a DSSE
  in-toto statement, pushed as an OCI referrer of the image.

Verification is :mod:`labkit.signing.keyless_verify`'s.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from labkit.errors import (
    SigningError,
)
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.signing.artifact import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SIGNATURE_ANNOTATION,
    SignatureLayer,
    attachment_ref,
)
from labkit.signing.bundle import IN_TOTO_PAYLOAD, BundleResult, pae, push_bundle, statement
from labkit.signing.keyless_trust import KeylessTrust
from labkit.signing.payload import SimpleSigningPayload
from labkit.signing.sign import SignResult, attach_signature, walk_digests

# --- signing ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningCertificate:
    """An ephemeral key and the Fulcio certificate (and chain, root last) binding it to an identity."""

    private_key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(Encoding.PEM).decode()

    def chain_pem(self) -> str:
        """As cosign stores it: Fulcio's chain PEMs, each trimmed, joined by newlines."""
        return "\n".join(c.public_bytes(Encoding.PEM).decode().strip() for c in self.chain)


def _loopback(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fulcio_client(url: str) -> Any:
    from sigstore._internal.fulcio.client import FulcioClient

    fulcio = FulcioClient(url)
    fulcio.session.trust_env = not _loopback(url)  # as Go, never send a loopback request to a proxy
    return fulcio


def _rekor_client(url: str) -> Any:
    from sigstore._internal.rekor.client import RekorClient

    rekor = RekorClient(url)
    rekor._session.trust_env = not _loopback(url)  # the client's per-thread session, made on first use
    return rekor


def request_certificate(fulcio_url: str, identity_token: str, trust: KeylessTrust) -> SigningCertificate:
    """A certificate from Fulcio for the token's identity; its embedded SCT is checked against the
    CT log keys of ``trust`` before anything is signed (cosign: "Successfully verified SCT...")."""
    from sigstore._internal.fulcio.client import FulcioClientError
    from sigstore._internal.sct import verify_sct
    from sigstore.errors import Error as SigstoreError
    from sigstore.oidc import IdentityError, IdentityToken

    try:
        token = IdentityToken(identity_token)
    except IdentityError as exc:
        raise SigningError(f"getting signer: {exc}", hint="get a fresh token: `labkit lab token EMAIL`") from None
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .sign(key, hashes.SHA256()))
    try:
        response = _fulcio_client(fulcio_url).signing_cert.post(csr, token)
    except (FulcioClientError, OSError) as exc:
        raise SigningError(f"getting signer: getting key from Fulcio: {exc or type(exc).__name__}",
                           hint=f"is Fulcio running at {fulcio_url}? `labkit lab status` shows the lab's") from None
    try:
        verify_sct(response.cert, response.chain, trust.ct_keyring())
    except SigstoreError as exc:
        raise SigningError(f"getting signer: verifying SCT: {exc}",
                           hint="the CT log key of the trust material must be the log Fulcio submits to") from None
    return SigningCertificate(key, response.cert, tuple(response.chain))


def rekor_bundle(entry: Any) -> dict[str, Any]:
    """cosign's ``dev.sigstore.cosign/bundle`` from a Rekor v1 entry (sigstore-python's)."""
    inner = entry._inner  # the library's protobuf entry; 4.5.1 has no public accessors for these
    return {"SignedEntryTimestamp": base64.b64encode(bytes(inner.inclusion_promise.signed_entry_timestamp)).decode(),
            "Payload": {"body": base64.b64encode(bytes(inner.canonicalized_body)).decode(),
                        "integratedTime": int(inner.integrated_time), "logIndex": int(inner.log_index),
                        "logID": bytes(inner.log_id.key_id).hex()}}


def _upload(rekor_url: str, signing: SigningCertificate, payload: bytes, signature: bytes) -> dict[str, Any]:
    from sigstore._internal.rekor import RekorClientError
    from sigstore._utils import sha256_digest

    rekor = _rekor_client(rekor_url)
    request = rekor._build_hashed_rekord_request(hashed_input=sha256_digest(payload), signature=signature,
                                                 certificate=signing.certificate)
    try:
        return rekor_bundle(rekor.create_entry(request))
    except (RekorClientError, OSError) as exc:
        raise SigningError(f"signing: creating tlog entry: {exc}",
                           hint=f"is Rekor running at {rekor_url}? `labkit lab status` shows the lab's") from None


def sign_image_keyless(
    ref: Reference | str,
    signing: SigningCertificate,
    *,
    client: RegistryClient,
    rekor_url: str | None,
    annotations: Mapping[str, str] | None = None,
    recursive: bool = False,
    signature_repository: str | None = None,
    upload: bool = True,
) -> list[tuple[SignResult, int | None]]:
    """Sign ``ref`` in cosign v2's legacy format with ``signing``'s key and certificate; with a
    ``rekor_url`` each signature is logged there first (``None``: ``--tlog-upload=false``).
    Returns each signature and its Rekor log index."""
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    root = image.digest or client.resolve(image)
    digests = list(walk_digests(client, image, root)) if recursive else [root]
    optional = dict(annotations) if annotations else None
    results = []
    for digest in digests:
        payload = SimpleSigningPayload(image.name, digest, optional).to_json()
        raw = signing.private_key.sign(payload, ec.ECDSA(hashes.SHA256()))
        signature = base64.b64encode(raw).decode()
        layer_annotations = {SIGNATURE_ANNOTATION: signature, CERTIFICATE_ANNOTATION: signing.certificate_pem(),
                             CHAIN_ANNOTATION: signing.chain_pem()}
        index = None
        if rekor_url:
            bundle = _upload(rekor_url, signing, payload, raw)
            layer_annotations[BUNDLE_ANNOTATION] = json.dumps(bundle, separators=(",", ":"))
            index = int(bundle["Payload"]["logIndex"])
        layer = SignatureLayer(payload=payload, annotations=layer_annotations)
        target = attachment_ref(image, digest, repository=signature_repository)
        public_key = signing.private_key.public_key()
        appended = attach_signature(client, target, layer, public_key) if upload else False
        results.append((SignResult(digest, target, payload, signature, appended), index))
    return results


def sign_bundle_keyless(ref: Reference | str, signing: SigningCertificate, *, rekor_url: str,
                        client: RegistryClient) -> BundleResult:
    """cosign v3's default: a DSSE statement about the digest, signed with ``signing``'s key, logged
    in Rekor (a ``dsse`` entry) and wrapped in a v0.3 bundle by sigstore-python, pushed as the
    image's referrer. (sigstore-python's own ``sign_dsse`` wants a named subject; cosign's
    statement names only the digest, so the envelope is made here.)"""
    from sigstore._internal.rekor import RekorClientError
    from sigstore.dsse import Envelope
    from sigstore.models import Bundle
    from sigstore_models.intoto import Envelope as EnvelopeModel
    from sigstore_models.intoto import Signature as SignatureModel

    image = Reference.parse(ref) if isinstance(ref, str) else ref
    subject = client.head_manifest(image)
    payload = statement(subject.digest)
    raw = signing.private_key.sign(pae(IN_TOTO_PAYLOAD, payload), ec.ECDSA(hashes.SHA256()))
    envelope = Envelope(EnvelopeModel(payload=base64.b64encode(payload), payload_type=IN_TOTO_PAYLOAD,
                                      signatures=[SignatureModel(sig=base64.b64encode(raw))]))
    rekor = _rekor_client(rekor_url)
    try:
        entry = rekor.create_entry(rekor._build_dsse_request(envelope=envelope, certificate=signing.certificate))
    except (RekorClientError, OSError) as exc:
        raise SigningError(f"signing: creating tlog entry: {exc}",
                           hint=f"is Rekor running at {rekor_url}? `labkit lab status` shows the lab's") from None
    bundle = Bundle._from_parts(signing.certificate, envelope, entry)
    return push_bundle(client, image, subject, bundle.to_json().encode())
