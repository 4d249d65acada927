"""What the webhook reads from disk on every request: the policies and the namespace labels.

Each is re-read only when a file's (name, mtime, size) changed, a ``stat`` per file per request,
so ``lab.apply(policy)`` acts on the next review without a restart. A policy file that does not
load is kept out and reported (log and ``/healthz``); the others stay in force.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from labkit.errors import LabkitError
from labkit.policy.load import load_objects
from labkit.policy.schema import Policy, TrustRoot

log = logging.getLogger("labkit.admission")

_POLICY_SUFFIXES = (".yaml", ".yml", ".json")
# The API server labels every namespace with its name (since Kubernetes 1.21); selectors use it.
NAME_LABEL = "kubernetes.io/metadata.name"

_Stamp = tuple[tuple[str, int, int], ...]


def _stamp(paths: list[Path]) -> _Stamp:
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((p.name, st.st_mtime_ns, st.st_size))
    return tuple(out)


@dataclass
class PolicyDirectory:
    """The policies in ``directory`` (each YAML/JSON file, several documents allowed)."""

    directory: Path
    _stamp: _Stamp | None = None
    _policies: list[Policy | TrustRoot] = field(default_factory=list)  # TrustRoots: for keyless CIPs
    _errors: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _files(self) -> list[Path]:
        try:
            entries = sorted(os.scandir(self.directory), key=lambda e: e.name)
        except OSError:
            return []
        return [Path(e.path) for e in entries
                if e.name.endswith(_POLICY_SUFFIXES) and not e.name.startswith(".") and e.is_file()]

    def current(self) -> tuple[list[Policy | TrustRoot], dict[str, str]]:
        """(policies in force, {file: why it was not loaded})."""
        files = self._files()
        stamp = _stamp(files)
        with self._lock:
            if stamp != self._stamp:
                self._reload(files)
                self._stamp = stamp
            return list(self._policies), dict(self._errors)

    def _reload(self, files: list[Path]) -> None:
        policies: list[Policy | TrustRoot] = []
        errors: dict[str, str] = {}
        for path in files:
            try:
                policies.extend(load_objects(path))
            except LabkitError as exc:
                errors[path.name] = str(exc)
                log.error("policy file %s not loaded: %s", path, exc)
            except Exception as exc:  # a loader bug on one file must not take the others down
                errors[path.name] = f"{path}: not loaded: {type(exc).__name__}: {exc}"
                log.exception("policy file %s not loaded", path)
        if not self.directory.is_dir():
            errors[str(self.directory)] = f"{self.directory}: no such policy directory"
        self._policies, self._errors = policies, errors
        log.info("loaded %d policies from %s", len(policies), self.directory)


@dataclass
class NamespaceLabels:
    """``namespaces.json`` in the state directory: ``{"ns": {"label": "value"}}``."""

    path: Path | None
    _stamp: _Stamp | None = None
    _labels: dict[str, dict[str, str]] = field(default_factory=dict)
    _error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def labels(self, namespace: str) -> dict[str, str]:
        labels = dict(self._current().get(namespace, {}))
        labels.setdefault(NAME_LABEL, namespace)
        return labels

    @property
    def error(self) -> str:
        return self._error

    def _current(self) -> Mapping[str, Mapping[str, str]]:
        if self.path is None:
            return {}
        stamp = _stamp([self.path])
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._labels, self._error = self._read()
            return self._labels

    def _read(self) -> tuple[dict[str, dict[str, str]], str]:
        assert self.path is not None
        if not self.path.exists():
            return {}, ""
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or not all(
                isinstance(v, dict) and all(isinstance(x, str) for x in v.values()) for v in doc.values()
            ):
                raise ValueError('expected {"namespace": {"label": "value"}}')
        except (OSError, ValueError) as exc:
            message = f"{self.path}: namespace labels not read: {exc}"
            log.error("%s", message)
            return {}, message
        return {str(k): dict(v) for k, v in doc.items()}, ""
