"""Notebook 08's attack lab: one engine per namespace, and every attack tried against all three.

Each engine guards a namespace of its own, so one pod tried in the three namespaces gets each
engine's own decision, never one engine's denial hiding another's answer:

- ``attack-ivp``: a Kyverno ImageValidatingPolicy (its ``namespaceSelector``),
- ``attack-cpol``: a Kyverno ClusterPolicy with ``verifyImages`` (its ``match.resources.namespaces``),
- ``attack-pc``: a policy-controller ClusterImagePolicy (the only namespace it is told to check).

The guards cover ``REGISTRY/attack/…`` and the same path on :data:`UNREACHABLE`, a registry
address where nothing listens. Attacks only push to the registry, as an attacker holding a
leaked push token could: they never touch the workshop key or the policies.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from labkit import workshop
from labkit.errors import UsageError
from labkit.lab.stale import DISCARD_PORT

if TYPE_CHECKING:
    from labkit.lab import Lab

UNREACHABLE = f"127.0.0.1:{DISCARD_PORT}"  # the discard port: connections are refused there, on any backend
REPOSITORY = "attack"
NAMESPACES = {
    "attack-ivp": "Kyverno ImageValidatingPolicy",
    "attack-cpol": "Kyverno ClusterPolicy",
    "attack-pc": "policy-controller",
}
GUARD_FILES = ("attack-ivp.yaml", "attack-cpol.yaml", "attack-cip.yaml")
_PC_INCLUDE = "policy.sigstore.dev/include"


def open_namespaces(lab: Lab) -> None:
    """Create the three namespaces; only ``attack-pc`` opts in to policy-controller."""
    for namespace in NAMESPACES:
        lab.label_namespace(namespace, {_PC_INCLUDE: "true"} if namespace == "attack-pc" else {})


def write_guards(lab: Lab, public_key: str | Path, *, failure_policy: str = "Fail",
                 registries: tuple[str, ...] | None = None) -> list[Path]:
    """Write the three guard policies to the working directory; return their paths.

    ``registries`` are the hosts whose ``attack/`` repositories are guarded (the lab's registry
    and :data:`UNREACHABLE` by default). ``failure_policy`` is the Kyverno policies' own field;
    a ClusterImagePolicy has none (policy-controller's webhook configuration decides).
    """
    hosts = registries or (lab.registry.pod_host, UNREACHABLE)
    pem = Path(public_key).read_text().strip()
    kyverno_globs = [f"{host}/{REPOSITORY}/*" for host in hosts]
    ivp = {
        "apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy",
        "metadata": {"name": "attack-ivp"},
        "spec": {
            "failurePolicy": failure_policy,
            "validationActions": ["Deny"],
            "matchConstraints": {
                "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                   "resources": ["pods"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "attack-ivp"}},
            },
            "matchImageReferences": [{"glob": glob} for glob in kyverno_globs],
            "attestors": [{"name": "workshop", "cosign": {
                "key": {"data": pem}, "ctlog": {"insecureIgnoreTlog": True, "insecureIgnoreSCT": True}}}],
            "validations": [{
                "expression": "images.containers.map(image, verifyImageSignatures(image, "
                              "[attestors.workshop])).all(e, e > 0)",
                "message": "failed to verify image with the workshop key"}],
        },
    }
    cpol = {
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "attack-cpol"},
        "spec": {
            "failurePolicy": failure_policy,
            "rules": [{
                "name": "signed-by-workshop-key",
                "match": {"any": [{"resources": {"kinds": ["Pod"], "namespaces": ["attack-cpol"]}}]},
                "verifyImages": [{
                    "imageReferences": kyverno_globs, "failureAction": "Enforce",
                    "attestors": [{"entries": [{"keys": {"publicKeys": pem, "rekor": {"ignoreTlog": True},
                                                         "ctlog": {"ignoreSCT": True}}}]}]}],
            }],
        },
    }
    cip = {
        "apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
        "metadata": {"name": "attack-cip"},
        "spec": {"images": [{"glob": f"{host}/{REPOSITORY}/**"} for host in hosts],
                 "authorities": [{"name": "workshop-key", "key": {"data": pem}}]},
    }
    paths = []
    for name, doc in zip(GUARD_FILES, (ivp, cpol, cip), strict=True):
        path = Path(name)
        path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Decision:
    namespace: str
    admitted: bool
    reason: str  # the engine's own words, from kubectl's message

    @property
    def engine(self) -> str:
        return NAMESPACES[self.namespace]


@dataclass(frozen=True)
class Attempt:
    """One pod image tried in every guarded namespace (server dry runs: nothing is kept)."""

    image: str
    decisions: tuple[Decision, ...]

    def admitted_by(self) -> list[str]:
        return [d.engine for d in self.decisions if d.admitted]

    def __str__(self) -> str:
        width = max(len(engine) for engine in NAMESPACES.values())
        lines = [self.image]
        for d in self.decisions:
            verdict = "admitted" if d.admitted else "denied  "
            lines.append(f"  {d.engine:<{width}}  {verdict}  {'' if d.admitted else d.reason}".rstrip())
        return "\n".join(lines)


def attempt(lab: Lab, *images: str) -> Attempt:
    """Ask each engine about a pod running ``images`` (one container each), as
    ``kubectl run --dry-run=server`` does: admission decides, nothing is kept."""
    decisions = []
    for namespace in NAMESPACES:
        doc = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "attempt", "namespace": namespace},
               "spec": {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}}
        result = lab.create(doc, dry_run=True)
        decisions.append(Decision(namespace, result.admitted, "" if result.admitted else _reason(result.message)))
    return Attempt(" + ".join(images), tuple(decisions))


def _reason(message: str) -> str:
    """The engine's own words in kubectl's message: what follows "denied the request:" (or the
    API server's error); of Kyverno's per-policy YAML, the last rule message."""
    text = message.rpartition("denied the request: ")[2] if "denied the request: " in message else \
        message.partition("): ")[2] or message
    lines = [line.strip(" '\"") for line in text.splitlines() if line.strip()]
    if "blocked due to the following policies" in text:
        return lines[-1]
    return " ".join(lines)


def variant(name: str, change: str) -> Path:
    """A copy of the workshop's sample app, ``name/``, with one line added: another image."""
    target = workshop.workdir() / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(workshop.SAMPLE_APP, target)
    with (target / "app.py").open("a") as app:
        app.write(f"# {change}\n")
    return target


def copy(source: str, destination: str) -> str:
    """Copy one manifest and its blobs between repositories (``crane cp``); return its digest.

    Attacks use it to move signatures and images the way anyone with push access could.
    """
    from labkit.oci.client import RegistryClient
    from labkit.oci.model import Manifest

    with RegistryClient(allow_insecure=True) as client:
        fetched = client.get_manifest(source)
        manifest = fetched.parsed()
        if not isinstance(manifest, Manifest):
            raise UsageError(f"{source} is an index", hint="copy one platform's manifest, by its digest")
        for descriptor in (manifest.config, *manifest.layers):
            client.push_blob(destination, client.get_blob(source, descriptor.digest, size=descriptor.size))
        return client.put_manifest(destination, fetched.data, fetched.media_type)


class Tarpit:
    """A "registry" on loopback that accepts connections and never answers: a registry that
    hangs, or an attacker slowing one down. Each connection is held at most ``hold`` seconds and
    at most ``limit`` at once (later ones are closed at once); ``close()`` ends it.

    Only engines on this machine reach it (embedded and native backends); inside a kind cluster
    127.0.0.1 is the engine's own pod, which refuses the connection instead.
    """

    def __init__(self, *, hold: float = 60.0, limit: int = 64) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._hold, self._slots = hold, threading.BoundedSemaphore(limit)
        self._stop = threading.Event()
        self.host = f"127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, name="tarpit", daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            if not self._slots.acquire(blocking=False):
                conn.close()
                continue
            threading.Thread(target=self._hold_open, args=(conn,), daemon=True).start()

    def _hold_open(self, conn: socket.socket) -> None:
        with conn:
            self._stop.wait(self._hold)
        self._slots.release()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        self._server.close()

    def __enter__(self) -> Tarpit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
