"""Run the webhook over HTTPS under uvicorn in a background thread.

As with the registry, the socket is bound before uvicorn starts, so ``port=0`` yields the real
port at once and a taken port is an error naming it rather than a log line in a thread.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from labkit.admission.cache import DEFAULT_TTL
from labkit.admission.sources import NamespaceLabels, PolicyDirectory
from labkit.admission.tls import DEFAULT_DNS_NAME, TLSMaterial, default_home, ensure_tls
from labkit.admission.webhook import DEFAULT_TIMEOUT, Webhook, WebhookApp
from labkit.errors import LabError, UsageError
from labkit.oci.client import RegistryClient
from labkit.policy.credentials import SecretsFile
from labkit.registry.server import is_loopback

DEFAULT_PORT = 8443


@dataclass
class WebhookHandle:
    """A running webhook. ``url`` is its base (``https://127.0.0.1:PORT``); ``ca_pem`` verifies it."""

    address: str
    port: int
    tls: TLSMaterial
    webhook: Webhook
    _app: WebhookApp = field(repr=False)
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}"

    @property
    def ca_pem(self) -> str:
        return self.tls.ca_pem

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._app.close()
        self.webhook.client.close()

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C stops it."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            self.stop()
            raise


def _bind(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as exc:
        sock.close()
        busy = exc.errno == errno.EADDRINUSE
        raise LabError(
            f"cannot serve the admission webhook on {address}:{port}: "
            + ("the port is already in use" if busy else str(exc.strerror)),
            hint="choose another --port (0 picks a free one)",
        ) from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


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
    whose ``namespaces.json`` gives namespace labels and ``secrets.json`` the pull Secrets. ``cache_ttl=0`` turns the verification
    cache off.
    """
    if not is_loopback(address):
        raise UsageError(f"refusing to serve the admission webhook on non-loopback address {address}",
                         hint="the lab webhook is for this machine: use 127.0.0.1 or localhost")
    policy_dir = Path(policies)
    if not policy_dir.is_dir():
        raise UsageError(f"--policies {policy_dir}: not a directory",
                         hint="create it and put Kyverno or policy-controller policy files in it")
    tls = ensure_tls(Path(home) if home is not None else default_home(), [dns_name])
    client = RegistryClient(allow_insecure=allow_insecure_registry, timeout=min(5.0, timeout / 2))
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
    sock = _bind(address, port)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_keep_alive=30,
        ssl_certfile=str(tls.cert),
        ssl_keyfile=str(tls.key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"labkit-admission-{sock.getsockname()[1]}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            app.close()
            client.close()
            raise LabError(f"the admission webhook on {address}:{port} did not start", hint="see the log above")
        time.sleep(0.01)
    return WebhookHandle(address, sock.getsockname()[1], tls, webhook, app, server, thread)
