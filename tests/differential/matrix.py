"""The differential matrix: policy sets (groups) and the workloads reviewed under each.

Not a cross product. Each policy set is one engine (Kyverno ClusterPolicy verifyImages, Kyverno
ImageValidatingPolicy, policy-controller ClusterImagePolicy) with one attestor variant, one
action (Enforce/Audit, Deny/Audit, enforce/warn) and one failurePolicy; its workloads are the
image states that variant can tell apart, by tag and by digest, as Pods (and Deployments, which
Kyverno reaches through autogen), in a namespace with or without policy-controller's opt-in
label, created or replaced. A group is applied once and all its workloads are reviewed under it:
the native lab waits for each Kyverno policy to become Ready, so policy churn is what costs.

Ids are built from the dimensions, so they are stable and readable:
``cp-key-a-enforce-fail/pod/signed-a@digest/plain/create``. Object names are short
(``g01-07``), unique over the whole run (both labs keep every admitted workload).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# --- dimensions ----------------------------------------------------------------------------

ENGINES = ("cp", "ivp", "cip")
# Image states (repositories under diff/ in each lab's registry; see setup.py).
# bundle-a: signed with key a in cosign v3's bundle format only (an OCI referrer, no .sig);
# dotted: unsigned, named through a ".." segment, beside a second container running it by its name;
# annotated-a: signed with key a and `-a env=workshop` (in the signed payload's `optional`).
IMAGES = ("signed-a", "signed-b", "signed-ab", "unsigned", "signed-p384", "replayed", "sig-elsewhere", "missing",
          "bundle-a", "dotted", "annotated-a")
REFS = ("tag", "digest")
NAMESPACES = {"plain": "diff-plain", "include": "diff-include"}  # include: policy.sigstore.dev/include=true
WORKLOADS = ("Pod", "Deployment")
OPERATIONS = ("CREATE", "UPDATE")
SKIP_LABEL = "labkit.dev/skip"  # Kyverno rules exclude workloads carrying it (forged-annotation case)

# Attestor variants: what each one can tell apart decides the images reviewed under it.
VARIANT_IMAGES: dict[str, tuple[str, ...]] = {
    "key-a": ("signed-a", "signed-b", "unsigned", "signed-p384", "replayed", "sig-elsewhere", "bundle-a", "dotted"),
    "key-a-tlog": ("signed-a", "unsigned", "signed-b"),  # no ignoreTlog/ignoreSCT: the transparency log is asked for
    "keys-ab-count1": ("signed-a", "signed-b", "signed-ab", "unsigned"),
    "keys-ab-all": ("signed-a", "signed-b", "signed-ab", "unsigned"),
    "pem-ab": ("signed-a", "signed-b", "signed-ab", "unsigned"),  # two PEM blocks in one publicKeys
    "keys-ab": ("signed-a", "signed-b", "signed-ab", "unsigned"),  # CIP: two authorities, any passes
    "key-c-sha384": ("signed-p384", "signed-a", "unsigned"),
    "key-c-default": ("signed-p384", "unsigned"),  # P-384 key, default (sha256) algorithm
    "key-a-repo": ("sig-elsewhere", "signed-a", "unsigned"),  # signatures in diff/sigstore
    "key-a-annotated": ("annotated-a", "signed-a", "unsigned"),  # the attestor requires env: workshop
}


@dataclass(frozen=True)
class PolicySet:
    """One group: the policy applied once, the workloads reviewed under it."""

    id: str
    index: int
    engine: str  # cp | ivp | cip
    variant: str  # a VARIANT_IMAGES key
    action: str  # Enforce | Audit (cp), Deny | Audit (ivp), enforce | warn (cip)
    failure_policy: str  # Fail | Ignore (Kyverno); policy-controller's webhook is always Fail

    @property
    def audit(self) -> bool:
        return self.action == "Audit"

    @property
    def blocking(self) -> bool:
        return self.action in ("Enforce", "Deny", "enforce")


@dataclass(frozen=True)
class Workload:
    """One object as sent: its image state and reference form, and what else it carries."""

    kind: str
    image: str
    ref: str
    replicas: int = 1
    labels: tuple[tuple[str, str], ...] = ()
    forged: bool = False  # carries a kyverno.io/verify-images-scoped annotation saying "pass"


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    name: str
    namespace: str  # plain | include
    operation: str  # CREATE | UPDATE
    workload: Workload
    before: Workload | None = None  # UPDATE: what was created first under the same name
    tags: tuple[str, ...] = field(default=(), compare=False)

    @property
    def kind(self) -> str:
        return self.workload.kind


# --- generation ----------------------------------------------------------------------------


def _groups() -> list[tuple[str, str, str, str]]:
    """(engine, variant, action, failurePolicy) for each policy set, in run order."""
    groups = [
        ("cp", "key-a", "Enforce", "Fail"), ("cp", "key-a", "Audit", "Fail"), ("cp", "key-a", "Enforce", "Ignore"),
        ("cp", "key-a-tlog", "Enforce", "Fail"), ("cp", "keys-ab-count1", "Enforce", "Fail"),
        ("cp", "keys-ab-all", "Enforce", "Fail"), ("cp", "pem-ab", "Enforce", "Fail"),
        ("cp", "key-c-sha384", "Enforce", "Fail"), ("cp", "key-c-default", "Enforce", "Fail"),
        ("cp", "key-a-repo", "Enforce", "Fail"), ("cp", "key-a-annotated", "Enforce", "Fail"),
        ("ivp", "key-a", "Deny", "Fail"), ("ivp", "key-a", "Audit", "Fail"), ("ivp", "key-a", "Deny", "Ignore"),
        ("ivp", "key-a-tlog", "Deny", "Fail"), ("ivp", "keys-ab-count1", "Deny", "Fail"),
        ("ivp", "keys-ab-all", "Deny", "Fail"), ("ivp", "key-c-sha384", "Deny", "Fail"),
        ("ivp", "key-a-repo", "Deny", "Fail"), ("ivp", "key-a-annotated", "Deny", "Fail"),
        ("cip", "key-a", "enforce", "Fail"), ("cip", "key-a", "warn", "Fail"), ("cip", "keys-ab", "enforce", "Fail"),
        ("cip", "key-c-sha384", "enforce", "Fail"), ("cip", "key-c-default", "enforce", "Fail"),
        ("cip", "key-a-repo", "enforce", "Fail"),
    ]
    return groups


def policy_sets() -> list[PolicySet]:
    out = []
    for i, (engine, variant, action, failure) in enumerate(_groups(), start=1):
        gid = f"{engine}-{variant}-{action.lower()}-{failure.lower()}"
        out.append(PolicySet(gid, i, engine, variant, action, failure))
    return out


def _ref_text(w: Workload) -> str:
    return f"{w.image}@digest" if w.ref == "digest" else f"{w.image}:tag"


class _Builder:
    def __init__(self, group: PolicySet) -> None:
        self.group, self.cases, self.seen = group, [], set()

    def add(self, workload: Workload, namespace: str, *, before: Workload | None = None, what: str = "",
            tags: tuple[str, ...] = ()) -> None:
        op = "UPDATE" if before is not None else "CREATE"
        suffix = what or op.lower()
        cid = f"{self.group.id}/{workload.kind.lower()}/{_ref_text(workload)}/{namespace}/{suffix}"
        assert cid not in self.seen, cid
        self.seen.add(cid)
        name = f"g{self.group.index:02d}-{len(self.cases) + 1:02d}"
        self.cases.append(Case(cid, self.group.id, name, namespace, op, workload, before, tags))


def _group_cases(g: PolicySet) -> list[Case]:
    b = _Builder(g)
    # Where the engine reviews: policy-controller only in opted-in namespaces.
    home = "include" if g.engine == "cip" else "plain"
    full = g.variant == "key-a" and g.failure_policy == "Fail"
    images = VARIANT_IMAGES[g.variant]
    for image in images:
        for ref in REFS:
            b.add(Workload("Pod", image, ref), home)
    if g.failure_policy == "Ignore" or full:
        # A repository that does not exist: the registry error meets failurePolicy.
        for ref in REFS:
            b.add(Workload("Pod", "missing", ref), home)
    if full:
        for image in ("signed-a", "unsigned"):
            b.add(Workload("Deployment", image, "tag", replicas=2), home)
        b.add(Workload("Deployment", "signed-a", "digest", replicas=2), home)
        if g.engine == "cip":
            # Outside the opt-in policy-controller is never asked.
            for image in ("signed-a", "unsigned"):
                b.add(Workload("Pod", image, "tag"), "plain")
        else:
            # Opted in, and no ClusterImagePolicy at all: policy-controller's no-match policy.
            b.add(Workload("Pod", "signed-a", "digest"), "include")
        _updates(b, g, home)
    return b.cases


def _updates(b: _Builder, g: PolicySet, home: str) -> None:
    """kubectl replace cases: the object is created first (its result is compared too)."""
    signed_tag, unsigned_tag = Workload("Pod", "signed-a", "tag"), Workload("Pod", "unsigned", "tag")
    signed_digest = Workload("Pod", "signed-a", "digest")
    if g.audit:
        b.add(Workload("Pod", "signed-a", "tag"), home, before=unsigned_tag, what="update-from-unsigned")
        return
    b.add(unsigned_tag, home, before=signed_tag, what="update-to-unsigned")
    b.add(Workload("Pod", "signed-a", "digest", labels=(("tier", "web"),)), home, before=signed_digest,
          what="update-labels")
    # A scale-down that also swaps the image for an unsigned one (policy-controller: IsScalingDown).
    b.add(Workload("Deployment", "unsigned", "tag", replicas=1), home,
          before=Workload("Deployment", "signed-a", "tag", replicas=3), what="update-scale-down-unsigned")
    b.add(Workload("Deployment", "unsigned", "tag", replicas=3), home,
          before=Workload("Deployment", "signed-a", "tag", replicas=2), what="update-scale-up-unsigned")
    if g.engine == "cp":
        # Created while excluded, with a forged "pass" annotation; replaced unchanged but included.
        b.add(Workload("Pod", "unsigned", "digest"), home,
              before=Workload("Pod", "unsigned", "digest", labels=((SKIP_LABEL, "true"),), forged=True),
              what="update-forged-annotation")


def cases() -> list[Case]:
    return [c for g in policy_sets() for c in _group_cases(g)]


def cases_by_group() -> dict[str, list[Case]]:
    out: dict[str, list[Case]] = {}
    for c in cases():
        out.setdefault(c.group, []).append(c)
    return out


ID_PATTERN = re.compile(r"[a-z0-9-]+/(pod|deployment)/[a-z0-9-]+(@digest|:tag)/(plain|include)/[a-z-]+")


def dimensions(all_cases: list[Case]) -> Iterator[tuple[str, set[str]]]:
    """Each dimension with the values the matrix covers (tests check every value appears)."""
    groups = {g.id: g for g in policy_sets()}
    yield "engine", {groups[c.group].engine for c in all_cases}
    yield "variant", {groups[c.group].variant for c in all_cases}
    yield "action", {groups[c.group].action for c in all_cases}
    yield "failurePolicy", {groups[c.group].failure_policy for c in all_cases}
    yield "image", {c.workload.image for c in all_cases}
    yield "ref", {c.workload.ref for c in all_cases}
    yield "namespace", {c.namespace for c in all_cases}
    yield "workload", {c.kind for c in all_cases}
    yield "operation", {c.operation for c in all_cases}
