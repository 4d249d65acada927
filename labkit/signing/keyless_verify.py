"""Keyless image verification: ``cosign verify --certificate-identity … --certificate-oidc-issuer …``.

Offline, against :class:`~labkit.signing.keyless_trust.KeylessTrust`, in the order of cosign's
``verifyInternal``: the Rekor bundle (its body must record this signature, certificate and
payload; its SET must verify against the Rekor key), the certificate chain to a trusted CA, the
identity and issuer, the SCT against the CT log key, the signature, the claims, and the
certificate's validity at the integrated time. Failures carry cosign's words (v2.6.1 reading the
``SIGSTORE_*`` files; sigstore-go's where a trusted root is given). cosign v3 bundles are verified
by sigstore-python's ``Verifier``. :func:`verify_image_keyless` takes its trust material and
identities as arguments, so the engines' emulations can call it with their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from labkit.errors import (
    ImageTagNotFoundError,
    LabkitError,
    NoMatchingSignaturesError,
    NoSignaturesError,
    NotFoundError,
    UsageError,
    VerificationError,
)
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.signing.artifact import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    CHAIN_ANNOTATION,
    SignatureImage,
    SignatureLayer,
    attachment_ref,
)
from labkit.signing.blob_bundle import ISSUER_V1_OID, OTHERNAME_SAN_OID, CertificateIdentity
from labkit.signing.bundle import IN_TOTO_PAYLOAD, find_bundles
from labkit.signing.keyless_trust import KeylessTrust
from labkit.signing.payload import SimpleSigningPayload
from labkit.signing.verify import check_claims

_SCT_LIST = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
ISSUER_OID = "1.3.6.1.4.1.57264.1.1"

NO_SCT = "certificate does not include required embedded SCT and no detached SCT was set"
EXPIRED_NO_TIMESTAMP = "expected a signed timestamp to verify an expired certificate"
OFFLINE_FAILED = "offline verification failed"
OFFLINE_HINT = ("this signature has no Rekor bundle (signed with --tlog-upload=false?) and labkit never looks "
                "entries up online: pass --insecure-ignore-tlog to verify it without one, as cosign --offline "
                "would need too")
UNKNOWN_AUTHORITY = ("cert verification failed: x509: certificate signed by unknown authority. Check your TUF root "
                     "(see cosign initialize) or set a custom root with env var SIGSTORE_ROOT_FILE")


@dataclass(frozen=True)
class KeylessPolicy:
    """What a keyless signature must show: cosign's identity flags and its two ``--insecure-…``."""

    identity: CertificateIdentity
    ignore_sct: bool = False
    ignore_tlog: bool = False
    annotations: Mapping[str, str] | None = None


@dataclass(frozen=True)
class KeylessSignature:
    """One verified signature: the signed payload and what vouched for it."""

    payload: bytes
    signature: str  # base64
    certificate: x509.Certificate
    rekor_bundle: Mapping[str, Any] | None  # legacy signatures: the Rekor bundle annotation
    layer_annotations: Mapping[str, str] = field(default_factory=dict)
    bundle: bytes | None = None  # cosign v3 signatures: the Sigstore bundle

    @property
    def subject(self) -> str:
        sans = subject_alternative_names(self.certificate)
        return sans[0] if sans else ""

    @property
    def issuer(self) -> str:
        return legacy_issuer(self.certificate)


@dataclass(frozen=True)
class KeylessVerification:
    reference: Reference
    digest: str
    signatures: tuple[KeylessSignature, ...]
    tlog_verified: bool  # cosign's ``bundleVerified``: some signature's Rekor entry was checked

    def payloads_json(self) -> str:
        """cosign's stdout: each payload with ``Subject``, ``Issuer``, its OID and ``Bundle`` added
        to ``optional`` (map keys sorted, the bundle in its struct order, as Go marshals them)."""
        out = []
        for sig in self.signatures:
            if sig.bundle is not None:
                out.append(_bundle_claims(str(self.reference), sig.payload))
                continue
            claims = SimpleSigningPayload.from_json(sig.payload)
            optional: dict[str, Any] = dict(claims.optional or {})
            optional["Subject"] = sig.subject
            if sig.issuer:
                optional["Issuer"] = sig.issuer
                optional[ISSUER_OID] = sig.issuer
            if sig.rekor_bundle is not None:
                optional["Bundle"] = sig.rekor_bundle
            out.append(SimpleSigningPayload(claims.docker_reference, claims.digest, optional, claims.type).to_dict())
        return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _bundle_claims(name: str, statement_bytes: bytes) -> dict[str, Any]:
    """cosign v3's ``transformOutput``: a bundle's statement shown as a simple-signing payload."""
    doc = json.loads(statement_bytes)
    subject = doc["subject"][0]
    algorithm, value = next(iter(subject["digest"].items()))
    optional = dict(sorted((subject.get("annotations") or {}).items()))
    return SimpleSigningPayload(name, f"{algorithm}:{value}", optional, str(doc.get("predicateType", ""))).to_dict()


def verify_image_keyless(
    ref: Reference | str,
    trust: KeylessTrust,
    policy: KeylessPolicy,
    *,
    client: RegistryClient,
    signature_repository: str | None = None,
    bundles: bool = False,
    now: dt.datetime | None = None,
) -> KeylessVerification:
    """The keyless signatures on ``ref`` that satisfy ``policy`` under ``trust``; cosign's error
    when none does. With ``bundles``, cosign v3 bundles attached as referrers are looked for first
    and, when there are any, they alone are checked (cosign v3's auto-detection)."""
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    policy.identity.check_flags()
    try:
        digest = image.digest or client.resolve(image)
    except NotFoundError as exc:
        raise ImageTagNotFoundError(f"image tag not found: {exc}") from exc
    if bundles:
        found = find_bundles(client, image.with_digest(digest))
        if found:
            if policy.annotations:
                raise UsageError("labkit does not check -a annotations on cosign v3 bundles",
                                 hint="verify without -a, or sign in the legacy format to sign annotations")
            return _verify_bundles(image, digest, found, trust, policy)
    sig_image = SignatureImage.fetch(client, attachment_ref(image, digest, repository=signature_repository))
    if sig_image is None or not sig_image.layers:
        raise NoSignaturesError("no signatures found",
                                hint=f"nothing is signed for {image.name}@{digest}; sign it with `labkit sign`")
    verified: list[KeylessSignature] = []
    errors: list[LabkitError] = []
    tlog_verified = False
    for layer in sig_image.layers:
        try:
            signature, checked = verify_layer(layer, digest, trust, policy, now=now)
        except LabkitError as exc:
            errors.append(exc)
            continue
        verified.append(signature)
        tlog_verified = tlog_verified or checked
    if not verified:
        raise NoMatchingSignaturesError("no matching signatures: " + "\n ".join(e.message for e in errors),
                                        hint=next((e.hint for e in errors if e.hint), None))
    return KeylessVerification(image, digest, tuple(verified), tlog_verified)


def verify_layer(layer: SignatureLayer, digest: str, trust: KeylessTrust, policy: KeylessPolicy, *,
                 now: dt.datetime | None = None) -> tuple[KeylessSignature, bool]:
    """One legacy signature layer, checked as cosign's ``verifyInternal`` does, in its order.
    Returns the signature and whether its Rekor bundle was verified."""
    signature = layer.signature_bytes()
    certificate = _certificate(layer)
    bundle: dict[str, Any] | None = None
    integrated: dt.datetime | None = None
    if not policy.ignore_tlog:
        bundle = _rekor_bundle(layer)
        if bundle is None:
            raise VerificationError(OFFLINE_FAILED, hint=OFFLINE_HINT)
        _check_entry_body(bundle, layer, certificate)
        _check_set(bundle, trust)
        integrated = dt.datetime.fromtimestamp(int(bundle["Payload"]["integratedTime"]), dt.UTC)
    chain = _check_chain(certificate, _chain(layer), trust)
    check_identity(certificate, policy.identity)
    if not policy.ignore_sct:
        _check_sct(certificate, chain, trust)
    try:
        public_key = certificate.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise VerificationError(f"unsupported certificate key {type(public_key).__name__}")
        public_key.verify(signature, layer.payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError("invalid signature when validating ASN.1 encoded signature") from None
    check_claims(layer.payload, digest, policy.annotations)
    _check_expiry(certificate, integrated, now or dt.datetime.now(dt.UTC))
    return KeylessSignature(layer.payload, layer.signature_b64, certificate, bundle, dict(layer.annotations)), \
        bundle is not None


def _certificate(layer: SignatureLayer) -> x509.Certificate:
    pem = layer.annotations.get(CERTIFICATE_ANNOTATION)
    if not pem:
        raise VerificationError("no certificate found on signature",
                                hint="this signature was made with a key: verify it with --key")
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise VerificationError(f"invalid certificate found on signature: {exc}") from None


def _chain(layer: SignatureLayer) -> list[x509.Certificate]:
    pem = layer.annotations.get(CHAIN_ANNOTATION)
    if not pem:
        return []
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise VerificationError(f"invalid certificate chain on signature: {exc}") from None


def _rekor_bundle(layer: SignatureLayer) -> dict[str, Any] | None:
    text = layer.annotations.get(BUNDLE_ANNOTATION)
    if text is None:
        return None
    try:
        bundle = json.loads(text)
        payload = bundle["Payload"]
        int(payload["integratedTime"]), int(payload["logIndex"]), bytes.fromhex(payload["logID"])
        base64.b64decode(bundle["SignedEntryTimestamp"], validate=True)
        str(payload["body"])
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"error verifying bundle: invalid {BUNDLE_ANNOTATION} annotation: {exc}") from None
    if not isinstance(bundle, dict):
        raise VerificationError(f"error verifying bundle: invalid {BUNDLE_ANNOTATION} annotation")
    return bundle


def _check_entry_body(bundle: Mapping[str, Any], layer: SignatureLayer, certificate: x509.Certificate) -> None:
    """The entry must record this signature, this certificate and this payload (cosign v2.6.2 /
    v3.0.4's fix for GHSA-whqx-f9j3-ch6m; v2.6.1 skips it when given a trusted root)."""
    try:
        body = json.loads(base64.b64decode(bundle["Payload"]["body"], validate=True))
        if (body.get("kind"), body.get("apiVersion")) != ("hashedrekord", "0.0.1"):
            raise VerificationError(f"error verifying bundle: computing bundle hash: unsupported type "
                                    f"{body.get('kind')} {body.get('apiVersion')}")
        spec = body["spec"]
        recorded_signature = str(spec["signature"]["content"])
        recorded_key = base64.b64decode(spec["signature"]["publicKey"]["content"], validate=True)
        algorithm, value = str(spec["data"]["hash"]["algorithm"]), str(spec["data"]["hash"]["value"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VerificationError(f"error verifying bundle: invalid entry body: {exc}") from None
    if recorded_signature != layer.signature_b64:
        raise VerificationError("error verifying bundle: signature in bundle does not match signature being verified")
    ours = certificate.public_bytes(Encoding.PEM)
    try:
        theirs = x509.load_pem_x509_certificate(recorded_key).public_bytes(Encoding.PEM)
    except ValueError:
        theirs = recorded_key
    if theirs != ours:
        raise VerificationError(f"error verifying bundle: comparing public key PEMs, expected {ours.decode()}, "
                                f"got {recorded_key.decode(errors='replace')}")
    payload_hash = hashlib.sha256(layer.payload).hexdigest()
    if algorithm != "sha256":
        raise VerificationError(f'error verifying bundle: unexpected algorithm: "{algorithm}"')
    if value != payload_hash:
        raise VerificationError(f'error verifying bundle: matching bundle to payload: bundle="{value}", '
                                f'payload="{payload_hash}"')


def _check_set(bundle: Mapping[str, Any], trust: KeylessTrust) -> None:
    """The SET: the Rekor key's signature over the canonical JSON of the bundle's payload."""
    from sigstore._utils import KeyID
    from sigstore.errors import VerificationError as SigstoreVerificationError

    payload = bundle["Payload"]
    prefix = "error verifying bundle: " + ("verifying bundle with trusted root: " if trust.from_trusted_root else "")
    keyring = trust.rekor_keyring()
    log_id = bytes.fromhex(payload["logID"])
    if log_id not in keyring._keyring:  # the keyring's own table; it has no lookup of its own
        missing = "" if trust.from_trusted_root else "verifying bundle: "
        raise VerificationError(prefix + missing + "rekor log public key not found for payload",
                                hint=f"the Rekor that logged this signature is not in {trust.source}")
    canonical = json.dumps({"body": payload["body"], "integratedTime": int(payload["integratedTime"]),
                            "logID": payload["logID"], "logIndex": int(payload["logIndex"])},
                           separators=(",", ":"), sort_keys=True).encode()
    try:
        keyring.verify(key_id=KeyID(log_id), signature=base64.b64decode(bundle["SignedEntryTimestamp"]),
                       data=canonical)
    except SigstoreVerificationError:
        raise VerificationError(prefix + "unable to verify SET") from None


def _check_chain(certificate: x509.Certificate, chain: list[x509.Certificate],
                 trust: KeylessTrust) -> list[x509.Certificate]:
    """The certificate must chain to a trusted CA, checked at its own notBefore as cosign does:
    its validity against the signing time is checked apart (``_check_expiry``)."""
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )
    from cryptography.x509.verification import (
        VerificationError as X509VerificationError,
    )

    authorities = trust.ca_certificates()
    roots = [c for c in authorities if c.issuer == c.subject]
    # cosign takes the signature's chain (root excluded) as intermediates when TUF gave none
    intermediates = [c for c in authorities if c.issuer != c.subject] or [c for c in chain if c.issuer != c.subject]
    eku = x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None  # Fulcio's codeSigning is checked apart
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(*eku)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(*eku)
    if not roots:
        raise VerificationError(_chain_failure(trust), hint=f"{trust.source} holds no root certificate")
    verifier = (PolicyBuilder().store(Store(roots)).time(certificate.not_valid_before_utc)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())
    try:
        built = verifier.verify(certificate, intermediates)
    except (X509VerificationError, ValueError):
        raise VerificationError(_chain_failure(trust, certificate, [*roots, *intermediates]),
                                hint=f"the certificate was not issued by a CA in {trust.source} (valid then)") from None
    _require_code_signing(certificate, trust)
    return list(built.chain[1:])


def _chain_failure(trust: KeylessTrust, certificate: x509.Certificate | None = None,
                   authorities: list[x509.Certificate] | None = None) -> str:
    if trust.from_trusted_root:
        return "leaf certificate verification failed"
    # Go's x509 names an issuer that was not valid at the time asked (the leaf's notBefore)
    moment = certificate.not_valid_before_utc if certificate else None
    for ca in authorities or []:
        if certificate is None or moment is None or ca.subject != certificate.issuer:
            continue
        if moment < ca.not_valid_before_utc or moment > ca.not_valid_after_utc:
            before = moment < ca.not_valid_before_utc
            bound = ca.not_valid_before_utc if before else ca.not_valid_after_utc
            return ("cert verification failed: x509: certificate has expired or is not yet valid: current time "
                    f"{_rfc3339(moment)} is {'before' if before else 'after'} {_rfc3339(bound)}. Check your TUF "
                    "root (see cosign initialize) or set a custom root with env var SIGSTORE_ROOT_FILE")
    return UNKNOWN_AUTHORITY


def _require_code_signing(certificate: x509.Certificate, trust: KeylessTrust) -> None:
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if x509.oid.ExtendedKeyUsageOID.CODE_SIGNING not in usages:
        message = ("leaf certificate verification failed" if trust.from_trusted_root else
                   "cert verification failed: x509: certificate specifies an incompatible key usage. Check your "
                   "TUF root (see cosign initialize) or set a custom root with env var SIGSTORE_ROOT_FILE")
        raise VerificationError(message)


def _check_sct(certificate: x509.Certificate, chain: list[x509.Certificate], trust: KeylessTrust) -> None:
    from sigstore._internal.sct import verify_sct
    from sigstore.errors import Error as SigstoreError

    try:
        certificate.extensions.get_extension_for_oid(_SCT_LIST)
    except x509.ExtensionNotFound:
        raise VerificationError(NO_SCT, hint="verify with --insecure-ignore-sct to accept a certificate no CT "
                                             "log has seen (not for production)") from None
    try:
        verify_sct(certificate, chain, trust.ct_keyring())
    except SigstoreError:
        message = ("only able to verify 0 SCT entries; unable to meet threshold of 1" if trust.from_trusted_root
                   else "error verifying embedded SCT: error verifying SCT")
        raise VerificationError(message, hint=f"the CT log that signed the SCT is not in {trust.source}") from None


def _check_expiry(certificate: x509.Certificate, integrated: dt.datetime | None, now: dt.datetime) -> None:
    moment = integrated or now
    after, before = certificate.not_valid_after_utc, certificate.not_valid_before_utc
    if after >= moment >= before:
        return
    if integrated is None:
        raise VerificationError(EXPIRED_NO_TIMESTAMP,
                                hint="without its Rekor entry a certificate is checked against the present "
                                     "time: drop --insecure-ignore-tlog")
    if after < moment:
        raise VerificationError(f"checking expiry on certificate with bundle: certificate expired before "
                                f"signatures were entered in log: {_rfc3339(after)} is before {_rfc3339(moment)}")
    # cosign prints notAfter here too
    raise VerificationError(f"checking expiry on certificate with bundle: certificate was issued after signatures "
                            f"were entered in log: {_rfc3339(after)} is after {_rfc3339(moment)}")


def _rfc3339(moment: dt.datetime) -> str:
    """Go's ``time.RFC3339`` for a UTC time (cosign formats ``time.Unix`` in the local zone:
    the lab's machines run in UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- identity -------------------------------------------------------------------------------------


def subject_alternative_names(certificate: x509.Certificate) -> list[str]:
    """Every SAN in Go's order (DNS, email, IP, URI, then Sigstore's OtherName), as cosign lists them."""
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values: list[str] = [*sans.get_values_for_type(x509.DNSName), *sans.get_values_for_type(x509.RFC822Name),
                         *(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)),
                         *sans.get_values_for_type(x509.UniformResourceIdentifier)]
    for other in sans.get_values_for_type(x509.OtherName):
        if other.type_id == OTHERNAME_SAN_OID and other.value[:1] == b"\x0c":
            values.append(other.value[2:].decode(errors="replace"))
    return values


def legacy_issuer(certificate: x509.Certificate) -> str:
    """The OIDC issuer as cosign v2 reads it: Fulcio's first issuer extension (``.1.1``) only."""
    try:
        raw = certificate.extensions.get_extension_for_oid(ISSUER_V1_OID).value
    except x509.ExtensionNotFound:
        return ""
    return raw.value.decode(errors="replace") if isinstance(raw, x509.UnrecognizedExtension) else ""


def check_identity(certificate: x509.Certificate, identity: CertificateIdentity) -> None:
    """cosign's ``CheckCertificatePolicy``: the issuer exact or by an unanchored regexp, and any SAN
    exact or matching; its words otherwise."""
    issuer, sans = legacy_issuer(certificate), subject_alternative_names(certificate)
    if identity.issuer_regexp is not None:
        issuer_ok = _search(identity.issuer_regexp, issuer, "issuer")
    else:
        issuer_ok = identity.issuer is None or identity.issuer == issuer
    if identity.identity_regexp is not None:
        subject_ok = any(_search(identity.identity_regexp, san, "subject") for san in sans)
    else:
        subject_ok = identity.identity is None or identity.identity in sans
    if not (issuer_ok and subject_ok):
        raise VerificationError("none of the expected identities matched what was in the certificate, got subjects "
                                f"[{', '.join(sans)}] with issuer {issuer}")


def _search(pattern: str, value: str, what: str) -> bool:
    try:
        return re.search(pattern, value) is not None
    except re.error as exc:
        raise UsageError(f"malformed {what} in identity: {pattern} : {exc}") from None


# --- cosign v3 bundles ----------------------------------------------------------------------------


def _verify_bundles(image: Reference, digest: str, found: list[bytes], trust: KeylessTrust,
                    policy: KeylessPolicy) -> KeylessVerification:
    verified: list[KeylessSignature] = []
    errors: list[str] = []
    for raw in found:
        try:
            verified.append(verify_bundle_keyless(raw, digest, trust, policy))
        except LabkitError as exc:
            errors.append(exc.message)
    if not verified:
        raise NoMatchingSignaturesError("no matching attestations: " + "\n ".join(errors))
    return KeylessVerification(image, digest, tuple(verified), True)


def verify_bundle_keyless(raw: bytes, digest: str, trust: KeylessTrust, policy: KeylessPolicy) -> KeylessSignature:
    """One cosign v3 bundle: sigstore-python checks the certificate chain at the log's time, the SCT,
    the entry (inclusion proof, checkpoint, SET, body) and the DSSE signature; labkit the identity
    and that the statement's subject is ``digest``. A bundle always has its SCT and entry checked."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    try:
        bundle = Bundle.from_json(raw)
        payload_type, payload = Verifier(trusted_root=trust.root).verify_dsse(bundle, policy.identity)
    except SigstoreError as exc:
        raise VerificationError(" ".join(str(exc).split())[:400]) from None
    except ValueError as exc:
        raise VerificationError(f"failed to load bundle: {' '.join(str(exc).split())[:300]}") from None
    if payload_type != IN_TOTO_PAYLOAD:
        raise VerificationError(f"invalid payloadType {payload_type} on envelope. Expected {IN_TOTO_PAYLOAD}")
    algorithm, _, hex_digest = digest.partition(":")
    try:
        subjects = json.loads(payload)["subject"]
        named = any(isinstance(s, dict) and (s.get("digest") or {}).get(algorithm) == hex_digest for s in subjects)
    except (ValueError, KeyError, TypeError):
        named = False
    if not named:
        raise VerificationError("provided artifact digests do not match digests in statement")
    envelope = json.loads(raw)["dsseEnvelope"]
    return KeylessSignature(payload, str(envelope["signatures"][0]["sig"]), bundle.signing_certificate, None,
                            bundle=raw)
