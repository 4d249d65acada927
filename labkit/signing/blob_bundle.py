"""Sigstore bundles for blobs: ``cosign sign-blob --bundle`` / ``verify-blob --bundle`` (cosign v3).

A bundle (v0.1-v0.3) holds one signature, a message signature or a DSSE envelope, with what
vouches for its signer: a Fulcio certificate (keyless) or a public-key hint (managed key), and
transparency-log entries (Rekor v1 or v2) and signed timestamps. Everything is checked offline
against a Sigstore ``trusted_root.json``.

Keyless bundles are sigstore-python's job (``sigstore.verify.Verifier``); labkit adds cosign's
identity flags (exact or regexp, as sigstore-go matches them) and, for DSSE, the in-toto subject
check cosign makes against the artifact. sigstore-python reads only certificate bundles, so
managed-key bundles are checked here: the signature against ``--key``, then each tlog entry's
inclusion proof, checkpoint and SET (sigstore-python's entry code) and its body against this
signature, key and artifact. Signing writes what ``cosign sign-blob --key K --bundle B
--use-signing-config=false --tlog-upload=false`` writes: a v0.3 message-signature bundle with a
key hint and no tlog entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from labkit import keys
from labkit._internal.goregexp import go_regexp_error
from labkit.errors import LabkitError, UsageError, VerificationError
from labkit.signing.bundle import BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD, key_hint, pae

if TYPE_CHECKING:  # sigstore is imported where it is used: verbs without bundles do not pay for it
    from sigstore.models import TrustedRoot
    from sigstore_models.bundle.v1 import Bundle as BundleModel
    from sigstore_models.rekor.v1 import TransparencyLogEntry as EntryModel

# Fulcio's OIDC issuer extensions: v2 (DER UTF8String) is preferred, v1 (raw bytes) is the fallback.
ISSUER_V2_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
ISSUER_V1_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OTHERNAME_SAN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")

SIGNATURE_FAILED = "failed to verify signature: could not verify message: "
DIGESTS_DO_NOT_MATCH = "failed to verify signature: provided artifact digests do not match digests in statement"
NO_LOG_ENTRIES = "failed to verify log inclusion: not enough verified log entries from transparency log: 0 < 1"
KEY_OR_IDENTITY = ("exactly one of: key reference (--key) or certificate identity (--certificate-identity or "
                   "--certificate-identity-regexp), must be provided.")
KEY_OR_IDENTITY_HINT = ("To determine which to use, inspect the bundle's 'verificationMaterial' field: if "
                        "'publicKey' is present, use key reference; if 'certificate' or 'x509CertificateChain' "
                        "is present, use certificate identity")


@dataclass(frozen=True)
class CertificateIdentity:
    """cosign's ``--certificate-identity[-regexp]`` and ``--certificate-oidc-issuer[-regexp]``.

    As in sigstore-go, a regexp matches anywhere in the value (Go's ``MatchString``), and the
    identity is the certificate's SAN (email, URI or Sigstore's OtherName).
    """

    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None

    def check_flags(self) -> None:
        if self.identity is not None and self.identity_regexp is not None:  # cosign v3.1.3 counts two
            raise UsageError(KEY_OR_IDENTITY, hint=KEY_OR_IDENTITY_HINT)
        if self.identity is None and self.identity_regexp is None:
            raise UsageError("--certificate-identity or --certificate-identity-regexp is required for "
                             "verification in keyless mode")
        if self.issuer is None and self.issuer_regexp is None:
            raise UsageError("--certificate-oidc-issuer or --certificate-oidc-issuer-regexp is required for "
                             "verification in keyless mode")
        for pattern in (self.identity_regexp, self.issuer_regexp):
            if pattern is not None and (error := go_regexp_error(pattern)) is not None:
                raise UsageError(str(error))  # cosign compiles them with Go's regexp, and says this

    def verify(self, cert: x509.Certificate) -> None:
        """sigstore-python's ``VerificationPolicy``: raise its VerificationError with cosign's words."""
        from sigstore.errors import VerificationError as SigstoreVerificationError

        prefix = "failed to verify certificate identity: no matching CertificateIdentity found, last error: "
        # sigstore-go checks the SAN before the issuer, and reports the first mismatch
        problem = _mismatch("SAN value", certificate_san(cert), self.identity, self.identity_regexp)
        problem = problem or _mismatch("issuer value", certificate_issuer(cert), self.issuer, self.issuer_regexp)
        if problem:
            raise SigstoreVerificationError(prefix + problem)


def _mismatch(what: str, got: str, exact: str | None, pattern: str | None) -> str | None:
    if exact is not None and got != exact:
        return f'expected {what} "{exact}", got "{got}"'
    if pattern is not None:
        try:
            found = re.search(pattern, got)
        except re.error as exc:  # valid RE2 that Python's re lacks: \pL, \z, [[:alpha:]] …
            raise UsageError(f"labkit cannot match the Go regular expression {pattern!r}: {exc}",
                             hint="write it without \\p{…} classes, \\z or [[:…:]] classes") from None
        if not found:
            return f'expected {what} to match regex "{pattern}", got "{got}"'
    return None


def certificate_issuer(cert: x509.Certificate) -> str:
    """The OIDC issuer Fulcio wrote into the certificate ("" when it has none)."""
    for oid in (ISSUER_V2_OID, ISSUER_V1_OID):
        try:
            raw = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        value = raw.value if isinstance(raw, x509.UnrecognizedExtension) else b""
        if oid == ISSUER_V2_OID and value[:1] == b"\x0c":  # DER UTF8String: tag, length, bytes
            return _der_string(value)
        return value.decode(errors="replace")
    return ""


def _der_string(der: bytes) -> str:
    length, offset = der[1], 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        count = length & 0x7F
        length, offset = int.from_bytes(der[2:2 + count], "big"), 2 + count
    return der[offset:offset + length].decode(errors="replace")


def certificate_san(cert: x509.Certificate) -> str:
    """The signer's identity: the first email, URI or Sigstore OtherName SAN ("" when none)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    values: list[str] = [*sans.get_values_for_type(x509.RFC822Name),
                         *sans.get_values_for_type(x509.UniformResourceIdentifier)]
    values += [_der_string(o.value) for o in sans.get_values_for_type(x509.OtherName) if o.type_id == OTHERNAME_SAN_OID]
    return values[0] if values else ""


# --- signing --------------------------------------------------------------------------------------

_DIGEST_NAMES = {"sha256": "SHA2_256", "sha384": "SHA2_384", "sha512": "SHA2_512"}


def sign_blob_bundle(private_key: keys.PrivateKey, blob: bytes) -> bytes:
    """A v0.3 bundle: the key's signature over ``blob``, the message digest, the key's hint."""
    algorithm = _hash_name(private_key.public_key())
    signature = keys.sign_message(private_key, blob, ed25519ph=False)
    return json.dumps({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(private_key.public_key())}},
        "messageSignature": {
            "messageDigest": {"algorithm": _DIGEST_NAMES[algorithm],
                              "digest": base64.b64encode(hashlib.new(algorithm, blob).digest()).decode()},
            "signature": base64.b64encode(signature).decode(),
        },
    }, separators=(",", ":")).encode()


def _hash_name(public_key: keys.PublicKey) -> str:
    """The hash the key signs with (labkit.keys.signatures.EC_HASHES; RSA and Ed25519: SHA-256)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "sha384", "secp521r1": "sha512"}.get(public_key.curve.name, "sha256")
    return "sha256"


# --- verifying ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleVerification:
    """What was verified: ``signer`` is the SAN (keyless) or ``"key"``; ``tlog_entries`` checked."""

    signer: str
    dsse: bool
    tlog_entries: int


def verify_blob_bundle(
    bundle: bytes,
    blob: bytes,
    *,
    public_key: keys.PublicKey | None = None,
    identity: CertificateIdentity | None = None,
    trusted_root: Path | None = None,
    ignore_tlog: bool = False,
    digest_algorithm: str = "sha256",
    use_signed_timestamps: bool = False,
) -> BundleVerification:
    """Verify ``bundle`` over ``blob`` as ``cosign verify-blob --bundle`` v3 does, offline.

    ``digest_algorithm`` is cosign's ``--signature-digest-algorithm`` for key bundles: cosign
    v3.1.3 assumes SHA-256 whatever the key, so a P-384 key's bundle needs ``sha384`` there too.

    ``use_signed_timestamps`` is cosign's flag: at least one RFC 3161 timestamp in the bundle must
    verify against a TSA of the trusted root (cosign checks a key bundle's timestamps only then).

    Raises UsageError for flags that cannot work with this bundle and VerificationError (cosign's
    words where cosign has them) for a bundle that does not verify.
    """
    document = _parse(bundle)
    if use_signed_timestamps:
        _verify_signed_timestamps(document, _load_root(_need_root(trusted_root)))
    material = document.get("verificationMaterial")
    keyed = isinstance(material, dict) and "publicKey" in material
    if public_key is not None and identity is not None:
        raise UsageError(KEY_OR_IDENTITY, hint=KEY_OR_IDENTITY_HINT)
    if keyed:
        if public_key is None:
            raise VerificationError("the bundle is signed with a key (verificationMaterial.publicKey), "
                                    "not a certificate", hint="pass the signer's public key with --key")
        return _verify_keyed(document, blob, public_key, trusted_root, ignore_tlog, digest_algorithm)
    if public_key is not None:
        raise VerificationError("expected key signature, not certificate",
                                hint="this bundle is keyless: verify it with --certificate-identity and "
                                     "--certificate-oidc-issuer")
    if identity is None:
        identity = CertificateIdentity()
    identity.check_flags()
    if ignore_tlog:
        raise VerificationError("failed to verify leaf certificate: leaf certificate verification failed",
                                hint="a keyless bundle's certificate is checked at the time its tlog entry or "
                                     "timestamp proves: drop --insecure-ignore-tlog")
    return _verify_keyless(_with_proto_defaults(document), blob, identity, _need_root(trusted_root))


def _parse(bundle: bytes) -> dict[str, Any]:
    try:
        document = json.loads(bundle)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerificationError(f"failed to load bundle: {exc}") from None
    if not isinstance(document, dict):
        raise VerificationError("failed to load bundle: not a JSON object")
    return document


def with_proto_defaults(bundle: bytes) -> bytes:
    """``bundle`` as sigstore-python can read it (see below); for every reader of bundles, image
    signatures included. Unparseable input is returned unchanged for the library to refuse."""
    try:
        document = json.loads(bundle)
    except (ValueError, UnicodeDecodeError):
        return bundle
    return _with_proto_defaults(document) if isinstance(document, dict) else bundle


def _with_proto_defaults(document: dict[str, Any]) -> bytes:
    """The bundle with the zero values protobuf's JSON leaves out put back: sigstore-models requires
    them, so a fresh log's first entry (log index 0, no proof hashes) or a bundle without tlog
    entries would otherwise be refused as malformed."""
    material = document.get("verificationMaterial")
    if isinstance(material, dict):
        material.setdefault("tlogEntries", [])
        for entry in material["tlogEntries"] if isinstance(material["tlogEntries"], list) else []:
            if isinstance(entry, dict):
                entry.setdefault("logIndex", "0")
                if isinstance(entry.get("inclusionProof"), dict):
                    entry["inclusionProof"].setdefault("logIndex", "0")
                    entry["inclusionProof"].setdefault("hashes", [])
    return json.dumps(document).encode()


def _verify_signed_timestamps(document: dict[str, Any], root: TrustedRoot) -> None:
    """cosign's ``--use-signed-timestamps``: one timestamp over the signature from a trusted TSA."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TimestampVerificationData
    from sigstore.verify import Verifier

    try:
        material = document["verificationMaterial"]
        stamps = (material.get("timestampVerificationData") or {}).get("rfc3161Timestamps") or []
        content = document.get("messageSignature") or document["dsseEnvelope"]["signatures"][0]
        signature = base64.b64decode(content.get("signature") or content["sig"])
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise VerificationError(f"failed to load bundle: {exc}") from None
    verifier = Verifier(trusted_root=root)
    verified = 0
    for stamp in stamps:  # one by one: a malformed timestamp does not hide a good one
        try:
            data = TimestampVerificationData.from_json(json.dumps({"rfc3161Timestamps": [stamp]}))
            [response] = data.rfc3161_timestamps
        except (SigstoreError, ValueError):
            continue
        # the library's per-timestamp check (chain to a TSA of the trusted root, within its
        # validity); 4.5.1 has it only as a method of Verifier
        if verifier._verify_signed_timestamp(response, signature) is not None:
            verified += 1
    if verified < 1:
        raise VerificationError("failed to verify timestamps: threshold not met for verified signed timestamps: 0 < 1")


def _need_root(trusted_root: Path | None) -> Path:
    if trusted_root is None:
        raise UsageError("labkit verifies bundles offline and needs a trusted root for this one",
                         hint="pass --trusted-root trusted_root.json (the Sigstore instance's keys and CAs)")
    return trusted_root


def _load_root(path: Path) -> TrustedRoot:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TrustedRoot

    try:
        return TrustedRoot.from_file(str(path))
    except OSError as exc:
        raise UsageError(f"cannot read trusted root {path}: {exc.strerror}", hint="check the path") from None
    except (SigstoreError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise VerificationError(f"invalid trusted root {path}: {_first_lines(str(exc))}") from None


def _first_lines(text: str, limit: int = 400) -> str:
    # pydantic's reports run to many lines, sigstore's Merkle errors dump every hash: the start
    # says what failed and where
    short = " ".join(line.strip() for line in text.splitlines()[:3])
    return short if len(short) <= limit else short[:limit] + "…"


LOG_INCLUSION_FAILED = "failed to verify log inclusion: "
# sigstore-python's words for a failure cosign v3.1.3 (sigstore-go) reports in its own, checked on
# the conformance cases; other tlog failures keep sigstore-python's detail under cosign's prefix
_COSIGN_WORDS = {
    "Signature is invalid for input": SIGNATURE_FAILED + "invalid signature when validating ASN.1 encoded signature",
    "Bundle message digest mismatch": SIGNATURE_FAILED + "invalid signature when validating ASN.1 encoded signature",
    "not enough sources of verified time": "failed to verify timestamps: threshold not met for verified signed "
                                           "timestamps: 0 < 1",
}
_SCT_FAILED = "failed to verify SCT on signing certificate: "
_COSIGN_SCT = ("failed to verify signed certificate timestamp: only able to verify 0 SCT entries; unable to meet "
               "threshold of 1")
_TLOG_MISMATCH = ("transparency log entry is inconsistent with other materials",
                  "log entry payload hash does not match bundle", "log entry signatures do not match bundle")


def _cosign_words(message: str) -> str:
    if message in _COSIGN_WORDS:
        return _COSIGN_WORDS[message]
    if message.startswith(_SCT_FAILED):
        return _COSIGN_SCT
    if message.startswith("invalid log entry: "):
        return LOG_INCLUSION_FAILED + _first_lines(message.removeprefix("invalid log entry: "))
    if message in _TLOG_MISMATCH:
        return LOG_INCLUSION_FAILED + message
    return _first_lines(message)


def _verify_keyless(bundle: bytes, blob: bytes, identity: CertificateIdentity, root_path: Path) -> BundleVerification:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    root = _load_root(root_path)
    try:
        parsed = Bundle.from_json(bundle)
        verifier = Verifier(trusted_root=root)
        if parsed._dsse_envelope is not None:  # the library's own accessor; no public one in 4.5.1
            payload_type, payload = verifier.verify_dsse(parsed, identity)
            _check_statement(payload_type, payload, blob)
        else:
            verifier.verify_artifact(blob, parsed, identity)
    except SigstoreError as exc:
        message = str(exc)
        raise VerificationError(_cosign_words(message)) from None
    except ValueError as exc:  # pydantic inside the trusted root or the entry body
        raise VerificationError(_first_lines(str(exc))) from None
    return BundleVerification(certificate_san(parsed.signing_certificate), parsed._dsse_envelope is not None,
                              len(parsed._inner.verification_material.tlog_entries))


def _check_statement(payload_type: str, payload: bytes, blob: bytes) -> None:
    """cosign's check for DSSE bundles: the artifact's SHA-256 is one of the statement's subjects."""
    if payload_type != IN_TOTO_PAYLOAD:
        raise VerificationError(f"unsupported DSSE payload type {payload_type!r}: expected {IN_TOTO_PAYLOAD}")
    try:
        subjects = json.loads(payload)["subject"]
    except (ValueError, KeyError, TypeError):
        subjects = None
    if not isinstance(subjects, list):
        raise VerificationError("the DSSE payload is not an in-toto statement")
    want = hashlib.sha256(blob).hexdigest()
    if not any(isinstance(s, dict) and isinstance(s.get("digest"), dict) and s["digest"].get("sha256") == want
               for s in subjects):
        raise VerificationError(DIGESTS_DO_NOT_MATCH)


# --- managed keys ---------------------------------------------------------------------------------


def _verify_keyed(document: dict[str, Any], blob: bytes, public_key: keys.PublicKey, trusted_root: Path | None,
                  ignore_tlog: bool, digest_algorithm: str) -> BundleVerification:
    from sigstore_models.bundle.v1 import Bundle as BundleModel

    message = document.get("messageSignature")
    if isinstance(message, dict) and message.get("messageDigest") == {}:  # cosign v3.1.3's Ed25519 bundles
        raise VerificationError("failed to verify signature: message is missing artifact digest")
    try:
        model = BundleModel.from_json(_with_proto_defaults(document))
    except ValueError as exc:
        raise VerificationError(f"failed to load bundle: {_first_lines(str(exc))}") from None
    if model.message_signature is not None:
        signature = bytes(model.message_signature.signature)
        digest = model.message_signature.message_digest
        _verify_signature(public_key, signature, blob, digest_algorithm)
        if digest is not None and bytes(digest.digest) != _hash(digest.algorithm.value, blob):
            raise VerificationError(SIGNATURE_FAILED + "message digest does not match the artifact")
    elif model.dsse_envelope is not None:
        envelope = model.dsse_envelope
        if len(envelope.signatures) != 1:
            raise VerificationError(f"expected one DSSE signature, got {len(envelope.signatures)}")
        signature = bytes(envelope.signatures[0].sig)
        _verify_signature(public_key, signature, pae(envelope.payload_type, bytes(envelope.payload)),
                          digest_algorithm)
        _check_statement(envelope.payload_type, bytes(envelope.payload), blob)
    else:
        raise VerificationError("failed to load bundle: no messageSignature or dsseEnvelope")
    entries = list(model.verification_material.tlog_entries or [])
    if ignore_tlog:
        return BundleVerification("key", model.dsse_envelope is not None, 0)
    if not entries:
        raise VerificationError(NO_LOG_ENTRIES, hint="this bundle has no transparency log entry: pass "
                                "--insecure-ignore-tlog to verify it against the key alone")
    root = _load_root(_need_root(trusted_root))
    for entry in entries:
        _verify_entry(entry, root)
        _check_entry_body(entry, model, public_key, blob)
    return BundleVerification("key", model.dsse_envelope is not None, len(entries))


def _hash(protobuf_name: str, data: bytes) -> bytes:
    """``data`` hashed with a protobuf-specs HashAlgorithm (``SHA2_256`` …)."""
    names = {v: k for k, v in _DIGEST_NAMES.items()}
    if protobuf_name not in names:
        raise VerificationError(f"unsupported digest algorithm {protobuf_name}")
    return hashlib.new(names[protobuf_name], data).digest()


def _verify_signature(public_key: keys.PublicKey, signature: bytes, message: bytes, digest_algorithm: str) -> None:
    try:
        keys.verify_message(public_key, signature, message, digest_algorithm=digest_algorithm)
    except VerificationError as exc:
        raise VerificationError(SIGNATURE_FAILED + exc.message) from None


def _verify_entry(entry: EntryModel, root: TrustedRoot) -> None:
    """Inclusion proof, signed checkpoint and SET, by sigstore-python's own entry code: it has no
    public API for an entry outside a certificate bundle (4.5.1)."""
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TransparencyLogEntry

    try:
        TransparencyLogEntry(entry)._verify(root.rekor_keyring(KeyringPurpose.VERIFY))
    except (SigstoreError, ValueError) as exc:
        raise VerificationError(LOG_INCLUSION_FAILED + _first_lines(str(exc))) from None


def _check_entry_body(entry: EntryModel, model: BundleModel, public_key: keys.PublicKey, blob: bytes) -> None:
    """The entry must record this signature by this key over this artifact (not just any entry)."""
    kind, version = entry.kind_version.kind, entry.kind_version.version
    if model.message_signature is not None:
        signature, signed = bytes(model.message_signature.signature), blob
    elif (envelope := model.dsse_envelope) is not None:
        signature, signed = bytes(envelope.signatures[0].sig), pae(envelope.payload_type, bytes(envelope.payload))
    else:  # _verify_keyed has refused such a bundle already
        raise VerificationError("failed to load bundle: no messageSignature or dsseEnvelope")
    try:
        spec = json.loads(bytes(entry.canonicalized_body))["spec"]
        if (kind, version) == ("hashedrekord", "0.0.1") and model.message_signature is not None:
            recorded_key = load_pem_public_key(_b64(spec["signature"]["publicKey"]["content"]))
            ok = (spec["data"]["hash"] == {"algorithm": "sha256", "value": hashlib.sha256(blob).hexdigest()}
                  and _b64(spec["signature"]["content"]) == signature)
        elif (kind, version) == ("hashedrekord", "0.0.2"):  # Rekor v2, for both kinds of content
            rekord = spec["hashedRekordV002"]
            recorded_key = load_der_public_key(_b64(rekord["signature"]["verifier"]["publicKey"]["rawBytes"]))
            ok = (_b64(rekord["data"]["digest"]) == _hash(rekord["data"]["algorithm"], signed)
                  and _b64(rekord["signature"]["content"]) == signature)
        elif (kind, version) == ("dsse", "0.0.1") and model.dsse_envelope is not None:
            payload_hash = hashlib.sha256(bytes(model.dsse_envelope.payload)).hexdigest()
            [recorded] = spec["signatures"]  # labkit, like cosign, reads one-signature envelopes
            recorded_key = load_pem_public_key(_b64(recorded["verifier"]))
            ok = (spec["payloadHash"] == {"algorithm": "sha256", "value": payload_hash}
                  and _b64(recorded["signature"]) == signature)
        else:
            raise VerificationError(f"unsupported transparency log entry {kind} {version} for this bundle")
    except (ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"invalid transparency log entry body: {exc}") from None
    if not (ok and _same_key(recorded_key, public_key)):
        raise VerificationError(LOG_INCLUSION_FAILED + "transparency log entry is inconsistent with other materials")


def _b64(value: object) -> bytes:
    return base64.b64decode(str(value), validate=True)


def _same_key(recorded: object, public_key: keys.PublicKey) -> bool:
    if not isinstance(recorded, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return False
    spki = Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    return recorded.public_bytes(*spki) == public_key.public_bytes(*spki)


def read_bundle(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise LabkitError(f"cannot read bundle {path}: {exc.strerror}", hint="check the path") from None


def bundle_signature(bundle: bytes) -> bytes:
    """The base64 signature a message-signature bundle carries (``--output-signature``)."""
    return str(_parse(bundle)["messageSignature"]["signature"]).encode()
