"""The policy documents labkit evaluates, as dataclasses that mirror the upstream Go types.

Field names are the snake_case of the YAML keys; ``json`` metadata spells a key whose camelCase
does not follow (``ignoreSCT``, ``ca-cert``). ``required`` marks keys the CRD schema requires.
Parts labkit does not evaluate yet (attestations, rule types other than verifyImages)
are kept as plain data (``Any``) so such policies still load. An ImageValidatingPolicy's spec is
open here, as in its CRD; its nested parts (:data:`IVP_SPEC_PARTS`) are decoded when the policy
compiles (:mod:`labkit.policy.ivp_compile`).

Sources: Kyverno ``api/kyverno/v1/*_types.go`` and ``api/policies.kyverno.io/v1beta1``;
policy-controller ``pkg/apis/policy/v1alpha1/clusterimagepolicy_types.go`` (v1beta1 has the same
schema).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from labkit.policy.podspec import Engine


def _required() -> Any:
    return field(metadata={"required": True})


def _json(name: str, default: Any = None) -> Any:
    return field(default=default, metadata={"json": name})


@dataclass
class ObjectMeta:
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # Server-populated fields a saved object may carry.
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    creation_timestamp: Any = None
    managed_fields: Any = None
    finalizers: list[str] = field(default_factory=list)


@dataclass
class PolicyObject:
    """What every policy object has; each kind adds its ``spec`` and ``status``, in that order."""

    api_version: str = _required()
    kind: str = _required()
    metadata: ObjectMeta = field(default_factory=ObjectMeta)

    @property
    def name(self) -> str:
        return self.metadata.name


# --- Kyverno kyverno.io/v1 ClusterPolicy / Policy ---------------------------------------------


@dataclass
class Rekor:
    url: str = ""
    pubkey: str = ""
    ignore_tlog: bool = False


@dataclass
class CTLog:
    ignore_sct: bool = _json("ignoreSCT", False)
    pubkey: str = ""
    tsa_cert_chain: str = ""


@dataclass
class SecretReference:
    name: str = _required()
    namespace: str = _required()


@dataclass
class StaticKeyAttestor:
    public_keys: str = ""
    signature_algorithm: str = ""
    kms: str = ""
    secret: SecretReference | None = None
    rekor: Rekor | None = None
    ctlog: CTLog | None = None


@dataclass
class KeylessAttestor:
    """Kyverno's ``KeylessAttestor`` (api/kyverno/v1/image_verification_types.go)."""

    rekor: Rekor | None = None
    ctlog: CTLog | None = None
    issuer: str = ""
    issuer_reg_exp: str = _json("issuerRegExp", "")
    subject: str = ""
    subject_reg_exp: str = _json("subjectRegExp", "")
    roots: str = ""
    additional_extensions: dict[str, str] = field(default_factory=dict)


@dataclass
class Attestor:
    keys: StaticKeyAttestor | None = None
    certificates: Any = None
    keyless: KeylessAttestor | None = None
    attestor: Any = None
    annotations: dict[str, str] = field(default_factory=dict)
    repository: str = ""
    signature_algorithm: str = ""


@dataclass
class AttestorSet:
    count: int | None = None
    entries: list[Attestor] = field(default_factory=list)


@dataclass
class ImageRegistryCredentials:
    allow_insecure_registry: bool = False
    providers: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)


@dataclass
class ImageVerification:
    image_references: list[str] = field(default_factory=list)
    skip_image_references: list[str] = field(default_factory=list)
    type: str = ""
    failure_action: str | None = None
    attestors: list[AttestorSet] = field(default_factory=list)
    attestations: list[Any] = field(default_factory=list)
    repository: str = ""
    cosign_oci11: bool = _json("cosignOCI11", False)
    # CRD defaults: all four are true when omitted.
    mutate_digest: bool = True
    verify_digest: bool = True
    required: bool = True
    use_cache: bool = True
    validate: Any = None
    image_registry_credentials: ImageRegistryCredentials | None = None
    # Deprecated single-attestor spelling, still part of the schema.
    image: str = ""
    key: str = ""
    roots: str = ""
    subject: str = ""
    issuer: str = ""
    additional_extensions: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class ResourceDescription:
    kinds: list[str] = field(default_factory=list)
    name: str = ""
    names: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    selector: Any = None
    namespace_selector: Any = None
    operations: list[str] = field(default_factory=list)


@dataclass
class ResourceFilter:
    resources: ResourceDescription = field(default_factory=ResourceDescription)
    roles: list[str] = field(default_factory=list)
    cluster_roles: list[str] = field(default_factory=list)
    subjects: list[Any] = field(default_factory=list)


@dataclass
class MatchResources:
    any: list[ResourceFilter] = field(default_factory=list)
    all: list[ResourceFilter] = field(default_factory=list)
    resources: ResourceDescription | None = None
    roles: list[str] = field(default_factory=list)
    cluster_roles: list[str] = field(default_factory=list)
    subjects: list[Any] = field(default_factory=list)


@dataclass
class Rule:
    name: str = _required()
    match: MatchResources = field(default_factory=MatchResources, metadata={"required": True})
    exclude: MatchResources | None = None
    verify_images: list[ImageVerification] = field(default_factory=list)
    context: list[Any] = field(default_factory=list)
    report_properties: dict[str, str] = field(default_factory=dict)
    image_extractors: Any = None
    preconditions: Any = None
    cel_preconditions: Any = None
    mutate: Any = None
    validate: Any = None
    generate: Any = None
    skip_background_requests: bool = True


@dataclass
class KyvernoPolicySpec:
    rules: list[Rule] = field(default_factory=list)
    apply_rules: str = ""
    failure_policy: str = ""
    # CRD default (deprecated since 1.13, still the fallback for failureAction).
    validation_failure_action: str = "Audit"
    validation_failure_action_overrides: list[Any] = field(default_factory=list)
    emit_warning: bool = False
    admission: bool = True
    background: bool = True
    schema_validation: bool | None = None
    webhook_timeout_seconds: int | None = None
    mutate_existing_on_policy_update: bool = False
    generate_existing_on_policy_update: bool | None = None
    generate_existing: bool = False
    use_server_side_apply: bool = False
    webhook_configuration: Any = None


@dataclass
class KyvernoPolicy(PolicyObject):
    """``ClusterPolicy`` or namespaced ``Policy`` (kyverno.io/v1); only verifyImages rules act here."""

    spec: KyvernoPolicySpec = field(default_factory=KyvernoPolicySpec, metadata={"required": True})
    status: Any = None

    engine = Engine.KYVERNO


# --- Kyverno policies.kyverno.io ImageValidatingPolicy ------------------------------------------


@dataclass
class ImageValidatingPolicySpec:
    match_constraints: Any = None
    match_conditions: list[Any] = field(default_factory=list)
    variables: list[Any] = field(default_factory=list)
    validations: list[Any] = field(default_factory=list)
    audit_annotations: list[Any] = field(default_factory=list)
    failure_policy: str = ""
    validation_actions: list[str] = field(default_factory=list)
    evaluation: Any = None
    webhook_configuration: Any = None
    autogen: Any = None
    match_image_references: list[Any] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)
    credentials: Any = None
    attestors: list[Any] = field(default_factory=list)
    attestations: list[Any] = field(default_factory=list)
    validation_configurations: Any = None


@dataclass
class ImageValidatingPolicy(PolicyObject):
    spec: ImageValidatingPolicySpec = field(default_factory=ImageValidatingPolicySpec)
    status: Any = None

    engine = Engine.KYVERNO


@dataclass
class Validation:
    expression: str = _required()
    message: str = ""
    message_expression: str = ""
    reason: str = ""


@dataclass
class NamedExpression:
    name: str = _required()
    expression: str = _required()


@dataclass
class MatchImageReference:
    glob: str = ""
    expression: str = ""


@dataclass
class CosignKey:
    data: str = ""
    kms: str = ""
    hash_algorithm: str = ""
    expression: str = ""


@dataclass
class IVPCTLog:
    url: str = ""
    rekor_pub_key: str = ""
    ct_log_pub_key: str = _json("ctLogPubKey", "")
    tsa_cert_chain: str = ""
    insecure_ignore_tlog: bool = False
    insecure_ignore_sct: bool = _json("insecureIgnoreSCT", False)


@dataclass
class IVPIdentity:
    issuer: str = ""
    subject: str = ""
    issuer_reg_exp: str = _json("issuerRegExp", "")
    subject_reg_exp: str = _json("subjectRegExp", "")
    subject_expression: str = ""


@dataclass
class IVPKeyless:
    identities: list[IVPIdentity] = field(default_factory=list)
    roots: str = ""
    additional_extensions: dict[str, str] = field(default_factory=dict)


@dataclass
class TUFRoot:
    path: str = ""
    data: str = ""


@dataclass
class IVPTUF:
    root: TUFRoot | None = None
    mirror: str = ""


@dataclass
class Cosign:
    key: CosignKey | None = None
    keyless: IVPKeyless | None = None
    certificate: Any = None
    source: Any = None
    ctlog: IVPCTLog | None = None
    tuf: IVPTUF | None = None
    trusted_root: Any = None
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class IVPAttestor:
    name: str = _required()
    cosign: Cosign | None = None
    notary: Any = None


@dataclass
class ValidationConfiguration:
    mutate_digest: bool | None = None
    verify_digest: bool | None = None
    required: bool | None = None


# spec key → type: the nested parts an ImageValidatingPolicy's compiler decodes strictly, after
# the CRD's schema (which leaves them open) admitted the policy
IVP_SPEC_PARTS: dict[str, Any] = {
    "validations": list[Validation],
    "matchConditions": list[NamedExpression],
    "variables": list[NamedExpression],
    "images": list[NamedExpression],
    "matchImageReferences": list[MatchImageReference],
    "attestors": list[IVPAttestor],
    "validationConfigurations": ValidationConfiguration | None,
    "credentials": ImageRegistryCredentials | None,
}


# --- policy-controller policy.sigstore.dev ClusterImagePolicy ----------------------------------


@dataclass
class ImagePattern:
    glob: str = ""  # required by the webhook (``missing field(s)``), not by the CRD schema


@dataclass
class CIPSecretRef:
    name: str = ""
    namespace: str = ""


@dataclass
class KeyRef:
    secret_ref: CIPSecretRef | None = None
    data: str = ""
    kms: str = ""
    hash_algorithm: str = ""


@dataclass
class StaticRef:
    action: str = ""  # required by the webhook (``missing field(s)``), not by the CRD schema
    message: str = ""


@dataclass
class TLog:
    url: str | None = None  # knative apis.URL: None when absent, "" when given empty
    trust_root_ref: str = ""


@dataclass
class Identity:
    issuer: str = ""
    subject: str = ""
    issuer_reg_exp: str = _json("issuerRegExp", "")
    subject_reg_exp: str = _json("subjectRegExp", "")


@dataclass
class KeylessRef:
    url: str | None = None
    # None when absent: the webhook's JSON round trip then sends ``null``, which the CRD refuses
    identities: list[Identity] | None = None
    ca_cert: KeyRef | None = field(default=None, metadata={"json": "ca-cert"})
    trust_root_ref: str = ""
    insecure_ignore_sct: bool | None = field(default=None, metadata={"json": "insecureIgnoreSCT"})


@dataclass
class ConfigMapReference:
    name: str = ""
    namespace: str = ""
    key: str = ""


@dataclass
class RemotePolicy:
    url: str = ""
    sha256sum: str = ""


@dataclass
class CIPPolicy:
    """A CIP's or an attestation's cue/rego ``policy`` (Go ``Policy``)."""

    type: str = ""
    data: str = ""
    remote: RemotePolicy | None = None
    config_map_ref: ConfigMapReference | None = None
    fetch_config_file: bool | None = None
    include_spec: bool | None = None
    include_object_meta: bool | None = None
    include_type_meta: bool | None = None


@dataclass
class Attestation:
    name: str = ""
    predicate_type: str = ""
    policy: CIPPolicy | None = None


@dataclass
class RFC3161Timestamp:
    trust_root_ref: str = ""


@dataclass
class LocalObjectReference:
    name: str = ""


@dataclass
class Source:
    oci: str = ""
    signature_pull_secrets: list[LocalObjectReference] = field(default_factory=list)
    tag_prefix: str | None = None


@dataclass
class Authority:
    name: str = ""
    key: KeyRef | None = None
    keyless: KeylessRef | None = None
    static: StaticRef | None = None
    source: list[Source] = field(default_factory=list)
    ctlog: TLog | None = None
    attestations: list[Attestation] = field(default_factory=list)
    rfc3161timestamp: RFC3161Timestamp | None = None
    signature_format: str = ""


@dataclass
class MatchResource:
    group: str = ""
    version: str = ""
    resource: str = ""
    selector: Any = None


@dataclass
class ClusterImagePolicySpec:
    images: list[ImagePattern] = field(default_factory=list)
    authorities: list[Authority] = field(default_factory=list)
    policy: CIPPolicy | None = None
    mode: str = ""
    match: list[MatchResource] = field(default_factory=list)


@dataclass
class ClusterImagePolicy(PolicyObject):
    spec: ClusterImagePolicySpec = field(default_factory=ClusterImagePolicySpec)
    status: Any = None

    engine = Engine.POLICY_CONTROLLER



# --- policy-controller policy.sigstore.dev TrustRoot (v1alpha1) ---------------------------------
# Go ``[]byte`` fields (PEM or JSON, base64 in YAML) are kept as their base64 text; None when
# absent, because the webhook's JSON round trip then sends ``null``, which the CRD refuses.


@dataclass
class DistinguishedName:
    organization: str = ""
    common_name: str = ""


@dataclass
class CertificateAuthority:
    subject: DistinguishedName = field(default_factory=DistinguishedName)
    uri: str = ""
    cert_chain: str | None = None


@dataclass
class TransparencyLogInstance:
    base_url: str = _json("baseURL", "")
    hash_algorithm: str = ""
    public_key: str | None = None


@dataclass
class SigstoreKeys:
    certificate_authorities: list[CertificateAuthority] | None = None
    t_logs: list[TransparencyLogInstance] = field(default_factory=list)
    ct_logs: list[TransparencyLogInstance] = field(default_factory=list)
    timestamp_authorities: list[CertificateAuthority] = field(default_factory=list)


@dataclass
class TUFRemote:
    root: str | None = None
    mirror: str = ""
    targets: str = ""
    trusted_root_target: str = ""


@dataclass
class TUFRepository:
    root: str | None = None
    mirror_fs: str | None = field(default=None, metadata={"json": "mirrorFS"})
    targets: str = ""
    trusted_root_target: str = ""


@dataclass
class TrustRootSpec:
    remote: TUFRemote | None = None
    repository: TUFRepository | None = None
    sigstore_keys: SigstoreKeys | None = None


@dataclass
class TrustRoot(PolicyObject):
    """The keys and roots a ClusterImagePolicy's ``trustRootRef`` names (``trustroot_types.go``);
    keyless authorities read its ``sigstoreKeys``."""

    spec: TrustRootSpec = field(default_factory=TrustRootSpec)
    status: Any = None

    engine = Engine.POLICY_CONTROLLER


Policy = KyvernoPolicy | ImageValidatingPolicy | ClusterImagePolicy

