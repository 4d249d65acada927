"""The ports a lab listens on, kept in ``$LABKIT_HOME/ports.json`` so that its addresses (the
registry's ``host:port`` above all, which images, pod specs and policies name) are the same after
``lab down`` / ``lab up``, a kernel restart or a reboot.

The first start picks each port free, below the kernel's ephemeral range (so no outgoing connection
takes it while the lab is down); later starts reuse it. A kept port another process holds is an
error naming that process. ``labkit lab up --port NAME=PORT`` (or ``LABKIT_PORTS=NAME=PORT,…``)
chooses a port, ``--fresh-ports`` picks new ones; either is kept for the next start.

Two homes never share a port: a user-wide claims file (``$XDG_STATE_HOME/labkit/port-claims.json``,
default ``~/.local/state/labkit/``) keeps each home's ports out of every other home's picks, even
while the first lab is down. A home whose directory is gone loses its claim.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import socket
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

from labkit._internal.files import write_atomic
from labkit._internal.serving import free_port
from labkit.errors import LabError, UsageError
from labkit.lab.sockets import holder
from labkit.lab.state import LabHome

PORTS_FILE = "ports.json"
PORTS_ENV = "LABKIT_PORTS"
PICK_FLOOR = 20000  # fresh picks come from [PICK_FLOOR, the ephemeral range's start)
PICK_ATTEMPTS = 200
TAKEN_GRACE = 3.0  # seconds a kept port may take to be released by a process just stopped


def ports_file(home: LabHome) -> Path:
    return home.root / PORTS_FILE


def kept_ports(home: LabHome) -> dict[str, int]:
    """The ports recorded in ``home`` (name → port); empty before the first start."""
    path = ports_file(home)
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or not all(isinstance(v, int) and 0 < v < 65536 for v in doc.values()):
            raise ValueError("expected an object of name: port")
        return {str(k): int(v) for k, v in doc.items()}
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise LabError(f"{path} is not a ports file ({exc})",
                       hint="remove it, or start with new ports: labkit lab up --fresh-ports") from None


def parse_ports(items: Iterable[str], where: str) -> dict[str, int]:
    """``NAME=PORT`` items (the ``--port`` flag, or ``LABKIT_PORTS`` split on commas)."""
    ports: dict[str, int] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit() or not 0 < int(value) < 65536:
            raise UsageError(f"{where}: {item!r} is not NAME=PORT",
                             hint="e.g. registry=5001 (the names are the lab's services: labkit lab status)")
        ports[name.strip()] = int(value)
    return ports


def requested_from_env() -> dict[str, int]:
    return parse_ports(os.environ.get(PORTS_ENV, "").split(","), PORTS_ENV)


class PortPlan:
    """The ports one start of a lab uses: kept or chosen ones exactly, fresh picks for the rest."""

    def __init__(self, home: LabHome, names: Iterable[str], requested: Mapping[str, int] | None = None,
                 fresh: bool = False) -> None:
        self.home, self.names = home, tuple(names)
        self.requested = dict(requested_from_env() if requested is None else requested)
        unknown = sorted(set(self.requested) - set(self.names))
        if unknown:
            raise UsageError(f"this lab has no port named {', '.join(unknown)}",
                             hint=f"its ports are: {', '.join(self.names)}")
        self.kept = {} if fresh else kept_ports(home)
        self.fixed = {**{n: self.kept[n] for n in self.names if n in self.kept}, **self.requested}
        seen: dict[int, str] = {}
        for name, port in self.fixed.items():
            if port in seen:
                raise UsageError(f"port {port} is given to both the {seen[port]} and the {name}",
                                 hint="give each its own port (--port NAME=PORT), or --fresh-ports")
            seen[port] = name
        self.picked: dict[str, int] = {}

    def require_free(self, grace: float = TAKEN_GRACE) -> None:
        """Every kept or chosen port is free, else an error naming the process that holds it. A port
        still taken is given ``grace`` seconds: a process that was just killed (``lab down``, a
        crash) closes its sockets only once its last thread has exited."""
        deadline = time.monotonic() + grace
        for name, port in self.fixed.items():
            while not bindable(port):
                if time.monotonic() > deadline:
                    raise self.taken(name, port)
                time.sleep(0.1)

    def port(self, name: str) -> int:
        """The port ``name`` listens on: the kept or chosen one, else a fresh pick."""
        if name in self.fixed:
            return self.fixed[name]
        if name not in self.picked:
            self.picked[name] = self._pick()
        return self.picked[name]

    def repick(self, name: str) -> int:
        """``name``'s port was taken meanwhile: a new pick, or the error if it was kept or chosen."""
        if name in self.fixed:
            raise self.taken(name, self.fixed[name])
        self.picked[name] = self._pick()
        return self.picked[name]

    def save(self) -> None:
        """Keep this start's ports (and those of names it did not use) for the next start."""
        ports = {**self.kept, **self.fixed, **self.picked}
        write_atomic(ports_file(self.home), (json.dumps(ports, indent=2, sort_keys=True) + "\n").encode())
        with _claims() as claims:
            claims[str(self.home.root)] = sorted(set(ports.values()))

    def taken(self, name: str, port: int) -> LabError:
        who = holder(port) or "another process (labkit cannot see which: it may be another user's)"
        origin = "chosen for" if name in self.requested else f"kept (in {ports_file(self.home)}) for"
        return LabError(f"port {port}, {origin} this lab's {name}, is in use by {who}",
                        hint=f"stop that process and start again, or choose another port: `labkit lab up --port "
                             f"{name}=PORT` (or {PORTS_ENV}={name}=PORT); `labkit lab up --fresh-ports` picks new "
                             "ones. A new registry port means re-applying the policies that name the old one")

    def _pick(self) -> int:
        with _claims() as claims:
            avoid = {p for home, ports in claims.items() if home != str(self.home.root) for p in ports}
        return pick_port(avoid | {*self.kept.values(), *self.fixed.values(), *self.picked.values()})


def pick_port(avoid: Collection[int]) -> int:
    """A port free on loopback now and not in ``avoid``, below the kernel's ephemeral range when
    there is room (so no outgoing connection is given it later), else one the kernel chooses."""
    low = _ephemeral_start()
    if low - PICK_FLOOR >= 1000:
        for _ in range(PICK_ATTEMPTS):
            port = random.randrange(PICK_FLOOR, low)
            if port not in avoid and bindable(port):
                return port
    for _ in range(PICK_ATTEMPTS):
        port = free_port()
        if port not in avoid:
            return port
    raise LabError("no free port found for the lab", hint="free some ports, or choose them: --port NAME=PORT")


def bindable(port: int, address: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``address:port`` now (as the lab's do: SO_REUSEADDR, so a
    closed connection lingering in TIME_WAIT does not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def claims_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "labkit" / "port-claims.json"


@contextlib.contextmanager
def _claims() -> Iterator[dict[str, list[int]]]:
    """The claims (home → its ports), locked; written back on exit. Homes that are gone are dropped.
    Where the file cannot be kept (no writable home directory), claims are empty: picks then rely on
    the ports being free, as they did before ports were kept."""
    path = claims_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_suffix(".lock"), "a")  # noqa: SIM115 (held for the whole block)
    except OSError:
        yield {}
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            doc = json.loads(path.read_text())
            claims = {str(h): [int(p) for p in ports] for h, ports in doc.items()} if isinstance(doc, dict) else {}
        except (OSError, ValueError, TypeError, AttributeError):
            claims = {}  # missing or unreadable: it only ever narrows picks
        claims = {home: ports for home, ports in claims.items() if Path(home).is_dir()}
        yield claims
        with contextlib.suppress(OSError):
            write_atomic(path, (json.dumps(claims, indent=1, sort_keys=True) + "\n").encode())
