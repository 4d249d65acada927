"""User YAML is refused as Kubernetes refuses it, before any object is built: alias bombs
(go-yaml v2 decode.go ``allowedAliasRatio``; kubectl v1.36.3 prints ``error converting YAML to
JSON: yaml: document contains excessive aliasing``), bytes that are not UTF-8 (go-yaml's reader)
and a ``metadata`` kubectl cannot decode (``unable to decode "FILE": json: cannot unmarshal …``,
kubectl v1.36.3). Every path that reads user YAML goes through the one loader: policy files, the
webhook's policy directory, ``lab.apply`` and ``labkit policy test --resource``. Hang tests run in
a thread and must answer within 10 s."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labkit._internal.yamlsafe import YAMLInputError, load_all
from labkit.admission.review import AdmissionRequest
from labkit.admission.sources import NamespaceLabels, PolicyDirectory
from labkit.admission.webhook import Webhook
from labkit.cli import main
from labkit.errors import PolicyError, UsageError
from labkit.lab.base import load_documents
from labkit.oci.client import RegistryClient
from labkit.policy.load import load_policies
from labkit.policy.podspec import Engine

EXCESSIVE = "error converting YAML to JSON: yaml: document contains excessive aliasing"
STATIC_CIP = """\
apiVersion: policy.sigstore.dev/v1beta1
kind: ClusterImagePolicy
metadata: {name: deny-all}
spec:
  images: [{glob: "**"}]
  authorities: [{static: {action: fail}}]
"""


def bomb(head: str = "apiVersion: v1\nkind: Pod\n", levels: int = 9) -> str:
    """A billion laughs (9**levels leaves) whose top lands in ``metadata.name``: labkit used to
    format that name into its error message, 9.8 s and 321 MiB at 784 bytes."""
    lines = ["    x0: &a0 [l, o, l, o, l, o, l, o, l]"]
    lines += [f"    x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return head + "metadata:\n  annotations:\n" + "\n".join(lines) + f"\n  name: *a{levels - 1}\n"


def within_10s(call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; what it raised (None when it returned). Fails if it hangs."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert outcome, "did not answer within 10 s"
    return outcome[0]


def test_alias_bomb_is_refused_at_once() -> None:
    err = within_10s(lambda: load_all(bomb()))
    assert isinstance(err, YAMLInputError) and str(err) == EXCESSIVE


@pytest.mark.parametrize(("anchored", "nested", "aliases", "refused"), [
    # kubectl v1.36.3 (create --dry-run=client) on the same documents: the last accepted count
    # and the first refused one
    (200, 0, 209, False), (200, 0, 210, True), (50, 3, 118, False), (50, 3, 119, True),
    (200, 3, 41, False), (200, 3, 42, True),
])
def test_alias_limit_is_go_yamls(anchored: int, nested: int, aliases: int, refused: bool) -> None:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: g", "data:",
             f"  a: &a [{', '.join(['x'] * anchored)}]"]
    if nested:  # b holds `nested` aliases of a; c holds `aliases` aliases of b
        lines.append(f"  b: &b [{', '.join(['*a'] * nested)}]")
    lines.append(f"  c: [{', '.join(['*b' if nested else '*a'] * aliases)}]")
    text = "\n".join(lines) + "\n"
    if refused:
        with pytest.raises(YAMLInputError, match="excessive aliasing"):
            load_all(text)
    else:
        assert len(load_all(text)[0]["data"]["c"]) == aliases


def test_ordinary_aliases_and_merge_keys_still_load() -> None:
    assert load_all("b: &m {x: 1}\nc: {<<: *m, y: 2}\n") == [{"b": {"x": 1}, "c": {"x": 1, "y": 2}}]


def test_self_containing_anchor_is_refused() -> None:
    with pytest.raises(YAMLInputError, match="anchor value contains itself"):
        load_all("a: &x [1, *x]\n")


@pytest.mark.parametrize(("data", "problem"), [
    (b"a: \xff\n", "invalid leading UTF-8 octet"),
    (b"a: \xc3(\n", "invalid trailing UTF-8 octet"),
    (b"a: \xc3", "incomplete UTF-8 octet sequence"),
])
def test_non_utf8_is_refused_in_go_yamls_words(data: bytes, problem: str) -> None:
    with pytest.raises(YAMLInputError) as err:
        load_all(data)
    assert str(err.value) == f"error converting YAML to JSON: yaml: {problem}"


def test_policy_alias_bomb_is_one_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb("apiVersion: kyverno.io/v1\nkind: ClusterPolicy\n"))
    err = within_10s(lambda: load_policies(path))
    assert isinstance(err, PolicyError) and err.message == f"{path}: {EXCESSIVE}"


@pytest.mark.parametrize(("metadata", "text"), [
    ("x", "json: cannot unmarshal string into Go struct field metadataOnlyObject.metadata of type v1.ObjectMeta"),
    ("[1]", "json: cannot unmarshal array into Go struct field metadataOnlyObject.metadata of type v1.ObjectMeta"),
    ("{name: 5}", "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string"),
    ("{name: a, labels: x}",
     "json: cannot unmarshal string into Go struct field ObjectMeta.metadata.labels of type map[string]string"),
])
def test_malformed_metadata_is_kubectls_decode_error(tmp_path: Path, metadata: str, text: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(STATIC_CIP.replace("metadata: {name: deny-all}", f"metadata: {metadata}"))
    with pytest.raises(PolicyError) as err:
        load_policies(path)
    assert err.value.message == f'unable to decode "{path}": {text}'
    with pytest.raises(UsageError) as lab_err:
        load_documents(path)
    assert lab_err.value.message == f'unable to decode "{path}": {text}'


def test_non_utf8_policy_file_is_one_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(STATIC_CIP.encode().replace(b"deny-all", b"deny-\xff"))
    with pytest.raises(PolicyError) as err:
        load_policies(path)
    assert err.value.message == f"{path}: error converting YAML to JSON: yaml: invalid leading UTF-8 octet"
    with pytest.raises(UsageError) as lab_err:
        load_documents(path)
    assert lab_err.value.message == f"{path}: error converting YAML to JSON: yaml: invalid leading UTF-8 octet"


def test_lab_apply_refuses_an_alias_bomb() -> None:
    err = within_10s(lambda: load_documents(bomb()))
    assert isinstance(err, UsageError) and err.message == f"the given YAML: {EXCESSIVE}"


@pytest.mark.parametrize("name", ["bomb", "metadata", "utf8"])
def test_cli_reports_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    heads = {"policy": "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\n", "resource": "apiVersion: v1\nkind: Pod\n"}
    for role, head in heads.items():
        path = tmp_path / f"{role}.yaml"
        if name == "bomb":
            path.write_text(bomb(head))
        elif name == "metadata":
            path.write_text(head + "metadata: x\n")
        else:
            path.write_bytes(head.encode() + b"metadata: {name: \xff}\n")
    policy = tmp_path / "cip.yaml"
    policy.write_text(STATIC_CIP)
    assert within_10s(lambda: main(["policy", "lint", str(tmp_path / "policy.yaml")])) is None
    assert within_10s(lambda: main(["policy", "test", "--policy", str(policy),
                                    "--resource", str(tmp_path / "resource.yaml")])) is None
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 2 and all(len(line) < 300 for line in errors), err


def test_webhook_keeps_serving_beside_a_bad_policy_file(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "good.yaml").write_text(STATIC_CIP)
    (policies / "meta.yaml").write_text(STATIC_CIP.replace("metadata: {name: deny-all}", "metadata: x"))
    (policies / "bytes.yaml").write_bytes(STATIC_CIP.encode().replace(b"deny-all", b"deny-\xff"))
    (policies / "bomb.yaml").write_text(bomb("apiVersion: kyverno.io/v1\nkind: ClusterPolicy\n"))
    (tmp_path / "namespaces.json").write_text(json.dumps({"ns": {"policy.sigstore.dev/include": "true"}}))
    webhook = Webhook(PolicyDirectory(policies), NamespaceLabels(tmp_path / "namespaces.json"),
                      RegistryClient(), cache_ttl=0)
    health = within_10s(webhook.health)
    assert health is None
    report = webhook.health()
    assert report["status"] == "degraded"
    assert report["policies"] == ["ClusterImagePolicy/deny-all"]
    assert sorted(report["errors"]) == ["bomb.yaml", "bytes.yaml", "meta.yaml"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
           "spec": {"containers": [{"name": "c", "image": "registry.local/x@sha256:" + "ab" * 32}]}}
    request = AdmissionRequest("u", "CREATE", "ns", "p", pod, kind={"group": "", "version": "v1", "kind": "Pod"})
    outcome = webhook.review(Engine.POLICY_CONTROLLER, False, request)
    assert not outcome.allowed and "deny-all" in outcome.message



def test_policy_directory_keeps_out_a_file_whatever_its_loader_raises(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # defence in depth: a loader bug on one file must not take the other policies down
    from labkit.admission import sources

    real = sources.load_objects  # policies and the TrustRoots they name

    def flaky(path: Path) -> list[Any]:
        if path.name == "odd.yaml":
            raise RecursionError("maximum recursion depth exceeded")
        return real(path)

    monkeypatch.setattr(sources, "load_objects", flaky)
    (tmp_path / "good.yaml").write_text(STATIC_CIP)
    (tmp_path / "odd.yaml").write_text(STATIC_CIP)
    policies, errors = PolicyDirectory(tmp_path).current()
    assert [p.name for p in policies] == ["deny-all"]
    assert errors == {"odd.yaml": f"{tmp_path / 'odd.yaml'}: not loaded: RecursionError: "
                                  "maximum recursion depth exceeded"}
