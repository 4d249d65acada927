"""One line of a decision's trace: what one engine did with one image (:mod:`labkit.policy.decision`,
:mod:`labkit.policy.ivp`; the webhook's PolicyReports are made from it)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
