"""The shell environment of a lab (``Lab.env()``, ``labkit lab env``): what a terminal, ``!`` cells or
a script need to type the real commands against the lab.

``PATH`` starts with the directory ``labkit`` is installed in (the running interpreter's), then
``$LABKIT_HOME/bin``, where the real tools built by ``make tools`` are linked under their plain
names (``cosign``: the tutorial's pin; ``crane``; ``kubectl`` on the native lab), then the tools
cache itself (every pinned version, e.g. ``cosign-v3.1.3``); only directories that exist.
``KUBECONFIG`` is set where the backend has an API server.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

from labkit._internal.tools import tools_dir
from labkit.lab.state import LabHome

COSIGN_PIN = "cosign-v2.6.1"  # the tutorial's pin (tools/reference-tools.sh)
CRANE_PIN = "crane-v0.22.1"
NO_API_SERVER = "no API server; use labkit lab apply"


def bin_dir(home: LabHome) -> Path:
    return home.root / "bin"


def link_tools(home: LabHome, kubectl: str | None) -> Path | None:
    """``$LABKIT_HOME/bin`` with a link per real tool that exists (and none for one that does not);
    None when there is none."""
    wanted = {"cosign": tools_dir() / COSIGN_PIN, "crane": tools_dir() / CRANE_PIN,
              "kubectl": Path(kubectl) if kubectl else None}
    directory = bin_dir(home)
    made = False
    for name, target in wanted.items():
        link = directory / name
        if target is None or not target.is_file():
            if link.is_symlink():
                link.unlink()
            continue
        directory.mkdir(parents=True, exist_ok=True)
        if not (link.is_symlink() and os.readlink(link) == str(target)):
            staged = directory / f".{name}.{os.getpid()}"
            staged.unlink(missing_ok=True)
            staged.symlink_to(target)
            os.replace(staged, link)  # readers see the old link or the new one
        made = True
    return directory if made else None


def shell_environment(home: LabHome, backend: str, addresses: Mapping[str, str], *,
                      kubeconfig: str | None = None, kubectl: str | None = None) -> dict[str, str]:
    """``NAME → value`` for the lab in ``home``: PATH, LABKIT_HOME, LAB_BACKEND, KUBECONFIG (when
    there is one) and ``addresses`` (``LABKIT_REGISTRY`` …)."""
    first = [os.path.dirname(sys.executable)]
    linked = link_tools(home, kubectl)
    first += [str(linked)] if linked else []
    first += [str(tools_dir())] if tools_dir().is_dir() else []
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in first]
    env = {"PATH": os.pathsep.join([*first, *rest]), "LABKIT_HOME": str(home.root), "LAB_BACKEND": backend}
    if kubeconfig:
        env["KUBECONFIG"] = kubeconfig
    return {**env, **addresses}


def export_lines(env: Mapping[str, str]) -> str:
    """``export NAME=value`` lines a POSIX shell can ``eval``, with a comment where KUBECONFIG is absent."""
    where = env["LABKIT_HOME"].replace("\n", "?")  # a comment ends at a newline
    lines = [f"# the {env['LAB_BACKEND']} lab in {where}: eval \"$(labkit lab env)\" to use it here"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
    if "KUBECONFIG" not in env:
        lines.append(f"# {env['LAB_BACKEND']}: {NO_API_SERVER}")
    return "\n".join(lines) + "\n"
