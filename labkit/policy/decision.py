"""Admit or deny one Kubernetes object under Kyverno verifyImages rules and ClusterImagePolicies.

Each engine is modelled on its admission path, and the message is the one ``kubectl`` shows:

* Kyverno: the mutating webhook verifies each matched image (``pkg/engine/internal/
  imageverifier.go``), patches tags to digests, records ``kyverno.io/verify-images``; the
  validating part checks ``verifyDigest``/``required``; a failed Enforce rule blocks with the
  YAML message of ``pkg/webhooks/utils/block.go``.
* policy-controller: only namespaces labelled ``policy.sigstore.dev/include=true``; every image
  must be a digest; every matching CIP must pass, each by any one authority; no match falls to
  the no-match policy (``pkg/webhook/validator.go``); knative ``FieldError`` text.

Signature checks are injected (``verifier``) so tests can run without a registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from labkit.errors import LabkitError, RegistryUnreachableError
from labkit.policy.images import ContainerImage, Engine, extract_images
from labkit.policy.load import knative_error_text, kyverno_failure_action
from labkit.oci.reference import Reference
from labkit.policy.match import glob_match, kyverno_normalize, wildcard_match
from labkit.policy.models import (
    Attestor,
    ClusterImagePolicy,
    ImageValidatingPolicy,
    ImageVerification,
    KyvernoPolicy,
    MatchResources,
    Policy,
    ResourceDescription,
)

PC_INCLUDE_LABEL = "policy.sigstore.dev/include"
VERIFY_IMAGES_ANNOTATION = "kyverno.io/verify-images"
_AUTOGEN_KINDS = {"DaemonSet", "Deployment", "Job", "StatefulSet", "ReplicaSet",
                  "ReplicationController"}


class Verified(Protocol):
    digest: str


class Verifier(Protocol):
    """``labkit.signing.verify.verify_image`` with its registry client bound: returns the
    verified result or raises NoSignaturesError / NoMatchingSignaturesError / RegistryError."""

    def __call__(
        self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None
    ) -> Verified: ...


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


@dataclass
class Decision:
    allowed: bool
    message: str = ""
    engine: Engine | None = None  # the engine that denied, when one did
    warnings: list[str] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    trace: list[ImageTrace] = field(default_factory=list)


def evaluate(
    policies: Sequence[Policy],
    resource: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str] | None = None,
    verifier: Verifier,
    no_match_policy: str = "deny",
) -> Decision:
    """Decide admission of ``resource`` (a CREATE) as the clusters' webhooks would.

    ``no_match_policy`` is policy-controller's ``config-policy-controller`` setting
    (``allow``/``warn``/``deny``; anything else denies, as upstream fails closed).
    """
    labels = dict(namespace_labels or {})
    decision = Decision(allowed=True)
    kyverno = [p for p in policies if isinstance(p, KyvernoPolicy)]
    cips = [p for p in policies if isinstance(p, ClusterImagePolicy)]
    if kyverno:
        _KyvernoRun(kyverno, resource, labels, verifier, decision).run()
    ivps = [p for p in policies if isinstance(p, ImageValidatingPolicy)]
    if ivps and decision.allowed:
        from labkit.policy import ivp  # builds the CEL environment: only when an IVP is given

        ivp.mutate(ivps, resource, labels, None, decision)  # no resolver here: tags stay unpinned
        if decision.allowed:
            ivp.validate_admission(ivps, resource, labels, verifier, decision)
    if cips and decision.allowed:
        _PolicyControllerRun(cips, resource, labels, verifier, no_match_policy, decision).run()
    return decision


def _keys_from_pem(text: str) -> list[Any]:
    """Each PEM block becomes its own key (Kyverno splits ``publicKeys`` the same way)."""
    blocks, current = [], []
    for line in text.strip().splitlines():
        current.append(line.strip())
        if line.strip().startswith("-----END"):
            blocks.append("\n".join(current) + "\n")
            current = []
    return [load_pem_public_key(b.encode()) for b in blocks]


def _verification_message(exc: LabkitError) -> str:
    return exc.message  # cosign's wording: "no signatures found", "no matching signatures: …"


# --- Kyverno ---------------------------------------------------------------------------------


def _labels_match(selector: Any, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector: matchLabels and matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if selector is None:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        k, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = k in labels
        ok = {
            "In": present and labels.get(k) in values,
            "NotIn": not present or labels.get(k) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(op, False)
        if not ok:
            return False
    return True


def _kind_matches(kinds: Sequence[str], kind: str) -> bool:
    # Kinds may be written Kind, version/Kind or group/version/Kind; '*' matches any.
    return any(k == "*" or k.rsplit("/", 1)[-1] == kind for k in kinds)


def _description_matches(
    desc: ResourceDescription, resource: Mapping[str, Any], kinds_for: str, ns_labels: Mapping[str, str]
) -> bool:
    meta = resource.get("metadata") or {}
    if desc.kinds and not _kind_matches(desc.kinds, kinds_for):
        return False
    names = desc.names + ([desc.name] if desc.name else [])
    if names and not any(wildcard_match(n, str(meta.get("name", ""))) for n in names):
        return False
    namespace = str(meta.get("namespace", ""))
    if desc.namespaces and not any(wildcard_match(n, namespace) for n in desc.namespaces):
        return False
    if desc.annotations and not all(
        wildcard_match(v, (meta.get("annotations") or {}).get(k, "")) for k, v in desc.annotations.items()
    ):
        return False
    if desc.selector is not None and not _labels_match(desc.selector, meta.get("labels") or {}):
        return False
    if desc.namespace_selector is not None and not _labels_match(desc.namespace_selector, ns_labels):
        return False
    if desc.operations and "CREATE" not in desc.operations:
        return False
    return True


def _match_resources(
    m: MatchResources, resource: Mapping[str, Any], kind: str, ns_labels: Mapping[str, str]
) -> bool:
    if m.any:
        return any(_description_matches(f.resources, resource, kind, ns_labels) for f in m.any)
    if m.all:
        return all(_description_matches(f.resources, resource, kind, ns_labels) for f in m.all)
    if m.resources is not None:
        return _description_matches(m.resources, resource, kind, ns_labels)
    return False


def _match_kinds(m: MatchResources) -> list[str]:
    filters = [f.resources for f in (m.any or m.all)] or ([m.resources] if m.resources else [])
    return [k for d in filters for k in d.kinds]


def _autogen(policy: KyvernoPolicy, rule_match: MatchResources, kind: str) -> tuple[str, str] | None:
    """For a Pod-only rule, Kyverno generates ``autogen-`` rules for pod controllers
    (``pkg/autogen/v1``): return (rule-name prefix, kind to match as) or None."""
    setting = policy.metadata.annotations.get("pod-policies.kyverno.io/autogen-controllers", "all")
    kinds = {k.rsplit("/", 1)[-1] for k in _match_kinds(rule_match)}
    if kinds != {"Pod"} or setting == "none":
        return None
    allowed = _AUTOGEN_KINDS | {"CronJob"} if setting == "all" else set(setting.split(","))
    if kind not in allowed:
        return None
    return ("autogen-cronjob-" if kind == "CronJob" else "autogen-"), "Pod"


class _KyvernoRun:
    def __init__(
        self,
        policies: Sequence[KyvernoPolicy],
        resource: Mapping[str, Any],
        ns_labels: Mapping[str, str],
        verifier: Verifier,
        decision: Decision,
    ) -> None:
        self.policies, self.resource, self.ns_labels = policies, resource, ns_labels
        self.verifier, self.decision = verifier, decision
        self.kind = str(resource.get("kind", ""))
        self.images = extract_images(resource, Engine.KYVERNO) or []
        self.annotation: dict[str, str] = {}
        self.image_patches: list[dict[str, Any]] = []
        # policy → rule → message, for rules that block
        self.blocked: dict[str, dict[str, str]] = {}

    def run(self) -> None:
        namespace = str((self.resource.get("metadata") or {}).get("namespace") or "default")
        for policy in self.policies:
            # a namespaced Policy governs its own namespace only
            if policy.kind == "Policy" and (policy.metadata.namespace or "default") != namespace:
                continue
            for rule in policy.spec.rules:
                if not rule.verify_images:
                    continue
                name, match_kind = rule.name, self.kind
                if not _match_resources(rule.match, self.resource, self.kind, self.ns_labels):
                    auto = _autogen(policy, rule.match, self.kind)
                    if auto is None or not self.images:
                        continue
                    name, match_kind = auto[0] + rule.name, auto[1]
                    # autogen rules match the controller kind with the Pod rule's other criteria
                    if not _match_resources(rule.match, self.resource, match_kind, self.ns_labels):
                        continue
                if rule.exclude is not None and _match_resources(
                    rule.exclude, self.resource, match_kind, self.ns_labels
                ):
                    continue
                self._rule(policy, name, rule.verify_images)
        self._finish()

    def _rule(self, policy: KyvernoPolicy, rule: str, entries: Sequence[ImageVerification]) -> None:
        enforce = kyverno_failure_action(policy) == "Enforce"
        webhook = policy.spec.webhook_configuration or {}
        fail_closed = (webhook.get("failurePolicy") or policy.spec.failure_policy or "Fail") == "Fail"
        for iv in entries:
            for container in self.images:
                trace = self._image(policy, rule, iv, container)
                if trace is None:
                    continue
                self.decision.trace.append(trace)
                blocks = (trace.status == "fail" and enforce) or (trace.status == "error" and fail_closed)
                if blocks:
                    self.blocked.setdefault(policy.name, {})[rule] = trace.message

    def _image(
        self, policy: KyvernoPolicy, rule: str, iv: ImageVerification, container: ContainerImage
    ) -> ImageTrace | None:
        try:
            image = kyverno_normalize(container.image)
        except LabkitError as exc:
            return ImageTrace(Engine.KYVERNO, policy.name, rule, container.image,
                              container.pointer, "error", exc.message)
        name, _, spec_digest = image.partition("@")
        patterns = iv.image_references or ([iv.image] if iv.image else [])
        if not any(wildcard_match(p, image) for p in patterns):
            return None
        trace = ImageTrace(Engine.KYVERNO, policy.name, rule, image, container.pointer, "pass")
        if any(wildcard_match(p, image) for p in iv.skip_image_references):
            trace.status = "skip"
            self.annotation[image] = "skip"
            return trace
        digest = spec_digest
        try:
            for s, aset in enumerate(iv.attestors):
                digest = self._attestor_set(aset.entries, aset.count, f".attestors[{s}]", image, trace) or digest
        except _RuleFailed as failed:
            trace.status, trace.message = failed.status, failed.message
            self.annotation[image] = "fail"
            return trace
        if iv.attestations:
            trace.status, trace.message = "error", "labkit does not evaluate attestations yet"
            return trace
        if iv.mutate_digest and digest and not spec_digest:
            # the tag stays in the patched image: docker.io/nginx:1.2@sha256:…
            self.image_patches.append(
                {"op": "replace", "path": container.pointer, "value": f"{image}@{digest}"}
            )
        trace.digest = digest
        # the annotation is keyed by the tag-less digest form once a digest is known
        repository = name if spec_digest else name.rpartition(":")[0]
        key = f"{repository}@{digest}" if digest else image
        if iv.attestors:
            self.annotation[key] = "pass"
        # Validating webhook (validate_image.go). Its ``required`` check ("unverified image")
        # only repeats a failure already recorded above: under Enforce the mutating webhook
        # has blocked first, under Audit neither blocks.
        if iv.verify_digest and not digest:
            trace.status, trace.message = "fail", f"missing digest for {image}"
        return trace

    def _attestor_set(
        self, entries: Sequence[Attestor], count: int | None, path: str, image: str, trace: ImageTrace
    ) -> str:
        expanded: list[tuple[str, Attestor, list[Any]]] = []
        for e, entry in enumerate(entries):
            if entry.keys is not None and entry.keys.public_keys:
                epath = f"{path}.entries[{e}].keys"
                try:
                    keys = _keys_from_pem(entry.keys.public_keys)
                except ValueError as exc:
                    raise _RuleFailed("fail", f"failed to verify image {image}: {epath}: "
                                              f"failed to load public key from PEM: {exc}") from exc
                expanded.extend((epath, entry, [k]) for k in keys)
            else:
                expanded.append((f"{path}.entries[{e}]", entry, []))
        required = count or len(expanded)
        verified, errors, digest = 0, [], ""
        for epath, entry, keys in expanded:
            if not keys:
                msg = f"{epath}: labkit evaluates only keys.publicKeys attestors so far"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            try:
                result = self.verifier(image, keys, annotations=entry.annotations or None)
            except RegistryUnreachableError as exc:
                raise _RuleFailed("error", f"failed to verify image {image}: {epath}: {exc.message}")
            except LabkitError as exc:
                msg = f"{epath}: {_verification_message(exc)}"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            trace.attestors.append(f"{epath}: verified")
            verified, digest = verified + 1, result.digest
            if verified >= required:
                return digest
        raise _RuleFailed("fail", f"failed to verify image {image}: " + "; ".join(errors))

    def _finish(self) -> None:
        d = self.decision
        if self.blocked:
            meta = self.resource.get("metadata") or {}
            d.allowed, d.engine = False, Engine.KYVERNO
            body = yaml.safe_dump(self.blocked, indent=2, sort_keys=True, allow_unicode=True,
                                  width=float("inf"), default_flow_style=False)
            d.message = (f"\n\nresource {self.kind}/{meta.get('namespace', '')}/{meta.get('name', '')} "
                         f"was blocked due to the following policies \n\n{body}")
            return
        if self.annotation:
            annotations = (self.resource.get("metadata") or {}).get("annotations")
            if not annotations:
                d.patches.append({"op": "add", "path": "/metadata/annotations", "value": {}})
            d.patches.append({
                "op": "add",
                "path": "/metadata/annotations/" + VERIFY_IMAGES_ANNOTATION.replace("/", "~1"),
                "value": json.dumps(self.annotation, separators=(",", ":"), sort_keys=True),
            })
        d.patches.extend(self.image_patches)


class _RuleFailed(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


# --- policy-controller -----------------------------------------------------------------------


class _PolicyControllerRun:
    def __init__(
        self,
        cips: Sequence[ClusterImagePolicy],
        resource: Mapping[str, Any],
        ns_labels: Mapping[str, str],
        verifier: Verifier,
        no_match_policy: str,
        decision: Decision,
    ) -> None:
        self.cips, self.resource, self.ns_labels = cips, resource, ns_labels
        self.verifier, self.no_match, self.decision = verifier, no_match_policy, decision
        self.errors: list[tuple[str, str, str]] = []
        self.warnings: list[tuple[str, str, str]] = []

    def run(self) -> None:
        if self.ns_labels.get(PC_INCLUDE_LABEL) != "true":
            return  # the webhook's namespaceSelector never sends this request
        images = extract_images(self.resource, Engine.POLICY_CONTROLLER)
        if images is None:
            return
        for container in images:
            self._image(container)
        d = self.decision
        if self.warnings:
            d.warnings.append(knative_error_text(self.warnings))
        if self.errors:
            d.allowed, d.engine = False, Engine.POLICY_CONTROLLER
            d.message = "validation failed: " + knative_error_text(self.errors)

    def _matching(self, name: str) -> list[ClusterImagePolicy]:
        kind = str(self.resource.get("kind", ""))
        group, _, version = str(self.resource.get("apiVersion", "")).rpartition("/")
        plural = kind.lower() + "s"  # meta.UnsafeGuessKindToResource for these kinds
        labels = (self.resource.get("metadata") or {}).get("labels") or {}
        found = []
        for cip in self.cips:
            if cip.spec.match and not any(
                m.resource == plural and m.group == group and m.version in (version, "*")
                and _labels_match(m.selector, labels)
                for m in cip.spec.match
            ):
                continue
            if any(glob_match(p.glob, name) for p in cip.spec.images):
                found.append(cip)
        return found

    def _image(self, c: ContainerImage) -> None:
        try:
            ref = Reference.parse(c.image)
        except LabkitError as exc:
            self.errors.append((exc.message, c.field_path, ""))
            self._trace("", c, "fail", exc.message)
            return
        if ref.digest is None:
            self.errors.append((f"invalid value: {c.image} must be an image digest", c.field_path, ""))
            self._trace("", c, "fail", f"{c.image} must be an image digest")
            return
        name = str(ref)
        policies = self._matching(name)
        if not policies:
            leaf = ("no matching policies", c.field_path, c.image)
            mode = self.no_match if self.no_match in ("allow", "warn") else "deny"
            if mode == "deny":
                self.errors.append(leaf)
            elif mode == "warn":
                self.warnings.append(leaf)
            self._trace("", c, {"allow": "pass", "warn": "warn"}.get(mode, "fail"), "no matching policies")
            return
        for cip in sorted(policies, key=lambda p: p.name):
            passed, messages = self._cip(cip, name)
            trace = self._trace(cip.name, c, "pass" if passed else "fail", "")
            trace.attestors = messages
            if passed:
                continue
            details = " ".join([c.image, *messages])
            leaf = (f"failed policy: {cip.name}", c.field_path, details)
            if cip.spec.mode == "warn":
                trace.status = "warn"
                self.warnings.append(leaf)
            else:
                self.errors.append(leaf)

    def _cip(self, cip: ClusterImagePolicy, name: str) -> tuple[bool, list[str]]:
        """Any one authority passing passes the CIP; otherwise all their errors are reported."""
        messages: list[str] = []
        for authority in cip.spec.authorities:
            if authority.static is not None:
                if authority.static.action == "pass":
                    return True, [f"{authority.name}: static pass"]
                messages.append(f"disallowed by static policy: {authority.static.message}")
            elif authority.attestations:
                messages.append(f"labkit does not evaluate attestations yet (authority {authority.name})")
            elif authority.key is not None and authority.key.data:
                try:
                    self.verifier(name, _keys_from_pem(authority.key.data))
                except LabkitError as exc:
                    messages.append(f"signature key validation failed for authority "
                                    f"{authority.name} for {name}: {_verification_message(exc)}")
                    continue
                return True, [f"{authority.name}: verified"]
            elif authority.key is not None:
                messages.append(f"there are no public keys for authority {authority.name}")
            else:
                messages.append(f"labkit does not evaluate keyless authorities yet (authority {authority.name})")
        return False, messages

    def _trace(self, policy: str, c: ContainerImage, status: str, message: str) -> ImageTrace:
        trace = ImageTrace(Engine.POLICY_CONTROLLER, policy, "", c.image, c.field_path, status, message)
        self.decision.trace.append(trace)
        return trace
