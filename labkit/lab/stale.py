"""Policies that name a loopback registry the lab does not serve (``Lab.stale_policies()``).

A policy written for ``127.0.0.1:PORT`` keeps naming that address after the lab's registry moved
(another ``LABKIT_HOME``, ``--fresh-ports``, a lab from before ports were kept): its image globs
then match nothing the learner pushes, and an unsigned image is admitted without a word. Every
string under the policy's ``spec`` is searched (image globs, registry references, CEL
expressions), so no engine's field is missed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# RFC 863's discard port: nothing listens there, so a policy naming 127.0.0.1:9 names an
# unreachable registry on purpose (notebook 08's fail-closed guards), never a lab registry that moved.
DISCARD_PORT = 9
# A loopback registry host:port as image references spell it.
_LOOPBACK = re.compile(r"(?<![\w.:-])(?:localhost|127(?:\.\d{1,3}){3}|\[::1\]):(\d{1,5})(?![\d])")


@dataclass(frozen=True)
class StalePolicy:
    """One policy naming a loopback registry the lab does not serve.

    ``kind``/``name``/``namespace`` say which policy (namespace empty for cluster-scoped ones),
    ``host`` the ``host:port`` it names, ``served`` the registries the lab does serve."""

    kind: str
    name: str
    namespace: str
    host: str
    served: tuple[str, ...]

    @property
    def policy(self) -> str:
        return f"{self.kind}/{self.namespace + '/' if self.namespace else ''}{self.name}"

    def __str__(self) -> str:
        return (f"policy {self.policy} names the registry {self.host}, which this lab does not serve "
                f"(it serves {', '.join(self.served)})")


def loopback_hosts(node: Any) -> Iterator[tuple[str, int]]:
    """Each loopback ``host:port`` (and its port) in any string of ``node``, in order."""
    if isinstance(node, str):
        for match in _LOOPBACK.finditer(node):
            yield match[0], int(match[1])
    elif isinstance(node, Mapping):
        for value in node.values():
            yield from loopback_hosts(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from loopback_hosts(value)


def stale_policies(policies: Iterable[Mapping[str, Any]], served: Iterable[str],
                   services: Iterable[str] = ()) -> list[StalePolicy]:
    """The (policy, host) pairs where a policy's spec names a loopback port no ``served`` host has.

    Loopback hosts are compared by port: ``localhost:P`` and ``127.0.0.1:P`` reach one registry.
    ``services`` are the lab's other addresses a policy may name (its Sigstore's: Fulcio, Rekor, the
    CT log, the TUF mirror): never stale, never offered as registries."""
    served = tuple(dict.fromkeys(served))
    ports = {DISCARD_PORT, *(port for host in (*served, *services) for _, port in loopback_hosts(host))}
    found: list[StalePolicy] = []
    for policy in policies:
        meta = policy.get("metadata") or {}
        hosts = dict.fromkeys(host for host, port in loopback_hosts(policy.get("spec")) if port not in ports)
        found += [StalePolicy(str(policy.get("kind", "")), str(meta.get("name", "")), str(meta.get("namespace") or ""),
                              host, served) for host in hosts]
    return found
