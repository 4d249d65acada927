"""labkit.widgets: the playground decides as `labkit policy test` does (which the policy corpus
holds to the real Kyverno CLI); the key panel reads what generate-key-pair wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit import keys, widgets
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from tests.lab.scenario import one_layer_image

POLICY = """apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {{name: signed}}
spec:
  rules:
    - name: signed
      match: {{any: [{{resources: {{kinds: [Pod]}}}}]}}
      verifyImages:
        - imageReferences: ["{host}/pg/*"]
          failureAction: Enforce
          attestors:
            - entries:
                - keys:
                    # the lab has no Rekor: real Kyverno wants a log entry otherwise
                    rekor: {{ignoreTlog: true}}
                    ctlog: {{ignoreSCT: true}}
                    publicKeys: |-
{pem}
"""


def _signed_and_unsigned(signed: str, unsigned: str, key: Path, content: bytes) -> str:
    """Push two distinct images tagged v1; sign the first by digest with ``key``; its digest."""
    with RegistryClient() as client:
        digest = client.push_image(f"{signed}:v1", one_layer_image(b"signed " + content + b"\n"))
        client.push_image(f"{unsigned}:v1", one_layer_image(b"unsigned " + content + b"\n"))
        sign_image(f"{signed}@{digest}", keys.load_private_key(key, b""), client=client)
    return digest


@pytest.fixture(scope="module")
def signed(labkit_registry, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    work = tmp_path_factory.mktemp("pg")
    keys.generate_key_pair(work / "a", b"")
    keys.generate_key_pair(work / "b", b"")
    host = labkit_registry.host
    good = _signed_and_unsigned(f"{host}/pg/signed", f"{host}/pg/unsigned", work / "a.key", b"pg")
    indent = lambda p: "\n".join("                      " + line for line in p.read_text().strip().splitlines())  # noqa: E731
    return {"host": host, "digest": good, "a": POLICY.format(host=host, pem=indent(work / "a.pub")),
            "b": POLICY.format(host=host, pem=indent(work / "b.pub"))}


def test_editing_the_key_flips_the_decision(signed: dict[str, str]) -> None:
    image = f"{signed['host']}/pg/signed:v1"
    with_a = widgets.playground_decision(signed["a"], image)
    assert with_a.allowed is True and with_a.text.startswith("admitted")
    assert f"{image}@{signed['digest']}" in with_a.text  # the digest patch Kyverno would add
    with_b = widgets.playground_decision(signed["b"], image)
    assert with_b.allowed is False and "denied by kyverno" in with_b.text
    unsigned = widgets.playground_decision(signed["a"], f"{signed['host']}/pg/unsigned:v1")
    assert unsigned.allowed is False and "no signatures found" in unsigned.text


def test_a_broken_policy_says_why_instead_of_deciding(signed: dict[str, str]) -> None:
    broken = widgets.playground_decision(signed["a"].replace("failureAction", "failureActon"), "x.io/a/b:c")
    assert broken.allowed is None and broken.text.startswith("invalid policy:") and "failureActon" in broken.text
    yaml_error = widgets.playground_decision("spec: [unclosed", "x.io/a/b:c")
    assert yaml_error.allowed is None and "error converting YAML to JSON: yaml: line 2:" in yaml_error.text


def test_playground_widget_updates_on_edit(signed: dict[str, str]) -> None:
    pytest.importorskip("ipywidgets")
    pg = widgets.PolicyPlayground(signed["a"], [f"{signed['host']}/pg/signed:v1"])
    assert pg.result.allowed is True and "admitted" in pg.output.value
    assert "labkit-decision" in pg.output._dom_classes and "labkit-policy-editor" in pg.editor._dom_classes
    pg.editor.value = signed["b"]
    assert pg.result.allowed is False and "denied by kyverno" in pg.output.value


def test_key_rows_list_pairs_with_mode_and_algorithm(tmp_path: Path) -> None:
    keys.generate_key_pair(tmp_path / "cosign", b"")
    from cryptography.hazmat.primitives.asymmetric import ec

    keys.write_key_pair(tmp_path / "team", ec.generate_private_key(ec.SECP384R1()), b"")
    (tmp_path / "team.key").chmod(0o644)
    rows = {r.name: r for r in widgets.key_rows(tmp_path)}
    assert rows["cosign"].private_mode == "0600" and rows["cosign"].algorithm == "ECDSA P-256"
    assert rows["team"].private_mode == "0644" and rows["team"].algorithm == "ECDSA P-384"
    assert len(rows["cosign"].fingerprint) == 64


def test_report_rows_and_counts_from_a_policy_report() -> None:
    """The PolicyReport shape of wgpolicyk8s.io/v1alpha2 (as Kyverno writes it)."""
    from labkit.admission.reports import report_rows, result_counts

    report = {"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
              "metadata": {"name": "uid-1", "namespace": "default"},
              "scope": {"apiVersion": "v1", "kind": "Pod", "name": "web", "namespace": "default"},
              "results": [{"source": "kyverno", "policy": "p", "rule": "r1", "result": "fail", "message": "no sig"},
                          {"source": "kyverno", "policy": "p", "rule": "r0", "result": "pass", "message": ""}]}
    rows = report_rows([report])
    assert [(r.resource, r.rule, r.result) for r in rows] == [("Pod/web", "r0", "pass"), ("Pod/web", "r1", "fail")]
    assert result_counts([report, report]) == {"p": {"pass": 2, "fail": 2, "warn": 0, "error": 0, "skip": 0}}
    assert "<td>no sig</td>" in widgets.report_table([report]).data
    figure = widgets.report_chart([report])
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["p"]


def test_tree_text_is_cosign_tree_plus_what_each_signature_covers(signed: dict[str, str]) -> None:
    from labkit.oci.client import RegistryClient
    from labkit.signing.tree import format_tree, tree

    ref = f"{signed['host']}/pg/signed:v1"
    text = widgets.tree_text(ref)
    with RegistryClient() as client:
        assert text.startswith(format_tree(ref, tree(ref, client=client)).rstrip("\n"))
    assert text.endswith(f"signed {signed['digest'][:19]}… (no annotations)")


def test_playground_reaches_a_registry_pods_name_differently(signed: dict[str, str]) -> None:
    """kind: pods and policies say registry.local:5000, this machine pushes to localhost:5001."""
    pod_host = "registry.local:5000"
    policy, image = signed["a"].replace(signed["host"], pod_host), f"{pod_host}/pg/signed:v1"
    unreachable = widgets.playground_decision(policy, image)
    assert unreachable.allowed is False and "admitted" not in unreachable.text
    seen = widgets.playground_decision(policy, image, reach=(pod_host, signed["host"]))
    assert seen.allowed is True and f"{image}@{signed['digest']}" in seen.text and signed["host"] not in seen.text


def test_notebook_05s_policy_in_the_playground(labkit_registry, tmp_path: Path) -> None:
    """The workshop's ImageValidatingPolicy template: the messages are Kyverno's, as in the
    conformance cases ivp-unsigned-denied and ivp-invalid-cel (agreed with kyverno apply)."""
    from labkit import workshop

    keys.generate_key_pair(tmp_path / "cosign", b"")
    host = labkit_registry.host
    good = _signed_and_unsigned(f"{host}/workshop/hello", f"{host}/workshop/unsigned", tmp_path / "cosign.key", b"ivp")
    policy = workshop.write_policy("imagevalidatingpolicy", tmp_path / "ivp.yaml", public_key=tmp_path / "cosign.pub",
                                   registry=host).read_text()
    signed, unsigned = f"{host}/workshop/hello:v1", f"{host}/workshop/unsigned:v1"

    admitted = widgets.playground_decision(policy, signed)
    assert admitted.allowed is True and f"{signed}@{good}" in admitted.text  # pinned by mutateDigest
    denied = widgets.playground_decision(policy, unsigned)
    assert denied.allowed is False
    assert denied.text.startswith("denied by kyverno: Policy workshop-signed failed: "
                                  "failed to verify image with the workshop key\n")
    assert "workshop: no signatures found" in denied.text
    audit = widgets.playground_decision(policy.replace("validationActions: [Deny]", "validationActions: [Audit]"),
                                        unsigned)
    assert audit.allowed is True and ": fail (failed to verify image with the workshop key)" in audit.text
    narrowed = widgets.playground_decision(policy.replace("/workshop/*", "/workshop/hello*"), unsigned)
    assert narrowed.allowed is True and "[kyverno] workshop-signed/workshop-signed: pass" in narrowed.text

    misspelt = widgets.playground_decision(policy.replace("verifyImageSignatures", "verifyImageSignature"), signed)
    assert misspelt.allowed is None
    assert "failed to compile policy: spec.validations[0].expression: Invalid value: " in misspelt.text
    assert "undeclared reference to 'verifyImageSignature' (in container '')" in misspelt.text


def test_bad_namespace_labels_are_named_as_such(signed: dict[str, str]) -> None:
    result = widgets.playground_decision(signed["a"], f"{signed['host']}/pg/signed:v1", namespace_labels="team")
    assert result.allowed is None and result.text.startswith("invalid namespace labels: ") and "'team'" in result.text


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COSIGN_PASSWORD", "panel-pw")
    return tmp_path / "home"


def test_key_panel_generates_a_pair_and_lists_it(home: Path) -> None:
    pytest.importorskip("ipywidgets")
    panel = widgets.KeyPanel()
    assert "<tbody></tbody>" in panel.table.value  # no keys yet
    result = panel.generate("team")
    assert result.ok, result.transcript()
    key = home / "workshop" / "team.key"
    assert f"Private key written to {key}" in result.stderr + result.stdout  # cosign's line
    assert key.stat().st_mode & 0o777 == 0o600
    assert "<td>team</td><td>0600</td><td>ECDSA P-256</td>" in panel.table.value
    keys.load_private_key(key, b"panel-pw")  # sealed with the workshop password


def test_sign_verify_panel_runs_cosigns_verbs(home: Path, labkit_registry) -> None:
    pytest.importorskip("ipywidgets")
    from labkit import workshop

    keys.generate_key_pair(workshop.workdir() / "cosign", b"panel-pw")
    with RegistryClient() as client:
        digest = client.push_image(f"{labkit_registry.host}/sv/app:v1", one_layer_image(b"sign verify panel\n"))
    ref = f"{labkit_registry.host}/sv/app@{digest}"
    panel = widgets.SignVerifyPanel(ref)
    before = panel.verify()
    assert not before.ok and "no signatures found" in before.stderr
    assert panel.sign().ok
    after = panel.verify()
    assert after.ok, after.transcript()
    assert f"Verification for {ref} --" in after.stderr  # cosign's header, then the checks it made
    assert after.equivalent is not None and after.equivalent.startswith("cosign verify --key ")


def test_tree_text_shows_a_crafted_payload_instead_of_failing(labkit_registry) -> None:
    from labkit.oci.reference import Reference
    from labkit.signing.artifact import SIGNATURE_ANNOTATION, SignatureImage, SignatureLayer, attachment_ref

    ref = f"{labkit_registry.host}/pg/crafted:v1"
    with RegistryClient() as client:
        digest = client.push_image(ref, one_layer_image(b"crafted\n"))
        sig = SignatureImage()
        sig.append(SignatureLayer(b"[]", {SIGNATURE_ANNOTATION: "AAAA"}))  # a JSON array, not a payload
        sig.push(client, attachment_ref(Reference.parse(ref), digest))
    assert widgets.tree_text(ref).endswith("unreadable payload: signature payload is not a JSON object")
