"""The lab's own Sigstore (``labkit lab up --sigstore``): keyless signing with no internet.

Real components, built by ``make tools`` like the engines, each a process on loopback:

    oidc      oidc-provider-mock: ID tokens for named workshop identities (labkit lab token EMAIL)
    fulcio    Fulcio v1.8.8, a file CA made for this lab: short-lived certificates for those identities
    ctlog     TesseraCT v0.1.1 on POSIX storage: the CT log Fulcio puts each certificate in (SCTs)
    rekor     Rekor v1.5.4 on Trillian v1.8.0 (log server and signer) and MariaDB: the transparency log
    tuf       a static HTTP server for the lab's TUF repository (lab/tuf_repo), whose one target is
              ``trusted_root.json``: what Kyverno's ImageValidatingPolicy reads its trust from

Everything lives under ``$LABKIT_HOME/sigstore/``: keys and trust documents (``trust/``:
``trusted_root.json``, ``signing_config.json``), the database, the CT log's tiles. ``lab down``
stops the processes and keeps all of it, so a signature made before a restart still verifies:
the same CA, the same log keys, the same Rekor tree (its ID is kept in ``rekor.tree``).
docs/keyless.md says how each piece is wired and why.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from labkit._internal.files import write_atomic
from labkit._internal.tools import tools_dir
from labkit.errors import LabError
from labkit.lab import mariadb, oidc
from labkit.lab.ports import PortPlan, requested_from_env
from labkit.lab.processes import spawn, terminate
from labkit.lab.sigstore_trust import SigstoreURLs, TrustFiles
from labkit.lab.sockets import listening
from labkit.lab.state import LabHome, Service
from labkit.lab.tuf_repo import TufRepository

FULCIO = "fulcio-v1.8.8"
REKOR = "rekor-server-v1.5.4"
TRILLIAN_SERVER = "trillian_log_server-v1.8.0"
TRILLIAN_SIGNER = "trillian_log_signer-v1.8.0"
TESSERACT = "tesseract-posix-v0.1.1"
TRILLIAN_SCHEMA = "trillian-v1.8.0-storage.sql"
BINARIES = (FULCIO, REKOR, TRILLIAN_SERVER, TRILLIAN_SIGNER, TESSERACT, TRILLIAN_SCHEMA)
# the lab's ports (kept in ports.json with the backend's)
PORT_NAMES = ("sigstore-oidc", "fulcio", "fulcio-grpc", "fulcio-metrics", "rekor", "trillian", "trillian-http",
              "trillian-signer", "trillian-signer-http", "ctlog", "tuf")
# Rekor v1 also serves its metrics on :2112 on every interface, with no flag to move it, and
# ignores a failure to listen there (cmd/rekor-server serve.go): a second lab's Rekor runs without
# metrics. `lab status` lists the listener; docs/keyless.md says so.
CT_ORIGIN = "labkit-ctlog"  # the CT log's checkpoint origin; fixed, so a new port keeps its storage valid
START_TIMEOUT = 120.0
STOP_ORDER = (("fulcio", "sigstore-oidc", "ctlog", "rekor", "tuf"), ("trillian-signer", "trillian"), ("mariadb",))
# Trillian's server and signer stop their work at SIGTERM, then sleep 5 s before exiting
# (cmd/trillian_log_*/main.go); their writes are transactions, so they are not waited for.
STOP_GRACE = (5.0, 1.0, 5.0)  # per STOP_ORDER group
STATE_FILE = "state.json"
TREE_FILE = "rekor.tree"
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes; keep a margin for the file names


def missing_binaries(directory: Path | None = None) -> list[str]:
    directory = directory or tools_dir()
    return [name for name in BINARIES if not (directory / name).exists()]


@dataclass
class SigstoreState:
    """``$LABKIT_HOME/sigstore/state.json`` while it runs: its processes and addresses."""

    services: dict[str, Service] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        write_atomic(path, (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, path: Path) -> SigstoreState:
        doc = json.loads(path.read_text())
        return cls(services={k: Service(**v) for k, v in doc["services"].items()}, urls=dict(doc["urls"]))


class LocalSigstore:
    """The Sigstore services running for one lab home."""

    def __init__(self, home: LabHome, state: SigstoreState) -> None:
        self.home, self.state = home, state
        self.dir = sigstore_dir(home)
        self.trust = TrustFiles(self.dir / "trust")
        self.tuf = TufRepository(self.dir / "tuf")

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def up(cls, home: LabHome, *, timeout: float = START_TIMEOUT) -> LocalSigstore:
        """Start the services in ``home`` (or return those already running there)."""
        running = cls.find(home)
        if running is not None:
            stale = [name for name, s in running.state.services.items() if not s.alive()]
            if not stale:
                return running
            running.down()  # half-dead: start afresh, keeping the data
        missing = missing_binaries()
        if missing:
            raise LabError(f"the local Sigstore needs {', '.join(missing)} in {tools_dir()}",
                           hint="build them from the Go module proxy: `make tools` (needs Go; ~8 min cold)")
        requested = {n: p for n, p in requested_from_env().items() if n in PORT_NAMES}
        plan = PortPlan(home, PORT_NAMES, requested)
        plan.require_free()
        home.create()
        return _Starter(home, plan, timeout).run(cls)

    @classmethod
    def find(cls, home: LabHome) -> LocalSigstore | None:
        """The services recorded as started in ``home``, or None."""
        path = sigstore_dir(home) / STATE_FILE
        try:
            state = SigstoreState.load(path)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{path} is not the local Sigstore's state ({exc})",
                           hint="remove it and start again: `labkit lab up --sigstore`") from None
        return cls(home, state)

    def down(self) -> None:
        """Stop the processes; keys, trust documents, the database and the logs' data stay."""
        stop(self.state.services)
        (self.dir / STATE_FILE).unlink(missing_ok=True)

    # --- what the lab offers ---------------------------------------------------------------

    @property
    def urls(self) -> SigstoreURLs:
        return SigstoreURLs(**self.state.urls)

    @property
    def tuf_mirror(self) -> str:
        """The base URL of the lab's TUF repository (its ``tuf`` service)."""
        served = self.state.services.get("tuf")
        if served is None:  # started by a labkit from before the repository existed
            raise LabError("the lab's Sigstore serves no TUF repository",
                           hint="restart it: `labkit lab down` then `labkit lab up --sigstore`")
        return f"http://127.0.0.1:{served.port}"

    def addresses(self) -> tuple[str, ...]:
        """Every URL the services answer on, as policies name them (Fulcio, Rekor, CT log, TUF, issuer)."""
        return tuple(self._service_urls().values())

    def token(self, email: str) -> str:
        """An OIDC ID token for ``email`` from the lab's issuer (audience ``sigstore``)."""
        return oidc.token(self.urls.oidc_issuer, email)

    def env(self) -> dict[str, str]:
        """The variables a shell needs to use this Sigstore with the real tools (``labkit lab env``)."""
        urls, trust = self.urls, self.trust
        return {
            "LABKIT_OIDC_ISSUER": urls.oidc_issuer, "LABKIT_FULCIO_URL": urls.fulcio,
            "LABKIT_REKOR_URL": urls.rekor, "LABKIT_CT_LOG_URL": urls.ctlog,
            "LABKIT_TRUSTED_ROOT": str(trust.trusted_root), "LABKIT_SIGNING_CONFIG": str(trust.signing_config),
            # what cosign reads instead of the public instance's TUF repository (cosign's env.go)
            "SIGSTORE_ROOT_FILE": str(trust.fulcio_cert), "SIGSTORE_REKOR_PUBLIC_KEY": str(trust.rekor_pub),
            "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE": str(trust.ct_pub),
            # cosign's TUF cache: the lab's own, so nothing the public root left in ~/.sigstore is used
            "TUF_ROOT": str(self.dir / "tuf-cache"),
        }

    def status(self) -> dict[str, str]:
        """Each service: its URL and whether its process is still the one started."""
        urls = self._service_urls()
        return {name: f"{urls.get(name) or (f'port {s.port}' if s.port else 'socket')} "
                      f"({'ok' if s.alive() else f'exited: see logs/sigstore-{name}.log'})"
                for name, s in self.state.services.items()}

    def _service_urls(self) -> dict[str, str]:
        """Each service that answers HTTP, by name: its base URL."""
        urls = self.urls
        found = {"sigstore-oidc": urls.oidc_issuer, "fulcio": urls.fulcio, "ctlog": urls.ctlog, "rekor": urls.rekor}
        if "tuf" in self.state.services:
            found["tuf"] = self.tuf_mirror
        return found

    def beyond_loopback(self) -> list[str]:
        """Addresses the services listen on beyond loopback: Rekor's fixed metrics port, ``*:2112``."""
        return sorted({f"{name} {addr}" for name, s in self.state.services.items() for addr in listening(s.pid)
                       if not addr.startswith(("127.", "[::1]:"))})


def stop(services: Mapping[str, Service]) -> None:
    """Stop ``services`` front to back: the clients of the database before the database."""
    for group, grace in zip(STOP_ORDER, STOP_GRACE, strict=True):
        terminate({name: s for name, s in services.items() if name in group}, grace=grace)


def sigstore_dir(home: LabHome) -> Path:
    return home.root / "sigstore"


def socket_dir(home: LabHome) -> Path:
    """Where the services' Unix sockets go: under the home unless its path is too long for one,
    else a private directory under the system's temporary one, named for the home."""
    directory = sigstore_dir(home) / "run"
    if len(str(directory)) > SOCKET_PATH_MAX - 20:
        tag = hashlib.sha256(str(home.root).encode()).hexdigest()[:12]
        directory = Path(tempfile.gettempdir()) / f"labkit-{os.getuid()}-{tag}"
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return directory


class _Starter:
    """One bring-up, in dependency order: database, Trillian, Rekor, CT log, OIDC issuer, Fulcio."""

    def __init__(self, home: LabHome, ports: PortPlan, timeout: float) -> None:
        self.home, self.ports, self.timeout = home, ports, timeout
        self.dir = sigstore_dir(home)
        self.trust = TrustFiles(self.dir / "trust")
        self.tools = tools_dir()
        self.sockets = socket_dir(home)
        self.services: dict[str, Service] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}  # loopback only
        # TesseraCT would push OpenTelemetry metrics to localhost:4318 every few seconds
        self.env["OTEL_SDK_DISABLED"] = "true"

    def run(self, cls: type[LocalSigstore]) -> LocalSigstore:
        try:
            self.trust.ensure_keys()
            self._database()
            self._trillian()
            rekor = self._rekor()
            ctlog = self._ctlog()
            issuer = self._oidc()
            fulcio = self._fulcio(issuer, ctlog)
            urls = SigstoreURLs(oidc_issuer=issuer, fulcio=fulcio, rekor=rekor, ctlog=ctlog)
            self.trust.write_documents(urls)
            self._tuf()
        except BaseException:
            stop(self.services)
            raise
        self.ports.save()
        state = SigstoreState(self.services, asdict(urls))
        state.save(self.dir / STATE_FILE)
        return cls(self.home, state)

    # --- helpers ---------------------------------------------------------------------------

    def _log(self, name: str) -> Path:
        return self.home.logs / f"sigstore-{name}.log"

    def _spawn(self, name: str, argv: list[str], port: int, healthy: Callable[[], bool]) -> None:
        self.services[name] = spawn(name, argv, log=self._log(name), env=self.env, cwd=self.dir, port=port,
                                    healthy=healthy, timeout=self.timeout)

    def _bin(self, name: str) -> str:
        return str(self.tools / name)

    def _addr(self, name: str) -> str:
        return f"127.0.0.1:{self.ports.port(name)}"

    # --- the services ----------------------------------------------------------------------

    def _database(self) -> None:
        datadir = self.dir / "mariadb"
        self.db_socket = self.sockets / "mariadb.sock"
        mariadb.ensure_datadir(datadir, self._log("mariadb"), self.timeout)
        self._spawn("mariadb", mariadb.server_argv(datadir, self.db_socket), 0,
                    lambda: mariadb.answers(self.db_socket))
        mariadb.ensure_schema(datadir, self.db_socket, self.tools / TRILLIAN_SCHEMA, self._log("mariadb"),
                              self.timeout)

    def _trillian(self) -> None:
        storage = ["--storage_system=mysql", "--quota_system=noop", f"--mysql_uri={mariadb.dsn(self.db_socket)}"]
        for name, binary, extra in (("trillian", TRILLIAN_SERVER, []),
                                    ("trillian-signer", TRILLIAN_SIGNER, ["--force_master"])):
            rpc, http = self.ports.port(name), self.ports.port(f"{name}-http")
            self._spawn(name, [self._bin(binary), *storage, *extra, f"--rpc_endpoint=127.0.0.1:{rpc}",
                               f"--http_endpoint=127.0.0.1:{http}"], rpc,
                        functools.partial(_answers, f"http://127.0.0.1:{http}/healthz"))

    def _rekor(self) -> str:
        port = self.ports.port("rekor")
        url = f"http://127.0.0.1:{port}"
        tree_file = self.dir / TREE_FILE
        tree = tree_file.read_text().strip() if tree_file.exists() else ""
        argv = [self._bin(REKOR), "serve", "--rekor_server.address=127.0.0.1", f"--port={port}",
                "--trillian_log_server.address=127.0.0.1", f"--trillian_log_server.port={self.ports.port('trillian')}",
                f"--rekor_server.signer={self.trust.rekor_key}", "--search_index.storage_provider=mysql",
                f"--search_index.mysql.dsn={mariadb.dsn(self.db_socket)}",
                "--log_type=prod"]
        if tree:  # else Rekor creates a tree, whose ID is kept for the next start
            argv.append(f"--trillian_log_server.tlog_id={tree}")
        self._spawn("rekor", argv, port, lambda: _answers(f"{url}/api/v1/log"))
        if not tree:
            info = _get_json(f"{url}/api/v1/log")
            write_atomic(tree_file, f"{info['treeID']}\n".encode())
        return url

    def _ctlog(self) -> str:
        port = self.ports.port("ctlog")
        url = f"http://127.0.0.1:{port}"
        storage = self.dir / "ctlog"
        storage.mkdir(exist_ok=True)
        self._spawn("ctlog", [self._bin(TESSERACT), f"--http_endpoint=127.0.0.1:{port}", f"--origin={CT_ORIGIN}",
                              f"--storage_dir={storage}", f"--roots_pem_file={self.trust.fulcio_cert}",
                              f"--private_key={self.trust.ct_key}", "--ext_key_usages=CodeSigning",
                              "--accept_sha1_signing_algorithms=false", "--logtostderr"], port,
                    lambda: _answers(f"{url}/ct/v1/get-roots"))
        return url

    def _oidc(self) -> str:
        port = self.ports.port("sigstore-oidc")
        url = f"http://127.0.0.1:{port}"  # the issuer names itself after the Host it is asked on: this one
        self._spawn("sigstore-oidc", [sys.executable, "-W", "ignore", "-m", "oidc_provider_mock", "--host",
                                      "127.0.0.1", "--port", str(port)], port,
                    lambda: _answers(f"{url}/.well-known/openid-configuration"))
        return url

    def _fulcio(self, issuer: str, ctlog: str) -> str:
        port = self.ports.port("fulcio")
        url = f"http://127.0.0.1:{port}"
        identities = self.dir / "fulcio-identities.yaml"
        write_atomic(identities, yaml.safe_dump({"oidc-issuers": {issuer: {
            "issuer-url": issuer, "client-id": oidc.CLIENT_ID, "type": "email"}}}).encode())
        # Fulcio reads its flags from this file too: the CA's password stays off the command line
        settings = self.dir / "fulcio-serve.yaml"
        write_atomic(settings, yaml.safe_dump({
            "ca": "fileca", "fileca-cert": str(self.trust.fulcio_cert), "fileca-key": str(self.trust.fulcio_key),
            "fileca-key-passwd": self.trust.fulcio_password.read_text(), "fileca-watch": False,
        }).encode(), mode=0o600)
        legacy = self.sockets / "fulcio-legacy.sock"
        legacy.unlink(missing_ok=True)  # left by the last run: Fulcio would not bind over it
        self._spawn("fulcio", [
            self._bin(FULCIO), "serve", f"--config={settings}", f"--config-path={identities}",
            "--host=127.0.0.1", f"--port={port}", "--grpc-host=127.0.0.1",
            f"--grpc-port={self.ports.port('fulcio-grpc')}", f"--metrics-port={self.ports.port('fulcio-metrics')}",
            f"--legacy-unix-domain-socket={legacy}",
            f"--ct-log-url={ctlog}", f"--ct-log-origin={CT_ORIGIN}",
            f"--ct-log-public-key-path={self.trust.ct_pub}", "--log_type=prod"], port,
            lambda: _answers(f"{url}/api/v1/rootCert"))
        return url


    def _tuf(self) -> None:
        # signed again at every start: trusted_root.json names the ports, which may have changed
        repo = TufRepository(self.dir / "tuf")
        repo.write(self.trust.trusted_root)
        port = self.ports.port("tuf")
        self._spawn("tuf", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                            str(repo.served), str(port)], port,
                    lambda: _answers(f"http://127.0.0.1:{port}/timestamp.json"))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _get_json(url: str) -> Mapping[str, Any]:
    try:
        doc = httpx.get(url, timeout=5.0, trust_env=False).raise_for_status().json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LabError(f"{url} did not answer as expected: {exc}", hint="see the logs in $LABKIT_HOME/logs") from None
    if not isinstance(doc, dict):
        raise LabError(f"{url} answered {doc!r}", hint="see the logs in $LABKIT_HOME/logs")
    return doc

