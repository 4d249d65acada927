"""Run the registry in a background thread (``labkit._internal.serving``), so a notebook or a
test keeps going while it serves."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from labkit._internal.serving import BackgroundServer, bind, is_loopback
from labkit.errors import UsageError
from labkit.registry.app import RegistryApp
from labkit.registry.auth import BasicAuth
from labkit.registry.storage import Storage

__all__ = ["DEFAULT_PORT", "RegistryHandle", "default_root", "is_loopback", "serve"]

DEFAULT_PORT = 5001


def default_root() -> Path:
    """``$LABKIT_HOME/registry``, ``LABKIT_HOME`` defaulting to ``~/.labkit``."""
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit") / "registry"


@dataclass
class RegistryHandle:
    """A running registry. ``host`` is what goes into image references (``127.0.0.1:PORT``)."""

    address: str
    port: int
    root: Path
    _server: BackgroundServer = field(repr=False)

    @property
    def host(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def stop(self, timeout: float = 10.0) -> None:
        self._server.stop(timeout)

    def wait(self) -> None:
        """Block until the server stops; Ctrl-C stops it."""
        self._server.wait()


def serve(
    root: Path | str | None = None,
    port: int = DEFAULT_PORT,
    address: str = "127.0.0.1",
    htpasswd: Path | str | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    allow_non_loopback: bool = False,
    startup_timeout: float = 15.0,
) -> RegistryHandle:
    """Start the registry on ``address:port`` (``port=0``: any free port) storing under ``root``.

    Basic auth is on with ``htpasswd`` (bcrypt entries) or ``username``/``password``. A
    non-loopback ``address`` is refused unless ``allow_non_loopback``: the lab registry has no
    TLS and is meant for this machine only.
    """
    if not is_loopback(address) and not allow_non_loopback:
        raise UsageError(
            f"refusing to serve the registry on non-loopback address {address}",
            hint="it has no TLS; pass --allow-non-loopback if you really want it on the network",
        )
    if htpasswd is not None and username is not None:
        raise UsageError("give either an htpasswd file or a username/password, not both")
    auth = None
    if htpasswd is not None:
        auth = BasicAuth.from_htpasswd(Path(htpasswd))
    elif username is not None:
        auth = BasicAuth.single_user(username, password or "")
    root = Path(root) if root is not None else default_root()
    storage = Storage(root)
    sock = bind(address, port, "the registry")
    server = BackgroundServer(RegistryApp(storage, auth), sock, "registry", startup_timeout=startup_timeout)
    return RegistryHandle(address, server.port, root, server)
