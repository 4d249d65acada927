"""ImageValidatingPolicy: loading, CEL, and the two webhook phases.

Oracles: texts printed by the real Kyverno CLI v1.19.1 (compile errors), the strings built in
Kyverno's source (``pkg/webhooks/resource/ivpol/handler.go``: ``Policy <p> failed: …``;
``pkg/image/verification/evaluator/policy.go``: digest, default-message and required texts),
go-containerregistry's reference rules for ``image()``, and gobwas/glob semantics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.errors import NoMatchingSignaturesError, PolicyError, RegistryUnreachableError
from labkit.policy import ivp, ivp_compile
from labkit.policy.cel import CelError, compile_expression
from labkit.policy.phases import Decision, evaluate
from labkit.policy.load import load_policies

DIGEST = "sha256:" + "ab" * 32
PEM = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


def policy_yaml(*, validations: str | None = None, extra: str = "", refs: str = '["ghcr.io/lab/*"]',
                attestor: str | None = None) -> str:
    key = "\n".join("            " + line for line in PEM.strip().splitlines())
    attestor = attestor or f"""    - name: lab
      cosign:
        key:
          data: |
{key}
        ctlog: {{insecureIgnoreTlog: true}}"""
    validations = validations or """    - expression: images.containers.map(i, verifyImageSignatures(i, [attestors.lab])).all(e, e > 0)
      message: unsigned image"""
    globs = "".join(f"\n    - glob: {g}" for g in json.loads(refs))
    return f"""apiVersion: policies.kyverno.io/v1beta1
kind: ImageValidatingPolicy
metadata:
  name: p
spec:
{extra}  matchConstraints:
    resourceRules:
      - {{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}}
  matchImageReferences:{globs}
  attestors:
{attestor}
  validations:
{validations}
"""


def pod(*images: str, kind: str = "Pod") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}


class FakeVerifier:
    """Signed images verify; ``unsigned`` raise cosign's error; ``down`` are unreachable."""

    def __init__(self, unsigned: Sequence[str] = (), down: Sequence[str] = ()) -> None:
        self.unsigned, self.down, self.calls = set(unsigned), set(down), []

    def __call__(self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
                 **_: Any) -> Any:
        self.calls.append(ref)
        if ref in self.down:
            raise RegistryUnreachableError("dial tcp 127.0.0.1:1: connection refused")
        if ref in self.unsigned:
            raise NoMatchingSignaturesError("no matching signatures: invalid signature")
        return type("Verified", (), {"digest": DIGEST})()


def admit(text: str, resource: dict[str, Any], verifier: Any = None,
          resolver: Any = None) -> Decision:
    # the API server applies the mutating webhook's patches (image replaces) before validation
    return evaluate(load_policies(text), resource, verifier=verifier or FakeVerifier(), resolver=resolver)


def test_signed_digest_image_passes_and_is_verified_once() -> None:
    verifier = FakeVerifier()
    d = admit(policy_yaml(), pod(f"ghcr.io/lab/app@{DIGEST}"), verifier)
    assert d.allowed and d.message == ""
    assert verifier.calls == [f"ghcr.io/lab/app@{DIGEST}"]
    assert [t.attestors for t in d.trace] == [["lab: verified"]]


def test_unsigned_image_is_denied_with_the_validation_message() -> None:
    image = f"ghcr.io/lab/app@{DIGEST}"
    d = admit(policy_yaml(), pod(image), FakeVerifier(unsigned=[image]))
    assert not d.allowed
    assert d.message == "Policy p failed: unsigned image"
    assert d.trace[0].attestors == ["lab: no matching signatures: invalid signature"]


def test_unmatched_images_are_not_in_images_and_nothing_is_verified() -> None:
    verifier = FakeVerifier()
    d = admit(policy_yaml(), pod("docker.io/library/nginx:1.27"), verifier)
    assert d.allowed and verifier.calls == []


def test_verify_digest_fails_a_tag_when_mutate_digest_is_off() -> None:
    text = policy_yaml(extra="  validationConfigurations: {mutateDigest: false}\n")
    d = admit(text, pod("ghcr.io/lab/app:v1"))
    assert d.message == "Policy p failed: image ghcr.io/lab/app:v1 does not have a digest"


def test_mutate_digest_pins_the_normalised_tag_then_validation_sees_the_digest() -> None:
    resolved = []

    def resolver(ref: str, **_: Any) -> str:
        resolved.append(ref)
        return DIGEST

    d = admit(policy_yaml(refs='["ghcr.io/lab/*"]'), pod("ghcr.io/lab/app:v1"), resolver=resolver)
    assert resolved == ["ghcr.io/lab/app:v1"]
    assert d.allowed, d.message
    assert d.patches == [{"op": "replace", "path": "/spec/containers/0/image",
                          "value": f"ghcr.io/lab/app:v1@{DIGEST}"}]


def test_mutate_digest_without_a_registry_is_an_error_that_denies() -> None:
    d = admit(policy_yaml(), pod("ghcr.io/lab/app:v1"))
    assert not d.allowed
    assert d.message.startswith("Policy p error: failed to update digest: failed to resolve digest "
                                "for image ghcr.io/lab/app:v1: ")


def test_required_fails_a_policy_that_never_verified_its_images() -> None:
    text = policy_yaml(validations="    - expression: \"true\"")
    d = admit(text, pod(f"ghcr.io/lab/app@{DIGEST}"))
    assert d.message == (f"Policy p failed: image ghcr.io/lab/app@{DIGEST} is not verified: no policy "
                         "performed a signature or attestation check on it")
    off = policy_yaml(validations="    - expression: \"true\"",
                      extra="  validationConfigurations: {required: false}\n")
    assert admit(off, pod(f"ghcr.io/lab/app@{DIGEST}")).allowed


def test_default_message_and_message_expression() -> None:
    image = f"ghcr.io/lab/app@{DIGEST}"
    bare = policy_yaml(validations="    - expression: \"false\"")
    assert admit(bare, pod(image)).message == "Policy p failed: CEL expression validation failed at index 0"
    expr = policy_yaml(validations="    - expression: \"false\"\n"
                                   "      messageExpression: \"'bad: ' + images.containers[0]\"")
    assert admit(expr, pod(image)).message == f"Policy p failed: bad: {image}"


def test_warn_and_audit_do_not_block() -> None:
    image = f"ghcr.io/lab/app@{DIGEST}"
    warn = admit(policy_yaml(extra="  validationActions: [Warn]\n"), pod(image), FakeVerifier(unsigned=[image]))
    assert warn.allowed and warn.warnings == ["Policy p failed: unsigned image"]
    audit = admit(policy_yaml(extra="  validationActions: [Audit]\n"), pod(image), FakeVerifier(unsigned=[image]))
    assert audit.allowed and audit.warnings == [] and audit.trace[0].status == "fail"


def test_unreachable_registry_is_an_evaluation_error() -> None:
    image = f"ghcr.io/lab/app@{DIGEST}"
    d = admit(policy_yaml(), pod(image), FakeVerifier(down=[image]))
    assert d.message == ("Policy p error: failed to evaluate policy: failed to get imagedata: "
                         "dial tcp 127.0.0.1:1: connection refused")


def test_unsupported_attestor_is_an_explicit_error_never_a_pass() -> None:
    certificate = """    - name: lab
      cosign:
        certificate:
          cert: {value: x}"""
    d = admit(policy_yaml(attestor=certificate), pod(f"ghcr.io/lab/app@{DIGEST}"))
    assert not d.allowed
    assert "labkit does not verify cosign certificate attestors (attestor 'lab')" in d.message


def test_keyless_attestor_without_tuf_counts_zero() -> None:
    # no cosign.tuf: Kyverno initialises the public TUF mirror, out of reach offline, and only logs it
    keyless = """    - name: lab
      cosign:
        keyless:
          identities: [{issuer: "https://token.actions.githubusercontent.com", subject: x}]"""
    d = admit(policy_yaml(attestor=keyless), pod(f"ghcr.io/lab/app@{DIGEST}"))
    assert not d.allowed
    assert d.message == "Policy p failed: unsigned image"
    assert any("lab: failed to initialize TUF client" in line for t in d.trace for line in t.attestors)


def test_compile_errors_use_kyverno_text() -> None:
    # Text printed by `kyverno apply` v1.19.1 for the same expression (see ivp-invalid-cel).
    text = policy_yaml(validations="    - expression: images.containers.size() + 'a' == 1")
    with pytest.raises(PolicyError) as err:
        load_policies(text)
    assert err.value.message == (
        "<policy>: failed to compile policy: spec.validations[0].expression: Invalid value: "
        "\"images.containers.size() + 'a' == 1\": ERROR: <input>:1:26: found no matching overload "
        "for '_+_' applied to '(int, string)'\n | images.containers.size() + 'a' == 1\n"
        " | .........................^")


def test_unknown_nested_field_is_a_strict_decoding_error() -> None:
    text = policy_yaml().replace("        ctlog:", "        ctlogs:")
    with pytest.raises(PolicyError) as err:
        load_policies(text)
    assert ('ImageValidatingPolicy in version "v1beta1" cannot be handled as a ImageValidatingPolicy: '
            'strict decoding error: unknown field "spec.attestors[0].cosign.ctlogs"') in err.value.message


@pytest.mark.parametrize("source, expected", [
    # go-containerregistry name.ParseReference: Docker Hub is index.docker.io/library/…
    ("image('nginx').registry()", "index.docker.io"),
    ("image('nginx').repository()", "library/nginx"),
    ("image('nginx').identifier()", "latest"),
    ("image('ghcr.io/x/app:v1').tag()", "v1"),
    (f"image('ghcr.io/x/app:v1@{DIGEST}').tag()", ""),
    (f"image('ghcr.io/x/app:v1@{DIGEST}').digest()", DIGEST),
    ("image('localhost:5000/app').containsDigest()", False),
    ("isImage('UPPER/case')", False),
])
def test_image_library(source: str, expected: Any) -> None:
    assert compile_expression(source).eval({}) == expected


@pytest.mark.parametrize("glob, image, matches", [
    ("ghcr.io/*", "ghcr.io/a/b/c:1", True),  # no separators: * crosses /
    ("ghcr.io/lab/app:v?", "ghcr.io/lab/app:v1", True),
    ("ghcr.io/{lab,ops}/*", "ghcr.io/ops/x", True),
    ("ghcr.io/[!l]*", "ghcr.io/lab/x", False),
    ("ghcr.io/*", "docker.io/ghcr.io/x", False),  # anchored
])
def test_glob_semantics(glob: str, image: str, matches: bool) -> None:
    (policy,) = load_policies(policy_yaml(refs=json.dumps([glob])))
    assert ivp_compile.compile_policy(policy).matches_image(image) is matches


# --- policy admission: the validate-policy.kyverno.svc texts (errs.ToAggregate()) -----------------


def test_non_bool_validation_is_refused_with_the_webhooks_text() -> None:
    # kubectl apply against Kyverno 1.19.1 (native-engines.md "Verified run"): admission webhook
    # "validate-policy.kyverno.svc" denied the request: <exactly this>
    with pytest.raises(PolicyError) as err:
        load_policies(policy_yaml(validations='    - expression: \'"yes"\'\n      message: m'))
    assert err.value.message == (
        '<policy>: spec.validations[0].expression: Invalid value: "\\"yes\\"": '
        "output is expected to be of type bool")


@pytest.mark.parametrize("validations, path, kind", [
    ("    - expression: images.containers.size()", "spec.validations[0].expression", "bool"),
    ("    - {expression: 'true', messageExpression: '1'}", "spec.validations[0].messageExpression", "string"),
])
def test_expression_output_types_follow_compile_validation(validations: str, path: str, kind: str) -> None:
    # pkg/cel/compiler/compiler.go CompileValidation: IsExactType(bool), messageExpression string
    with pytest.raises(PolicyError) as err:
        load_policies(policy_yaml(validations=validations))
    assert err.value.message.startswith(f"<policy>: {path}: Invalid value: ")
    assert err.value.message.endswith(f": output is expected to be of type {kind}")


def test_match_condition_must_be_bool() -> None:
    extra = "  matchConditions:\n    - {name: c, expression: '1 + 1'}\n"
    with pytest.raises(PolicyError) as err:
        load_policies(policy_yaml(extra=extra))
    assert err.value.message == (
        '<policy>: spec.matchConditions[0].expression: Invalid value: "1 + 1": '
        "output is expected to be of type bool")


@pytest.mark.parametrize("glob, reason", [
    # gobwas/glob v0.2.3 glob.Compile, as CompileMatchImageReference reports it
    ("127.0.0.1:1/team/[abc", "unexpected end of input"),
    ("127.0.0.1:1/team/[a-zb]", "expected close range character"),
    ("127.0.0.1:1/team/[]", "could not parse range"),
    ("127.0.0.1:1/team/[z-a]", "hi character 'a' should be greater than lo 'z'"),
])
def test_malformed_glob_is_refused_when_the_policy_loads(glob: str, reason: str) -> None:
    with pytest.raises(PolicyError) as err:
        load_policies(policy_yaml(refs=json.dumps([glob])))
    # the real policy webhook's text (validate-policy.kyverno.svc on the native lab, v1.19.1)
    assert err.value.message == ('<policy>: <nil>: Internal error: failed to compile matches: '
                                 f'spec.MatchImageReferences[0].glob: Invalid value: "{glob}": {reason}')


def test_every_malformed_glob_is_reported_as_an_aggregate() -> None:
    with pytest.raises(PolicyError) as err:
        load_policies(policy_yaml(refs=json.dumps(["a/[", "ghcr.io/*", "b/[]"])))
    assert err.value.message == (
        '<policy>: <nil>: Internal error: failed to compile matches: '
        '[spec.MatchImageReferences[0].glob: Invalid value: "a/[": unexpected end of input, '
        'spec.MatchImageReferences[2].glob: Invalid value: "b/[]": could not parse range]')


def test_unclosed_brace_is_a_valid_gobwas_glob() -> None:
    # gobwas's parser ends the open alternatives at the end of the pattern: "{a,b" == "{a,b}"
    (policy,) = load_policies(policy_yaml(refs=json.dumps(["127.0.0.1:1/team/{a,b"])))
    compiled = ivp_compile.compile_policy(policy)
    assert compiled.matches_image("127.0.0.1:1/team/b")
    assert not compiled.matches_image("127.0.0.1:1/team/{a,b")


# --- transparency log: checkOptions needs TUF unless ctlog.insecureIgnoreTlog ---------------------


@pytest.mark.parametrize("ctlog", ["", "        ctlog: {insecureIgnoreSCT: true}\n",
                                   "        ctlog: {url: 'http://127.0.0.1:9'}\n"])
def test_key_attestor_without_insecure_ignore_tlog_counts_zero(ctlog: str) -> None:
    text = policy_yaml().replace("        ctlog: {insecureIgnoreTlog: true}\n", ctlog)
    verifier = FakeVerifier()
    d = admit(text, pod(f"ghcr.io/lab/app@{DIGEST}"), verifier)
    assert not d.allowed and d.message == "Policy p failed: unsigned image"
    assert verifier.calls == []  # nothing was fetched for this attestor
    assert d.trace[0].attestors == [
        'lab: failed to build cosign verification opts: failed to initialize TUF client '
        '(mirror="https://tuf-repo-cdn.sigstore.dev"): updating local metadata and targets: error '
        'updating to TUF remote mirror: tuf: failed to download 13.root.json: Get '
        '"https://tuf-repo-cdn.sigstore.dev/13.root.json": offline lab (loopback only): labkit does '
        'not contact the Sigstore TUF mirror']


def test_key_hash_algorithm_reaches_the_verifier() -> None:
    asked = []

    def verifier(ref: str, keys: Sequence[Any], *, digest_algorithm: str = "sha256", **_: Any) -> Any:
        asked.append(digest_algorithm)
        return type("Verified", (), {"digest": DIGEST})()
    text = policy_yaml().replace("          data: |", "          hashAlgorithm: sha384\n          data: |")
    assert admit(text, pod(f"ghcr.io/lab/app@{DIGEST}"), verifier).allowed
    assert asked == ["sha384"]


def test_cel_runtime_errors_are_cel_errors() -> None:
    with pytest.raises(CelError, match="failed to get imagedata|only available"):
        compile_expression("verifyImageSignatures('x', []) > 0").eval({})


# --- against a registry: what Kyverno quotes when an image is missing ---------------------------

REG = "127.0.0.1:5000"


def registry_access(present: Mapping[str, str] = {}) -> Any:
    """RegistryAccess over a registry answering as labkit's (and distribution) does: 404 with
    MANIFEST_UNKNOWN and ``detail: {reference}`` for a manifest it does not hold."""
    import httpx

    from labkit.oci.client import RegistryClient
    from labkit.policy.credentials import RegistryAccess
    from tests.mock_transport import MockTransport

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        reference = request.url.path.rpartition("/")[2]
        if request.method == "HEAD":
            return httpx.Response(404)
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown to "
                                                     "registry", "detail": {"reference": reference}}]})

    return RegistryAccess(RegistryClient(transport=MockTransport(handle)))


def test_pinning_a_missing_tag_quotes_go_containerregistrys_get_error() -> None:
    # native lab, case ivp-key-a-deny-fail/pod/missing:tag (Kyverno v1.19.1): MutateDigest's
    # ictx.Get is remote.Image, a GET (evaluator/policy.go:364-371), and the webhook says
    # "Policy <p> error: failed to update digest: failed to resolve digest for image <i>: <ggcr>"
    access = registry_access()
    text = policy_yaml(refs=f'["{REG}/diff/*"]')
    d = admit(text, pod(f"{REG}/diff/missing:v1"), access, resolver=access.resolve)
    assert d.message == (f"Policy p error: failed to update digest: failed to resolve digest for image "
                         f"{REG}/diff/missing:v1: GET http://{REG}/v2/diff/missing/manifests/v1: "
                         "MANIFEST_UNKNOWN: manifest unknown to registry; map[reference:v1]")
    assert [(t.rule, t.status, t.phase) for t in d.trace] == [("mutateDigest", "error", "mutate")]


def test_a_missing_digest_fails_the_prefetch_as_an_evaluation_error() -> None:
    # native lab, case ivp-key-a-deny-fail/pod/missing@digest: Evaluate prefetches every matched
    # image (evaluator/policy.go:186-192) and evaluatePolicies makes the error
    # RuleError("evaluation", "failed to evaluate policy", err) (ivpol/engine/engine.go)
    access = registry_access()
    d = admit(policy_yaml(refs=f'["{REG}/diff/*"]'), pod(f"{REG}/diff/missing@{DIGEST}"), access)
    assert d.message == (f"Policy p error: failed to evaluate policy: GET http://{REG}/v2/diff/missing/manifests/"
                         f"{DIGEST}: MANIFEST_UNKNOWN: manifest unknown to registry; map[reference:{DIGEST}]")
    assert [(t.rule, t.status) for t in d.trace] == [("evaluation", "error")]


# --- autogen: a pods policy also matches the pod controllers ---------------------------------


@pytest.mark.parametrize("expr, ref, want", [
    # pkg/cel/autogen/replacement_test.go (Kyverno v1.19.1)
    ("object.spec", "defaults", "object.spec.template.spec"),
    ("oldObject.spec", "cronjobs", "oldObject.spec.jobTemplate.spec.template.spec"),
    ("object.metadata.labels['app']", "defaults", "object.spec.template.metadata.labels['app']"),
    ("object.metadata.namespace", "defaults", "object.metadata.namespace"),
    ("object.metadata.namespace == 'foo' && object.metadata.labels['team'] == 'platform'", "defaults",
     "object.metadata.namespace == 'foo' && object.spec.template.metadata.labels['team'] == 'platform'"),
    ("object.metadata.namespaceFoo", "defaults", "object.spec.template.metadata.namespaceFoo"),
])
def test_autogen_replacements(expr: str, ref: str, want: str) -> None:
    assert ivp_compile._autogen_replace(expr, ivp_compile._AUTOGEN_REPLACEMENTS[ref]) == want


def test_a_pods_policy_pins_and_verifies_deployments_by_autogen() -> None:
    # native lab, cases ivp-key-a-*/deployment/*: the pod rule's autogen variant matches
    # apps/v1 deployments (autogen.go, ConfigsMap), pins spec.template.spec's images and denies
    # an unsigned one with the same "Policy <p> failed: <message>"
    from labkit.policy.patches import apply_patches

    text = policy_yaml()
    [policy] = load_policies(text)
    variants = ivp_compile.autogen_variants(policy)
    # autogenIvPols: one variant per replacement set, in sorted order ("cronjobs" < "defaults")
    assert [v.spec.match_constraints["resourceRules"] for v in variants] == [
        [{"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["cronjobs"], "operations": ["CREATE"]}],
        [{"apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["daemonsets", "deployments", "replicasets",
                                                                       "statefulsets"], "operations": ["CREATE"]},
         {"apiGroups": ["batch"], "apiVersions": ["v1"], "resources": ["jobs"], "operations": ["CREATE"]}]]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                  "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "ghcr.io/lab/app:v1"}]}}}}
    mutated = evaluate([policy], deployment, verifier=FakeVerifier(), resolver=lambda ref, **_: DIGEST,
                       phase="mutate")
    assert mutated.patches == [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                                "value": f"ghcr.io/lab/app:v1@{DIGEST}"}]
    patched = apply_patches(deployment, mutated.patches)
    decision = evaluate([policy], patched, verifier=FakeVerifier(unsigned=[f"ghcr.io/lab/app:v1@{DIGEST}"]),
                        phase="validate")
    assert not decision.allowed and decision.message == "Policy p failed: unsigned image"
    # spec.autogen.podControllers.controllers: [] turns it off
    off = policy_yaml(extra="  autogen: {podControllers: {controllers: []}}\n")
    assert ivp_compile.autogen_variants(load_policies(off)[0]) == []


def test_a_source_repository_is_where_signatures_are_looked_up() -> None:
    # cosign.source.repository: ociremote.WithTargetRepository (ivpol/cosign/opts.go:96-102)
    asked = []

    def verifier(ref: str, keys: Sequence[Any], *, repository: str | None = None, **_: Any) -> Any:
        asked.append(repository)
        return type("Verified", (), {"digest": DIGEST})()
    text = policy_yaml().replace("        ctlog:", "        source: {repository: ghcr.io/lab/sigs}\n        ctlog:")
    assert admit(text, pod(f"ghcr.io/lab/app@{DIGEST}"), verifier).allowed
    assert asked == ["ghcr.io/lab/sigs"]


# --- reports: what the validating webhook's audit records -----------------------------------


def test_admission_report_has_one_result_per_policy_and_none_when_one_denies() -> None:
    # handler.go audit: blocked when any responding policy has Deny; rule names from engine.go
    image = f"ghcr.io/lab/app@{DIGEST}"
    text = policy_yaml(extra="  validationActions: [Audit]\n")
    policies = load_policies(text)
    d = admit(text, pod(image), FakeVerifier(unsigned=[image]))
    assert [(t.policy, t.rule, t.status) for t in ivp.admission_report(policies, d.trace)] == [("p", "p", "fail")]
    d = admit(policy_yaml(), pod(image), FakeVerifier())
    assert ivp.admission_report(load_policies(policy_yaml()), d.trace) == []


def test_reports_merge_keeps_the_result_of_the_same_second() -> None:
    # MergeReports (pkg/controllers/report/aggregate/utils.go:57-64): per source/policy, a result
    # replaces the kept one only when its timestamp's seconds are later; native lab, case
    # ivp-key-a-audit-fail/pod/signed-a:tag/plain/update-from-unsigned keeps the create's "fail"
    from labkit.admission.reports import ReportStore
    from labkit.policy.trace import ImageTrace
    from labkit.policy.podspec import Engine

    store = ReportStore()
    obj = pod(f"ghcr.io/lab/app@{DIGEST}")
    for status, now in (("fail", 100.2), ("pass", 100.9)):
        store.merge(obj, [ImageTrace(Engine.KYVERNO, "p", "p", "", "", status)], uid="u", now=now)
    [report] = store.list()["items"]
    assert [(r["rule"], r["result"]) for r in report["results"]] == [("p", "fail")]
    store.merge(obj, [ImageTrace(Engine.KYVERNO, "p", "p", "", "", "pass")], uid="u", now=101.0)
    [report] = store.list()["items"]
    assert [(r["rule"], r["result"], r["message"]) for r in report["results"]] == [("p", "pass", "success")]
    assert report["summary"]["pass"] == 1 and report["summary"]["fail"] == 0


def test_an_ignore_policy_answers_from_the_ivpol_ignore_webhooks() -> None:
    # native lab, cases ivp-key-a-deny-ignore/*: 'admission webhook "ivpol.validate.kyverno.svc-ignore"
    # denied the request: Policy diff-13 failed: …' and "ivpol.mutate.kyverno.svc-ignore" for a pin
    # (buildWebhookRules, pkg/controllers/webhook/validating.go:197-213)
    from labkit.lab.apiserver import ROUTES, ApiServer

    docs = [{"kind": "ImageValidatingPolicy", "metadata": {"name": "ign"}, "spec": {"failurePolicy": "Ignore"}},
            {"kind": "ImageValidatingPolicy", "metadata": {"name": "fl"}, "spec": {}}]
    api = ApiServer.__new__(ApiServer)
    api.store = type("Store", (), {"list_policies": lambda self: docs})()
    mutate, validate = ROUTES[0], ROUTES[2]
    assert api.webhook_name(validate, "Policy ign failed: x") == "ivpol.validate.kyverno.svc-ignore"
    assert api.webhook_name(mutate, "Policy ign error: failed to update digest: y") == "ivpol.mutate.kyverno.svc-ignore"
    assert api.webhook_name(validate, "Policy fl failed: x") == "ivpol.validate.kyverno.svc-fail"
