"""Choosing a lab backend by name: ``start`` one, or ``connect`` to the one recorded in a lab's home.

This is the one module that knows every backend. The backends subclass :class:`labkit.lab.base.Lab`,
so ``base`` cannot import them (nor this module) without an import cycle. ``Lab.start`` and
``Lab.connect``, what notebooks call, are this module's :func:`start` and :func:`connect`: this
module registers them with ``base`` (:func:`labkit.lab.base.register_factory`) when it is imported,
and ``labkit/lab/__init__.py`` imports it, so they are registered before any ``labkit.lab`` module
is usable. Each backend is imported when it is first chosen, so importing ``labkit.lab`` does not
cost the start-up of all three.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from labkit.errors import LabError, UsageError
from labkit.lab.base import Lab, register_factory
from labkit.lab.state import LabHome, LabState

BACKENDS = ("embedded", "native", "kind", "existing")


def start(backend: str = "embedded", home: Path | str | None = None, *, sigstore: bool = False,
          **options: Any) -> Lab:
    """Start a lab of ``backend`` in ``home`` (default ``LABKIT_HOME``), or return the one running there.

    The embedded and native labs take ``ports={"registry": 5001, …}`` (kept for later starts; default
    ``LABKIT_PORTS``) and ``fresh_ports=True`` (pick new ones); see :mod:`labkit.lab.ports`. The
    existing backend takes ``kubeconfig``, ``context``, ``registry``, ``registry_pod_host`` and
    ``learner`` (:meth:`labkit.lab.existing.ExistingLab.launch`). ``sigstore=True`` also starts the
    lab's own Sigstore (:mod:`labkit.lab.sigstore`), on any backend."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown lab backend {backend!r}", hint=f"choose one of: {', '.join(BACKENDS)}")
    if backend in ("kind", "existing") and (options.pop("ports", None) or options.pop("fresh_ports", False)):
        raise UsageError(f"the {backend} lab listens on no ports of its own: --port and --fresh-ports are for "
                         "the embedded and native labs",
                         hint="the kind lab's registry port is --registry-port; an existing cluster's registry "
                              "is --registry")
    if backend != "kind" and options.get("registry_port") is not None:
        raise UsageError("--registry-port is for the kind lab (its registry's host port)",
                         hint="the embedded and native labs take --port registry=N")
    lab = backend_class(backend).launch(LabHome.resolve(home), **options)
    if sigstore:
        from labkit.lab.sigstore import LocalSigstore

        LocalSigstore.up(lab.home)
    return lab


def connect(home: Path | str | None = None) -> Lab:
    """The lab running in ``home`` (default ``LABKIT_HOME``), e.g. after a kernel restart."""
    lab_home = LabHome.resolve(home)
    state = LabState.load(lab_home)
    if state is None:
        raise LabError(f"no lab is running in {lab_home.root} (no {lab_home.state_file.name})",
                       hint="start one: `labkit lab up` or labkit.Lab.start() "
                            "(LABKIT_HOME selects the lab's directory)")
    return backend_class(state.backend).attach(lab_home, state)


def backend_class(name: str) -> type[Lab]:
    """The ``Lab`` subclass of backend ``name``."""
    if name == "embedded":
        from labkit.lab.embedded import EmbeddedLab

        return EmbeddedLab
    if name == "native":
        from labkit.lab.native import NativeLab

        return NativeLab
    if name == "kind":
        from labkit.lab.kind import KindLab

        return KindLab
    if name == "existing":
        from labkit.lab.existing import ExistingLab

        return ExistingLab
    raise LabError(f"unknown lab backend {name!r} in the lab state", hint="run `labkit lab down`, then `labkit lab up`")


register_factory(start, connect)
