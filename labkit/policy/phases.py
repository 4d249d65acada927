"""Admit or deny one Kubernetes object as the clusters' admission webhooks would: the phase
order only. Each engine is a module of its own, modelled on its admission path, and returns an
:class:`~labkit.policy.trace.EngineResult` per webhook: Kyverno's verifyImages rules
(:mod:`labkit.policy.kyverno`), Kyverno's ImageValidatingPolicies (:mod:`labkit.policy.ivp`) and
policy-controller's ClusterImagePolicies (:mod:`labkit.policy.policy_controller`).

``phase="admission"`` runs what the API server runs for a CREATE: every mutating webhook, the
patches applied, then every validating webhook on the result. Signature checks and tag
lookups are injected (``verifier``, ``resolver``) so tests can run without a registry;
:class:`labkit.policy.credentials.RegistryAccess` is the real one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from labkit.policy import kyverno
from labkit.policy import policy_controller as pc  # evaluate() has a policy_controller flag
from labkit.policy.credentials import RegistryAccess, SecretStore
from labkit.policy.patches import apply_patches
from labkit.policy.podspec import Engine
from labkit.policy.schema import ClusterImagePolicy, ImageValidatingPolicy, KyvernoPolicy, Policy, TrustRoot
from labkit.policy.trace import EngineResult, ImageTrace
from labkit.policy.verification import Registry, Resolver, Verifier

Phase = Literal["mutate", "validate", "admission"]


@dataclass
class Decision:
    allowed: bool
    message: str = ""
    engine: Engine | None = None  # the engine that denied, when one did
    warnings: list[str] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    trace: list[ImageTrace] = field(default_factory=list)
    webhook: str = ""  # the webhook that denied, as kubectl names it


def format_decision(decision: Decision) -> str:
    """The decision as ``labkit policy test`` prints it: the verdict, one line per image trace
    (with the attestors tried), and the digest patches. Warnings are separate
    (``decision.warnings``): the CLI prints them on stderr, as kubectl does."""
    if decision.allowed:
        lines = ["admitted"]
    else:
        engine = decision.engine.value if decision.engine else "policy"
        sep = "" if decision.message.startswith("\n") else " "  # Kyverno's starts with newlines
        lines = [f"denied by {engine}:{sep}{decision.message}"]
    for t in decision.trace:
        where = f"{t.policy}/{t.rule}" if t.rule else t.policy or "-"
        # an ImageValidatingPolicy result has no field path, and none of its images when it matched none
        subject = "".join(f" {part}" for part in (t.path, t.image) if part)
        lines.append(f"  [{t.engine.value}] {where}{subject}: {t.status}"
                     + (f" ({t.message})" if t.message else ""))
        lines.extend(f"      {line}" for line in t.attestors)
    if decision.patches:
        lines.append("patches: " + json.dumps(decision.patches))
    return "\n".join(lines)


def decide_against_registry(
    policies: Sequence[Policy | TrustRoot],
    resource: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str] | None = None,
    no_match_policy: str = "deny",
    allow_insecure_registry: bool = False,
) -> Decision:
    """``evaluate`` with signatures and tags read from the real registries the images name."""
    from labkit.oci.client import RegistryClient  # loaded only when a registry is used

    with RegistryClient(allow_insecure=allow_insecure_registry) as client:
        access = RegistryAccess(client)
        try:
            return evaluate(policies, resource, namespace_labels=namespace_labels, verifier=access,
                            resolver=access.resolve, no_match_policy=no_match_policy)
        finally:
            access.close()


def evaluate(
    policies: Sequence[Policy | TrustRoot],
    resource: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str] | None = None,
    verifier: Verifier,
    resolver: Resolver | None = None,
    secrets: SecretStore | None = None,
    no_match_policy: str = "deny",
    phase: Phase = "admission",
    old_resource: Mapping[str, Any] | None = None,
    policy_controller: bool = False,
) -> Decision:
    """Decide admission of ``resource`` (a CREATE, or an UPDATE of ``old_resource``: Kyverno
    skips an unchanged image the old object's annotation records as verified) as the clusters'
    webhooks would.

    ``phase``: ``mutate`` (the mutating webhooks: patches, Kyverno's verification),
    ``validate`` (the validating webhooks, on an object already mutated), or ``admission``
    (both, in the API server's order). Without a ``resolver`` no tag is looked up.
    ``secrets`` holds the pull Secrets the engines read. ``no_match_policy`` is
    policy-controller's ``config-policy-controller`` setting (``allow``/``warn``/``deny``;
    anything else denies, as upstream fails closed). ``policy_controller``: its webhook is
    installed, so it reviews opted-in namespaces even when no ClusterImagePolicy exists (an
    image then matches no policy: ``setNoMatchingPoliciesError``, pkg/webhook/validator.go:360).
    """
    labels = dict(namespace_labels or {})
    decision = Decision(allowed=True)
    kyvernos = [p for p in policies if isinstance(p, KyvernoPolicy)]
    cips = [p for p in policies if isinstance(p, ClusterImagePolicy)]
    trust_roots = [p for p in policies if isinstance(p, TrustRoot)]  # what keyless authorities name
    registry = Registry(verifier, resolver, secrets)
    ivps = [p for p in policies if isinstance(p, ImageValidatingPolicy)]
    if ivps:
        from labkit.policy import ivp  # builds the CEL environment: only when an IVP is given
    reviews_cips = bool(cips) or policy_controller
    if phase in ("mutate", "admission"):
        if kyvernos:
            _add(decision, kyverno.mutate(kyvernos, resource, labels, registry, old_resource))
        if ivps and decision.allowed:
            _add(decision, ivp.mutate(ivps, resource, labels, registry))
        if reviews_cips and decision.allowed:
            _add(decision, pc.mutate(cips, resource, labels, registry))
        if phase == "mutate" or not decision.allowed:
            return decision
        resource = apply_patches(resource, decision.patches)
    if kyvernos:
        _add(decision, kyverno.validate(kyvernos, resource, labels, registry))
    if ivps and decision.allowed:
        _add(decision, ivp.validate(ivps, resource, labels, registry))
    if reviews_cips and decision.allowed:
        _add(decision, pc.validate(cips, resource, labels, registry, no_match_policy, trust_roots))
    return decision


def _add(decision: Decision, result: EngineResult) -> None:
    """One webhook's response, after those before it."""
    decision.patches.extend(result.patches)
    decision.trace.extend(result.trace)
    decision.warnings.extend(result.warnings)
    if result.denial is not None:
        decision.allowed = False
        decision.engine, decision.message, decision.webhook = (
            result.denial.engine, result.denial.message, result.denial.webhook)
