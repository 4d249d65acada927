"""Where a lab keeps its state: everything under ``LABKIT_HOME`` (default ``~/.labkit``).

    $LABKIT_HOME/
      lab.json              backend, and each service's pid, process start time and port (`lab down` removes it)
      ports.json            the ports the lab listens on, kept across `lab down`/`up` and reboots (labkit.lab.ports)
      bin/                  the real tools under their plain names, for `labkit lab env` (labkit.lab.environment)
      registry/             the embedded registry's storage
      private-registry/     the second, password-protected registry (password: private-registry.password, 0600)
      admission/            the webhook's CA and serving certificate
      policies/             policy files the webhook serves (one file per object)
      state/                namespaces.json, secrets.json: what the API server would hold
      logs/                 one log file per background service
      kind/                 the kind backend's kubeconfig

Two homes never share a port or a process: ports are picked free at the first start, kept here
and claimed user-wide (:mod:`labkit.lab.ports`).
A pid is trusted only while the process it names is the one that was started (same start
time), so a stale ``lab.json`` after a reboot never leads to signalling a stranger.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit._internal.files import write_atomic
from labkit.errors import LabError

STATE_FILE = "lab.json"
PRIVATE_USER = "labkit"  # the private registry's user, on both backends


def default_home() -> Path:
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit")


@dataclass(frozen=True)
class LabHome:
    """The directory layout of one lab."""

    root: Path

    @classmethod
    def resolve(cls, home: Path | str | None = None) -> LabHome:
        return cls(Path(home).expanduser().resolve() if home is not None else default_home().resolve())

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def registry(self) -> Path:
        return self.root / "registry"

    @property
    def admission(self) -> Path:
        return self.root / "admission"

    @property
    def policies(self) -> Path:
        return self.root / "policies"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def kind(self) -> Path:
        return self.root / "kind"

    @property
    def private_password_file(self) -> Path:
        return self.root / "private-registry.password"

    def new_private_password(self) -> str:
        """A fresh password for the private registry, kept 0600 so ``lab.private_registry`` can
        hand it to learners' pushes and pull Secrets without it ever being printed."""
        password = secrets.token_urlsafe(18)
        fd = os.open(self.private_password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password

    def private_password(self) -> str:
        try:
            return self.private_password_file.read_text().strip()
        except FileNotFoundError:
            raise LabError(f"the private registry's password is missing ({self.private_password_file})",
                           hint="restart the lab: `labkit lab down`, then `labkit lab up`") from None

    def create(self) -> None:
        for d in (self.root, self.policies, self.state, self.logs):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Service:
    """A background process the lab started."""

    pid: int
    port: int
    started: float | None  # the process start time, to tell it from a later process with its pid

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.started if self.started is not None else _exists(self.pid)


@dataclass
class LabState:
    """The contents of ``lab.json``."""

    backend: str
    services: dict[str, Service] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)

    def save(self, home: LabHome) -> None:
        write_atomic(home.state_file, (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def load(cls, home: LabHome) -> LabState | None:
        """The recorded state, or None when no lab was started in ``home``."""
        try:
            doc = json.loads(home.state_file.read_text())
            return cls(backend=doc["backend"],
                       services={k: Service(**v) for k, v in doc.get("services", {}).items()},
                       info=dict(doc.get("info", {})))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{home.state_file} is not a lab state file ({exc})",
                           hint=f"remove it and start again: labkit lab up (LABKIT_HOME={home.root})") from None

    def stale(self) -> dict[str, Service]:
        """Recorded services whose process is gone (or whose pid now names another process)."""
        return {name: s for name, s in self.services.items() if not s.alive()}


def clear(home: LabHome) -> None:
    home.state_file.unlink(missing_ok=True)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (Linux ``/proc``), None if it is gone.

    Elsewhere (no ``/proc``) existence is all that can be checked, returned as 0.0.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        return 0.0 if _exists(pid) else None
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # exited, not yet reaped: gone as far as the lab is concerned
        return None
    return float(fields[19])
