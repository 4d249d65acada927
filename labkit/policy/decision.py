"""Admit or deny one Kubernetes object under Kyverno verifyImages rules and ClusterImagePolicies.

Each engine is modelled on its admission path, phase by phase, and the message is the one
``kubectl`` shows:

* Kyverno, mutating webhook ``mutate.kyverno.svc-fail`` (``pkg/engine/internal/
  imageverifier.go``): verify each matched image, pin tags to digests (``mutateDigest``, with a
  registry lookup when no signature gave the digest), record ``kyverno.io/verify-images`` and,
  as 1.19 does, ``kyverno.io/verify-images-scoped``; a failed Enforce rule blocks.
* Kyverno, validating webhook ``validate.kyverno.svc-fail`` (``pkg/engine/handlers/
  validation/validate_image.go``), on the mutated object: ``verifyDigest`` → ``missing digest
  for …``, ``required`` → ``unverified image …`` unless the scoped annotation says pass/skip.
  Both block with the YAML message of ``pkg/webhooks/utils/block.go``.
* policy-controller, mutating webhook (``resolvePodSpec``): tags become ``name:tag@digest`` with
  the pod's pull secrets; failures leave the image alone.
* policy-controller, validating webhook ``policy.sigstore.dev``: only namespaces labelled
  ``policy.sigstore.dev/include=true``; every image must be a digest; every matching CIP must
  pass, each by any one authority; no match falls to the no-match policy
  (``pkg/webhook/validator.go``); knative ``FieldError`` text.

``phase="admission"`` runs what the API server runs for a CREATE: every mutating webhook, the
patches applied, then every validating webhook on the result. Signature checks and tag
lookups are injected (``verifier``, ``resolver``) so tests can run without a registry;
:class:`labkit.policy.credentials.RegistryAccess` is the real one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import yaml

from labkit.errors import LabkitError, NoSignaturesError, RegistryUnreachableError
from labkit.oci.auth import Credentials
from labkit.oci.reference import Reference
from labkit.policy.credentials import (
    RegistryAccess,
    SecretStore,
    image_pull_secrets,
    kyverno_keychain,
    policy_controller_keychain,
)
from labkit.policy.load import knative_error_text, kyverno_failure_action
from labkit.policy.match import glob_match, kyverno_normalize, wildcard_match
from labkit.policy.podspec import ContainerImage, Engine, extract_images, pod_spec, resource_name
from labkit.policy.schema import (
    Attestor,
    Authority,
    ClusterImagePolicy,
    ImageValidatingPolicy,
    ImageVerification,
    KyvernoPolicy,
    MatchResources,
    Policy,
    ResourceDescription,
)
from labkit.policy.selectors import labels_match
from labkit.policy.tlog import cip_key_error, kyverno_key_options, rekor_unreachable
from labkit.policy.trace import ImageTrace
from labkit.policy.verification import UnsupportedAlgorithm, call_verifier, keys_from_pem

PC_INCLUDE_LABEL = "policy.sigstore.dev/include"
VERIFY_IMAGES_ANNOTATION = "kyverno.io/verify-images"
VERIFY_IMAGES_SCOPED_ANNOTATION = "kyverno.io/verify-images-scoped"
KYVERNO_MUTATE_WEBHOOK = "mutate.kyverno.svc-fail"
KYVERNO_VALIDATE_WEBHOOK = "validate.kyverno.svc-fail"
PC_WEBHOOK = "policy.sigstore.dev"
_AUTOGEN_KINDS = {"DaemonSet", "Deployment", "Job", "StatefulSet", "ReplicaSet",
                  "ReplicationController"}

Phase = Literal["mutate", "validate", "admission"]


class Verified(Protocol):
    digest: str


class Verifier(Protocol):
    """``labkit.signing.verify.verify_image`` with its registry client bound: returns the
    verified result or raises NoSignaturesError / NoMatchingSignaturesError / RegistryError.
    ``repository`` holds the signatures (cosign's COSIGN_REPOSITORY); ``credentials`` are the
    ones the engine's pull secrets give for the image's registry. ``digest_algorithm`` (the
    policy's signature hash) is passed only when it is not sha256, so a verifier that always
    checks SHA-256 need not accept it."""

    def __call__(
        self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
        repository: str | None = None, credentials: Credentials | None = None,
    ) -> Verified: ...


class Resolver(Protocol):
    """The digest a tag points at in the registry (raises LabkitError when it cannot say)."""

    def __call__(self, ref: str, *, credentials: Credentials | None = None) -> str: ...


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
    policies: Sequence[Policy],
    resource: Mapping[str, Any],
    *,
    namespace_labels: Mapping[str, str] | None = None,
    no_match_policy: str = "deny",
    allow_insecure_registry: bool = False,
) -> Decision:
    """``evaluate`` with signatures and tags read from the real registries the images name."""
    from labkit.oci.client import RegistryClient  # the registry client loads httpx: only when used

    with RegistryClient(allow_insecure=allow_insecure_registry) as client:
        access = RegistryAccess(client)
        try:
            return evaluate(policies, resource, namespace_labels=namespace_labels, verifier=access,
                            resolver=access.resolve, no_match_policy=no_match_policy)
        finally:
            access.close()


def evaluate(
    policies: Sequence[Policy],
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
    kyverno = [p for p in policies if isinstance(p, KyvernoPolicy)]
    cips = [p for p in policies if isinstance(p, ClusterImagePolicy)]
    registry = _Registry(verifier, resolver, secrets)
    ivps = [p for p in policies if isinstance(p, ImageValidatingPolicy)]
    if ivps:
        from labkit.policy import ivp  # builds the CEL environment: only when an IVP is given
    if phase in ("mutate", "admission"):
        if kyverno:
            _KyvernoRun(kyverno, resource, labels, registry, decision, old_resource).mutate()
        if ivps and decision.allowed:
            ivp.mutate(ivps, resource, labels, resolver, decision, secrets)
        if (cips or policy_controller) and decision.allowed:
            decision.patches.extend(_PolicyControllerRun(
                cips, resource, labels, registry, no_match_policy, decision).mutate())
        if phase == "mutate" or not decision.allowed:
            return decision
        resource = apply_patches(resource, decision.patches)
    if kyverno:
        _KyvernoRun(kyverno, resource, labels, registry, decision).validate()
    if ivps and decision.allowed:
        ivp.validate_admission(ivps, resource, labels, verifier, decision, secrets)
    if (cips or policy_controller) and decision.allowed:
        _PolicyControllerRun(cips, resource, labels, registry, no_match_policy, decision).validate()
    return decision


@dataclass
class _Registry:
    verifier: Verifier
    resolver: Resolver | None
    secrets: SecretStore | None


def apply_patches(resource: Mapping[str, Any], patches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace`` on a copy: the only operations the webhooks emit."""
    out = copy.deepcopy(dict(resource))
    for patch in patches:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in patch["path"].split("/")[1:]]
        target: Any = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = copy.deepcopy(patch["value"])
        else:
            target[last] = copy.deepcopy(patch["value"])
    return out


def _verification_message(exc: LabkitError) -> str:
    return exc.message  # cosign's wording: "no signatures found", "no matching signatures: …"


# --- Kyverno ---------------------------------------------------------------------------------


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
    if desc.selector is not None and not labels_match(desc.selector, meta.get("labels") or {}):
        return False
    if desc.namespace_selector is not None and not labels_match(desc.namespace_selector, ns_labels):
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


def _can_autogen(policy: KyvernoPolicy) -> bool:
    """``CanAutoGen`` (pkg/autogen/v1/autogen.go:67 at v1.19.1), over every rule of the policy:
    no generate rule, no mutate patchesJson6902, and no match or exclude description with a
    name, names, selector or annotations, or with Pod among other kinds (``checkAutogenSupport``,
    :30); and some description names Pod or a pod controller. Otherwise no rule of the policy
    gets autogen rules, whatever the autogen-controllers annotation says (``computeRules``, :213)."""
    needed = False
    for rule in policy.spec.rules:
        if rule.generate is not None:
            return False
        mutate = rule.mutate if isinstance(rule.mutate, Mapping) else {}
        if mutate.get("patchesJson6902") or any(
                isinstance(f, Mapping) and f.get("patchesJson6902") for f in mutate.get("foreach") or []):
            return False
        for block in (rule.match, rule.exclude):
            if block is None:
                continue
            descriptions = [d for d in [block.resources, *(f.resources for f in block.any),
                                        *(f.resources for f in block.all)] if d is not None]
            for d in descriptions:
                kinds = [k.rsplit("/", 1)[-1] for k in d.kinds]
                if d.name or d.names or d.selector is not None or d.annotations or (
                        len(kinds) > 1 and "Pod" in kinds):
                    return False
                needed = needed or any(k in _AUTOGEN_KINDS | {"CronJob", "Pod"} for k in d.kinds)
    return needed


def _autogen(policy: KyvernoPolicy, rule_match: MatchResources, kind: str,
             rule_exclude: MatchResources | None = None) -> tuple[str, str] | None:
    """For a Pod-only rule, Kyverno generates ``autogen-`` rules for pod controllers
    (``pkg/autogen/v1``): return (rule-name prefix, kind to match as) or None."""
    setting = policy.metadata.annotations.get("pod-policies.kyverno.io/autogen-controllers", "all")
    kinds = {k.rsplit("/", 1)[-1] for k in _match_kinds(rule_match)}
    if kinds != {"Pod"} or setting == "none" or not _can_autogen(policy):
        return None
    # generateRuleForControllers (pkg/autogen/v1/rule.go:286): an exclude naming kinds must name Pod
    excluded = {k.rsplit("/", 1)[-1] for k in _match_kinds(rule_exclude)} if rule_exclude else set()
    if excluded and "Pod" not in excluded:
        return None
    allowed = _AUTOGEN_KINDS | {"CronJob"} if setting == "all" else set(setting.split(","))
    if kind not in allowed:
        return None
    return ("autogen-cronjob-" if kind == "CronJob" else "autogen-"), "Pod"


class _KyvernoRun:
    """One pass of Kyverno's webhooks over one object: :meth:`mutate` or :meth:`validate`."""

    def __init__(
        self,
        policies: Sequence[KyvernoPolicy],
        resource: Mapping[str, Any],
        ns_labels: Mapping[str, str],
        registry: _Registry,
        decision: Decision,
        old_resource: Mapping[str, Any] | None = None,
    ) -> None:
        self.policies, self.resource, self.ns_labels = policies, resource, ns_labels
        self.registry, self.decision, self.old = registry, decision, old_resource
        self.kind = str(resource.get("kind", ""))
        self.namespace = str((resource.get("metadata") or {}).get("namespace") or "")
        self.images = extract_images(resource, Engine.KYVERNO) or []
        self.pull_secrets = image_pull_secrets(pod_spec(resource, Engine.KYVERNO))
        # ImageVerificationMetadata: image → status, and policy → rule → image → status (1.19)
        self.annotation: dict[str, str] = {}
        self.scoped: dict[str, dict[str, dict[str, str]]] = {}
        self.image_patches: list[dict[str, Any]] = []
        # policy → rule → message of every rule that failed or erred: once one of them blocks,
        # GetBlockedMessages (pkg/webhooks/utils/block.go:38) lists them all, Audit ones too
        self.blocked: dict[str, dict[str, str]] = {}
        self.blocking = False
        # the rule responses GetWarningMessages (pkg/webhooks/utils/warning.go:9) turns into
        # "policy <name>.<rule>: <message>" when nothing blocks: every fail, error and warn
        # (NewRuleResponse, pkg/engine/api/ruleresponse.go:71) and a skipImageReferences skip
        # (WithEmitWarning, pkg/engine/internal/imageverifier.go:179)
        self.warned: list[str] = []

    def _rules(self) -> Any:
        """(policy, rule name as reported, verifyImages entries) for each rule that applies."""
        namespace = self.namespace or "default"
        for policy in self.policies:
            # a namespaced Policy governs its own namespace only
            if policy.kind == "Policy" and (policy.metadata.namespace or "default") != namespace:
                continue
            for rule in policy.spec.rules:
                if not rule.verify_images:
                    continue
                name, match_kind = rule.name, self.kind
                if not _match_resources(rule.match, self.resource, self.kind, self.ns_labels):
                    auto = _autogen(policy, rule.match, self.kind, rule.exclude)
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
                yield policy, name, rule.verify_images

    def _blocks(self, policy: KyvernoPolicy, trace: ImageTrace) -> bool:
        if trace.status == "fail":
            return kyverno_failure_action(policy) == "Enforce"
        webhook = policy.spec.webhook_configuration or {}
        fail_closed = (webhook.get("failurePolicy") or policy.spec.failure_policy or "Fail") == "Fail"
        return trace.status == "error" and fail_closed

    def _record(self, policy: KyvernoPolicy, rule: str, trace: ImageTrace, *, first: bool = False) -> None:
        """Note ``trace``'s rule response for the block message and the warnings. ``first``: the
        rule has one response, its first failing image's (validate_image.go:97); otherwise one
        per image, the last one's message kept (block.go's map)."""
        if trace.status in ("fail", "error", "warn"):
            rules = self.blocked.setdefault(policy.name, {})
            if first and rule in rules:
                return
            rules[rule] = trace.message
            self.blocking = self.blocking or self._blocks(policy, trace)
            self.warned.append(f"policy {policy.name}.{rule}: {trace.message}")
        elif trace.status == "skip" and trace.phase == "mutate":
            self.warned.append(f"policy {policy.name}.{rule}: {trace.message}")

    def _warn(self) -> None:
        self.decision.warnings.extend(self.warned)

    # --- mutating webhook ----------------------------------------------------------------

    def mutate(self) -> None:
        for policy, rule, entries in self._rules():
            for iv in entries:
                for container in self.images:
                    trace = self._verify(policy, rule, iv, container)
                    if trace is None:
                        continue
                    self.decision.trace.append(trace)
                    self._record(policy, rule, trace)
        if self._deny(KYVERNO_MUTATE_WEBHOOK):
            return
        self._warn()
        if self.annotation:
            annotations = (self.resource.get("metadata") or {}).get("annotations")
            if not annotations:
                self.decision.patches.append({"op": "add", "path": "/metadata/annotations", "value": {}})
            self.decision.patches.append({
                "op": "add", "path": _annotation_path(VERIFY_IMAGES_ANNOTATION),
                "value": json.dumps(self.annotation, separators=(",", ":"), sort_keys=True),
            })
            if self.scoped:
                # Go marshals the struct fields in order, the maps with sorted keys
                policies = json.dumps(self.scoped, separators=(",", ":"), sort_keys=True)
                self.decision.patches.append({
                    "op": "add", "path": _annotation_path(VERIFY_IMAGES_SCOPED_ANNOTATION),
                    "value": f'{{"version":1,"policies":{policies}}}',
                })
        self.decision.patches.extend(self.image_patches)

    def _verify(
        self, policy: KyvernoPolicy, rule: str, iv: ImageVerification, container: ContainerImage
    ) -> ImageTrace | None:
        try:
            image = kyverno_normalize(container.image)
        except LabkitError as exc:
            return ImageTrace(Engine.KYVERNO, policy.name, rule, container.image,
                              container.pointer, "error", exc.message, phase="mutate")
        patterns = iv.image_references or ([iv.image] if iv.image else [])
        if not any(wildcard_match(p, image) for p in patterns):
            return None
        if self._previously_verified(policy, rule, image, container):
            # imageVerifier.Verify (pkg/engine/internal/imageverifier.go:74-79): no check, no rule
            # response, no digest patch; the metadata says pass
            if iv.attestors or iv.attestations:
                self.annotation[image] = "pass"
                self.scoped.setdefault(f"{policy.metadata.namespace}/{policy.name}", {}).setdefault(
                    rule, {})[image] = "pass"
            return None
        name, _, spec_digest = image.partition("@")
        trace = ImageTrace(Engine.KYVERNO, policy.name, rule, image, container.pointer, "pass",
                           phase="mutate")
        keychain = kyverno_keychain(
            self.registry.secrets,
            iv.image_registry_credentials.secrets if iv.image_registry_credentials else [],
            resource_namespace=self.namespace, image_pull_secrets=self.pull_secrets)
        if keychain.secrets or keychain.missing:
            trace.attestors.append(keychain.describe())
        credentials = keychain.credentials(image)
        verifies = bool(iv.attestors or iv.attestations)
        digest = spec_digest
        if verifies and any(wildcard_match(p, image) for p in iv.skip_image_references):
            trace.status = "skip"
            trace.message = (f"skipping image reference image {image}, policy {policy.name} "
                             f"ruleName {rule}")  # imageverifier.go:179
            self.annotation[image] = "skip"
        elif verifies:
            try:
                for s, aset in enumerate(iv.attestors):
                    digest = self._attestor_set(aset.entries, aset.count, f".attestors[{s}]", image,
                                                iv, credentials, trace) or digest
                if iv.attestations:
                    raise _RuleFailed("error", "labkit does not evaluate attestations yet")
            except _RuleFailed as failed:
                trace.status, trace.message = failed.status, failed.message
        if iv.mutate_digest and not spec_digest and trace.status in ("pass", "skip"):
            if not digest:
                digest = self._lookup(image, credentials, trace)
            if digest:
                # the tag stays in the patched image: docker.io/nginx:1.2@sha256:…
                self.image_patches.append(
                    {"op": "replace", "path": container.pointer, "value": f"{image}@{digest}"})
                # once a digest is known the image's string form drops the tag
                image = f"{name.rpartition(':')[0] if ':' in name.rpartition('/')[2] else name}@{digest}"
                if trace.status == "pass" and not trace.message:
                    trace.message = "mutated image digest" if not verifies else ""
        trace.digest = digest
        if verifies:
            # ruleStatusToImageVerificationStatus: an error is recorded as a failure
            status = trace.status if trace.status in ("pass", "skip") else "fail"
            self.annotation[image] = status
            key = f"{policy.metadata.namespace}/{policy.name}"
            self.scoped.setdefault(key, {}).setdefault(rule, {})[image] = status
        return trace

    def _previously_verified(self, policy: KyvernoPolicy, rule: str, image: str,
                             container: ContainerImage) -> bool:
        """On UPDATE, an image whose field did not change (``HasChanged``, pkg/engine/context/
        evaluate.go:39) and that the OLD object's ``verify-images-scoped`` annotation records as
        pass or skip for this policy and rule (``isPreviouslyVerified``, imageverifier.go:140;
        ``IsImageVerifiedForPolicy``, pkg/engine/utils/image.go:72) is not verified again. The old
        annotation is trusted as stored."""
        if not self.old:
            return False
        old: Any = self.old
        for part in container.pointer.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(old, list) and part.isdigit() and int(part) < len(old):
                old = old[int(part)]
            elif isinstance(old, Mapping) and part in old:
                old = old[part]
            else:
                return False  # request.oldObject.<path> not found: an error, so verified anew
        if old != container.image:
            return False
        raw = ((self.old.get("metadata") or {}).get("annotations") or {}).get(VERIFY_IMAGES_SCOPED_ANNOTATION)
        try:
            doc = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            return False
        if not (isinstance(doc, dict) and doc.get("version") == 1 and isinstance(doc.get("policies"), dict)):
            return False  # ParseImageMetadata's other form has no per-policy record
        rules = doc["policies"].get(f"{policy.metadata.namespace}/{policy.name}")
        images = rules.get(rule) if isinstance(rules, dict) else None
        return isinstance(images, dict) and images.get(image) in ("pass", "skip")

    def _lookup(self, image: str, credentials: Credentials | None, trace: ImageTrace) -> str:
        """``handleMutateDigest``: the registry's digest for a tag no signature pinned."""
        if self.registry.resolver is None:
            trace.attestors.append("mutateDigest: no registry lookup in this run")
            return ""
        try:
            return self.registry.resolver(image, credentials=credentials)
        except LabkitError as exc:
            trace.status, trace.message = "error", f"failed to update digest: {exc.message}"
            return ""

    def _attestor_set(
        self, entries: Sequence[Attestor], count: int | None, path: str, image: str,
        iv: ImageVerification, credentials: Credentials | None, trace: ImageTrace,
    ) -> str:
        # ExpandStaticKeys (pkg/engine/internal/utils.go:18): an entry whose publicKeys holds
        # several PEM blocks becomes one entry per key, and verifyAttestorSet numbers the
        # expanded list: a second key of entries[0] is reported as entries[1]
        expanded: list[tuple[str, Attestor, list[Any]]] = []
        for entry in entries:
            if entry.keys is not None and entry.keys.public_keys:
                try:
                    keys = keys_from_pem(entry.keys.public_keys)
                except ValueError as exc:
                    raise _RuleFailed("fail", f"failed to verify image {image}: "
                                              f"{path}.entries[{len(expanded)}].keys: "
                                              f"failed to load public key from PEM: {exc}") from exc
                base = len(expanded)
                expanded.extend([(f"{path}.entries[{base + k}].keys", entry, [key])
                                 for k, key in enumerate(keys)])
            else:
                expanded.append((f"{path}.entries[{len(expanded)}]", entry, []))
        required = count or len(expanded)
        verified, errors, digest = 0, [], ""
        for epath, entry, keys in expanded:
            if not keys:
                msg = f"{epath}: labkit evaluates only keys.publicKeys attestors so far"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            # buildCosignOptions: hash, Rekor keys, CT log keys — all before any registry access
            algorithm, problem, rekor_url = kyverno_key_options(entry.keys)
            if problem:
                msg = f"{epath}: {problem}"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            try:
                result = call_verifier(
                    self.registry.verifier, image, keys, algorithm, annotations=entry.annotations or None,
                    repository=entry.repository or iv.repository or None, credentials=credentials)
            except RegistryUnreachableError as exc:
                raise _RuleFailed("error", f"failed to verify image {image}: {epath}: {exc.message}")
            except UnsupportedAlgorithm as exc:
                raise _RuleFailed("error", f"failed to verify image {image}: {epath}: {exc.message}")
            except NoSignaturesError as exc:
                msg = f"{epath}: {_verification_message(exc)}"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            except LabkitError as exc:
                # with the tlog on, cosign looks every signature up in Rekor before checking it
                msg = f"{epath}: " + (f"no matching signatures: {rekor_unreachable(rekor_url)}"
                                      if rekor_url else _verification_message(exc))
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            if rekor_url:
                msg = f"{epath}: no matching signatures: {rekor_unreachable(rekor_url)}"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            trace.attestors.append(f"{epath}: verified")
            verified, digest = verified + 1, result.digest
            if verified >= required:
                return digest
        raise _RuleFailed("fail", f"failed to verify image {image}: " + "; ".join(errors))

    # --- validating webhook --------------------------------------------------------------

    def validate(self) -> None:
        scoped = self._scoped_annotation()
        for policy, rule, entries in self._rules():
            for iv in entries:
                if not (iv.verify_digest or iv.required):
                    continue  # HasVerifyImageChecks: the rule has nothing to check here
                patterns = iv.image_references or ([iv.image] if iv.image else [])
                for container in self.images:
                    trace = self._check(policy, rule, iv, patterns, container, scoped)
                    if trace is None:
                        continue
                    self.decision.trace.append(trace)
                    # validate_image.go stops the rule at its first failing image
                    self._record(policy, rule, trace, first=True)
        if not self._deny(KYVERNO_VALIDATE_WEBHOOK):
            self._warn()

    def _scoped_annotation(self) -> dict[str, Any]:
        raw = ((self.resource.get("metadata") or {}).get("annotations") or {}).get(
            VERIFY_IMAGES_SCOPED_ANNOTATION, "")
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return doc.get("policies") or {} if isinstance(doc, dict) and doc.get("version") == 1 else {}

    def _check(
        self, policy: KyvernoPolicy, rule: str, iv: ImageVerification, patterns: Sequence[str],
        container: ContainerImage, scoped: Mapping[str, Any],
    ) -> ImageTrace | None:
        try:
            image = kyverno_normalize(container.image)
        except LabkitError:
            return None  # the mutating webhook already reported it
        if not any(wildcard_match(p, image) for p in patterns):
            return None
        trace = ImageTrace(Engine.KYVERNO, policy.name, rule, image, container.pointer, "pass",
                           "image verified")
        if iv.verify_digest and "@" not in image:
            trace.status, trace.message = "fail", f"missing digest for {image}"
        elif iv.required:
            status = (scoped.get(f"{policy.metadata.namespace}/{policy.name}") or {}).get(rule, {}).get(image)
            if status not in ("pass", "skip"):
                trace.status, trace.message = "fail", f"unverified image {image}"
            elif status == "skip":
                trace.status, trace.message = "skip", "image skipped"
        return trace

    def _deny(self, webhook: str) -> bool:
        if not self.blocking:
            return False
        d = self.decision
        meta = self.resource.get("metadata") or {}
        d.allowed, d.engine, d.webhook = False, Engine.KYVERNO, webhook
        body = yaml.safe_dump(self.blocked, indent=2, sort_keys=True, allow_unicode=True,
                              width=float("inf"), default_flow_style=False)
        d.message = (f"\n\nresource {self.kind}/{meta.get('namespace', '')}/{meta.get('name', '')} "
                     f"was blocked due to the following policies \n\n{body}")
        return True


def _annotation_path(key: str) -> str:
    return "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1")


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
        registry: _Registry,
        no_match_policy: str,
        decision: Decision,
    ) -> None:
        self.cips, self.resource, self.ns_labels = cips, resource, ns_labels
        self.registry, self.no_match, self.decision = registry, no_match_policy, decision
        self.namespace = str((resource.get("metadata") or {}).get("namespace") or "default")
        # the pod's own pull secrets, in its namespace (k8schain.Options in validator.go)
        self.keychain = policy_controller_keychain(
            registry.secrets, image_pull_secrets(pod_spec(resource, Engine.POLICY_CONTROLLER)),
            namespace=self.namespace)
        self.errors: list[tuple[str, str, str]] = []
        self.warnings: list[tuple[str, str, str]] = []

    def mutate(self) -> list[dict[str, Any]]:
        """``resolvePodSpec`` (v0.13): every container image given by tag becomes
        ``<ggcr name>:<tag>@<digest>``; an image that does not resolve is left for the
        validating webhook to reject."""
        if self.ns_labels.get(PC_INCLUDE_LABEL) != "true" or self.registry.resolver is None:
            return []
        patches = []
        for c in extract_images(self.resource, Engine.POLICY_CONTROLLER) or []:
            try:
                ref = Reference.parse(c.image)
            except LabkitError:
                continue
            if ref.digest is not None:
                continue
            trace = self._trace("", c, "pass", "", phase="mutate")
            try:
                digest = self.registry.resolver(str(ref), credentials=self.keychain.credentials(c.image))
            except LabkitError as exc:
                trace.status, trace.message = "skip", f"tag not resolved: {exc.message}"
                continue
            trace.digest, trace.message = digest, f"resolved to {ref}@{digest}"
            patches.append({"op": "replace", "path": c.pointer, "value": f"{ref}@{digest}"})
        return patches

    def validate(self) -> None:
        if self.ns_labels.get(PC_INCLUDE_LABEL) != "true":
            return  # the webhook's namespaceSelector never sends this request
        images = extract_images(self.resource, Engine.POLICY_CONTROLLER)
        if images is None:
            return
        for container in images:
            self._image(container)
        d = self.decision
        if self.warnings:
            # knative's webhook sends each line of a warning as a warning of its own: the API
            # server drops a warning holding a control character (webhook/admission.go:132-142
            # at knative.dev/pkg v0.0.0-20230612155445-74c4be5e935e)
            d.warnings.extend(knative_error_text(self.warnings).split("\n"))
        if self.errors:
            d.allowed, d.engine, d.webhook = False, Engine.POLICY_CONTROLLER, PC_WEBHOOK
            d.message = "validation failed: " + knative_error_text(self.errors)

    def _matching(self, name: str) -> list[ClusterImagePolicy]:
        kind = str(self.resource.get("kind", ""))
        group, _, version = str(self.resource.get("apiVersion", "")).rpartition("/")
        plural = resource_name(kind)
        labels = (self.resource.get("metadata") or {}).get("labels") or {}
        found = []
        for cip in self.cips:
            if cip.spec.match and not any(
                m.resource == plural and m.group == group and m.version in (version, "*")
                and labels_match(m.selector, labels)
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
                # checkOptsFromAuthority runs first: a ctlog URL needs Rekor's keys from TUF
                problem = cip_key_error(authority.name, authority.ctlog)
                if problem:
                    messages.append(problem)
                    continue
                repository, credentials = self._source(authority, name)
                algorithm = (authority.key.hash_algorithm or "sha256").lower()
                try:
                    call_verifier(self.registry.verifier, name, keys_from_pem(authority.key.data),
                                  algorithm, repository=repository, credentials=credentials)
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

    def _source(self, authority: Authority, name: str) -> tuple[str | None, Credentials | None]:
        """Where the authority reads signatures (``source[].oci``) and with whose credentials:
        its ``signaturePullSecrets`` (workload namespace) replace the pod's keychain."""
        source = authority.source[0] if authority.source else None
        keychain = self.keychain
        if source is not None and source.signature_pull_secrets:
            keychain = policy_controller_keychain(
                self.registry.secrets, [s.name for s in source.signature_pull_secrets],
                namespace=self.namespace)
        repository = source.oci if source is not None and source.oci else None
        return repository, keychain.credentials(repository or name)

    def _trace(self, policy: str, c: ContainerImage, status: str, message: str,
               phase: str = "validate") -> ImageTrace:
        trace = ImageTrace(Engine.POLICY_CONTROLLER, policy, "", c.image, c.field_path, status, message,
                           phase=phase)
        self.decision.trace.append(trace)
        return trace
