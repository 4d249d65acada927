"""Run the webhook over HTTPS in a background thread (``labkit._internal.serving``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from labkit._internal.serving import BackgroundServer, bind, is_loopback
from labkit.admission.cache import DEFAULT_TTL
from labkit.admission.sources import NamespaceLabels, PolicyDirectory
from labkit.admission.tls import DEFAULT_DNS_NAME, TLSMaterial, default_home, ensure_tls
from labkit.admission.webhook import DEFAULT_TIMEOUT, Webhook, WebhookApp
from labkit.errors import LabError, UsageError
from labkit.oci.client import RegistryClient
from labkit.policy.credentials import SecretsFile

DEFAULT_PORT = 8443


@dataclass
class WebhookHandle:
    """A running webhook. ``url`` is its base (``https://127.0.0.1:PORT``); ``ca_pem`` verifies it."""

    address: str
    port: int
    tls: TLSMaterial
    webhook: Webhook
    _app: WebhookApp = field(repr=False)
    _server: BackgroundServer = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    @property
    def ca_pem(self) -> str:
        return self.tls.ca_pem

    def stop(self, timeout: float = 10.0) -> None:
        self._server.stop(timeout)
        self._app.close()
        self.webhook.client.close()

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C stops it."""
        self._server.wait()


def serve(
    policies: Path | str,
    port: int = DEFAULT_PORT,
    address: str = "127.0.0.1",
    home: Path | str | None = None,
    state: Path | str | None = None,
    *,
    dns_name: str = DEFAULT_DNS_NAME,
    no_match_policy: str = "deny",
    cache_ttl: float = DEFAULT_TTL,
    timeout: float = DEFAULT_TIMEOUT,
    allow_insecure_registry: bool = False,
    startup_timeout: float = 15.0,
) -> WebhookHandle:
    """Serve AdmissionReview v1 over HTTPS on loopback.

    ``policies``: a directory of policy files, re-read when they change. ``home``: where the CA
    and serving certificate live (default ``$LABKIT_HOME/admission``). ``state``: a directory
    whose ``namespaces.json`` gives namespace labels and ``secrets.json`` the pull Secrets.
    ``cache_ttl=0`` turns the verification cache off.
    """
    if not is_loopback(address):
        raise UsageError(f"refusing to serve the admission webhook on non-loopback address {address}",
                         hint="the lab webhook is for this machine: use 127.0.0.1 or localhost")
    policy_dir = Path(policies)
    if not policy_dir.is_dir():
        raise UsageError(f"--policies {policy_dir}: not a directory",
                         hint="create it and put Kyverno or policy-controller policy files in it")
    tls = ensure_tls(Path(home) if home is not None else default_home(), [dns_name])
    # A registry request is bounded by the review's deadline (the API server's ?timeout=), as the
    # engines' are, and by no shorter limit of its own: an answer in 6 s is in time for Kyverno's
    # 10 s and policy-controller's 25 s. The client's 30 s is Kyverno's largest timeoutSeconds.
    client = RegistryClient(allow_insecure=allow_insecure_registry, timeout=30.0)
    webhook = Webhook(
        PolicyDirectory(policy_dir),
        NamespaceLabels(Path(state) / "namespaces.json" if state is not None else None),
        client,
        cache_ttl=cache_ttl,
        no_match_policy=no_match_policy,
        secrets=SecretsFile(Path(state) / "secrets.json" if state is not None else None),
    )
    webhook.policies.current()  # load now so a broken file is logged at start
    app = WebhookApp(webhook, timeout=timeout)
    sock = bind(address, port, "the admission webhook")
    try:
        server = BackgroundServer(app, sock, "admission", startup_timeout=startup_timeout,
                                  ssl_certfile=str(tls.cert), ssl_keyfile=str(tls.key))
    except LabError:
        app.close()
        client.close()
        raise
    return WebhookHandle(address, server.port, tls, webhook, app, server)
