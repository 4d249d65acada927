"""The HTTPS AdmissionReview v1 webhook: Kyverno and policy-controller decisions over HTTP.

    handle = labkit.admission.serve(policies="policies/", port=0)
    httpx.post(handle.url + "/validate/kyverno", json=review, verify=ca_file)
    handle.stop()

Decisions come from :mod:`labkit.policy`; this package carries them over TLS (its own CA),
maps failurePolicy, resolves tags for policy-controller's mutating path, and keeps
PolicyReports for Audit results.
"""

from labkit.admission.config import webhook_configuration_yaml, webhook_configurations
from labkit.admission.review import AdmissionRequest, parse_review, review_response
from labkit.admission.server import DEFAULT_PORT, WebhookHandle, serve
from labkit.admission.tls import TLSMaterial, ensure_tls
from labkit.admission.webhook import ENDPOINTS, Webhook, WebhookApp

__all__ = [
    "DEFAULT_PORT",
    "ENDPOINTS",
    "AdmissionRequest",
    "TLSMaterial",
    "Webhook",
    "WebhookApp",
    "WebhookHandle",
    "ensure_tls",
    "parse_review",
    "review_response",
    "serve",
    "webhook_configuration_yaml",
    "webhook_configurations",
]
