"""Kyverno ImageValidatingPolicy (policies.kyverno.io v1alpha1/v1beta1/v1) admission, as Kyverno
1.19 runs it (``pkg/cel/policies/ivpol/engine/engine.go``, ``pkg/webhooks/resource/ivpol``); each
webhook returns an :class:`~labkit.policy.trace.EngineResult`. Policies are compiled, with their
autogen variants, by :mod:`labkit.policy.ivp_compile`.

1. Mutating webhook: for each matching policy with ``mutateDigest`` (default true), every
   container image without a digest that matches ``matchImageReferences`` (on its Kyverno
   normalised form) is pinned: ``replace`` with ``<normalised>@<digest>``. No verification here.
2. Validating webhook, on the mutated object: ``images`` holds only the images (raw strings)
   that match ``matchImageReferences``; with ``verifyDigest`` (default true) an image without
   a digest fails the policy (``image X does not have a digest``); then each matched image's
   manifest is fetched (a GET, as the image data loader's ``remote.Image``): a registry error
   is the ``error`` result ``failed to evaluate policy: <go-containerregistry's text>``; the
   validations run in order and the first false one fails with its message; a CEL error is an
   ``error`` result.
   A passing policy then fails if one of its images was never verified by any policy in the
   request (``required``, default true).
3. Response: for ``Deny`` each fail/error reads ``Policy <name> failed: <msg>`` /
   ``Policy <name> error: <msg>``, joined with ``; ``; ``Warn`` gives the same text as
   warnings; ``Audit`` only reports. Kyverno joins policies in Go map order; labkit sorts by name.

Results carry Kyverno's rule names (the policy's, ``evaluation``, ``mutateDigest``); with no
``Deny`` policy among them the validating webhook reports them (:func:`admission_report`).

``kyverno apply`` runs step 2 only, on the object as given (no digest pinning).

Credentials: ``credentials.secrets`` names are looked up in the Kyverno namespace, as since
1.17.1 (PR #15136). From 1.14.0 to 1.17.0 the admission engine looked secrets up with no
namespace, got NotFound, ignored it and pulled anonymously (#15120); ``KYVERNO_SECRET_BUG``
describes that for teaching: ``credentials.kyverno_ivp_keychain`` follows the released
behaviour of the pinned version.

Transparency log: a key attestor without ``cosign.ctlog.insecureIgnoreTlog`` needs Sigstore's
TUF root, which the offline lab cannot reach; as in Kyverno it then verifies nothing (counts 0),
and the attestor line says why (``labkit.policy.tlog``).

Keyless attestors: the trust comes from ``cosign.tuf`` (its mirror's ``trusted_root.json``, fetched
afresh as a new Kyverno process would), then labkit's cosign (``labkit.policy.keyless``).

Not evaluated (an explicit ``error`` result, never a silent pass): certificate,
KMS and expression keys, notary, ``source.tagPrefix`` and ``source.signaturePullSecrets``
(``source.repository`` is followed), attestations, image data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.errors import (
    LabkitError,
    NoMatchingSignaturesError,
    NoSignaturesError,
    UsageError,
    VerificationError,
)
from labkit.policy.cel import CURRENT, CelError
from labkit.policy.credentials import SecretStore, kyverno_ivp_keychain
from labkit.policy.ivp_compile import CompiledPolicy, compile_policies
from labkit.policy.match import kyverno_normalize
from labkit.policy.podspec import (
    EXTRACTOR_PATHS,
    Engine,
    extract_images,
    find_pod_spec,
    kyverno_extraction_error,
    resource_name,
)
from labkit.policy.schema import ImageValidatingPolicy
from labkit.policy.selectors import labels_match
from labkit.policy.tlog import KYVERNO_SIGNATURE_ALGORITHMS, ivp_key_error
from labkit.policy.trace import Denial, EngineResult, ImageTrace
from labkit.policy.verification import Registry, call_keyless, call_verifier, keys_from_pem, registry_text

__all__ = ["KYVERNO_SECRET_BUG", "admission_report", "mutate", "validate"]

KYVERNO_SECRET_BUG = (
    "Kyverno 1.14.0–1.17.0: the IVP admission engine resolved credentials.secrets with no "
    "namespace (GET /api/v1/secrets/<name>), ignored the NotFound and pulled anonymously, so a "
    "private registry answered UNAUTHORIZED (#15120); fixed in 1.17.1 (PR #15136, reports "
    "PR #15220): names resolve in the Kyverno namespace. labkit follows 1.17.1 and later."
)


def mutate(policies: Sequence[ImageValidatingPolicy], resource: Mapping[str, Any], ns_labels: Mapping[str, str],
           registry: Registry) -> EngineResult:
    """The mutating webhook ``ivpol.mutate.kyverno.svc-fail``: pin tags, or deny with the
    digest-resolution error."""
    run = _Run(policies, resource, ns_labels, registry)
    patches, errors = run.mutate()
    result = EngineResult(trace=[_trace(name, "", r, [], "mutate") for name, r in sorted(errors.items())])
    if _respond(run, errors, result):
        result.patches.extend(patches)
    return result


def validate(policies: Sequence[ImageValidatingPolicy], resource: Mapping[str, Any], ns_labels: Mapping[str, str],
             registry: Registry) -> EngineResult:
    """The validating webhook ``ivpol.validate.kyverno.svc-fail``, on the mutated object."""
    run = _Run(policies, resource, ns_labels, registry)
    results = run.validate(resource)
    result = EngineResult(trace=[
        _trace(name, image, r, run.request.attempts.get(image, []), "validate")
        for name, r in sorted(results.items()) for image in r.images or [""]])
    _respond(run, results, result)
    return result


# --- one request --------------------------------------------------------------------------------

@dataclass
class Result:
    status: str  # pass | fail | error
    message: str = ""
    images: list[str] = field(default_factory=list)
    # the rule name Kyverno gives the result (engine.go): the policy's own name for a validation
    # outcome, "evaluation" when evaluating failed, "mutateDigest" when pinning failed
    rule: str = ""


def _manifest_fetcher(obj: Any) -> Callable[..., str] | None:
    """``fetch_manifest(ref, *, credentials)`` of a verifier or resolver over real registries
    (:class:`~labkit.policy.credentials.RegistryAccess`, a ``CachingVerifier`` over one, or a
    bound ``RegistryAccess.resolve``); None for test doubles that have no registry."""
    for candidate in (obj, getattr(obj, "access", None), getattr(obj, "__self__", None)):
        fetch = getattr(candidate, "fetch_manifest", None)
        if callable(fetch):
            return fetch  # type: ignore[no-any-return]
    return None


class _Request:
    """One admission request: the shared verification record, and the verifier."""

    def __init__(self, verifier: Any, secrets: SecretStore | None) -> None:
        self.verifier, self.secrets = verifier, secrets
        self.fetch_manifest = _manifest_fetcher(verifier)
        self.verified: dict[str, bool] = {}  # image → any attestor verified it (monotonic)
        self.attempts: dict[str, list[str]] = {}  # image → one line per attestor tried
        self.policy: CompiledPolicy | None = None

    def verify_signatures(self, image: str, attestors: Sequence[Any]) -> int:
        """``verifyImageSignatures``: how many of ``attestors`` verify ``image``."""
        policy = self.policy
        assert policy is not None
        if not policy.matches_image(image):
            return 0  # images outside matchImageReferences count 0, not an error
        count = 0
        lines = self.attempts.setdefault(image, [])
        keychain = kyverno_ivp_keychain(self.secrets, policy.credentials.secrets)
        if keychain.secrets or keychain.missing:
            lines.append(keychain.describe())
        credentials = keychain.credentials(image)
        for raw in attestors:
            cosign = raw.get("cosign") if isinstance(raw, Mapping) else None
            if isinstance(cosign, Mapping) and cosign.get("keyless"):
                count += self._keyless(raw, image, credentials, lines)
                continue
            name, keys_pem, annotations, algorithm, problem, repository = _cosign_key(raw)
            if problem:  # checkOptions failed: Kyverno logs it and counts the attestor 0
                lines.append(f"{name}: {problem}")
                continue
            try:
                keys = keys_from_pem(keys_pem)
            except ValueError as exc:
                lines.append(f"{name}: failed to load public key: {exc}")
                continue
            try:
                options: dict[str, Any] = {"credentials": credentials}
                if repository:  # cosign.source.repository: ociremote.WithTargetRepository (opts.go:96)
                    options["repository"] = repository
                # Kyverno's cosign verifier auto-detects cosign v3 bundles (ivpol/cosign/verifier.go)
                result = call_verifier(self.verifier, image, keys, algorithm, bundles=True, **options)
            except (NoSignaturesError, NoMatchingSignaturesError) as exc:
                lines.append(f"{name}: {exc.message}")
                continue
            except LabkitError as exc:
                raise ValueError(f"failed to get imagedata: {registry_text(exc)}") from None
            unmatched = _unmatched_annotations(result, annotations)
            if unmatched:
                lines.append(f"{name}: {unmatched}")
                continue
            lines.append(f"{name}: verified")
            count += 1
        if attestors:
            self.verified[image] = self.verified.get(image, False) or count > 0
        return count


    def _keyless(self, raw: Mapping[str, Any], image: str, credentials: Any, lines: list[str]) -> int:
        """One keyless attestor: 1 when it verifies ``image`` (legacy signatures or cosign v3
        bundles, auto-detected), else 0 with the reason Kyverno logs."""
        from labkit.policy.decoder import Decoder
        from labkit.policy.keyless import identities_error, ivp_keyless_options
        from labkit.policy.schema import Cosign

        name = str(raw.get("name", ""))
        cosign: Cosign = Decoder().decode(Cosign, raw.get("cosign"), "cosign")
        source = cosign.source if isinstance(cosign.source, Mapping) else {}
        for unsupported in ("tagPrefix", "PullSecrets", "signaturePullSecrets"):
            if source.get(unsupported):
                raise ValueError(f"labkit does not follow cosign.source.{unsupported} "
                                 f"(attestor {name!r}); use cosign.source.repository")
        options, problem = ivp_keyless_options(name, cosign)
        if options is None:
            lines.append(f"{name}: {problem}")
            return 0
        trust, keyless_policy = options
        try:
            result = call_keyless(self.verifier, image, trust, keyless_policy, bundles=True, credentials=credentials,
                                  repository=str(source.get("repository") or "") or None)
        except (NoSignaturesError, NoMatchingSignaturesError, VerificationError, UsageError) as exc:
            lines.append(f"{name}: {exc.message}")
            return 0
        except LabkitError as exc:
            raise ValueError(f"failed to get imagedata: {registry_text(exc)}") from None
        assert cosign.keyless is not None
        problem = (identities_error([s.certificate for s in result.signatures], cosign.keyless.identities)
                   or _unmatched_annotations(result, cosign.annotations))
        lines.append(f"{name}: {problem or 'verified'}")
        return 0 if problem else 1


def _cosign_key(raw: Any) -> tuple[str, str, Mapping[str, str], str, str, str]:
    """(name, PEM, annotations, hash, problem, signature repository) of an attestor labkit can
    check, or ValueError saying why it cannot. ``problem`` is the verification-options error
    that makes Kyverno count the attestor 0 (no ``insecureIgnoreTlog``: TUF is out of reach
    offline). ``cosign.source.repository`` is where the signatures are looked up
    (``checkOptions``, pkg/image/verifiers/ivpol/cosign/opts.go:90-106); its ``tagPrefix`` and
    ``signaturePullSecrets`` labkit does not follow."""
    name = raw.get("name", "") if isinstance(raw, Mapping) else ""
    cosign = raw.get("cosign") if isinstance(raw, Mapping) else None
    if not isinstance(cosign, Mapping):
        kind = "notary" if isinstance(raw, Mapping) and raw.get("notary") else "this"
        raise ValueError(f"labkit does not verify {kind} attestors (attestor {name!r})")
    for unsupported in ("certificate", "tuf", "trustedRoot"):
        if cosign.get(unsupported):
            raise ValueError(f"labkit does not verify cosign {unsupported} attestors "
                             f"(attestor {name!r}); use cosign.key.data")
    source = cosign.get("source") or {}
    for unsupported in ("tagPrefix", "signaturePullSecrets"):
        if isinstance(source, Mapping) and source.get(unsupported):
            raise ValueError(f"labkit does not follow cosign.source.{unsupported} "
                             f"(attestor {name!r}); use cosign.source.repository")
    repository = str(source.get("repository") or "") if isinstance(source, Mapping) else ""
    key = cosign.get("key") or {}
    if not key.get("data"):
        raise ValueError(f"labkit verifies only cosign.key.data keys (attestor {name!r})")
    problem = ivp_key_error(cosign.get("ctlog"))
    hash_name = str(key.get("hashAlgorithm") or "")
    algorithm = KYVERNO_SIGNATURE_ALGORITHMS.get(hash_name, "")
    if not problem and not algorithm:
        problem = f"labkit does not know hashAlgorithm {hash_name!r}"
    return name, str(key["data"]), cosign.get("annotations") or {}, algorithm, problem, repository


def _unmatched_annotations(result: Any, wanted: Mapping[str, str]) -> str:
    """Kyverno's ``checkSignatureAnnotations`` (ivpol/cosign/certs.go): some verified signature's
    **layer** annotations (``oci.Signature.Annotations()``) hold every wanted pair; the ``-a``
    annotations cosign signs into the payload are not looked at. "" when one does."""
    if not wanted:
        return ""
    errors = []
    for signature in getattr(result, "signatures", ()):
        have = getattr(signature, "layer_annotations", {})
        mismatch = next(((k, v) for k, v in sorted(wanted.items()) if have.get(k) != v), None)
        if mismatch is None:
            return ""
        key, value = mismatch
        errors.append(f"annotations mismatch: {have.get(key, '')} does not match expected value {value} for key {key}")
    return f"no signature matched the required annotations: [{' '.join(errors)}]"


def _rules_match(rules: Sequence[Any], group: str, version: str, plural: str) -> bool:
    def ok(values: Any, value: str) -> bool:
        return "*" in (values or []) or value in (values or [])
    return any(ok(r.get("apiGroups"), group) and ok(r.get("apiVersions"), version)
               and ok(r.get("operations"), "CREATE") and ok(r.get("resources"), plural)
               for r in rules)


class _Run:
    """Evaluate ImageValidatingPolicies for one CREATE request, the webhook's two phases."""

    def __init__(self, policies: Sequence[ImageValidatingPolicy], resource: Mapping[str, Any],
                 ns_labels: Mapping[str, str], registry: Registry) -> None:
        self.compiled = compile_policies(policies)
        self.resource, self.ns_labels = resource, ns_labels
        self.request = _Request(registry.verifier, registry.secrets)
        self.resolve_digest = registry.resolver
        group, _, version = str(resource.get("apiVersion", "")).rpartition("/")
        self.group, self.version = group, version
        self.plural = resource_name(str(resource.get("kind", "")))
        meta = resource.get("metadata") or {}
        self.namespace = str(meta.get("namespace") or "")

    # matching ---------------------------------------------------------------------------
    def _data(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj.get("metadata") or {}
        return {
            "object": obj,
            "oldObject": None,
            "request": {"operation": "CREATE", "namespace": self.namespace,
                        "name": meta.get("name", ""), "object": obj, "userInfo": {},
                        "kind": {"group": self.group, "version": self.version,
                                 "kind": obj.get("kind", "")},
                        "resource": {"group": self.group, "version": self.version,
                                     "resource": self.plural}},
            "namespaceObject": ({"metadata": {"name": self.namespace, "labels": dict(self.ns_labels)}}
                                if self.namespace else None),
        }

    def _constraints_match(self, policy: CompiledPolicy) -> bool:
        mc = policy.policy.spec.match_constraints or {}
        if not _rules_match(mc.get("resourceRules") or [], self.group, self.version, self.plural):
            return False
        if _rules_match(mc.get("excludeResourceRules") or [], self.group, self.version, self.plural):
            return False
        if self.namespace and not labels_match(mc.get("namespaceSelector"), self.ns_labels):
            return False
        labels = (self.resource.get("metadata") or {}).get("labels") or {}
        return labels_match(mc.get("objectSelector"), labels)

    def _conditions_match(self, policy: CompiledPolicy, data: dict[str, Any]) -> bool:
        """False on a false condition; CelError when one errs under failurePolicy Fail."""
        errors = []
        for program in policy.match_conditions:
            try:
                if program.eval(data) is False:
                    return False
            except CelError as exc:
                errors.append(str(exc))
        if errors and policy.failure_policy == "Fail":
            raise CelError("; ".join(errors))
        return not errors

    # phase 1 ----------------------------------------------------------------------------
    def mutate(self) -> tuple[list[dict[str, Any]], dict[str, Result]]:
        patches: list[dict[str, Any]] = []
        errors: dict[str, Result] = {}
        containers = extract_images(self.resource, Engine.KYVERNO) or []
        unparsable = kyverno_extraction_error(containers)
        for policy in self.compiled:
            if policy.config.mutate_digest is False or not self._constraints_match(policy):
                continue
            try:
                if not self._conditions_match(policy, self._data(self.resource)):
                    continue
            except CelError:
                continue  # the validating webhook reports it
            if unparsable:  # MutateDigest extracts every image first (pkg/utils/api/image.go)
                errors[policy.name] = Result("error", f"failed to update digest: {unparsable}", rule="mutateDigest")
                continue
            failures = []
            for c in containers:
                image = kyverno_normalize(c.image)
                if "@" in image or not policy.matches_image(image):
                    continue
                try:
                    digest = self._resolve(image, policy)
                except (LabkitError, ValueError) as exc:
                    text = registry_text(exc) if isinstance(exc, LabkitError) else str(exc)
                    failures.append(f"failed to resolve digest for image {image}: {text}")
                    continue
                if all(p["path"] != c.pointer for p in patches):
                    patches.append({"op": "replace", "path": c.pointer, "value": f"{image}@{digest}"})
            if failures:
                # RuleError("mutateDigest", …, "failed to update digest", err): engine.go handleMutation
                errors[policy.name] = Result("error", "failed to update digest: " + "; ".join(failures),
                                             rule="mutateDigest")
        return patches, errors

    def _resolve(self, image: str, policy: CompiledPolicy) -> str:
        """The image data loader's ``remote.Image``: a GET of the manifest (so a failure quotes
        the GET's answer), with the policy's credentials."""
        if self.resolve_digest is None:
            raise ValueError("labkit was given no registry client to resolve tags")
        keychain = kyverno_ivp_keychain(self.request.secrets, policy.credentials.secrets)
        fetch = _manifest_fetcher(self.resolve_digest) or self.resolve_digest
        return fetch(image, credentials=keychain.credentials(image))

    # phase 2 ----------------------------------------------------------------------------
    def validate(self, obj: Mapping[str, Any]) -> dict[str, Result]:
        results: dict[str, Result] = {}
        token = CURRENT.set(self.request)
        try:
            for policy in self.compiled:
                if not self._constraints_match(policy):
                    continue
                self.request.policy = policy
                try:
                    result = self._evaluate(policy, obj)
                except CelError as exc:
                    result = Result("error", f"failed to evaluate policy: {exc}", rule="evaluation")
                if result is not None:
                    results[policy.name] = result
        finally:
            CURRENT.reset(token)
        for name, result in results.items():
            policy = next(p for p in self.compiled if p.name == name)
            if result.status == "pass" and policy.config.required is not False:
                for image in result.images:
                    if image not in self.request.verified:
                        results[name] = Result("fail", f"image {image} is not verified: no policy "
                                                       "performed a signature or attestation check on it",
                                               result.images, rule=name)
                        break
                    if not self.request.verified[image]:
                        results[name] = Result("fail", f"image {image} failed signature or "
                                                       "attestation verification", result.images, rule=name)
                        break
        return results

    def _evaluate(self, policy: CompiledPolicy, obj: Mapping[str, Any]) -> Result | None:
        data = self._data(obj)
        if not self._conditions_match(policy, data):
            return None
        path = EXTRACTOR_PATHS.get((self.group, self.plural))
        spec = find_pod_spec(obj, path) if path is not None else None
        images: dict[str, list[str]] = {}
        if path is not None:
            for list_name in ("containers", "initContainers", "ephemeralContainers"):  # the extractors' order
                raw = [str(c.get("image", "")) for c in ((spec or {}).get(list_name) or [])]
                images[list_name] = [i for i in raw if policy.matches_image(i)]
        matched = [i for imgs in images.values() for i in imgs]
        if policy.config.verify_digest is not False:
            for image in matched:
                if "@" not in image:
                    return Result("fail", f"image {image} does not have a digest", matched, rule=policy.name)
        if self.request.fetch_manifest is not None:
            # Evaluate prefetches every matched image's data before any validation runs
            # (pkg/image/verification/evaluator/policy.go:186-192); a failure is returned as is, and
            # evaluatePolicies makes it RuleError("evaluation", "failed to evaluate policy", err)
            keychain = kyverno_ivp_keychain(self.request.secrets, policy.credentials.secrets)
            for image in matched:
                try:
                    self.request.fetch_manifest(image, credentials=keychain.credentials(image))
                except LabkitError as exc:
                    return Result("error", f"failed to evaluate policy: {registry_text(exc)}", matched,
                                  rule="evaluation")
        data["images"] = images
        data["attestations"] = {a["name"]: a["name"] for a in policy.policy.spec.attestations
                                if isinstance(a, Mapping) and "name" in a}
        data["attestors"] = {a["name"]: a for a in policy.policy.spec.attestors
                             if isinstance(a, Mapping) and "name" in a}
        data["variables"] = {}
        for name, program in policy.variables.items():
            data["variables"][name] = program.eval(data)
        for index, (validation, program, message_program) in enumerate(policy.validations):
            outcome = program.eval(data)
            if outcome is False:
                message = validation.message
                if message_program is not None:
                    try:
                        message = str(message_program.eval(data))
                    except CelError as exc:
                        message = f"failed to evaluate message expression: {exc}"
                return Result("fail", message or f"CEL expression validation failed at index {index}",
                              matched, rule=policy.name)
        return Result("pass", "", matched, rule=policy.name)


def admission_report(policies: Sequence[Any], trace: Sequence[Any]) -> list[Any]:
    """The results the validating webhook reports (``handler.audit``, pkg/webhooks/resource/ivpol/
    handler.go): one per ImageValidatingPolicy that produced a result (its rule: the policy's
    name, ``evaluation`` or ``mutateDigest``), and none at all when one of those policies has
    the ``Deny`` action (``blocked``), whatever its result. The mutating webhook reports nothing."""
    actions = {p.name: set(p.spec.validation_actions or ["Deny"]) for p in policies
               if isinstance(p, ImageValidatingPolicy)}
    results: dict[str, Any] = {}
    for t in trace:
        if t.policy in actions and getattr(t, "phase", "") == "validate":
            results.setdefault(t.policy, t)
    if any("Deny" in actions[name] for name in results):
        return []
    return list(results.values())


def _trace(policy: str, image: str, result: Result, attestors: list[str], phase: str) -> ImageTrace:
    trace = ImageTrace(Engine.KYVERNO, policy, result.rule or policy, image, "", result.status,
                       result.message, attestors=list(attestors))
    trace.phase = phase
    return trace


def _respond(run: _Run, results: Mapping[str, Result], response: EngineResult) -> bool:
    """Add one webhook's warnings and denial to ``response``; False when it denies."""
    errors = []
    for name, result in sorted(results.items()):
        if result.status not in ("fail", "error"):
            continue
        text = f"Policy {name} {'failed' if result.status == 'fail' else 'error'}: {result.message}"
        actions = next(p.actions for p in run.compiled if p.name == name)
        if "Deny" in actions:
            errors.append(text)
        if "Warn" in actions:
            response.warnings.append(text)
    if errors:
        response.denial = Denial(Engine.KYVERNO, "; ".join(errors))
        return False
    return True
