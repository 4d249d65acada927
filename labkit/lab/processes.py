"""Background processes a lab starts: spawned detached, watched until healthy, stopped with a bound.

A lab's services (labkit's registry and webhook; on the native backend etcd, kube-apiserver and
the engines) run in sessions of their own, so they outlive the kernel or shell that started
them; ``lab.json`` keeps each one's pid and start time (:class:`labkit.lab.state.Service`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from labkit.errors import LabError, UsageError
from labkit.lab.ports import PortPlan
from labkit.lab.state import LabHome, LabState, Service, clear, process_start_time

POLL = 0.05


def spawn(name: str, argv: Sequence[str], *, log: Path, env: Mapping[str, str], cwd: Path, port: int,
          healthy: Callable[[], bool], timeout: float, stdin: str | None = None) -> Service:
    """Start ``argv`` detached, its output appended to ``log``; return once ``healthy()`` holds.

    A process that exits first or stays unhealthy past ``timeout`` is an error quoting its log's
    tail (and the latter is killed), so a failed start never leaves a half-started service."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                                stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True,
                                cwd=cwd)
    if stdin is not None and proc.stdin is not None:  # a secret: never on the command line
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
    service = Service(proc.pid, port, process_start_time(proc.pid))
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if healthy():
            return service
        time.sleep(POLL)
    if proc.poll() is None:
        terminate({name: service})
        raise LabError(f"the lab's {name} did not become ready within {timeout:g}s: "
                       f"{tail(log).decode(errors='replace').strip()[-600:]}", hint=f"full log: {log}")
    raise StartFailed(name, proc.returncode, log)


class StartFailed(LabError):
    """A service exited while starting; ``log`` says why (a taken port, a bad flag)."""

    def __init__(self, name: str, status: int, log: Path) -> None:
        self.log = log
        super().__init__(f"the lab's {name} exited at start (status {status}): "
                         f"{tail(log).decode(errors='replace').strip()[-600:]}", hint=f"full log: {log}")


def tail(path: Path, size: int = 1500) -> bytes:
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - size))
        return f.read()


def terminate(services: Mapping[str, Service], grace: float = 5.0) -> list[str]:
    """SIGTERM each service that is still the process the lab started, SIGKILL it after ``grace``
    seconds; the names of those that had to be killed."""
    live = {name: s for name, s in services.items() if s.alive()}
    for s in live.values():
        _signal(s.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(s.alive() for s in live.values()) and time.monotonic() < deadline:
        time.sleep(POLL)
    killed = [name for name, s in live.items() if s.alive()]
    for name in killed:
        _signal(live[name].pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while any(s.alive() for s in live.values()) and time.monotonic() < deadline:
        time.sleep(POLL)
    for s in live.values():  # reap our own children so they do not linger as zombies
        with contextlib.suppress(ChildProcessError):
            os.waitpid(s.pid, os.WNOHANG)
    return killed


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


PORT_ATTEMPTS = 3


def spawn_labkit(home: LabHome, name: str, env: Mapping[str, str], timeout: float,
                 argv: Callable[[int], list[str]], healthy: Callable[[int], bool], *, ports: PortPlan,
                 stdin: str | None = None) -> Service:
    """Start ``python -m labkit ARGV(port)`` detached on ``ports.port(name)``. A fresh pick taken in
    the meantime means another try; a kept or chosen port taken is an error naming its holder."""
    log = home.logs / f"{name}.log"
    port = ports.port(name)
    for _ in range(PORT_ATTEMPTS):
        try:
            return spawn(name, [sys.executable, "-m", "labkit", *argv(port)], log=log, env=env, cwd=home.root,
                         port=port, healthy=functools.partial(healthy, port), timeout=timeout, stdin=stdin)
        except StartFailed as exc:
            if b"already in use" not in tail(exc.log):
                raise
        port = ports.repick(name)
    raise LabError(f"no free port for the lab's {name} after {PORT_ATTEMPTS} tries", hint=f"see {log}")


def running_lab(home: LabHome, backend: str) -> LabState | None:
    """The state of the ``backend`` lab already running in ``home``, or None; a half-dead one is
    stopped and forgotten (so it can be started afresh), another backend's is an error."""
    state = LabState.load(home)
    if state is None:
        return None
    if state.backend != backend:
        raise LabError(f"a {state.backend} lab is already recorded in {home.root}",
                       hint="stop it first (`labkit lab down`) or use another LABKIT_HOME")
    if not state.stale():
        return state
    terminate(state.services)
    clear(home)
    return None


def require_running_ports(state: LabState, ports: Mapping[str, int] | None, fresh: bool) -> None:
    """``up`` on a running lab returns it as it is: asking it for other ports (or fresh ones) is an error."""
    differ = {n: p for n, p in (ports or {}).items() if n in state.services and state.services[n].port != p}
    if fresh or differ:
        asked = ", ".join(f"{n}={p}" for n, p in differ.items()) or "fresh ports"
        raise UsageError(f"the {state.backend} lab is already running with its ports; cannot switch to {asked}",
                         hint="stop it first (`labkit lab down`), then `labkit lab up` with the new ports")


def require_alive(home: LabHome, state: LabState, hint: str) -> None:
    """Attaching to a recorded lab: every process it started must still be running."""
    stale = state.stale()
    if stale:
        gone = ", ".join(f"{name} (pid {s.pid})" for name, s in stale.items())
        raise LabError(f"the {state.backend} lab in {home.root} is not running: {gone} exited", hint=hint)
