"""``labkit policy lint`` on ClusterImagePolicy keyless/KMS fields and TrustRoots, without a cluster.

Each expected text is what the real policy-controller v0.13.1 returned for the same object on the
native lab (tests/lab/test_policy_controller_lint.py checks every case of its table there); the
comments cite the Go code that writes it (sigstore/policy-controller at v0.13.1, and knative's
FieldError layout: ``<message>: <paths>`` then the details).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.cli import main
from labkit.errors import PolicyError
from labkit.policy.load import load_objects, load_policies
from labkit.policy.policy_controller_webhooks import cip_warnings, kms_problem
from labkit.policy.schema import ClusterImagePolicy, TrustRoot

A = "spec.authorities[0]"


def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def cip(authority: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
                           "metadata": {"name": "p"},
                           "spec": {"images": [{"glob": "ghcr.io/labkit/**"}], "authorities": [authority]}})


def trust_root(spec: dict[str, Any]) -> str:
    return yaml.safe_dump({"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot",
                           "metadata": {"name": "r"}, "spec": spec})


def rejection(text: str) -> str:
    with pytest.raises(PolicyError) as err:
        load_objects(text)
    return err.value.message.removeprefix("<policy>: ")


def keyless(**fields: Any) -> dict[str, Any]:
    return {"keyless": {"url": "https://fulcio.example", **fields}}


# --- keyless ---------------------------------------------------------------------------------


def test_keyless_url_is_defaulted_and_an_empty_url_counts_as_given() -> None:
    # clusterimagepolicy_defaults.go:35-37: neither url nor ca-cert → the public Fulcio
    (policy,) = load_policies(cip({"keyless": {"identities": [{"issuer": "i", "subject": "s"}]}}))
    assert isinstance(policy, ClusterImagePolicy)
    assert policy.spec.authorities[0].keyless is not None
    assert policy.spec.authorities[0].keyless.url == "https://fulcio.sigstore.dev"
    # an explicit url: "" is a non-nil *apis.URL: no default, and no error
    load_policies(cip({"keyless": {"url": "", "identities": [{"issuer": "i", "subject": "s"}]}}))


def test_keyless_url_and_ca_cert_exclude_each_other() -> None:
    # clusterimagepolicy_validation.go:199-201
    assert rejection(cip(keyless(**{"ca-cert": {"data": pem()}}, identities=[{"issuer": "i", "subject": "s"}]))) == (
        f"validation failed: expected exactly one, got both: {A}.keyless.ca-cert, {A}.keyless.url")


def test_ca_cert_is_checked_as_a_key() -> None:
    # :203-205, KeyRef.Validate under ca-cert
    assert rejection(cip({"keyless": {"ca-cert": {}, "identities": [{"issuer": "i", "subject": "s"}]}})) == (
        f"validation failed: expected exactly one, got neither: {A}.keyless.ca-cert.data, "
        f"{A}.keyless.ca-cert.kms, {A}.keyless.ca-cert.secretref")
    assert rejection(cip({"keyless": {"ca-cert": {"secretRef": {"name": "ca", "namespace": "default"}},
                                      "identities": [{"issuer": "i", "subject": "s"}]}})) == (
        f"validation failed: invalid value: default: {A}.keyless.ca-cert.secretref.namespace\n"
        "secretref.namespace is invalid. If set, it should use the same namespace where the policy-controller "
        "was deployed")


def test_identities_absent_is_the_crds_null_and_empty_is_the_webhooks_missing_field() -> None:
    # Identities has no omitempty: the defaulting webhook's round trip writes null, the CRD refuses it
    assert rejection(cip(keyless())) == (
        f'ClusterImagePolicy.policy.sigstore.dev "p" is invalid: {A}.keyless.identities: Invalid value: "null": '
        f'{A}.keyless.identities in body must be of type array: "null"')
    # :207-209
    assert rejection(cip(keyless(identities=[]))) == f"validation failed: missing field(s): {A}.keyless.identities"


def test_identity_needs_one_issuer_and_one_subject() -> None:
    # :324-345, Identity.Validate
    ip = f"{A}.keyless.identities[0]"
    assert rejection(cip(keyless(identities=[{}]))) == (
        f"validation failed: missing field(s): {ip}.issuer, {ip}.issuerRegExp, {ip}.subject, {ip}.subjectRegExp")
    assert rejection(cip(keyless(identities=[{"issuer": "i", "issuerRegExp": "i", "subject": "s",
                                              "subjectRegExp": "s"}]))) == (
        f"validation failed: expected exactly one, got both: {ip}.issuer, {ip}.issuerRegExp, {ip}.subject, "
        f"{ip}.subjectRegExp")


def test_identity_regexps_must_compile_in_go() -> None:
    # :332-337 and ValidateRegex :358-364 (Go's regexp.Compile)
    ip = f"{A}.keyless.identities[0]"
    assert rejection(cip(keyless(identities=[{"issuer": "i", "subjectRegExp": "foo(?=bar)"}]))) == (
        f"validation failed: invalid value: foo(?=bar): {ip}.subjectRegExp\n"
        "regex is invalid: error parsing regexp: invalid or unsupported Perl syntax: `(?=`")
    load_policies(cip(keyless(identities=[{"issuerRegExp": "\\pL+", "subjectRegExp": "^[[:alpha:]]+@x\\z"}])))


def test_identity_has_no_trust_root_ref() -> None:
    # the CRD has no such field: kube-apiserver's strict decoding refuses it
    assert rejection(cip(keyless(identities=[{"issuer": "i", "subject": "s", "trustRootRef": "r"}]))) == (
        'ClusterImagePolicy in version "v1beta1" cannot be handled as a ClusterImagePolicy: strict decoding '
        f'error: unknown field "{A}.keyless.identities[0].trustRootRef"')


def test_wrong_types_are_the_defaulting_webhooks_go_decoding_errors() -> None:
    prefix = "mutation failed: cannot decode incoming new object: "
    assert rejection(cip(keyless(insecureIgnoreSCT="true", identities=[{"issuer": "i", "subject": "s"}]))) == (
        prefix + "json: cannot unmarshal string into Go struct field KeylessRef.spec.authorities.keyless."
        "insecureIgnoreSCT of type bool")
    assert rejection(cip({"keyless": {"url": "http://[::1", "identities": [{"issuer": "i", "subject": "s"}]}})) == (
        prefix + "parse \"http://[::1\": missing ']' in host")


# --- key and KMS -----------------------------------------------------------------------------


def test_key_needs_exactly_one_of_data_kms_secretref() -> None:
    # :158-182; a bad kms and a bad data are reported too
    assert rejection(cip({"key": {"data": "nope", "kms": "k8s://x/y"}})) == (
        f"validation failed: expected exactly one, got both: {A}.key.data, {A}.key.kms, {A}.key.secretref\n"
        f"invalid value: k8s://x/y: {A}.key.kms\n"
        "malformed KMS format, should be prefixed by any of the supported providers: "
        "[awskms:// azurekms:// hashivault:// gcpkms://]\n"
        f"invalid value: nope: {A}.key.data")


@pytest.mark.parametrize(("kms", "problem"), [
    ("gcpkms://projects/p/locations/global/keyRings/r/cryptoKeys/k/versions/1", ""),
    ("azurekms://vault.vault.azure.net/key", ""),
    ("hashivault://transit-key", ""),
    ("awskms:///arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", ""),
    ("awskms://localhost:4566/arn:aws:kms:us-east-2:111122223333:alias/ExampleAlias", ""),
    # common/validation.go:154-170: only the four providers (no k8s://, pkcs11:, upper case)
    ("k8s://cosign-system/cosign-key", "malformed KMS format, should be prefixed by any of the supported "
     "providers: [awskms:// azurekms:// hashivault:// gcpkms://]"),
    ("GCPKMS://projects/p", "malformed KMS format, should be prefixed by any of the supported "
     "providers: [awskms:// azurekms:// hashivault:// gcpkms://]"),
    # :117-152, validateAWSKMS: a key id or alias name passes the regexps but is no ARN
    ("awskms:///1234abcd-12ab-34cd-56ef-1234567890ab", "failed to parse either key or alias arn: arn: invalid prefix"),
    ("awskms:///alias/ExampleAlias", "failed to parse either key or alias arn: arn: invalid prefix"),
    ("awskms://key", "malformed AWS KMS format 'awskms://$ENDPOINT/$KEYID', should be conformant with KMS "
     "standard documented here: https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id"),
    ("awskms://localhost/arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
     "malformed endpoint: address localhost: missing port in address"),
    ("awskms:///arn:aws:kms:us-east-2:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
     "kms key should be in the format awskms://[ENDPOINT]/[ID/ALIAS/ARN] (endpoint optional)"),
])
def test_kms_references(kms: str, problem: str) -> None:
    assert kms_problem(kms) == problem


def test_secret_ref_namespace_must_be_the_controllers() -> None:
    # :186-188; the lab and the chart install into cosign-system
    load_policies(cip({"key": {"secretRef": {"name": "k", "namespace": "cosign-system"}}}))
    assert "invalid value: default: spec.authorities[0].key.secretref.namespace" in rejection(
        cip({"key": {"secretRef": {"name": "k", "namespace": "default"}}}))


# --- attestations, policy, signatureFormat -----------------------------------------------------


def test_attestation_paths_have_no_index_and_short_predicate_types_only_warn() -> None:
    # :127-129 ViaField("attestations"); :234-257
    att = f"{A}.attestations"
    assert rejection(cip({**keyless(identities=[{"issuer": "i", "subject": "s"}]),
                          "attestations": [{"name": "a", "predicateType": "https://x.example/v1"},
                                           {"predicateType": "https://y.example/v1"}]})) == (
        f"validation failed: missing field(s): {att}.name")
    (policy,) = load_policies(cip({**keyless(identities=[{"issuer": "i", "subject": "s"}]),
                                   "attestations": [{"name": "a", "predicateType": "slsaprovenance"}]}))
    assert isinstance(policy, ClusterImagePolicy)
    assert cip_warnings(policy) == [f"invalid value: slsaprovenance: {att}.predicateType",
                                    "deprecated value, please use RFC 3986 conformant values"]


def test_attestation_policy_may_not_fetch_config_but_the_specs_may() -> None:
    # :308-319; the spec's policy is validated within spec, its paths without "policy" (:67)
    assert rejection(cip({"key": {"data": pem()}, "attestations": [{
        "name": "a", "predicateType": "https://x.example/v1",
        "policy": {"type": "cue", "data": "x", "fetchConfigFile": True, "includeSpec": False}}]})) == (
        f"validation failed: must not set the field(s): {A}.attestations.policy.fetchConfigFile, "
        f"{A}.attestations.policy.includeSpec")
    doc = yaml.safe_load(cip(keyless(identities=[{"issuer": "i", "subject": "s"}])))
    doc["spec"]["policy"] = {"type": "opa"}
    assert rejection(yaml.safe_dump(doc)) == (
        "validation failed: invalid value: opa: spec.type\nonly [cue,rego] are supported at the moment\n"
        "missing field(s): spec.configMapRef, spec.data, spec.remote")


def test_signature_format_and_trust_root_refs_are_not_checked_at_admission() -> None:
    load_policies(cip({"key": {"data": pem()}, "signatureFormat": "bundle", "ctlog": {"trustRootRef": "r"}}))
    identities = [{"issuer": "i", "subject": "s"}]
    load_policies(cip({**keyless(trustRootRef="r", insecureIgnoreSCT=True, identities=identities),
                       "rfc3161timestamp": {"trustRootRef": "tsa"}}))


# --- TrustRoot -------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_trust_root_loads_for_lint_only() -> None:
    spec = {"remote": {"mirror": "https://tuf.example", "root": b64(json.dumps({"signatures": []}).encode())}}
    (root,) = load_objects(trust_root(spec))
    assert isinstance(root, TrustRoot)
    with pytest.raises(PolicyError, match='no matches for kind "TrustRoot"'):
        load_policies(trust_root(spec))


def test_trust_root_choices_and_roots() -> None:
    # trustroot_validation.go:43-66, ValidateRoot :131-144
    assert rejection(trust_root({})) == (
        "validation failed: expected exactly one, got neither: spec.remote, spec.repository, spec.sigstoreKeys")
    assert rejection(trust_root({"remote": {"mirror": "https://tuf.example",
                                            "root": b64(json.dumps({"signed": {}}).encode())}})) == (
        "validation failed: invalid value: missing signatures in root.json: spec.remote.root\nno signatures")
    assert rejection(trust_root({"remote": {"mirror": "https://tuf.example", "root": b64(pem().encode())}})) == (
        "validation failed: invalid value: failed to unmarshal: spec.remote.root\n"
        "invalid character '-' in numeric literal")
    assert rejection(trust_root({"remote": {"mirror": "https://tuf.example", "root": "not base64!"}})) == (
        "mutation failed: cannot decode incoming new object: illegal base64 data at input byte 3")


def test_sigstore_keys_report_only_the_last_item_checked() -> None:
    # :108-129 assigns each item's errors (errors = …), so a bad CA is forgotten behind a good tLog
    bad_ca = {"subject": {}, "uri": "", "certChain": ""}
    good_log = {"baseURL": "https://rekor.example", "hashAlgorithm": "sha-256", "publicKey": b64(pem().encode())}
    load_objects(trust_root({"sigstoreKeys": {"certificateAuthorities": [bad_ca], "tLogs": [good_log]}}))
    ca = "spec.sigstoreKeys.certificateAuthority[0]"
    assert rejection(trust_root({"sigstoreKeys": {"certificateAuthorities": [bad_ca]}})) == (
        f"validation failed: missing field(s): {ca}.certchain, {ca}.subject.commonName, {ca}.subject.organization, "
        f"{ca}.uri")
    assert rejection(trust_root({"sigstoreKeys": {"certificateAuthorities": []}})) == (
        "validation failed: expected exactly one, got neither: spec.sigstoreKeys.certificateAuthority, "
        "spec.sigstoreKeys.timestampAuthorities")


def test_absent_byte_fields_come_back_null() -> None:
    assert rejection(trust_root({"sigstoreKeys": {}})) == (
        'TrustRoot.policy.sigstore.dev "r" is invalid: spec.sigstoreKeys.certificateAuthorities: Invalid value: '
        '"null": spec.sigstoreKeys.certificateAuthorities in body must be of type array: "null"')


def test_cli_lint_reads_trust_roots_and_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root.yaml"
    root.write_text(trust_root({"remote": {"mirror": "https://tuf.example",
                                           "root": b64(json.dumps({"signatures": []}).encode())}}))
    policy = tmp_path / "cip.yaml"
    policy.write_text(cip({**keyless(identities=[{"issuer": "i", "subject": "s"}]),
                           "attestations": [{"name": "a", "predicateType": "custom"}]}))
    assert main(["policy", "lint", str(root), str(policy)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{root}: valid (TrustRoot r)", f"{policy}: valid (ClusterImagePolicy p)"]
    assert err.splitlines() == [f"Warning: invalid value: custom: {A}.attestations.predicateType",
                                "Warning: deprecated value, please use RFC 3986 conformant values"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(trust_root({}))
    assert main(["policy", "lint", str(bad)]) == 2


def test_source_oci_and_the_pull_secret_prefix_quirk() -> None:
    # clusterimagepolicy_validation.go:216-232 (Source.Validate) and common/validation.go:58-73
    # (ValidateOCI): each unnamed pull secret's ViaFieldIndex wraps every error found before it
    src = f"{A}.source[0]"
    assert rejection(cip({"key": {"data": pem()}, "source": [{"oci": "registry.example/Sigs", "signaturePullSecrets":
                                                              [{"name": ""}, {"name": "ok"}, {}]}]})) == (
        f"validation failed: invalid value: registry.example/Sigs: "
        f"{src}.signaturePullSecrets[2].signaturePullSecrets[0].oci\n"
        "repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Sigs\n"
        f"missing field(s): {src}.signaturePullSecrets[2].name, "
        f"{src}.signaturePullSecrets[2].signaturePullSecrets[0].name")
    assert rejection(cip({"key": {"data": pem()}, "source": [{"oci": "sigs/repo"}]})) == (
        f"validation failed: invalid value: sigs/repo: {src}.oci\n"
        "registries must be valid RFC 3986 URI authorities: sigs/repo")
    load_policies(cip({"key": {"data": pem()}, "source": [{"oci": "registry.example:5000"}]}))
