"""Keyless policies for the real engines, trusting only the lab's own Sigstore (docs/keyless.md,
"Keyless on the real engines").

Each engine takes the lab's trust its own way, all offline:

- Kyverno ``ClusterPolicy`` verifyImages (``type: Cosign``): the Fulcio root, the Rekor URL and key
  and the CT log key inline in the attestor (kyverno v1.19.1 pkg/image/verifiers/cpol/cosign).
- Kyverno ``ImageValidatingPolicy``: a keyless attestor always initialises TUF, so it names the
  lab's TUF repository (mirror and root, ``lab/tuf_repo``), whose ``trusted_root.json`` holds the rest.
- policy-controller ``ClusterImagePolicy``: a ``TrustRoot`` with the same keys as base64 PEM
  (``sigstoreKeys``), named by the authority's ``trustRootRef``.

The builders return plain documents for ``lab.apply``; the identities are exact (subject, issuer).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labkit.lab.sigstore import LocalSigstore
from labkit.lab.sigstore_trust import CA_NAME, ORGANIZATION


@dataclass(frozen=True)
class Identity:
    """Who may have signed: the certificate's SAN (an email here) and the OIDC issuer, exact, or
    as Go regexps (``subject_regexp``, ``issuer_regexp``); the empty ones are left out."""

    subject: str = ""
    issuer: str = ""
    subject_regexp: str = ""
    issuer_regexp: str = ""

    def fields(self) -> dict[str, str]:
        """The same four names in all three engines' CRDs."""
        named = {"subject": self.subject, "issuer": self.issuer, "subjectRegExp": self.subject_regexp,
                 "issuerRegExp": self.issuer_regexp}
        return {k: v for k, v in named.items() if v}


def _pem(sigstore: LocalSigstore) -> tuple[str, str, str]:
    trust = sigstore.trust
    return (trust.fulcio_cert.read_text().strip(), trust.rekor_pub.read_text().strip(),
            trust.ct_pub.read_text().strip())


def kyverno_cluster_policy(name: str, sigstore: LocalSigstore, identities: Sequence[Identity],
                           image_references: Sequence[str]) -> dict[str, Any]:
    """A ``ClusterPolicy`` admitting a Pod only when each matching image has a keyless signature
    (cosign's legacy ``.sig``) from one of ``identities``."""
    roots, rekor_pub, ct_pub = _pem(sigstore)
    entries = [{"keyless": {**i.fields(), "roots": roots,
                            "rekor": {"url": sigstore.urls.rekor, "pubkey": rekor_pub},
                            "ctlog": {"pubkey": ct_pub}}} for i in identities]
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name},
            "spec": {"webhookConfiguration": {"timeoutSeconds": 30}, "rules": [{
                "name": "keyless", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "verifyImages": [{"imageReferences": list(image_references), "failureAction": "Enforce",
                                  "attestors": [{"count": 1, "entries": entries}]}]}]}}


def kyverno_image_validating_policy(name: str, sigstore: LocalSigstore, identities: Sequence[Identity],
                                    image_references: Sequence[str]) -> dict[str, Any]:
    """An ``ImageValidatingPolicy`` whose keyless attestor reads the lab's trust from its TUF
    repository; it accepts cosign's legacy signatures and v3 bundles alike."""
    return {
        "apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy", "metadata": {"name": name},
        "spec": {
            "validationActions": ["Deny"], "webhookConfiguration": {"timeoutSeconds": 30},
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                    "operations": ["CREATE"], "resources": ["pods"]}]},
            "matchImageReferences": [{"glob": g} for g in image_references],
            "attestors": [{"name": "lab", "cosign": {
                "keyless": {"identities": [i.fields() for i in identities]},
                "tuf": {"mirror": sigstore.tuf_mirror, "root": {"data": sigstore.tuf.root_base64()}}}}],
            "validations": [{
                "expression": "images.containers.map(image, verifyImageSignatures(image, [attestors.lab]))"
                              ".all(e, e > 0)",
                "message": "failed to verify a keyless signature from the lab's Sigstore"}],
        },
    }


def trust_root(name: str, sigstore: LocalSigstore) -> dict[str, Any]:
    """policy-controller's ``TrustRoot`` for the lab's Fulcio CA, Rekor and CT log."""
    roots, rekor_pub, ct_pub = _pem(sigstore)
    urls = sigstore.urls

    def b64(text: str) -> str:
        return base64.b64encode(text.encode() + b"\n").decode()

    return {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": name},
            "spec": {"sigstoreKeys": {
                "certificateAuthorities": [{"subject": {"organization": ORGANIZATION,
                                                        "commonName": CA_NAME},
                                            "uri": urls.fulcio, "certChain": b64(roots)}],
                "tLogs": [{"baseURL": urls.rekor, "hashAlgorithm": "sha-256", "publicKey": b64(rekor_pub)}],
                "ctLogs": [{"baseURL": urls.ctlog, "hashAlgorithm": "sha-256", "publicKey": b64(ct_pub)}]}}}


def cluster_image_policy(name: str, sigstore: LocalSigstore, identities: Sequence[Identity],
                         image_globs: Sequence[str], trust_root_name: str) -> dict[str, Any]:
    """A ``ClusterImagePolicy`` whose keyless authority trusts the ``TrustRoot`` named
    ``trust_root_name`` (see :func:`trust_root`); it applies in namespaces labelled
    ``policy.sigstore.dev/include=true``."""
    urls = sigstore.urls
    return {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": name},
            "spec": {"images": [{"glob": g} for g in image_globs], "authorities": [{
                "name": "lab-keyless",
                "keyless": {"url": urls.fulcio, "trustRootRef": trust_root_name,
                            "identities": [i.fields() for i in identities]},
                "ctlog": {"url": urls.rekor, "trustRootRef": trust_root_name}}]}}


def all_three(sigstore: LocalSigstore, identities: Sequence[Identity], *, kyverno_images: Sequence[str],
              ivp_images: Sequence[str], policy_controller_images: Sequence[str],
              prefix: str = "keyless") -> list[dict[str, Any]]:
    """The three engines' policies (and policy-controller's TrustRoot), each for its own images."""
    return [kyverno_cluster_policy(f"{prefix}-cpol", sigstore, identities, kyverno_images),
            kyverno_image_validating_policy(f"{prefix}-ivp", sigstore, identities, ivp_images),
            trust_root(f"{prefix}-lab", sigstore),
            cluster_image_policy(f"{prefix}-cip", sigstore, identities, policy_controller_images, f"{prefix}-lab")]
