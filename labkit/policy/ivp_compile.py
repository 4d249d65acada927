"""Kyverno ImageValidatingPolicy, loaded and compiled as Kyverno 1.19 does.

The nested spec (:data:`labkit.policy.schema.IVP_SPEC_PARTS`) is strictly decoded and every CEL
expression is compiled, as the policy compiler does (``pkg/image/verification/evaluator/
compiler.go``); a bad expression is reported as ``spec.validations[0].expression: Invalid value:
"…": ERROR: <input>:…``, an expression of the wrong type as ``…: output is expected to be of
type bool``, and a malformed ``matchImageReferences`` glob with gobwas/glob's error
(``pkg/cel/compiler/compiler.go``).

A policy matching only core v1 ``pods`` also applies, by autogen, to DaemonSets, Deployments,
Jobs, ReplicaSets, StatefulSets and CronJobs (:func:`autogen_variants`); :func:`compile_policies`
compiles both. Admission is :mod:`labkit.policy.ivp`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from labkit.policy.cel import CelError, Program, compile_expression, field_invalid
from labkit.policy.decoder import Decoder
from labkit.policy.match import Glob, GlobError, compile_ivp_glob
from labkit.policy.schema import (
    IVP_SPEC_PARTS,
    ImageRegistryCredentials,
    ImageValidatingPolicy,
    IVPAttestor,
    MatchImageReference,
    Validation,
    ValidationConfiguration,
)

_ACTIONS = {"Deny", "Audit", "Warn"}


@dataclass
class CompiledPolicy:
    policy: ImageValidatingPolicy
    validations: list[tuple[Validation, Program, Program | None]]
    match_conditions: list[Program]
    variables: dict[str, Program]
    image_refs: list[MatchImageReference]
    image_ref_programs: list[Program | None]
    image_ref_globs: list[Glob | None]
    attestors: dict[str, IVPAttestor]
    config: ValidationConfiguration
    actions: set[str]
    failure_policy: str
    credentials: ImageRegistryCredentials

    @property
    def name(self) -> str:
        return self.policy.name

    def matches_image(self, image: str) -> bool:
        """``matching.MatchImage``: no references match everything; else any glob/expression."""
        if not self.image_refs:
            return True
        for program, glob in zip(self.image_ref_programs, self.image_ref_globs, strict=True):
            if glob is not None:  # compiled when the policy loaded: a glob takes precedence
                if glob.matches(image):
                    return True
            elif program is not None and program.eval({"ref": image}) is True:
                return True
        return False


def _decode(policy: ImageValidatingPolicy) -> tuple[dict[str, Any], list[str], list[str]]:
    decoder, spec = Decoder(), policy.spec
    values = {}
    for name, tp in IVP_SPEC_PARTS.items():
        attr = re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)
        raw = getattr(spec, attr)
        values[name] = decoder.decode(tp, raw, f"spec.{name}") if raw is not None else None
    return values, decoder.unknown, decoder.invalid


def compile_policy(policy: ImageValidatingPolicy) -> CompiledPolicy:
    """Decode and compile; raises ValueError with Kyverno's text for what it would reject."""
    values, unknown, invalid = _decode(policy)
    kind, version = policy.kind, policy.api_version.rpartition("/")[2]
    if unknown:
        unknown_fields = ", ".join(f'unknown field "{p}"' for p in unknown)
        raise ValueError(f'{kind} in version "{version}" cannot be handled as a {kind}: '
                         f"strict decoding error: {unknown_fields}")
    errors = list(invalid)
    spec = policy.spec
    for a in spec.validation_actions:
        if a not in _ACTIONS:
            errors.append(f'spec.validationActions: Unsupported value: "{a}": supported values: '
                          '"Audit", "Deny", "Warn"')
    if spec.failure_policy not in ("", "Fail", "Ignore"):
        errors.append(f'spec.failurePolicy: Unsupported value: "{spec.failure_policy}": '
                      'supported values: "Fail", "Ignore"')
    if errors:
        raise ValueError(f'{kind}.policies.kyverno.io "{policy.name}" is invalid: ' + ", ".join(errors))

    def program(path: str, source: str, env: str = "policy", output: str = "") -> Program:
        try:
            compiled = compile_expression(source, env)
        except CelError as exc:
            raise ValueError("failed to compile policy: " + field_invalid(path, source, str(exc))) from None
        if output and not compiled.output_is(output):
            # the policy webhook's own text (ToAggregate of one field.Invalid)
            raise ValueError(field_invalid(path, source, f"output is expected to be of type {output}"))
        return compiled

    # the compiler's order: matchConditions, matchImageReferences, images, variables,
    # attestors, validations
    conditions = [program(f"spec.matchConditions[{i}].expression", c.expression, output="bool")
                  for i, c in enumerate(values["matchConditions"] or [])]
    refs: list[MatchImageReference] = values["matchImageReferences"] or []
    ref_globs, glob_errors = _compile_globs(refs)
    if glob_errors:
        # the image-verification library compiles them (imageverify/impl.go), and the policy
        # webhook reports its error as an internal one on no field: "<nil>: Internal error: …"
        raise ValueError(f"<nil>: Internal error: failed to compile matches: {_aggregate(glob_errors)}")
    ref_programs = [program(f"spec.matchImageReferences[{i}].expression", r.expression, "image", "bool")
                    if r.expression and not r.glob else None for i, r in enumerate(refs)]
    for i, extractor in enumerate(values["images"] or []):
        program(f"spec.images[{i}].expression", extractor.expression)
    variables = {v.name: program(f"spec.variables[{i}].expression", v.expression)
                 for i, v in enumerate(values["variables"] or [])}
    attestors: list[IVPAttestor] = values["attestors"] or []
    for i, att in enumerate(attestors):
        if att.cosign and att.cosign.key and att.cosign.key.expression:
            program(f"spec.attestors[{i}]", att.cosign.key.expression)
    validations = []
    for i, v in enumerate(values["validations"] or []):
        path = f"spec.validations[{i}]"
        compiled = program(f"{path}.expression", v.expression, output="bool")
        message = (program(f"{path}.messageExpression", v.message_expression, output="string")
                   if v.message_expression else None)
        validations.append((v, compiled, message))
    return CompiledPolicy(
        policy=policy,
        validations=validations,
        match_conditions=conditions,
        variables=variables,
        image_refs=refs,
        image_ref_programs=ref_programs,
        image_ref_globs=ref_globs,
        attestors={a.name: a for a in attestors},
        config=values["validationConfigurations"] or ValidationConfiguration(),
        credentials=values["credentials"] or ImageRegistryCredentials(),
        actions=set(spec.validation_actions or ["Deny"]),
        failure_policy=spec.failure_policy or "Fail",
    )


def _compile_globs(refs: Sequence[MatchImageReference]) -> tuple[list[Glob | None], list[str]]:
    """``CompileMatchImageReferences``: each glob through gobwas/glob; every bad one is reported."""
    globs: list[Glob | None] = []
    errors = []
    for i, ref in enumerate(refs):
        glob = None
        if ref.glob:
            try:
                glob = compile_ivp_glob(ref.glob)
            except GlobError as exc:
                errors.append(field_invalid(f"spec.MatchImageReferences[{i}].glob", ref.glob, str(exc)))
        globs.append(glob)
    return globs, errors


def _aggregate(errors: Sequence[str]) -> str:
    """k8s ``utilerrors.NewAggregate(…).Error()``: one message alone, else ``[a, b]`` without
    repeats."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def validate_policy(policy: ImageValidatingPolicy) -> str:
    """The admission error for ``policy``, or "" when Kyverno accepts it."""
    try:
        compile_policy(policy)
    except ValueError as exc:
        return str(exc)
    return ""


# --- autogen (pkg/cel/policies/ivpol/autogen/autogen.go, pkg/cel/autogen) -----------------------

# ConfigsMap (pkg/cel/autogen/data.go): controller → (group, version, resource, replacements)
_AUTOGEN_CONFIGS = {
    "daemonsets": ("apps", "v1", "daemonsets", "defaults"),
    "deployments": ("apps", "v1", "deployments", "defaults"),
    "replicasets": ("apps", "v1", "replicasets", "defaults"),
    "statefulsets": ("apps", "v1", "statefulsets", "defaults"),
    "jobs": ("batch", "v1", "jobs", "defaults"),
    "cronjobs": ("batch", "v1", "cronjobs", "cronjobs"),
}
# ReplacementsMap: "object.<from>" / "oldObject.<from>" → "<…>.<to>" over the policy's JSON
_AUTOGEN_REPLACEMENTS = {
    "defaults": (("spec", "spec.template.spec"), ("metadata", "spec.template.metadata")),
    "cronjobs": (("spec", "spec.jobTemplate.spec.template.spec"),
                 ("metadata", "spec.jobTemplate.spec.template.metadata")),
}
_PROTECTED = re.compile(r"\.namespace(?![A-Za-z0-9_])")  # replacement.go protectedSuffixes


def _can_autogen(match: Any) -> bool:
    """``CanAutoGen`` (pkg/cel/autogen/support.go): exactly one rule, for core v1 ``pods`` only,
    no resourceNames, no exclusions, no object selector."""
    if not isinstance(match, Mapping):
        return False
    selector = match.get("objectSelector") or {}
    if selector.get("matchLabels") or selector.get("matchExpressions"):
        return False
    rules = match.get("resourceRules") or []
    if match.get("excludeResourceRules") or len(rules) != 1:
        return False
    rule = rules[0]
    return (not rule.get("resourceNames") and rule.get("apiGroups") == [""]
            and rule.get("apiVersions") == ["v1"] and rule.get("resources") == ["pods"])


def _autogen_replace(value: Any, replacements: Sequence[tuple[str, str]]) -> Any:
    """``autogen.Apply`` on every string of the spec (it rewrites the JSON bytes; keys never
    hold ``object.``): each ``object.spec`` becomes ``object.spec.template.spec`` and so on, except
    where ``.namespace`` follows (``object.metadata.namespace`` stays the workload's)."""
    if isinstance(value, str):
        for old, new in replacements:
            for root in ("object.", "oldObject."):
                source, target = root + old, root + new
                out, rest = [], value
                while (i := rest.find(source)) >= 0:
                    tail = rest[i + len(source):]
                    out.append(rest[:i] + (source if _PROTECTED.match(tail) else target))
                    rest = tail
                value = "".join(out) + rest
        return value
    if isinstance(value, Mapping):
        return {k: _autogen_replace(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_autogen_replace(v, replacements) for v in value]
    return value


def autogen_variants(policy: ImageValidatingPolicy) -> list[ImageValidatingPolicy]:
    """The policies Kyverno also evaluates for pod controllers (``Autogen``): one per replacement
    set (``defaults``: DaemonSet, Deployment, Job, ReplicaSet, StatefulSet; ``cronjobs``), each
    matching those resources with the pod rule's operations and namespaceSelector, its CEL moved
    to the pod template. ``spec.autogen.podControllers.controllers`` picks the controllers
    (empty list: none); a ``<resource>.<version>.<group>`` name (extraction mode) labkit skips."""
    spec = policy.spec
    if not _can_autogen(spec.match_constraints):
        return []
    controllers: Sequence[str] = list(_AUTOGEN_CONFIGS)
    pod_controllers = (spec.autogen or {}).get("podControllers") if isinstance(spec.autogen, Mapping) else None
    if isinstance(pod_controllers, Mapping) and pod_controllers.get("controllers") is not None:
        controllers = list(pod_controllers["controllers"])
    mapping: dict[str, list[tuple[str, str, str]]] = {}
    for name in controllers:
        if name in _AUTOGEN_CONFIGS:
            group, version, resource, ref = _AUTOGEN_CONFIGS[name]
            mapping.setdefault(ref, []).append((group, version, resource))
    rule = spec.match_constraints["resourceRules"][0]
    variants = []
    for ref in sorted(mapping):
        by_gv: dict[tuple[str, str], set[str]] = {}
        for group, version, resource in mapping[ref]:
            by_gv.setdefault((group, version), set()).add(resource)
        constraints: dict[str, Any] = {"resourceRules": [
            {"apiGroups": [g], "apiVersions": [v], "resources": sorted(rs),
             "operations": list(rule.get("operations") or [])}
            for (g, v), rs in sorted(by_gv.items())]}
        if spec.match_constraints.get("namespaceSelector") is not None:
            constraints["namespaceSelector"] = spec.match_constraints["namespaceSelector"]
        values = {f.name: _autogen_replace(getattr(spec, f.name), _AUTOGEN_REPLACEMENTS[ref])
                  for f in fields(spec)}
        values["match_constraints"] = constraints
        variants.append(replace(policy, spec=replace(spec, **values)))
    return variants


def compile_policies(policies: Sequence[ImageValidatingPolicy]) -> list[CompiledPolicy]:
    """Each policy, then its autogen variants (the reconciler keeps them under one name)."""
    return [compile_policy(v) for p in policies for v in (p, *autogen_variants(p))]
