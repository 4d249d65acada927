"""Kyverno's verifyImages rules (ClusterPolicy and Policy, kyverno.io/v1): its two webhooks on
one object, each returning an :class:`~labkit.policy.trace.EngineResult`. The message is the one
``kubectl`` shows.

* Mutating webhook ``mutate.kyverno.svc-fail`` (``pkg/engine/internal/imageverifier.go``):
  verify each matched image, pin tags to digests (``mutateDigest``, with a registry lookup when
  no signature gave the digest), record ``kyverno.io/verify-images`` and, as 1.19 does,
  ``kyverno.io/verify-images-scoped``; a failed Enforce rule blocks.
* Validating webhook ``validate.kyverno.svc-fail`` (``pkg/engine/handlers/validation/
  validate_image.go``), on the mutated object: ``verifyDigest`` → ``missing digest for …``,
  ``required`` → ``unverified image …`` unless the scoped annotation says pass/skip.

Both block with the YAML message of ``pkg/webhooks/utils/block.go``. Rules match as Kyverno
matches them, with the ``autogen-`` rules it generates for pod controllers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml

from labkit.errors import LabkitError, NoSignaturesError, RegistryUnreachableError
from labkit.oci.auth import Credentials
from labkit.policy.credentials import image_pull_secrets, kyverno_keychain
from labkit.policy.load import kyverno_failure_action
from labkit.policy.match import kyverno_normalize, wildcard_match
from labkit.policy.patches import pointer, pointer_parts
from labkit.policy.podspec import ContainerImage, Engine, extract_images, kyverno_extraction_error, pod_spec
from labkit.policy.schema import Attestor, ImageVerification, KyvernoPolicy, MatchResources, ResourceDescription
from labkit.policy.selectors import labels_match
from labkit.policy.tlog import kyverno_key_options, rekor_unreachable
from labkit.policy.trace import Denial, EngineResult, ImageTrace
from labkit.policy.verification import (
    Registry,
    UnsupportedAlgorithm,
    UnsupportedKeyless,
    Verified,
    call_keyless,
    call_verifier,
    keys_from_pem,
)
from labkit.signing.payload import SimpleSigningPayload

VERIFY_IMAGES_ANNOTATION = "kyverno.io/verify-images"
VERIFY_IMAGES_SCOPED_ANNOTATION = "kyverno.io/verify-images-scoped"
MUTATE_WEBHOOK = "mutate.kyverno.svc-fail"
VALIDATE_WEBHOOK = "validate.kyverno.svc-fail"
_AUTOGEN_KINDS = {"DaemonSet", "Deployment", "Job", "StatefulSet", "ReplicaSet",
                  "ReplicationController"}


def mutate(policies: Sequence[KyvernoPolicy], resource: Mapping[str, Any], ns_labels: Mapping[str, str],
           registry: Registry, old_resource: Mapping[str, Any] | None = None) -> EngineResult:
    """The mutating webhook on a CREATE, or an UPDATE of ``old_resource`` (an unchanged image the
    old object's annotation records as verified is not verified again)."""
    return _Run(policies, resource, ns_labels, registry, old_resource).mutate()


def validate(policies: Sequence[KyvernoPolicy], resource: Mapping[str, Any], ns_labels: Mapping[str, str],
             registry: Registry) -> EngineResult:
    """The validating webhook, on the object the mutating webhooks returned."""
    return _Run(policies, resource, ns_labels, registry).validate()


# --- which rules apply ------------------------------------------------------------------------


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
    return not desc.operations or "CREATE" in desc.operations


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


# --- the webhooks -----------------------------------------------------------------------------


class _Run:
    """One pass of Kyverno's webhooks over one object: :meth:`mutate` or :meth:`validate`."""

    def __init__(
        self,
        policies: Sequence[KyvernoPolicy],
        resource: Mapping[str, Any],
        ns_labels: Mapping[str, str],
        registry: Registry,
        old_resource: Mapping[str, Any] | None = None,
    ) -> None:
        self.policies, self.resource, self.ns_labels = policies, resource, ns_labels
        self.registry, self.old = registry, old_resource
        self.result = EngineResult()
        self.kind = str(resource.get("kind", ""))
        self.namespace = str((resource.get("metadata") or {}).get("namespace") or "")
        images = extract_images(resource, Engine.KYVERNO) or []
        # Kyverno's deferred image loader (AddImageInfos, pkg/engine/context/context.go) fails as a
        # whole on one unparsable name, and the rules then see no image at all: such a pod is
        # admitted unchecked, its other images included (Kyverno 1.19.1, the native lab)
        self.images = [] if kyverno_extraction_error(images) else images
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

    def _rules(self) -> Iterator[tuple[KyvernoPolicy, str, list[ImageVerification]]]:
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

    # --- mutating webhook ----------------------------------------------------------------

    def mutate(self) -> EngineResult:
        for policy, rule, entries in self._rules():
            for iv in entries:
                for container in self.images:
                    trace = self._verify(policy, rule, iv, container)
                    if trace is None:
                        continue
                    self.result.trace.append(trace)
                    self._record(policy, rule, trace)
        if self._deny(MUTATE_WEBHOOK):
            return self.result
        self.result.warnings.extend(self.warned)
        if self.annotation:
            annotations = (self.resource.get("metadata") or {}).get("annotations")
            if not annotations:
                self.result.patches.append({"op": "add", "path": "/metadata/annotations", "value": {}})
            self.result.patches.append({
                "op": "add", "path": pointer("metadata", "annotations", VERIFY_IMAGES_ANNOTATION),
                "value": json.dumps(self.annotation, separators=(",", ":"), sort_keys=True),
            })
            if self.scoped:
                # Go marshals the struct fields in order, the maps with sorted keys
                policies = json.dumps(self.scoped, separators=(",", ":"), sort_keys=True)
                self.result.patches.append({
                    "op": "add", "path": pointer("metadata", "annotations", VERIFY_IMAGES_SCOPED_ANNOTATION),
                    "value": f'{{"version":1,"policies":{policies}}}',
                })
        self.result.patches.extend(self.image_patches)
        return self.result

    def _verify(
        self, policy: KyvernoPolicy, rule: str, iv: ImageVerification, container: ContainerImage
    ) -> ImageTrace | None:
        image = kyverno_normalize(container.image)
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
        for part in pointer_parts(container.pointer):
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
            if entry.keyless is not None:
                found, msg = self._keyless(f"{epath}.keyless", entry, image, iv, credentials)
                trace.attestors.append(msg or f"{epath}.keyless: verified")
                if msg:
                    errors.append(msg)
                    continue
                verified, digest = verified + 1, found
                if verified >= required:
                    return digest
                continue
            if not keys:
                msg = f"{epath}: labkit evaluates only keys.publicKeys and keyless attestors so far"
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
                result: Verified = call_verifier(
                    self.registry.verifier, image, keys, algorithm,
                    repository=entry.repository or iv.repository or None, credentials=credentials)
            except (RegistryUnreachableError, UnsupportedAlgorithm) as exc:
                raise _RuleFailed("error", f"failed to verify image {image}: {epath}: {exc.message}") from exc
            except NoSignaturesError as exc:
                msg = f"{epath}: {exc.message}"  # cosign's wording: "no signatures found"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            except LabkitError as exc:
                # with the tlog on, cosign looks every signature up in Rekor before checking it
                msg = f"{epath}: " + (f"no matching signatures: {rekor_unreachable(rekor_url)}"
                                      if rekor_url else exc.message)
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            if rekor_url:
                msg = f"{epath}: no matching signatures: {rekor_unreachable(rekor_url)}"
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            if not _payload_annotations_match(result, entry.annotations):
                msg = f"{epath}: no signature matched the required annotations"  # checkAnnotations
                trace.attestors.append(msg)
                errors.append(msg)
                continue
            trace.attestors.append(f"{epath}: verified")
            verified, digest = verified + 1, result.digest
            if verified >= required:
                return digest
        raise _RuleFailed("fail", f"failed to verify image {image}: " + "; ".join(errors))

    def _keyless(self, epath: str, entry: Attestor, image: str, iv: ImageVerification,
                 credentials: Credentials | None) -> tuple[str, str]:
        """One keyless entry, as ``cosign.VerifySignature`` (cpol/cosign/verifier.go): cosign's
        checks with no identity, then Kyverno's certificate matching, then the annotations.
        Returns (digest, "") or ("", why it failed, with the entry's path)."""
        from labkit.policy.keyless import kyverno_keyless_options, kyverno_match_certificates

        assert entry.keyless is not None
        options, problem = kyverno_keyless_options(entry.keyless, entry.signature_algorithm)
        if options is None:
            return "", f"{epath}: {problem}"
        trust, keyless_policy = options
        try:
            result = call_keyless(self.registry.verifier, image, trust, keyless_policy,
                                  repository=entry.repository or iv.repository or None, credentials=credentials)
        except (RegistryUnreachableError, UnsupportedKeyless) as exc:
            raise _RuleFailed("error", f"failed to verify image {image}: {epath}: {exc.message}") from exc
        except LabkitError as exc:
            return "", f"{epath}: {exc.message}"
        mismatch = kyverno_match_certificates([s.certificate for s in result.signatures], entry.keyless)
        if mismatch:
            return "", f"{epath}: {mismatch}"
        wanted = entry.annotations or iv.annotations
        if wanted and not any(all((SimpleSigningPayload.from_json(s.payload).optional or {}).get(k) == v
                                  for k, v in wanted.items()) for s in result.signatures):
            return "", f"{epath}: no signature matched the required annotations"
        return result.digest, ""

    # --- validating webhook --------------------------------------------------------------

    def validate(self) -> EngineResult:
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
                    self.result.trace.append(trace)
                    # validate_image.go stops the rule at its first failing image
                    self._record(policy, rule, trace, first=True)
        if not self._deny(VALIDATE_WEBHOOK):
            self.result.warnings.extend(self.warned)
        return self.result

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
        image = kyverno_normalize(container.image)
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
        meta = self.resource.get("metadata") or {}
        body = yaml.safe_dump(self.blocked, indent=2, sort_keys=True, allow_unicode=True,
                              width=float("inf"), default_flow_style=False)
        self.result.denial = Denial(
            Engine.KYVERNO,
            f"\n\nresource {self.kind}/{meta.get('namespace', '')}/{meta.get('name', '')} "
            f"was blocked due to the following policies \n\n{body}",
            webhook)
        return True


class _RuleFailed(Exception):
    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _payload_annotations_match(result: Any, wanted: Mapping[str, str] | None) -> bool:
    """Kyverno's ``checkAnnotations`` (cpol/cosign/cosign.go), after cosign verified the signatures
    without them: some verified payload's ``optional`` holds every wanted pair."""
    if not wanted:
        return True
    return any(all((sig.claims.optional or {}).get(k) == v for k, v in wanted.items())
               for sig in getattr(result, "signatures", ()))
