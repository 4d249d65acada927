"""What each engine does about Rekor, CT logs and Sigstore's TUF root when only loopback is reachable.

The lab is offline by design. An attestor that leaves the transparency-log checks on makes the
real engine fetch trust material from Sigstore's public TUF mirror (or query Rekor), which fails
without a network, so the engine denies. labkit reproduces that decision without contacting
anything: the message is the engine's up to the failing fetch, then a fixed tail saying the lab is
offline (the engine's own tail names the local resolver and varies by machine).

Sources:

* Kyverno v1.19.1 ClusterPolicy, ``pkg/engine/internal/imageverifier.go`` ``buildCosignVerifier``
  (no ``rekor`` → ``https://rekor.sigstore.dev`` with ``ignoreTlog`` false; no ``ctlog`` →
  ``ignoreSCT`` false) and ``pkg/image/verifiers/cpol/cosign/cosign.go`` ``buildCosignOptions``:
  the signature algorithm, then the key, then unless ``ignoreTlog`` the Rekor keys (``rekor.pubkey``
  or TUF: ``failed to load Rekor public keys: …``), then unless ``ignoreSCT`` the CT log keys
  (``ctlog.pubkey`` or TUF: ``failed to load CTLogs public keys: …``). With Rekor keys given,
  cosign v3.1.2 ``verifyInternal`` looks each signature up in Rekor online before checking it.
  The TUF failure is go-tuf's ``ErrDownloadFailed``, which does not unwrap to a ``net.OpError``,
  so the rule *fails* (``handleRegistryErrors``) rather than errs.
* Kyverno v1.19.1 ImageValidatingPolicy, ``pkg/image/verifiers/ivpol/cosign/opts.go``
  ``checkOptions``: unless a key/certificate attestor sets ``ctlog.insecureIgnoreTlog``, TUF is
  initialised first (``insecureIgnoreSCT`` alone does not avoid it); the failure is only logged and
  the attestor counts 0 in ``verifyImageSignatures`` (``pkg/cel/libs/imageverify/impl.go``).
* policy-controller v0.13.1 ``pkg/webhook/validator.go``: a key authority without ``ctlog`` (or
  with ``ctlog: {}``) skips Rekor; with ``ctlog.url`` it loads Rekor's keys from TUF
  (``rekorClientAndKeysFromAuthority``) before any registry access.

In every case the embedded TUF root is version 12 (sigstore/sigstore v1.9.4 and v1.10.9), so the
first download is ``13.root.json``.
"""

from __future__ import annotations

from labkit.policy.schema import TLog

TUF_MIRROR = "https://tuf-repo-cdn.sigstore.dev"

# go-tuf v0.7 via sigstore/sigstore pkg/tuf, up to the HTTP error; then labkit's fixed tail.
TUF_UNREACHABLE = (
    "updating local metadata and targets: error updating to TUF remote mirror: "
    f'tuf: failed to download 13.root.json: Get "{TUF_MIRROR}/13.root.json": '
    "offline lab (loopback only): labkit does not contact the Sigstore TUF mirror"
)

KYVERNO_SIGNATURE_ALGORITHMS = {"": "sha256", "sha224": "sha224", "sha256": "sha256",
                                "sha384": "sha384", "sha512": "sha512"}


def rekor_unreachable(url: str) -> str:
    """cosign ``FindTlogEntry`` for a signature without a Rekor bundle, offline."""
    return (f'searching log query: Post "{url.rstrip("/")}/api/v1/log/entries/retrieve": '
            "offline lab (loopback only): labkit does not contact Rekor")


def kyverno_key_options(keys: object) -> tuple[str, str, str]:
    """For a ClusterPolicy ``keys`` attestor: (digest algorithm, error, online Rekor URL).

    ``error`` is what ``buildCosignOptions`` returns before any registry access ("" if none);
    a non-empty Rekor URL means cosign would query Rekor online for every signature.
    """
    algorithm = str(getattr(keys, "signature_algorithm", "") or "")
    if algorithm not in KYVERNO_SIGNATURE_ALGORITHMS:
        return "", f"invalid signature algorithm provided {algorithm}", ""
    rekor, ctlog = getattr(keys, "rekor", None), getattr(keys, "ctlog", None)
    ignore_tlog = bool(rekor.ignore_tlog) if rekor is not None else False
    url = rekor.url if rekor is not None else "https://rekor.sigstore.dev"
    if not ignore_tlog and not (rekor is not None and rekor.pubkey):
        return "", "failed to load Rekor public keys: " + TUF_UNREACHABLE, ""
    ignore_sct = bool(ctlog.ignore_sct) if ctlog is not None else False
    if not ignore_sct and not (ctlog is not None and ctlog.pubkey):
        return "", "failed to load CTLogs public keys: " + TUF_UNREACHABLE, ""
    return KYVERNO_SIGNATURE_ALGORITHMS[algorithm], "", "" if ignore_tlog else url


def ivp_key_error(ctlog: object) -> str:
    """``checkOptions`` for an IVP cosign key attestor: the TUF failure unless the attestor sets
    ``ctlog.insecureIgnoreTlog`` ("" when it does)."""
    if isinstance(ctlog, dict) and ctlog.get("insecureIgnoreTlog"):
        return ""
    return ("failed to build cosign verification opts: failed to initialize TUF client "
            f'(mirror="{TUF_MIRROR}"): {TUF_UNREACHABLE}')


def cip_key_error(authority_name: str, ctlog: TLog | None) -> str:
    """policy-controller ``checkOptsFromAuthority`` for a key authority ("" when Rekor is skipped:
    no ``ctlog``, or one without ``url`` or ``trustRootRef``)."""
    if ctlog is not None and ctlog.trust_root_ref:
        # the Rekor keys and URL would come from a TrustRoot resource, which labkit does not model
        return (f"labkit does not evaluate ctlog.trustRootRef (authority {authority_name}); "
                "remove ctlog to skip Rekor, as policy-controller does for key authorities")
    if ctlog is None or not ctlog.url:
        return ""
    return (f"constructing checkOpts for {authority_name}: getting Rekor public keys: "
            f"{authority_name}: getting Rekor public keys: {TUF_UNREACHABLE}")
