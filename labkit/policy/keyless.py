"""What the engines make of a keyless attestor before and after cosign's check: the trust material
a policy names (inline PEM, a TrustRoot, a TUF repository), the identities cosign checks, and
(Kyverno's ClusterPolicy) its own certificate matching.

The signature check itself is labkit's cosign (``labkit.signing.keyless_verify``, called through
:func:`labkit.policy.verification.call_keyless`).

Sources:

* Kyverno v1.19.1 ``pkg/engine/internal/imageverifier.go`` ``buildCosignVerifier`` (no ``rekor`` →
  the public Rekor with the tlog on; no ``ctlog`` → SCTs checked) and
  ``pkg/image/verifiers/cpol/cosign/cosign.go``: ``buildCosignOptions`` (roots, signature
  algorithm, Fulcio roots from TUF when no roots, Rekor keys, CT log keys, in that order), then
  cosign verifies with no identity, then ``matchSignatures``/``matchCertificateData`` (subject and
  issuer as wildcards, the regexps as RE2, ``additionalExtensions``).
* Kyverno v1.19.1 ``pkg/image/verifiers/ivpol/cosign/opts.go`` ``checkOptions``: a keyless
  attestor always initialises TUF and reads ``trusted_root.json`` from ``tuf.mirror``; its
  identities go to cosign.
* policy-controller v0.13.1 ``pkg/webhook/validator.go``: ``checkOptsFromAuthority``,
  ``fulcioCertsFromAuthority`` and ``rekorClientAndKeysFromAuthority`` (a TrustRoot's CA chains,
  CT log and Rekor keys; no Rekor client nor keys → the tlog is skipped).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from cryptography import x509

from labkit._internal.goregexp import go_regexp_error
from labkit.policy.match import wildcard_match
from labkit.policy.schema import Authority, Cosign, KeylessAttestor, TrustRoot
from labkit.policy.tlog import KYVERNO_SIGNATURE_ALGORITHMS, TUF_MIRROR, TUF_UNREACHABLE
from labkit.signing.blob_bundle import CertificateIdentity
from labkit.signing.keyless_trust import KeylessTrust
from labkit.signing.keyless_verify import KeylessPolicy, legacy_issuer, subject_alternative_names

# cosign checks no identity for Kyverno (CheckOpts.Identities is empty): an empty regexp matches
# every subject and issuer; Kyverno's own matching follows
ANY_IDENTITY = CertificateIdentity(identity_regexp="", issuer_regexp="")

# cosign's CertExtensionMap: additionalExtensions name an extension by OID or by this name
_EXTENSIONS = {
    "1.3.6.1.4.1.57264.1.1": "oidcIssuer",
    "1.3.6.1.4.1.57264.1.2": "githubWorkflowTrigger",
    "1.3.6.1.4.1.57264.1.3": "githubWorkflowSha",
    "1.3.6.1.4.1.57264.1.4": "githubWorkflowName",
    "1.3.6.1.4.1.57264.1.5": "githubWorkflowRepository",
    "1.3.6.1.4.1.57264.1.6": "githubWorkflowRef",
}


# --- Kyverno ClusterPolicy ----------------------------------------------------------------------


def kyverno_keyless_options(keyless: KeylessAttestor, signature_algorithm: str) -> tuple[
        tuple[KeylessTrust, KeylessPolicy] | None, str]:
    """``buildCosignOptions`` for a keyless entry: (trust and what cosign checks, or the error it
    returns before any registry access)."""
    if keyless.roots:
        try:
            x509.load_pem_x509_certificates(keyless.roots.encode())
        except ValueError:
            return None, "failed to load Root certificates: error creating root cert pool"
    if signature_algorithm not in KYVERNO_SIGNATURE_ALGORITHMS:
        return None, f"invalid signature algorithm provided {signature_algorithm}"
    if not keyless.roots:
        # sigstoretuf.FulcioRoots: the public TUF root, unreachable offline
        return None, f"failed to get roots from fulcio: failed to fetch Fulcio roots: {TUF_UNREACHABLE}"
    rekor, ctlog = keyless.rekor, keyless.ctlog
    ignore_tlog = rekor.ignore_tlog if rekor is not None else False
    if not ignore_tlog and not (rekor is not None and rekor.pubkey):
        return None, "failed to load Rekor public keys: " + TUF_UNREACHABLE
    ignore_sct = ctlog.ignore_sct if ctlog is not None else False
    if not ignore_sct and not (ctlog is not None and ctlog.pubkey):
        return None, "failed to load CTLogs public keys: " + TUF_UNREACHABLE
    rekor_key = rekor.pubkey.encode() if rekor is not None and not ignore_tlog else None
    ct_key = ctlog.pubkey.encode() if ctlog is not None and not ignore_sct else None
    trust = KeylessTrust.from_pem(keyless.roots.encode(), rekor_key, ct_key, source="the policy's keyless attestor")
    return (trust, KeylessPolicy(ANY_IDENTITY, ignore_sct=ignore_sct, ignore_tlog=ignore_tlog)), ""


def kyverno_match_certificates(certificates: Sequence[x509.Certificate], keyless: KeylessAttestor) -> str:
    """``matchSignatures``: "" when one certificate shows the subject, issuer and extensions asked
    for, else every certificate's mismatch joined as multierr does."""
    if not (keyless.subject or keyless.issuer or keyless.subject_reg_exp or keyless.issuer_reg_exp
            or keyless.additional_extensions):
        return ""
    errors = []
    for certificate in certificates:
        problem = _match_certificate(certificate, keyless)
        if not problem:
            return ""
        errors.append(problem)
    return "; ".join(errors) or "invalid signature"


def _match_certificate(certificate: x509.Certificate, keyless: KeylessAttestor) -> str:
    subject, subject_re = keyless.subject, keyless.subject_reg_exp
    sans = subject_alternative_names(certificate)
    if (subject or subject_re) and sans:  # a certificate without SANs is not checked here
        matched = bool(subject) and any(wildcard_match(subject, s) for s in sans)
        if subject_re:
            if (error := go_regexp_error(subject_re)) is not None:
                return f"invalid regexp for subject: {subject_re} : {error}"
            matched = matched or any(_search(subject_re, s) for s in sans)
        if not matched:
            return f"subject mismatch: expected {subject or subject_re}, received {', '.join(sans)}"
    issuer = legacy_issuer(certificate)  # cosign's CertExtensions.GetIssuer
    if keyless.issuer and not wildcard_match(keyless.issuer, issuer):
        return f"issuer mismatch: expected {keyless.issuer}, received {issuer}"
    if keyless.issuer_reg_exp:
        if (error := go_regexp_error(keyless.issuer_reg_exp)) is not None:
            return f"invalid regexp for issuer: {keyless.issuer_reg_exp} : {error}"
        if not _search(keyless.issuer_reg_exp, issuer):
            return f"issuer mismatch: expected {keyless.issuer_reg_exp}, received {issuer}"
    for key, wanted in keyless.additional_extensions.items():
        oid = next((o for o, n in _EXTENSIONS.items() if key in (o, n)), None)
        if oid is None:
            return f"invalid certificate extension {key}"
        value = _extension_text(certificate, oid)
        if not wildcard_match(wanted, value):
            return f"extension mismatch: expected {wanted} for key {key}, received {value}"
    return ""


def _search(pattern: str, value: str) -> bool:
    """Go's ``MatchString`` by Python's ``re`` (they agree on ordinary patterns); a pattern Python
    cannot compile matches nothing rather than failing the review."""
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False


def _extension_text(certificate: x509.Certificate, oid: str) -> str:
    try:
        value = certificate.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
    except x509.ExtensionNotFound:
        return ""
    return value.value.decode(errors="replace") if isinstance(value, x509.UnrecognizedExtension) else ""


# --- policy-controller ClusterImagePolicy --------------------------------------------------------


def policy_controller_keyless_options(authority: Authority, trust_roots: Sequence[TrustRoot]) -> tuple[
        tuple[KeylessTrust, KeylessPolicy] | None, str]:
    """``checkOptsFromAuthority`` for a keyless authority of the legacy format: (trust and what
    cosign checks, or the error, already wrapped as ``ValidatePolicySignaturesForAuthority`` wraps
    it)."""
    keyless = authority.keyless
    assert keyless is not None
    name = authority.name
    if authority.signature_format == "bundle":
        return None, (f"labkit does not evaluate signatureFormat: bundle (authority {name}); policy-controller "
                      "v0.13.1 reads only attestations in that format")
    if not keyless.trust_root_ref:
        return None, (f"constructing checkOpts for {name}: getting Fulcio certs: {name}: failed to fetch Fulcio "
                      f"roots: {TUF_UNREACHABLE}")
    keys, problem = _sigstore_keys(keyless.trust_root_ref, trust_roots)
    if keys is None:
        return None, f"constructing checkOpts for {name}: getting Fulcio certs: {name}: {problem}"
    chains, ct_keys = keys["certificates"], keys["ctlogs"]
    ctlog = authority.ctlog
    rekor_keys: list[bytes] = []
    if ctlog is not None and ctlog.trust_root_ref:
        tlog_keys, problem = _sigstore_keys(ctlog.trust_root_ref, trust_roots)
        if tlog_keys is None:
            return None, (f"constructing checkOpts for {name}: getting Rekor public keys: {name}: fetching keys for "
                          f"trustRootRef: {problem}")
        rekor_keys = tlog_keys["tlogs"]
    elif ctlog is not None and ctlog.url:
        return None, (f"constructing checkOpts for {name}: getting Rekor public keys: {name}: getting Rekor public "
                      f"keys: {TUF_UNREACHABLE}")
    # no Rekor client nor keys (no ctlog, or one without url and trustRootRef): the tlog is skipped
    ignore_tlog = not rekor_keys
    ignore_sct = bool(keyless.insecure_ignore_sct)
    trust = KeylessTrust.from_pem(b"".join(chains), rekor_keys[0] if rekor_keys else None,
                                  ct_keys[0] if ct_keys else None, source=f"TrustRoot {keyless.trust_root_ref}")
    identity = cosign_identity(keyless.identities or [])
    return (trust, KeylessPolicy(identity, ignore_sct=ignore_sct, ignore_tlog=ignore_tlog)), ""


def cosign_identity(identities: Sequence[Any]) -> CertificateIdentity:
    """What labkit's cosign checks for ``identities`` (each with ``issuer``, ``subject`` and their
    ``_reg_exp``): a single complete identity in cosign's own order and words; otherwise none, and
    :func:`identities_error` checks them after cosign."""
    if len(identities) == 1:
        i = identities[0]
        if (i.subject or i.subject_reg_exp) and (i.issuer or i.issuer_reg_exp):
            return CertificateIdentity(i.subject or None, i.subject_reg_exp or None, i.issuer or None,
                                       i.issuer_reg_exp or None)
    return ANY_IDENTITY


def identities_error(certificates: Sequence[x509.Certificate], identities: Sequence[Any]) -> str:
    """cosign's ``CheckCertificatePolicy`` over several identities (any one matching; an empty field
    asks nothing), for the signatures cosign verified without them; "" when one certificate
    matches, or when :func:`cosign_identity` left the check to cosign."""
    if cosign_identity(identities) is not ANY_IDENTITY or not identities:
        return ""
    errors = []
    for certificate in certificates:
        issuer, sans = legacy_issuer(certificate), subject_alternative_names(certificate)
        for i in identities:
            issuer_ok = (_search(i.issuer_reg_exp, issuer) if i.issuer_reg_exp
                         else not i.issuer or i.issuer == issuer)
            subject_ok = (any(_search(i.subject_reg_exp, s) for s in sans) if i.subject_reg_exp
                          else not i.subject or i.subject in sans)
            if issuer_ok and subject_ok:
                return ""
        errors.append("none of the expected identities matched what was in the certificate, got subjects "
                      f"[{', '.join(sans)}] with issuer {issuer}")
    return "no matching signatures: " + "\n ".join(errors)


# --- Kyverno ImageValidatingPolicy ---------------------------------------------------------------


def ivp_keyless_options(name: str, cosign: Cosign) -> tuple[tuple[KeylessTrust, KeylessPolicy] | None, str]:
    """``checkOptions`` for a keyless attestor (ivpol/cosign/opts.go): TUF is always initialised
    (``initTUFAndFetch``: the mirror's ``trusted_root.json``, as a fresh Kyverno process fetches
    it), then ``keyless.roots`` may replace its Fulcio roots; ``ctlog.insecureIgnore*``. Returns
    the trust and what cosign checks, or why the attestor counts 0 (Kyverno only logs it).
    Raises ValueError for what labkit does not evaluate."""
    keyless = cosign.keyless
    assert keyless is not None
    for given, what in ((keyless.roots, "keyless.roots"),
                        (keyless.additional_extensions, "keyless.additionalExtensions"),
                        (cosign.trusted_root, "trustedRoot"),
                        (any(i.subject_expression for i in keyless.identities), "identities[].subjectExpression"),
                        (cosign.ctlog and (cosign.ctlog.rekor_pub_key or cosign.ctlog.ct_log_pub_key
                                           or cosign.ctlog.tsa_cert_chain), "ctlog keys")):
        if given:
            raise ValueError(f"labkit does not evaluate cosign {what} on keyless attestors (attestor {name!r})")
    tuf = cosign.tuf
    if tuf is None or not tuf.mirror or tuf.root is None or not tuf.root.data:
        # the public TUF mirror, out of reach offline
        return None, f'failed to initialize TUF client (mirror="{TUF_MIRROR}"): {TUF_UNREACHABLE}'
    try:
        trust = fetch_trusted_root(tuf.mirror, tuf.root.data)
    except Exception as exc:  # python-tuf's and the network's errors alike: the attestor counts 0
        return None, f"failed to initialize TUF client (mirror={tuf.mirror!r}): {type(exc).__name__}: {exc}"
    ctlog = cosign.ctlog
    return (trust, KeylessPolicy(cosign_identity(keyless.identities),
                                 ignore_sct=bool(ctlog and ctlog.insecure_ignore_sct),
                                 ignore_tlog=bool(ctlog and ctlog.insecure_ignore_tlog))), ""


def fetch_trusted_root(mirror: str, root_b64: str) -> KeylessTrust:
    """``trusted_root.json`` from a TUF repository, bootstrapped from ``root_b64`` into an empty
    cache (python-tuf's ngclient: root, timestamp, snapshot, targets, then the target)."""
    import tempfile

    from tuf.ngclient.updater import Updater

    mirror = mirror.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="labkit-tuf-") as cache:
        updater = Updater(cache, f"{mirror}/", cache, f"{mirror}/targets/", bootstrap=base64.b64decode(root_b64))
        updater.refresh()
        info = updater.get_targetinfo("trusted_root.json")
        if info is None:
            raise ValueError("no trusted_root.json target")
        return KeylessTrust.load(updater.download_target(info, f"{cache}/trusted_root.json"))


def _sigstore_keys(ref: str, trust_roots: Sequence[TrustRoot]) -> tuple[dict[str, list[bytes]] | None, str]:
    """A TrustRoot's ``sigstoreKeys`` as PEM: CA chains, Rekor keys, CT log keys."""
    root = next((r for r in trust_roots if r.name == ref), None)
    if root is None:
        return None, f"trustRootRef {ref} not found"
    keys = root.spec.sigstore_keys
    if keys is None:
        return None, (f"labkit evaluates only sigstoreKeys TrustRoots (TrustRoot {ref} names a TUF "
                      "repository: policy-controller would initialise TUF from it)")
    return {"certificates": [_pem(ca.cert_chain) for ca in keys.certificate_authorities or []],
            "tlogs": [_pem(t.public_key) for t in keys.t_logs],
            "ctlogs": [_pem(t.public_key) for t in keys.ct_logs]}, ""


def _pem(b64: Any) -> bytes:
    """A TrustRoot ``[]byte`` field (base64 in YAML) as its PEM bytes."""
    try:
        return base64.b64decode(str(b64 or ""), validate=True)
    except (binascii.Error, ValueError):
        return b""
