"""Load policy YAML the way a cluster admits it, rejecting what the cluster would reject.

Admission of a policy has three stages, and the first that fails is the one reported:

1. Decoding. ``kubectl apply`` uses server-side field validation ``Strict``: an unknown field
   fails with ``strict decoding error: unknown field "spec.x"``.
2. The CRD's OpenAPI schema: wrong types, missing required fields.
3. The engine's validating webhook: Kyverno's ``validate-policy.kyverno.svc``
   (``pkg/validation/policy/validate.go``; k8s ``field.Error`` text) and policy-controller's
   ``validating.clusterimagepolicy.sigstore.dev`` (``clusterimagepolicy_validation.go``;
   knative ``FieldError`` text).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from labkit._internal.files import names_a_file
from labkit._internal.yamlsafe import METADATA_HINT, YAMLInputError, load_all, object_meta_error
from labkit.errors import PolicyError
from labkit.policy.decoder import Decoder  # stages 1 and 2: strict decoding against the dataclass schema
from labkit.policy.match import GlobError, compile_glob
from labkit.policy.schema import (
    Authority,
    ClusterImagePolicy,
    ImageValidatingPolicy,
    KyvernoPolicy,
    Policy,
)

_KINDS: dict[tuple[str, str], type] = {
    ("kyverno.io/v1", "ClusterPolicy"): KyvernoPolicy,
    ("kyverno.io/v1", "Policy"): KyvernoPolicy,
    **{(f"policies.kyverno.io/{v}", "ImageValidatingPolicy"): ImageValidatingPolicy
       for v in ("v1alpha1", "v1beta1", "v1")},
    **{(f"policy.sigstore.dev/{v}", "ClusterImagePolicy"): ClusterImagePolicy
       for v in ("v1alpha1", "v1beta1")},
}


def load_policies(source: str | Path) -> list[Policy]:
    """Policies from YAML text or a file path (several ``---`` documents allowed).

    Raises PolicyError with the message the cluster would give, naming the document.
    """
    data, origin = _read(source)
    try:
        docs = [d for d in load_all(data) if d is not None]
    except YAMLInputError as exc:
        raise PolicyError(f"{origin}: {exc}", hint=exc.hint) from None
    policies: list[Policy] = []
    for index, doc in enumerate(docs):
        where = origin if len(docs) == 1 else f"{origin} (document {index + 1})"
        if isinstance(doc, dict) and (meta_error := object_meta_error(doc)):
            raise PolicyError(f'unable to decode "{origin}": {meta_error}', hint=METADATA_HINT)
        policies.append(_load_one(doc, where))
    if not policies:
        raise PolicyError(f"{origin}: no policy documents found", hint="add a policy document")
    return policies


def _read(source: str | Path) -> tuple[str | bytes, str]:
    if isinstance(source, Path) or names_a_file(source):
        path = Path(source)
        try:
            return path.read_bytes(), str(path)
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read: {exc.strerror}", hint="check the path") from exc
    return source, "<policy>"


def _load_one(doc: Any, where: str) -> Policy:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: a policy document must be a YAML mapping")
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    cls = _KINDS.get((api_version, kind))
    if cls is None:
        raise PolicyError(
            f'{where}: no matches for kind "{kind}" in version "{api_version}"',
            hint="labkit reads kyverno.io/v1 ClusterPolicy/Policy, policies.kyverno.io "
            "ImageValidatingPolicy and policy.sigstore.dev ClusterImagePolicy",
        )
    decoder = Decoder()
    policy: Policy = decoder.decode(cls, doc, "")
    if policy.metadata is None or not policy.metadata.name:  # None: metadata was null
        decoder.invalid.append("metadata.name: Required value: name or generateName is required")
    if decoder.unknown:
        fields = ", ".join(f'unknown field "{p}"' for p in decoder.unknown)
        raise PolicyError(
            f"{where}: {kind} in version \"{api_version.rpartition('/')[2]}\" cannot be handled "
            f"as a {kind}: strict decoding error: {fields}",
            hint="remove or correct the misspelt field",
        )
    if decoder.invalid:
        raise PolicyError(f"{where}: {kind}.{api_version.partition('/')[0]} "
                          f'"{(doc.get("metadata") or {}).get("name") or ""}" is invalid: '
                          + ", ".join(decoder.invalid))
    problems = _validate(policy)
    if problems:
        raise PolicyError(f"{where}: " + problems, hint="the policy engine's admission rejects it")
    return policy


# --- stage 3: the engines' own policy validation ---------------------------------------------


def _validate(policy: Policy) -> str:
    if isinstance(policy, KyvernoPolicy):
        # validate.go returns the first rule's errors as a k8s aggregate: "[a, b]" when several.
        for errs in _kyverno_problems(policy):
            if errs:
                return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    if isinstance(policy, ImageValidatingPolicy):
        from labkit.policy import ivp_compile  # builds the CEL environment: only when an IVP is loaded

        return ivp_compile.validate_policy(policy)
    if isinstance(policy, ClusterImagePolicy):
        leaves = list(_cip_problems(policy))
        if leaves:
            return "validation failed: " + knative_error_text(leaves)
    return ""


def kyverno_failure_action(policy: KyvernoPolicy) -> str:
    """Enforce or Audit, resolved per policy: the first verifyImages ``failureAction`` set in
    any rule wins over ``spec.validationFailureAction`` (``GetValidationFailureAction``)."""
    for rule in policy.spec.rules:
        for iv in rule.verify_images:
            if iv.failure_action:
                return "Enforce" if iv.failure_action.lower() == "enforce" else "Audit"
    return "Enforce" if policy.spec.validation_failure_action.lower() == "enforce" else "Audit"


def _kyverno_problems(policy: KyvernoPolicy) -> Iterator[list[str]]:
    """Per rule, the verifyImages errors; the Audit flag carries from entry to entry."""
    spec_audit = policy.spec.validation_failure_action.lower() != "enforce"
    for r, rule in enumerate(policy.spec.rules):
        audit, errs = spec_audit, []
        for i, iv in enumerate(rule.verify_images):
            path = f"spec.rules[{r}].verifyImages[{i}]"
            if iv.failure_action is not None:
                audit = iv.failure_action.lower() != "enforce"
            if audit and iv.mutate_digest:
                errs.append(f"{path}.mutateDigest: Invalid value: true: mutateDigest must be set "
                            "to false for \u2018Audit\u2019 failure action")
            if not iv.image_references and not iv.image:
                errs.append(f"{path}: Invalid value: \"\": An image reference is required")
            for s, aset in enumerate(iv.attestors):
                errs.extend(_attestor_set_problems(aset, f"{path}.attestors[{s}]"))
        yield errs


def _attestor_set_problems(aset: Any, path: str) -> Iterator[str]:
    for e, entry in enumerate(aset.entries):
        chosen = [n for n in ("keys", "certificates", "keyless", "attestor")
                  if getattr(entry, n) is not None]
        if len(chosen) != 1:
            yield (f"{path}.entries[{e}]: Invalid value: \"\": "
                   "keys, certificates, keyless, or attestor is required")
        elif entry.keys is not None:
            keys = entry.keys
            given = [bool(keys.public_keys), bool(keys.kms), keys.secret is not None]
            if sum(given) != 1:
                yield (f"{path}.entries[{e}].keys: Invalid value: \"\": "
                       "exactly one of kms, secret, or publicKeys is required")
    if aset.count is not None and aset.count > len(aset.entries):
        yield f"{path}.count: Invalid value: {aset.count}: count is greater than entries"


_HASH_ALGORITHMS = {"sha224", "sha256", "sha384", "sha512"}
_CIP_RESOURCES = {"replicasets", "deployments", "pods", "cronjobs", "jobs", "statefulsets",
                  "daemonsets"}
_KMS_PREFIXES = ("awskms://", "azurekms://", "hashivault://", "gcpkms://")


def _cip_problems(cip: ClusterImagePolicy) -> Iterator[tuple[str, str, str]]:
    """(message, path, details) triples, as knative ``FieldError`` leaves."""
    spec = cip.spec
    for a, authority in enumerate(spec.authorities):
        authority.name = authority.name or f"authority-{a}"  # SetDefaults
        if authority.keyless is not None and not authority.keyless.url and not authority.keyless.ca_cert:
            authority.keyless.url = "https://fulcio.sigstore.dev"
    spec.mode = spec.mode or "enforce"
    if not spec.images:
        yield "missing field(s)", "spec.images", ""
    for i, image in enumerate(spec.images):
        path = f"spec.images[{i}].glob"
        if not image.glob:
            yield "missing field(s)", path, ""
            continue
        try:
            compile_glob(image.glob)
        except GlobError as exc:
            yield f"invalid value: {image.glob}", path, f"glob is invalid: {exc}"
    if not spec.authorities:
        yield "missing field(s)", "spec.authorities", ""
    for a, authority in enumerate(spec.authorities):
        yield from _authority_problems(authority, f"spec.authorities[{a}]")
    if spec.mode not in ("enforce", "warn"):
        yield f"invalid value: {spec.mode}", "spec.mode", "unsupported mode"
    for m, match in enumerate(spec.match):
        if match.resource and match.resource not in _CIP_RESOURCES:
            yield (f"invalid value: {match.resource}", f"spec.match[{m}].resource",
                   "unsupported resource name")


def _authority_problems(authority: Authority, path: str) -> Iterator[tuple[str, str, str]]:
    kinds = [n for n in ("key", "keyless", "static") if getattr(authority, n) is not None]
    if not kinds:
        yield "expected exactly one, got neither", f"{path}.key", ""
        yield "expected exactly one, got neither", f"{path}.keyless", ""
        yield "expected exactly one, got neither", f"{path}.static", ""
        return
    if len(kinds) > 1:
        for n in ("key", "keyless", "static"):
            yield "expected exactly one, got both", f"{path}.{n}", ""
        return
    if authority.key is not None:
        key, kp = authority.key, f"{path}.key"
        if not key.data and not key.kms and key.secret_ref is None:
            for n in ("data", "kms", "secretref"):
                yield "expected exactly one, got neither", f"{kp}.{n}", ""
        if key.hash_algorithm and key.hash_algorithm.lower() not in _HASH_ALGORITHMS:
            yield f"invalid value: {key.hash_algorithm}", f"{kp}.hashAlgorithm", ""
        if key.data:
            if key.kms or key.secret_ref is not None:
                for n in ("data", "kms", "secretref"):
                    yield "expected exactly one, got both", f"{kp}.{n}", ""
            if not _parses_as_public_key(key.data):
                yield f"invalid value: {key.data}", f"{kp}.data", ""
        elif key.kms and key.secret_ref is not None:
            for n in ("data", "kms", "secretref"):
                yield "expected exactly one, got both", f"{kp}.{n}", ""
        if key.kms and not key.kms.startswith(_KMS_PREFIXES):
            yield (f"invalid value: {key.kms}", f"{kp}.kms",
                   "malformed KMS format, should be prefixed by any of the supported providers: "
                   "[awskms:// azurekms:// hashivault:// gcpkms://]")
    if authority.keyless is not None:
        kl = f"{path}.keyless"
        if not authority.keyless.identities:
            yield "missing field(s)", f"{kl}.identities", ""
        for i, ident in enumerate(authority.keyless.identities):
            ip = f"{kl}.identities[{i}]"
            for a, b in (("issuer", "issuer_reg_exp"), ("subject", "subject_reg_exp")):
                if getattr(ident, a) and getattr(ident, b):
                    yield "expected exactly one, got both", f"{ip}.{a}", ""
                    yield "expected exactly one, got both", f"{ip}.{a}RegExp", ""
    if authority.static is not None:
        sp = f"{path}.static"
        if authority.static.action not in ("pass", "fail"):
            yield f"invalid value: {authority.static.action}", f"{sp}.action", "unsupported action"
        for other, present in (("attestations", bool(authority.attestations)),
                               ("source", bool(authority.source)),
                               ("ctlog", authority.ctlog is not None),
                               ("rfc3161timestamp", authority.rfc3161timestamp is not None)):
            if present:
                yield "expected exactly one, got both", f"{path}.static", ""
                yield "expected exactly one, got both", f"{path}.{other}", ""
    if len(authority.source) > 1:
        yield "invalid value: source", f"{path}.source", "only single source is supported"


def _parses_as_public_key(pem: str) -> bool:
    try:
        load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        return False
    return True


def knative_error_text(leaves: list[tuple[str, str, str]]) -> str:
    """knative ``FieldError.Error()``: leaves with equal message and details merge their
    (sorted) paths; the merged errors are sorted by message, then details."""
    merged: dict[tuple[str, str], list[str]] = {}
    for message, path, details in leaves:
        paths = merged.setdefault((message, details), [])
        if path not in paths:
            paths.append(path)
    lines = []
    for (message, details), paths in sorted(merged.items()):
        line = f"{message}: {', '.join(sorted(paths))}"
        lines.append(f"{line}\n{details}" if details else line)
    return "\n".join(lines)

