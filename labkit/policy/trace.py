"""What one engine's webhook answered for one object (:class:`EngineResult`), and one line of its
trace: what it did with one image (:class:`ImageTrace`; the webhook's PolicyReports are made from
it). Every engine returns an :class:`EngineResult`; :mod:`labkit.policy.phases` orders them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labkit.policy.podspec import Engine


@dataclass
class ImageTrace:
    """What one engine did with one container image under one policy (and rule)."""

    engine: Engine
    policy: str
    rule: str
    image: str
    path: str  # JSON pointer (Kyverno) or field path (policy-controller)
    status: str  # pass | fail | skip | error | warn
    message: str = ""
    digest: str = ""
    attestors: list[str] = field(default_factory=list)  # one line per attestor/authority tried
    phase: str = "validate"  # mutate | validate: the webhook that produced this result


@dataclass
class Denial:
    engine: Engine
    message: str  # as kubectl shows it
    webhook: str = ""  # the webhook as kubectl names it, when the engine names it


@dataclass
class EngineResult:
    """One engine's webhook response: patches (mutating webhooks), warnings, and a denial or None."""

    patches: list[dict[str, Any]] = field(default_factory=list)
    trace: list[ImageTrace] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    denial: Denial | None = None
