"""The webhook's CA and serving certificate: made once, reused, re-issued for new names.
Independent check: openssl verifies the chain and prints the SANs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.admission.config import webhook_configurations
from labkit.admission.tls import ensure_tls


def _openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=True).stdout


def test_ca_and_cert_made_once_and_reused(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path, ["hook.example.svc"])
    ca, cert = first.ca_cert.read_bytes(), first.cert.read_bytes()
    assert _openssl("verify", "-CAfile", str(first.ca_cert), str(first.cert)).strip().endswith("OK")
    san = _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(first.cert))
    assert "DNS:localhost" in san and "DNS:hook.example.svc" in san and "IP Address:127.0.0.1" in san
    ca_cert = x509.load_pem_x509_certificate(ca)
    assert isinstance(ca_cert.public_key(), ec.EllipticCurvePublicKey)
    assert ca_cert.public_key().curve.name == "secp256r1"
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    for key in (first.ca_key, first.key):
        assert key.stat().st_mode & 0o777 == 0o600
    again = ensure_tls(tmp_path, ["hook.example.svc"])
    assert again.ca_cert.read_bytes() == ca and again.cert.read_bytes() == cert


def test_new_dns_name_reissues_the_cert_under_the_same_ca(tmp_path: Path) -> None:
    first = ensure_tls(tmp_path, ["a.svc"])
    ca, cert = first.ca_cert.read_bytes(), first.cert.read_bytes()
    second = ensure_tls(tmp_path, ["b.svc"])
    assert second.ca_cert.read_bytes() == ca and second.cert.read_bytes() != cert
    assert "DNS:b.svc" in _openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(second.cert))
    assert _openssl("verify", "-CAfile", str(second.ca_cert), str(second.cert)).strip().endswith("OK")


def test_webhook_configurations(tmp_path: Path) -> None:
    tls = ensure_tls(tmp_path)
    mutating, validating = webhook_configurations("https://h:8443/", tls.ca_bundle)
    assert mutating["kind"] == "MutatingWebhookConfiguration"
    assert validating["kind"] == "ValidatingWebhookConfiguration"
    urls = [w["clientConfig"]["url"] for d in (mutating, validating) for w in d["webhooks"]]
    assert urls == ["https://h:8443/mutate/kyverno", "https://h:8443/mutate/policy-controller",
                    "https://h:8443/validate/kyverno", "https://h:8443/validate/policy-controller"]
    for hook in mutating["webhooks"] + validating["webhooks"]:
        assert hook["failurePolicy"] == "Fail" and hook["timeoutSeconds"] == 10
        assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
        assert hook["clientConfig"]["caBundle"] == tls.ca_bundle
        resources = {r for rule in hook["rules"] for r in rule["resources"]}
        assert {"pods", "deployments", "cronjobs", "jobs", "statefulsets", "daemonsets", "replicasets"} <= resources
    pc = validating["webhooks"][1]["namespaceSelector"]["matchExpressions"][0]
    assert pc == {"key": "policy.sigstore.dev/include", "operator": "In", "values": ["true"]}
