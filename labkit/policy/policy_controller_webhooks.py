"""policy-controller's webhooks: ClusterImagePolicy and TrustRoot as they admit them.

Three stages after strict decoding, in the API server's order: the defaulting webhook decodes
the object into its Go types (``mutation failed: cannot decode incoming new object: …``) and
sends it back re-encoded, so an absent non-omitempty slice or []byte comes back as ``null``,
which the CRD schema then refuses; last, ``validating.clusterimagepolicy.sigstore.dev`` runs
``Validate()`` (pkg/apis/policy/v1alpha1/{clusterimagepolicy,trustroot}_validation.go and
pkg/apis/policy/common/validation.go at v0.13.1; v1beta1 validates alike).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import types
import typing
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from labkit._internal.goregexp import go_regexp_error
from labkit._internal.gostd import (
    base64_error,
    json_syntax_error,
    pem_certificates,
    request_uri_error,
    split_host_port_error,
    url_parse_error,
    url_parts,
)
from labkit.oci.reference import registry_name_error, repository_name_error
from labkit.policy.decoder import Decoder
from labkit.policy.match import GlobError, compile_glob
from labkit.policy.schema import (
    Attestation,
    Authority,
    CertificateAuthority,
    CIPPolicy,
    ClusterImagePolicy,
    Identity,
    KeylessRef,
    KeyRef,
    SigstoreKeys,
    Source,
    TrustRoot,
)

PC_SYSTEM_NAMESPACE = "cosign-system"  # system.Namespace() of the chart's and the native lab's install
_HASH_ALGORITHMS = {"sha224", "sha256", "sha384", "sha512"}
_CIP_RESOURCES = {"replicasets", "deployments", "pods", "cronjobs", "jobs", "statefulsets",
                  "daemonsets"}
KMS_PREFIXES = ("awskms://", "azurekms://", "hashivault://", "gcpkms://")  # common.SupportedKMSProviders
_PREDICATE_ALIASES = {"custom", "slsaprovenance", "spdx", "spdxjson", "cyclonedx", "link", "vuln"}
_AWS_KEY_FORMAT = "kms key should be in the format awskms://[ENDPOINT]/[ID/ALIAS/ARN] (endpoint optional)"
_AWS_UUID = r"m?r?k?-?[A-Fa-f0-9]{8}-?[A-Fa-f0-9]{4}-?[A-Fa-f0-9]{4}-?[A-Fa-f0-9]{4}-?[A-Fa-f0-9]{12}"
_AWS_ARN = r"arn:(?:aws|aws-us-gov|aws-cn):kms:[a-z0-9-]+:[0-9]{12}:"
_AWS_KMS = [re.compile(r"awskms://([^/]*)/" + tail) for tail in (
    f"({_AWS_UUID})", f"({_AWS_ARN}key/{_AWS_UUID})", r"((alias/.*))", f"({_AWS_ARN}(alias/.*))")]  # Go's, anchored
_DEPRECATED_PREDICATE = "deprecated value, please use RFC 3986 conformant values"

# Go fields knative decodes as apis.URL (url.Parse) and as []byte (base64), by JSON path
_URL_FIELDS = {
    "ClusterImagePolicy": ("spec.authorities.*.keyless.url", "spec.authorities.*.ctlog.url",
                           "spec.policy.remote.url", "spec.authorities.*.attestations.*.policy.remote.url"),
    "TrustRoot": ("spec.remote.mirror", "spec.sigstoreKeys.certificateAuthorities.*.uri",
                  "spec.sigstoreKeys.timestampAuthorities.*.uri", "spec.sigstoreKeys.tLogs.*.baseURL",
                  "spec.sigstoreKeys.ctLogs.*.baseURL"),
}
_BYTES_FIELDS = ("spec.remote.root", "spec.repository.root", "spec.repository.mirrorFS",
                 "spec.sigstoreKeys.certificateAuthorities.*.certChain",
                 "spec.sigstoreKeys.timestampAuthorities.*.certChain",
                 "spec.sigstoreKeys.tLogs.*.publicKey", "spec.sigstoreKeys.ctLogs.*.publicKey")
# non-omitempty Go fields the round trip sends back as null when absent: path → CRD type
_NULL_WHEN_ABSENT = {
    "ClusterImagePolicy": {"spec.images": "array", "spec.authorities.*.keyless.identities": "array"},
    "TrustRoot": {**dict.fromkeys(_BYTES_FIELDS, "string"),
                  "spec.sigstoreKeys.certificateAuthorities": "array"},
}
_GO_NAMES = {"CIPSecretRef": "SecretReference", "CIPPolicy": "Policy", "TUFRemote": "Remote",
             "TUFRepository": "Repository"}
_CORE_V1 = {"CIPSecretRef", "LocalObjectReference"}

Leaf = tuple[str, str, str]  # knative FieldError leaf: message, path, details


def _walk(value: Any, pattern: list[str], order: tuple[int, ...] = (), path: str = ""
          ) -> Iterator[tuple[tuple[int, ...], str, Any, bool]]:
    """(document order, path, value, present) of what a dotted ``pattern`` (``*``: each item)
    names; ``present`` is False for a missing last key whose parent exists."""
    if not pattern:
        yield order, path, value, True
        return
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        for i, item in enumerate(value if isinstance(value, list) else []):
            yield from _walk(item, rest, (*order, i), f"{path}[{i}]")
    elif isinstance(value, dict):
        sub = f"{path}.{head}" if path else head
        if head in value and value[head] is not None:
            yield from _walk(value[head], rest, (*order, list(value).index(head)), sub)
        elif not rest:
            yield order, sub, None, False


def _go_type(tp: Any, version: str) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _go_type(tp, version)
    if origin is list:
        return "[]" + _go_type(typing.get_args(tp)[0], version)
    if origin is dict:
        return "map[string]string"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = tp.__name__
        return f"{'v1' if name in _CORE_V1 else version}.{_GO_NAMES.get(name, name)}"
    return {str: "string", bool: "bool", int: "int64"}.get(tp, "interface {}")


def go_decode_error(doc: dict[str, Any], decoder: Decoder) -> str:
    """What the defaulting webhook's Go decoding of a policy.sigstore.dev object fails with ("" if
    nothing): an apis.URL field's error ends decoding; otherwise the first value of the wrong type
    or bad base64, in document order (encoding/json keeps decoding and reports the earliest)."""
    kind, version = str(doc.get("kind")), str(doc.get("apiVersion")).rpartition("/")[2]
    url_fields = {p.replace(".*", "") for p in _URL_FIELDS.get(kind, ())}
    bytes_fields = {p.replace(".*", "") for p in _BYTES_FIELDS} if kind == "TrustRoot" else set()
    returned: list[tuple[tuple[int, ...], str]] = []
    saved: list[tuple[tuple[int, ...], str]] = []
    for wrong in decoder.type_errors:
        if wrong.got == "null" or wrong.owner is None:
            continue  # Go leaves a field alone for null
        owner = _GO_NAMES.get(wrong.owner.__name__, wrong.owner.__name__)
        expected = ("string" if wrong.field in url_fields
                    else "[]uint8" if wrong.field in bytes_fields else _go_type(wrong.expected, version))
        text = (f"json: cannot unmarshal {wrong.got} into Go struct field {owner}.{wrong.field} "
                f"of type {expected}")
        (returned if wrong.field in url_fields else saved).append((wrong.order, text))
    for pattern in _URL_FIELDS.get(kind, ()):
        for order, _, value, _ in _walk(doc, pattern.split(".")):
            if isinstance(value, str) and (error := url_parse_error(value)):
                returned.append((order, error))
    for pattern in _BYTES_FIELDS if kind == "TrustRoot" else ():
        for order, _, value, _ in _walk(doc, pattern.split(".")):
            if isinstance(value, str) and (error := base64_error(value)):
                saved.append((order, error))
    first = min(returned or saved, default=None)
    return first[1] if first else ""


def null_round_trip_errors(doc: dict[str, Any]) -> list[str]:
    """The CRD schema's complaints about the ``null`` the defaulting webhook's round trip writes
    for each absent non-omitempty Go field (``Invalid value: "null"``)."""
    errors = []
    for pattern, crd_type in _NULL_WHEN_ABSENT.get(str(doc.get("kind")), {}).items():
        for _, path, _, present in _walk(doc, pattern.split(".")):
            if not present:
                errors.append(f'{path}: Invalid value: "null": {path} in body must be of type {crd_type}: "null"')
    return sorted(errors)


def _invalid(value: str, path: str, details: str = "") -> Leaf:
    return f"invalid value: {value}", path, details


def _missing(*paths: str) -> Iterator[Leaf]:
    for path in paths:
        yield "missing field(s)", path, ""


def _both(*paths: str) -> Iterator[Leaf]:
    for path in paths:
        yield "expected exactly one, got both", path, ""


def _neither(*paths: str) -> Iterator[Leaf]:
    for path in paths:
        yield "expected exactly one, got neither", path, ""


def _cip_defaults(cip: ClusterImagePolicy) -> None:
    """clusterimagepolicy_defaults.go: mode, authority names, the public Fulcio for a keyless
    authority with neither ``url`` nor ``ca-cert``."""
    spec = cip.spec
    spec.mode = spec.mode or "enforce"
    for a, authority in enumerate(spec.authorities):
        authority.name = authority.name or f"authority-{a}"
        keyless = authority.keyless
        if authority.key is None and authority.static is None and keyless is not None \
                and keyless.ca_cert is None and keyless.url is None:
            keyless.url = "https://fulcio.sigstore.dev"


def cip_problems(cip: ClusterImagePolicy, warnings: list[Leaf] | None = None) -> Iterator[Leaf]:
    """ClusterImagePolicySpec.Validate: knative ``FieldError`` leaves; warnings (deprecated
    predicate types) go to ``warnings``."""
    _cip_defaults(cip)
    spec = cip.spec
    if not spec.images:
        yield from _missing("spec.images")
    for i, image in enumerate(spec.images):
        path = f"spec.images[{i}].glob"
        if not image.glob:
            yield from _missing(path)
            continue
        try:
            compile_glob(image.glob)
        except GlobError as exc:
            yield _invalid(image.glob, path, f"glob is invalid: {exc}")
    if not spec.authorities:
        yield from _missing("spec.authorities")
    for a, authority in enumerate(spec.authorities):
        yield from _authority_problems(authority, f"spec.authorities[{a}]", warnings)
    if spec.mode not in ("enforce", "warn"):
        yield _invalid(spec.mode, "spec.mode", "unsupported mode")
    for m, match in enumerate(spec.match):
        if match.resource and match.resource not in _CIP_RESOURCES:
            yield _invalid(match.resource, f"spec.match[{m}].resource", "unsupported resource name")
        if match.selector is not None and not (match.resource or match.version or match.group):
            yield _invalid(match.resource, f"spec.match[{m}].selector",
                           "selector requires a resource type to match the labels")
    if spec.policy is not None:
        # Validated within spec but not ViaField("policy"): its paths are spec.type, spec.data, …
        yield from _policy_problems(spec.policy, "spec", within_spec=True)


def _authority_problems(authority: Authority, path: str, warnings: list[Leaf] | None) -> Iterator[Leaf]:
    kinds = [n for n in ("key", "keyless", "static") if getattr(authority, n) is not None]
    if not kinds:
        yield from _neither(f"{path}.key", f"{path}.keyless", f"{path}.static")
        return
    if len(kinds) > 1:
        yield from _both(f"{path}.key", f"{path}.keyless", f"{path}.static")
        return
    if authority.key is not None:
        yield from _key_problems(authority.key, f"{path}.key")
    if authority.keyless is not None:
        yield from _keyless_problems(authority.keyless, f"{path}.keyless")
    if authority.static is not None:
        sp = f"{path}.static"
        if not authority.static.action:
            yield from _missing(f"{sp}.action")
        elif authority.static.action not in ("pass", "fail"):
            yield _invalid(authority.static.action, f"{sp}.action", "unsupported action")
        for other, present in (("attestations", bool(authority.attestations)),
                               ("source", bool(authority.source)),
                               ("ctlog", authority.ctlog is not None),
                               ("rfc3161timestamp", authority.rfc3161timestamp is not None)):
            if present:
                yield from _both(f"{path}.static", f"{path}.{other}")
    if len(authority.source) > 1:
        yield _invalid("source", f"{path}.source", "only single source is supported")
    else:
        for i, source in enumerate(authority.source):
            yield from _source_problems(source, f"{path}.source[{i}]")
    for attestation in authority.attestations:
        # ViaField("attestations"), without the index
        yield from _attestation_problems(attestation, f"{path}.attestations", warnings)


def _source_problems(source: Source, path: str) -> Iterator[Leaf]:
    """Source.Validate. Each pull secret without a name re-prefixes every error found so far with
    its ``signaturePullSecrets[i]`` (Go's ``errs.Also(…).ViaFieldIndex(…)``), the oci one too."""
    leaves: list[Leaf] = []
    if source.oci and (error := oci_problem(source.oci)):
        leaves.append(_invalid(source.oci, "oci", error))
    for i, secret in enumerate(source.signature_pull_secrets):
        if not secret.name:
            leaves = [(m, f"signaturePullSecrets[{i}].{p}", d) for m, p, d in [*leaves, *_missing("name")]]
    for message, rel, details in leaves:
        yield message, f"{path}.{rel}", details


def oci_problem(oci: str) -> str:
    """``common.ValidateOCI``: a registry, or a repository when the first part looks like a host
    (``.`` or ``:``), under ggcr's strict validation; "" when it passes."""
    first, slash, _ = oci.partition("/")
    if slash and ("." in first or ":" in first):
        return repository_name_error(oci, strict=True) or ""
    return registry_name_error(oci, strict=True) or ""


def _key_problems(key: KeyRef, path: str) -> Iterator[Leaf]:
    """KeyRef.Validate, for ``key`` and for ``keyless.ca-cert``."""
    choices = (f"{path}.data", f"{path}.kms", f"{path}.secretref")
    if not key.data and not key.kms and key.secret_ref is None:
        yield from _neither(*choices)
    if key.hash_algorithm and key.hash_algorithm.strip().lower() not in _HASH_ALGORITHMS:
        yield _invalid(key.hash_algorithm, f"{path}.hashAlgorithm")
    if key.data:
        if key.kms or key.secret_ref is not None:
            yield from _both(*choices)
        if not _parses_as_public_key(key.data):
            yield _invalid(key.data, f"{path}.data")
    elif key.kms and key.secret_ref is not None:
        yield from _both(*choices)
    if key.kms and (problem := kms_problem(key.kms)):
        yield _invalid(key.kms, f"{path}.kms", problem)
    namespace = key.secret_ref.namespace if key.secret_ref is not None else ""
    if namespace and namespace != PC_SYSTEM_NAMESPACE:
        yield _invalid(namespace, f"{path}.secretref.namespace", "secretref.namespace is invalid. If set, it "
                       "should use the same namespace where the policy-controller was deployed")


def kms_problem(kms: str) -> str:
    """``common.ValidateKMS``: why policy-controller refuses a KMS key reference ("" if it does
    not). Only the four schemes; an AWS reference must name a key or alias ARN."""
    if not kms.startswith(KMS_PREFIXES):
        return ("malformed KMS format, should be prefixed by any of the supported providers: "
                f"[{' '.join(KMS_PREFIXES)}]")
    if not kms.startswith("awskms://"):
        return ""
    parts = kms.split("/")
    if len(parts) < 4:
        return ("malformed AWS KMS format 'awskms://$ENDPOINT/$KEYID', should be conformant with KMS standard "
                "documented here: https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id")
    if not any(pattern.fullmatch(kms) for pattern in _AWS_KMS):
        return _AWS_KEY_FORMAT
    endpoint = parts[2]
    if endpoint.startswith(("arn", "alias")):
        return _AWS_KEY_FORMAT
    if endpoint and (error := split_host_port_error(endpoint)):
        return f"malformed endpoint: {error}"
    key_id = parts[3]
    if not key_id.startswith("arn:"):
        return "failed to parse either key or alias arn: arn: invalid prefix"
    sections = key_id.split(":", 5)
    if len(sections) != 6:
        return "failed to parse either key or alias arn: arn: not enough sections"
    _, partition, service, region, account, resource = sections
    if resource not in ("key", "alias"):
        return (f"Got ARN: {{Partition:{partition} Service:{service} Region:{region} AccountID:{account} "
                f"Resource:{resource}}} Resource: {resource}")
    return ""


def _keyless_problems(keyless: KeylessRef, path: str) -> Iterator[Leaf]:
    if keyless.url is None and keyless.ca_cert is None:
        yield from _neither(f"{path}.url", f"{path}.ca-cert")
    if keyless.url is not None and keyless.ca_cert is not None:
        yield from _both(f"{path}.url", f"{path}.ca-cert")
    if keyless.ca_cert is not None:
        yield from _key_problems(keyless.ca_cert, f"{path}.ca-cert")
    if not keyless.identities:
        yield from _missing(f"{path}.identities")
    for i, identity in enumerate(keyless.identities or []):
        yield from _identity_problems(identity, f"{path}.identities[{i}]")


def _identity_problems(identity: Identity, path: str) -> Iterator[Leaf]:
    if identity.issuer and identity.issuer_reg_exp:
        yield from _both(f"{path}.issuer", f"{path}.issuerRegExp")
    if identity.subject and identity.subject_reg_exp:
        yield from _both(f"{path}.subject", f"{path}.subjectRegExp")
    for name, pattern in (("issuerRegExp", identity.issuer_reg_exp), ("subjectRegExp", identity.subject_reg_exp)):
        if pattern and (error := go_regexp_error(pattern)):
            yield _invalid(pattern, f"{path}.{name}", f"regex is invalid: {error}")
    if not identity.subject and not identity.subject_reg_exp:
        yield from _missing(f"{path}.subject", f"{path}.subjectRegExp")
    if not identity.issuer and not identity.issuer_reg_exp:
        yield from _missing(f"{path}.issuer", f"{path}.issuerRegExp")


def _attestation_problems(attestation: Attestation, path: str, warnings: list[Leaf] | None) -> Iterator[Leaf]:
    if not attestation.name:
        yield from _missing(f"{path}.name")
    pt = attestation.predicate_type
    if not pt:
        yield from _missing(f"{path}.predicateType")
    elif (pt in _PREDICATE_ALIASES or request_uri_error(pt)) and warnings is not None:
        warnings.append(_invalid(pt, f"{path}.predicateType", _DEPRECATED_PREDICATE))
    if attestation.policy is not None:
        yield from _policy_problems(attestation.policy, f"{path}.policy", within_spec=False)


def _policy_problems(policy: CIPPolicy, path: str, *, within_spec: bool) -> Iterator[Leaf]:
    if policy.type not in ("cue", "rego"):
        yield _invalid(policy.type, f"{path}.type", "only [cue,rego] are supported at the moment")
    sources = (f"{path}.data", f"{path}.configMapRef", f"{path}.remote")
    given = [bool(policy.data), policy.config_map_ref is not None, policy.remote is not None]
    if not any(given):
        yield from _missing(*sources)
    if sum(given) > 1:
        yield from _both(*sources)
    if policy.remote is not None:
        remote, rp = policy.remote, f"{path}.remote"
        scheme, host = url_parts(remote.url) if not url_parse_error(remote.url) else ("", "")
        if not host or scheme != "https":
            yield _invalid(remote.url, f"{rp}.url", "url valid is invalid. host and https scheme are expected")
        if not remote.sha256sum:
            yield from _missing(f"{rp}.sha256sum")
    if policy.config_map_ref is not None:
        if not policy.config_map_ref.name:
            yield from _missing(f"{path}.configMapRef.name")
        if not policy.config_map_ref.key:
            yield from _missing(f"{path}.configMapRef.key")
    if not within_spec:
        for name, value in (("fetchConfigFile", policy.fetch_config_file), ("includeSpec", policy.include_spec),
                            ("includeObjectMeta", policy.include_object_meta),
                            ("includeTypeMeta", policy.include_type_meta)):
            if value is not None:
                yield "must not set the field(s)", f"{path}.{name}", ""


def _parses_as_public_key(pem: str) -> bool:
    try:
        load_pem_public_key(pem.encode())
    except (ValueError, TypeError):
        return False
    return True


def cip_warnings(cip: ClusterImagePolicy) -> list[str]:
    """The warnings the validating webhook admits a valid policy with, one line each as kubectl
    prints them after ``Warning:``."""
    warnings: list[Leaf] = []
    for _ in cip_problems(copy.deepcopy(cip), warnings):
        pass
    return knative_error_text(warnings).split("\n") if warnings else []


# --- TrustRoot -------------------------------------------------------------------------------


def trust_root_problems(root: TrustRoot) -> Iterator[Leaf]:
    """TrustRootSpec.Validate. SigstoreKeys.Validate assigns (not adds) each item's errors, so only
    the last item checked reports (certificate authorities, then timestamp authorities, CT logs,
    transparency logs); labkit reports what the webhook reports."""
    spec = root.spec
    given = [spec.remote is not None, spec.repository is not None, spec.sigstore_keys is not None]
    choices = ("spec.remote", "spec.repository", "spec.sigstoreKeys")
    if not any(given):
        yield from _neither(*choices)
    elif sum(given) > 1:
        yield from _both(*choices)
    elif spec.repository is not None:
        repo = spec.repository
        # targets is defaulted ("targets"), so never missing
        leaves = list(_root_problems(repo.root, "spec.repository.root"))
        if not _b64(repo.mirror_fs):
            leaves.extend(_missing("spec.repository.repository"))
        # labkit does not build the TUF client the webhook builds from mirrorFS (its metadata
        # and targets are not checked here)
        yield from leaves
    elif spec.remote is not None:
        if not spec.remote.mirror:
            yield from _missing("spec.remote.mirror")
        yield from _root_problems(spec.remote.root, "spec.remote.root")
    elif spec.sigstore_keys is not None:
        yield from _sigstore_keys_problems(spec.sigstore_keys, "spec.sigstoreKeys")


def _b64(text: str | None) -> bytes:
    return base64.b64decode(text.replace("\n", "").replace("\r", "")) if text and not base64_error(text) else b""


def _root_problems(root: str | None, path: str) -> Iterator[Leaf]:
    if root is None:
        yield from _missing(path)
        return
    data = _b64(root)
    if syntax := json_syntax_error(data):
        yield _invalid("failed to unmarshal", path, syntax)
        return
    parsed = json.loads(data)
    if not isinstance(parsed, dict):
        kind = {list: "array", str: "string", bool: "bool", type(None): "null"}.get(type(parsed), "number")
        if parsed is not None:
            yield _invalid("failed to unmarshal", path,
                           f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
            return
        parsed = {}
    if parsed.get("signatures") is None:
        yield _invalid("missing signatures in root.json", path, "no signatures")


def _sigstore_keys_problems(keys: SigstoreKeys, path: str) -> Iterator[Leaf]:
    result: list[Leaf] = []
    cas = keys.certificate_authorities or []
    if not cas and not keys.timestamp_authorities:
        result = list(_neither(f"{path}.certificateAuthority", f"{path}.timestampAuthorities"))
    else:
        for i, ca in enumerate(cas):
            result = list(_authority_leaves(ca, f"{path}.certificateAuthority[{i}]", tsa=False))
    for i, tsa in enumerate(keys.timestamp_authorities):
        result = list(_authority_leaves(tsa, f"{path}.timestampAuthorities[{i}]", tsa=True))
    for name, logs in (("ctLogs", keys.ct_logs), ("tLogs", keys.t_logs)):
        for i, log in enumerate(logs):
            lp = f"{path}.{name}[{i}]"
            result = [*(_missing(f"{lp}.baseURL") if not log.base_url else ()),
                      *(_missing(f"{lp}.hashAlgorithm") if not log.hash_algorithm else ()),
                      *(_missing(f"{lp}.publicKey") if not _b64(log.public_key) else ())]
    yield from result


def _authority_leaves(ca: CertificateAuthority, path: str, *, tsa: bool) -> Iterator[Leaf]:
    if not ca.subject.organization:
        yield from _missing(f"{path}.subject.organization")
    if not ca.subject.common_name:
        yield from _missing(f"{path}.subject.commonName")
    if not ca.uri:
        yield from _missing(f"{path}.uri")
    chain = _b64(ca.cert_chain)
    if not chain:
        yield from _missing(f"{path}.certchain")
    if tsa:
        try:
            leaves = [c for c in pem_certificates(chain) if not _is_ca(c)]
        except ValueError as exc:
            yield _invalid("error splitting the certificates", f"{path}.certChain", str(exc))
            return
        if len(leaves) > 1:
            yield _invalid("certificate chain must contain at most one TSA certificate", f"{path}.certChain")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


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

