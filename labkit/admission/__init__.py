"""The HTTPS AdmissionReview v1 webhook: Kyverno and policy-controller decisions over HTTP.

    handle = labkit.admission.serve(policies="policies/", port=0)
    httpx.post(handle.url + "/validate/kyverno", json=review, verify=ca_file)
    handle.stop()

Decisions come from :mod:`labkit.policy`; this package carries them over TLS (its own CA),
maps failurePolicy, and keeps PolicyReports for Audit results.

State directory (``--state DIR``), written by the Lab, re-read when a file changes:

* ``namespaces.json``: ``{"namespace": {"label": "value"}}``;
* ``secrets.json``: the Secrets the engines read registry credentials from, as the API server
  holds them: ``{"namespace/name": {"type": "kubernetes.io/dockerconfigjson",
  "data": {".dockerconfigjson": "<base64>"}}}``. Kyverno looks up
  ``imageRegistryCredentials.secrets`` in namespace ``kyverno`` (``ns/name`` since 1.18) plus the
  pod's ``imagePullSecrets``; policy-controller the pod's ``imagePullSecrets`` and
  ``signaturePullSecrets`` in the pod's namespace (:mod:`labkit.policy.credentials`).
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
