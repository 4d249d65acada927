"""Load policy YAML the way a cluster admits it, rejecting what the cluster would reject.

Admission of a policy has three stages, and the first that fails is the one reported:

1. Decoding. ``kubectl apply`` uses server-side field validation ``Strict``: an unknown field
   fails with ``strict decoding error: unknown field "spec.x"``.
2. The CRD's OpenAPI schema: wrong types, missing required fields. policy-controller's
   defaulting webhook comes first: it decodes the object into its Go types (Go's own errors for
   wrong types, unparsable URLs, bad base64) and writes back ``null`` for absent non-omitempty
   fields, which the schema then refuses.
3. The engine's validating webhook: Kyverno's ``validate-policy.kyverno.svc``
   (``pkg/validation/policy/validate.go``; k8s ``field.Error`` text) and policy-controller's
   ``validating.clusterimagepolicy.sigstore.dev`` (``clusterimagepolicy_validation.go``;
   knative ``FieldError`` text).

policy-controller's two webhooks (its stage-2 decoding, its stage 3) are
:mod:`labkit.policy.policy_controller_webhooks`; Kyverno's stage 3 is here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from labkit._internal.files import names_a_file
from labkit._internal.yamlsafe import METADATA_HINT, YAMLInputError, load_all, object_meta_error
from labkit.errors import PolicyError
from labkit.policy.decoder import Decoder  # stages 1 and 2: strict decoding against the dataclass schema
from labkit.policy.policy_controller_webhooks import (
    cip_problems,
    go_decode_error,
    knative_error_text,
    null_round_trip_errors,
    trust_root_problems,
)
from labkit.policy.schema import (
    ClusterImagePolicy,
    ImageValidatingPolicy,
    KyvernoPolicy,
    Policy,
    TrustRoot,
)

_KINDS: dict[tuple[str, str], type] = {
    ("kyverno.io/v1", "ClusterPolicy"): KyvernoPolicy,
    ("kyverno.io/v1", "Policy"): KyvernoPolicy,
    **{(f"policies.kyverno.io/{v}", "ImageValidatingPolicy"): ImageValidatingPolicy
       for v in ("v1alpha1", "v1beta1", "v1")},
    **{(f"policy.sigstore.dev/{v}", "ClusterImagePolicy"): ClusterImagePolicy
       for v in ("v1alpha1", "v1beta1")},
}
_LINTED_KINDS: dict[tuple[str, str], type] = {**_KINDS, ("policy.sigstore.dev/v1alpha1", "TrustRoot"): TrustRoot}
_KINDS_HINT = ("labkit reads kyverno.io/v1 ClusterPolicy/Policy, policies.kyverno.io ImageValidatingPolicy and "
               "policy.sigstore.dev ClusterImagePolicy")


def load_policies(source: str | Path) -> list[Policy]:
    """Policies from YAML text or a file path (several ``---`` documents allowed).

    Raises PolicyError with the message the cluster would give, naming the document.
    """
    return _load(source, _KINDS, _KINDS_HINT)


def load_objects(source: str | Path) -> list[Policy | TrustRoot]:
    """As :func:`load_policies`, also accepting policy-controller's ``TrustRoot`` objects (which
    labkit checks as the cluster admits them but does not evaluate): what ``labkit policy lint``
    reads."""
    return _load(source, _LINTED_KINDS, _KINDS_HINT + ", and its TrustRoot for lint")


def _load(source: str | Path, kinds: dict[tuple[str, str], type], hint: str) -> list[Any]:
    data, origin = _read(source)
    try:
        docs = [d for d in load_all(data) if d is not None]
    except YAMLInputError as exc:
        raise PolicyError(f"{origin}: {exc}", hint=exc.hint) from None
    policies: list[Any] = []
    for index, doc in enumerate(docs):
        where = origin if len(docs) == 1 else f"{origin} (document {index + 1})"
        if isinstance(doc, dict) and (meta_error := object_meta_error(doc)):
            raise PolicyError(f'unable to decode "{origin}": {meta_error}', hint=METADATA_HINT)
        policies.append(_load_one(doc, where, kinds, hint))
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


def _load_one(doc: Any, where: str, kinds: dict[tuple[str, str], type], hint: str) -> Any:
    if not isinstance(doc, dict):
        raise PolicyError(f"{where}: a policy document must be a YAML mapping")
    api_version, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    cls = kinds.get((api_version, kind))
    if cls is None:
        raise PolicyError(f'{where}: no matches for kind "{kind}" in version "{api_version}"', hint=hint)
    decoder = Decoder()
    policy: Policy | TrustRoot = decoder.decode(cls, doc, "")
    if policy.metadata is None or not policy.metadata.name:  # None: metadata was null
        decoder.invalid.append("metadata.name: Required value: name or generateName is required")
    if decoder.unknown:
        fields = ", ".join(f'unknown field "{p}"' for p in decoder.unknown)
        raise PolicyError(
            f"{where}: {kind} in version \"{api_version.rpartition('/')[2]}\" cannot be handled "
            f"as a {kind}: strict decoding error: {fields}",
            hint="remove or correct the misspelt field",
        )
    if isinstance(policy, ClusterImagePolicy | TrustRoot):
        if error := go_decode_error(doc, decoder):
            raise PolicyError(f"{where}: mutation failed: cannot decode incoming new object: {error}",
                              hint="policy-controller's defaulting webhook cannot decode it: correct the value")
        decoder.invalid.extend(null_round_trip_errors(doc))
    if decoder.invalid:
        # the API server's aggregate: "[a, b]" when several
        errors = decoder.invalid[0] if len(decoder.invalid) == 1 else "[" + ", ".join(decoder.invalid) + "]"
        raise PolicyError(f"{where}: {kind}.{api_version.partition('/')[0]} "
                          f'"{(doc.get("metadata") or {}).get("name") or ""}" is invalid: {errors}')
    problems = _validate(policy)
    if problems:
        raise PolicyError(f"{where}: " + problems, hint="the policy engine's admission rejects it")
    return policy


# --- stage 3: the engines' own policy validation ---------------------------------------------


def _validate(policy: Policy | TrustRoot) -> str:
    if isinstance(policy, KyvernoPolicy):
        # validate.go returns the first rule's errors as a k8s aggregate: "[a, b]" when several.
        for errs in _kyverno_problems(policy):
            if errs:
                return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    if isinstance(policy, ImageValidatingPolicy):
        from labkit.policy import ivp_compile  # builds the CEL environment: only when an IVP is loaded

        return ivp_compile.validate_policy(policy)
    if isinstance(policy, ClusterImagePolicy | TrustRoot):
        leaves = list(cip_problems(policy) if isinstance(policy, ClusterImagePolicy)
                      else trust_root_problems(policy))
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
        if entry.keyless is not None:
            yield from _keyless_attestor_problems(entry.keyless, f"{path}.entries[{e}].keyless")
    if aset.count is not None and aset.count > len(aset.entries):
        yield f"{path}.count: Invalid value: {aset.count}: count is greater than entries"


def _keyless_attestor_problems(keyless: Any, path: str) -> Iterator[str]:
    """``KeylessAttestor.Validate`` (api/kyverno/v1/image_verification_types.go:533): the value
    quoted as apimachinery quotes a struct, its Go JSON."""
    problem = ("Either Rekor URL or roots are required" if keyless.rekor is None and not keyless.roots
               else "An URL is required" if keyless.rekor is not None and not keyless.rekor.url else "")
    if problem:
        yield f"{path}: Invalid value: {_go_json(_keyless_json(keyless))}: {problem}"


def _keyless_json(keyless: Any) -> dict[str, Any]:
    """A KeylessAttestor as ``json.Marshal`` writes it: struct order, ``omitempty``."""
    doc: dict[str, Any] = {}
    if keyless.rekor is not None:
        rekor = keyless.rekor
        doc["rekor"] = {"url": rekor.url, **({"pubkey": rekor.pubkey} if rekor.pubkey else {}),
                        **({"ignoreTlog": True} if rekor.ignore_tlog else {})}
    if keyless.ctlog is not None:
        ctlog = keyless.ctlog
        doc["ctlog"] = {k: v for k, v in (("ignoreSCT", ctlog.ignore_sct), ("pubkey", ctlog.pubkey),
                                          ("tsaCertChain", ctlog.tsa_cert_chain)) if v}
    for key, value in (("issuer", keyless.issuer), ("issuerRegExp", keyless.issuer_reg_exp),
                       ("subject", keyless.subject), ("subjectRegExp", keyless.subject_reg_exp),
                       ("roots", keyless.roots)):
        if value:
            doc[key] = value
    if keyless.additional_extensions:
        doc["additionalExtensions"] = dict(sorted(keyless.additional_extensions.items()))
    return doc


def _go_json(value: Any) -> str:
    """Go's ``json.Marshal``: compact, HTML characters and the two line separators escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text
