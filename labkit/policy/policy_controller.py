"""policy-controller's ClusterImagePolicies (policy.sigstore.dev): its two webhooks on one object,
each returning an :class:`~labkit.policy.trace.EngineResult`.

* Mutating webhook (``resolvePodSpec``): tags become ``name:tag@digest`` with the pod's pull
  secrets; failures leave the image alone.
* Validating webhook ``policy.sigstore.dev``: only namespaces labelled
  ``policy.sigstore.dev/include=true``; every image must be a digest; every matching CIP must
  pass, each by any one authority; no match falls to the no-match policy
  (``pkg/webhook/validator.go``); knative ``FieldError`` text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labkit.errors import LabkitError
from labkit.oci.auth import Credentials
from labkit.oci.reference import Reference
from labkit.policy.credentials import image_pull_secrets, policy_controller_keychain
from labkit.policy.match import glob_match
from labkit.policy.podspec import ContainerImage, Engine, extract_images, pod_spec, resource_name
from labkit.policy.policy_controller_webhooks import knative_error_text
from labkit.policy.schema import Authority, ClusterImagePolicy, TrustRoot
from labkit.policy.selectors import labels_match
from labkit.policy.tlog import cip_key_error
from labkit.policy.trace import Denial, EngineResult, ImageTrace
from labkit.policy.verification import Registry, call_keyless, call_verifier, keys_from_pem, registry_text

INCLUDE_LABEL = "policy.sigstore.dev/include"
WEBHOOK = "policy.sigstore.dev"


def mutate(cips: Sequence[ClusterImagePolicy], resource: Mapping[str, Any], ns_labels: Mapping[str, str],
           registry: Registry) -> EngineResult:
    return _Run(cips, resource, ns_labels, registry).mutate()


def validate(cips: Sequence[ClusterImagePolicy], resource: Mapping[str, Any], ns_labels: Mapping[str, str],
             registry: Registry, no_match_policy: str, trust_roots: Sequence[TrustRoot] = ()) -> EngineResult:
    """``no_match_policy``: ``config-policy-controller``'s setting for an image no CIP matches
    (``allow``/``warn``; anything else denies, as upstream fails closed). ``trust_roots``: the
    TrustRoots keyless authorities name (``trustRootRef``)."""
    run = _Run(cips, resource, ns_labels, registry)
    run.trust_roots = trust_roots
    return run.validate(no_match_policy)


class _Run:
    def __init__(
        self,
        cips: Sequence[ClusterImagePolicy],
        resource: Mapping[str, Any],
        ns_labels: Mapping[str, str],
        registry: Registry,
    ) -> None:
        self.cips, self.resource, self.ns_labels = cips, resource, ns_labels
        self.registry = registry
        self.result = EngineResult()
        self.namespace = str((resource.get("metadata") or {}).get("namespace") or "default")
        # the pod's own pull secrets, in its namespace (k8schain.Options in validator.go)
        self.keychain = policy_controller_keychain(
            registry.secrets, image_pull_secrets(pod_spec(resource, Engine.POLICY_CONTROLLER)),
            namespace=self.namespace)
        self.errors: list[tuple[str, str, str]] = []
        self.trust_roots: Sequence[TrustRoot] = ()
        self.warnings: list[tuple[str, str, str]] = []

    def mutate(self) -> EngineResult:
        """``resolvePodSpec`` (v0.13): every container image given by tag becomes
        ``<ggcr name>:<tag>@<digest>``; an image that does not resolve is left for the
        validating webhook to reject."""
        if self.ns_labels.get(INCLUDE_LABEL) != "true" or self.registry.resolver is None:
            return self.result
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
            self.result.patches.append({"op": "replace", "path": c.pointer, "value": f"{ref}@{digest}"})
        return self.result

    def validate(self, no_match_policy: str) -> EngineResult:
        if self.ns_labels.get(INCLUDE_LABEL) != "true":
            return self.result  # the webhook's namespaceSelector never sends this request
        images = extract_images(self.resource, Engine.POLICY_CONTROLLER)
        if images is None:
            return self.result
        for container in images:
            self._image(container, no_match_policy)
        if self.warnings:
            # knative's webhook sends each line of a warning as a warning of its own: the API
            # server drops a warning holding a control character (webhook/admission.go:132-142
            # at knative.dev/pkg v0.0.0-20230612155445-74c4be5e935e)
            self.result.warnings.extend(knative_error_text(self.warnings).split("\n"))
        if self.errors:
            self.result.denial = Denial(Engine.POLICY_CONTROLLER,
                                        "validation failed: " + knative_error_text(self.errors), WEBHOOK)
        return self.result

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

    def _image(self, c: ContainerImage, no_match_policy: str) -> None:
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
            mode = no_match_policy if no_match_policy in ("allow", "warn") else "deny"
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
                                    f"{authority.name} for {name}: {registry_text(exc)}")
                    continue
                return True, [f"{authority.name}: verified"]
            elif authority.key is not None:
                messages.append(f"there are no public keys for authority {authority.name}")
            elif authority.keyless is not None:
                problem = self._keyless(authority, name)
                if not problem:
                    return True, [f"{authority.name}: verified"]
                messages.append(problem)
        return False, messages

    def _keyless(self, authority: Authority, name: str) -> str:
        """A keyless authority (``ValidatePolicySignaturesForAuthority``): "" when it passes, else its
        error as policy-controller words it."""
        from labkit.policy.keyless import identities_error, policy_controller_keyless_options

        options, problem = policy_controller_keyless_options(authority, self.trust_roots)
        if options is None:
            return problem
        assert authority.keyless is not None
        if authority.keyless.url is None:
            return "no Keyless URL specified"
        trust, keyless_policy = options
        repository, credentials = self._source(authority, name)
        failed = f"signature keyless validation failed for authority {authority.name} for {name}: "
        try:
            result = call_keyless(self.registry.verifier, name, trust, keyless_policy,
                                  repository=repository, credentials=credentials)
        except LabkitError as exc:
            return failed + registry_text(exc)
        mismatch = identities_error([s.certificate for s in result.signatures], authority.keyless.identities or [])
        return failed + mismatch if mismatch else ""

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
        self.result.trace.append(trace)
        return trace
