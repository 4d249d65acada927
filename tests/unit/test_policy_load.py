"""Policy loading rejects what admission rejects. Expected texts: the Audit/mutateDigest and
image-reference messages as printed by kyverno v1.19.1 (`kyverno apply`, values elided where
Kyverno prints the whole struct); knative FieldError layout from policy-controller's
``clusterimagepolicy_validation.go``; the strict-decoding text of kube-apiserver."""

from __future__ import annotations

import textwrap

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit.errors import PolicyError
from labkit.policy.load import kyverno_failure_action, load_policies
from labkit.policy.schema import ClusterImagePolicy, KyvernoPolicy


def pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def kyverno(extra_entry: str = "", spec_extra: str = "") -> str:
    key = textwrap.indent(pem(), " " * 22)
    return f"""\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {{name: check-image}}
spec:
{spec_extra}  rules:
    - name: check-image
      match:
        any:
          - resources: {{kinds: [Pod]}}
      verifyImages:
        - imageReferences: ["ghcr.io/labkit/*"]
{extra_entry}          attestors:
            - entries:
                - keys:
                    publicKeys: |-
{key}
"""


def cip(authority: str = "", images: str = '  images: [{glob: "ghcr.io/labkit/**"}]\n') -> str:
    return f"""\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {{name: signed}}
spec:
{images}  authorities:
{authority or '    - static: {action: pass}'}
"""


def test_default_failure_action_audit_rejects_mutate_digest() -> None:
    with pytest.raises(PolicyError) as err:
        load_policies(kyverno())
    assert (
        "spec.rules[0].verifyImages[0].mutateDigest: Invalid value: true: "
        "mutateDigest must be set to false for \u2018Audit\u2019 failure action"
    ) in err.value.message


def test_enforce_policy_loads_with_defaults() -> None:
    (policy,) = load_policies(kyverno("          failureAction: Enforce\n"))
    assert isinstance(policy, KyvernoPolicy)
    iv = policy.spec.rules[0].verify_images[0]
    assert (iv.mutate_digest, iv.verify_digest, iv.required) == (True, True, True)
    assert kyverno_failure_action(policy) == "Enforce"


def test_audit_with_mutate_digest_false_loads() -> None:
    (policy,) = load_policies(kyverno("          mutateDigest: false\n"))
    assert kyverno_failure_action(policy) == "Audit"


def test_unknown_field_is_a_strict_decoding_error() -> None:
    with pytest.raises(PolicyError) as err:
        load_policies(kyverno("          failureAction: Enforce\n          mutateDigests: false\n"))
    assert 'strict decoding error: unknown field "spec.rules[0].verifyImages[0].mutateDigests"' in (
        err.value.message
    )


def test_wrong_type_and_missing_required() -> None:
    doc = kyverno("          failureAction: Enforce\n          required: yes-please\n")
    with pytest.raises(PolicyError, match=r"spec.rules\[0\].verifyImages\[0\].required in body must be of type boolean"):
        load_policies(doc)
    with pytest.raises(PolicyError, match=r"spec.rules\[0\].name: Required value"):
        load_policies(kyverno("          failureAction: Enforce\n").replace("- name: check-image", "- match:", 1)
                      .replace("      match:\n", "", 1))


def test_unknown_kind() -> None:
    with pytest.raises(PolicyError, match='no matches for kind "Gadget" in version "v1"'):
        load_policies("apiVersion: v1\nkind: Gadget\nmetadata: {name: x}\n")


def test_cip_defaults_and_versions() -> None:
    (policy,) = load_policies(cip())
    assert isinstance(policy, ClusterImagePolicy)
    assert (policy.spec.mode, policy.spec.authorities[0].name) == ("enforce", "authority-0")


def test_cip_validation_messages_use_knative_layout() -> None:
    with pytest.raises(PolicyError) as err:
        load_policies(cip("    - {}", images='  images: [{glob: "ghcr.io/app?"}]\n'))
    assert err.value.message.endswith(
        "validation failed: expected exactly one, got neither: spec.authorities[0].key, "
        "spec.authorities[0].keyless, spec.authorities[0].static\n"
        "invalid value: ghcr.io/app?: spec.images[0].glob\n"
        'glob is invalid: invalid glob "ghcr.io/app?"'
    )


def test_cip_key_data_must_be_a_public_key() -> None:
    with pytest.raises(PolicyError, match=r"invalid value: not a key: spec.authorities\[0\].key.data"):
        load_policies(cip("    - key: {data: not a key}"))
    key = textwrap.indent(pem(), " " * 10)
    (policy,) = load_policies(cip(f"    - key:\n        data: |\n{key}"))
    assert isinstance(policy, ClusterImagePolicy)


def test_multi_document_file(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(cip() + "---\n" + kyverno("          mutateDigest: false\n"))
    assert [type(p).__name__ for p in load_policies(path)] == ["ClusterImagePolicy", "KyvernoPolicy"]
    path.write_text(cip() + "---\n" + cip("    - static: {action: maybe}"))
    with pytest.raises(PolicyError, match=r"\(document 2\).*invalid value: maybe: spec.authorities\[0\].static.action"):
        load_policies(path)


def test_metadata_name_is_required() -> None:
    with pytest.raises(PolicyError, match=r'ClusterImagePolicy.policy.sigstore.dev "" is invalid: '
                                          r"metadata.name: Required value"):
        load_policies(cip().replace("metadata: {name: signed}", "metadata: {}"))


def test_cip_glob_with_an_unclosed_bracket_fails_filepath_match_first() -> None:
    # ValidateGlob: filepath.Match(glob, "") → ErrBadPattern before glob.Compile's charset check
    with pytest.raises(PolicyError) as err:
        load_policies(cip(images='  images: [{glob: "127.0.0.1:1/team/[abc"}]\n'))
    assert err.value.message.endswith(
        "validation failed: invalid value: 127.0.0.1:1/team/[abc: spec.images[0].glob\n"
        "glob is invalid: syntax error in pattern")


def test_kyverno_image_reference_syntax_is_not_validated() -> None:
    # validate.go checks imageReferences only for variables; go-wildcard has no '[' or '{'
    text = kyverno(spec_extra="  validationFailureAction: Enforce\n").replace(
        '"ghcr.io/labkit/*"', '"127.0.0.1:1/team/[abc", "127.0.0.1:1/team/{a,b"')
    (policy,) = load_policies(text)
    assert isinstance(policy, KyvernoPolicy)


def test_a_one_line_document_too_long_for_a_file_name_is_read_as_yaml() -> None:
    # found by tests/fuzz: the path check raised OSError (File name too long) instead
    with pytest.raises(PolicyError, match="a policy document must be a YAML mapping"):
        load_policies("0" * 300)
