"""The seed scenario on the embedded lab, through real HTTPS AdmissionReviews.

Oracles: tests/scenario_expectations.yaml (the engines' and kubectl's texts, from the reference
fact sheets; the kind test asserts the same rows against the real controllers); signatures made by
``labkit.signing`` (checked against real cosign in tests/interop); the kernel for processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from labkit.errors import LabError
from labkit.lab import Lab
from labkit.lab.embedded import EmbeddedLab
from labkit.oci.client import RegistryClient
from tests.lab import scenario


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, str]]]:
    home = tmp_path_factory.mktemp("labkit-home")
    lab = Lab.start("embedded", home)
    try:
        yield lab, scenario.prepare(lab, tmp_path_factory.mktemp("keys"))
    finally:
        lab.stop()


@pytest.mark.parametrize("case", scenario.cases(), ids=lambda c: c.object)
def test_scenario(lab: tuple[Lab, dict[str, str]], case: scenario.Case) -> None:
    the_lab, subs = lab
    scenario.check(the_lab.create(scenario.pod(case, subs)), case, subs)


def test_denial_names_the_controller_and_a_file(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    result = scenario.denial_from_file(*lab, tmp_path / "pod.yaml")
    assert result.webhooks == ("mutate.kyverno.svc-fail", "policy.sigstore.dev", "validate.kyverno.svc-fail",
                               "policy.sigstore.dev")


def test_unknown_namespace_is_not_found(lab: tuple[Lab, dict[str, str]]) -> None:
    result = lab[0].create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "nope"},
                            "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    assert not result.admitted and result.message == 'Error from server (NotFound): namespaces "nope" not found'


def test_cli_status_apply_and_connect_from_another_process(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    the_lab, subs = lab
    env = {**os.environ, "LABKIT_HOME": str(the_lab.home.root)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "labkit", "lab", *args], env=env, capture_output=True,
                              text=True, timeout=120)

    status = cli("status")
    assert status.returncode == 0, status.stderr
    assert f"registry: {the_lab.registry.host}\n" in status.stdout and "health:   webhook: ok" in status.stdout
    unsigned = next(c for c in scenario.cases() if c.object == "kyverno-unsigned")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(scenario.pod(unsigned, subs)))
    denied = cli("apply", "-f", str(tmp_path / "bad.yaml"))
    assert denied.returncode == 1 and 'admission webhook "mutate.kyverno.svc-fail" denied' in denied.stderr
    signed = next(c for c in scenario.cases() if c.object == "kyverno-signed")
    good = scenario.pod(signed, subs)
    good["metadata"]["name"] = "cli-signed"  # test_scenario already created kyverno-signed
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    admitted = cli("apply", "-f", str(tmp_path / "good.yaml"))
    assert admitted.returncode == 0 and admitted.stdout == "pod/cli-signed created\n"
    # The object is stored where every process sees it: this process's lab finds it too.
    again = the_lab.create(good)
    assert again.message == 'Error from server (AlreadyExists): pods "cli-signed" already exists'


def test_two_homes_do_not_collide(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    other = Lab.start("embedded", tmp_path)
    try:
        first = lab[0].state.services
        assert {s.port for s in other.state.services.values()}.isdisjoint(s.port for s in first.values())
        assert Lab.start("embedded", tmp_path).state == other.state  # up twice: the same lab
    finally:
        other.stop()
    with pytest.raises(LabError, match="no lab is running"):
        Lab.connect(tmp_path)


def test_reset_removes_policies_namespaces_and_signatures(tmp_path: Path) -> None:
    lab = Lab.start("embedded", tmp_path / "home")
    try:
        subs = scenario.prepare(lab, tmp_path)
        repo = f"{lab.registry.host}/kyverno/signed"
        with RegistryClient() as client:
            assert f"{subs['kyverno_signed'].replace(':', '-')}.sig" in client.list_tags(repo)
            lab.reset()
            assert client.list_tags(repo) == ["v1"]
        assert list(lab.home.policies.iterdir()) == []
        unsigned = lab.create(scenario.pod(next(c for c in scenario.cases() if c.object == "kyverno-unsigned"), subs))
        assert unsigned.admitted and unsigned.message == "pod/kyverno-unsigned created"  # no policy any more
        gone = lab.create(scenario.pod(next(c for c in scenario.cases() if c.object == "pc-unsigned"), subs))
        assert gone.message == 'Error from server (NotFound): namespaces "pc" not found'
    finally:
        lab.stop()


def test_ivp_pulls_with_credentials_secrets_in_the_kyverno_namespace(lab: tuple[Lab, dict[str, str]],
                                                                      tmp_path: Path) -> None:
    scenario.private_registry_ivp_round_trip(lab[0], tmp_path)


def test_private_registry_needs_the_pull_secret(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    the_lab = lab[0]
    scenario.private_registry_round_trip(the_lab, tmp_path)
    assert the_lab.private_registry.password not in (the_lab.home.logs / "private-registry.log").read_text()


def test_server_dry_run_decides_like_create(lab: tuple[Lab, dict[str, str]]) -> None:
    """``kubectl create --dry-run=server``: the same webhooks and verdicts, kubectl's suffix."""
    the_lab, subs = lab
    for case in scenario.cases()[:4]:
        obj = scenario.pod(case, subs)
        obj["metadata"]["name"] = f"dry-{case.object}"  # a name no other test created
        dry, real = the_lab.create(obj, dry_run=True), the_lab.create(obj)  # the dry run stores nothing
        assert (dry.admitted, dry.denied_by, dry.images) == (real.admitted, real.denied_by, real.images)
        assert dry.message == (real.message + " (server dry run)" if real.admitted else real.message)


def test_delete_removes_a_policy_as_kubectl_delete_does(lab: tuple[Lab, dict[str, str]]) -> None:
    the_lab, subs = lab
    policy = scenario.POLICY_TO_DELETE
    scenario.list_and_delete_policy(the_lab, policy)
    [again] = the_lab.delete(policy)
    assert not again.admitted
    assert again.message == ('Error from server (NotFound): clusterimagepolicies.policy.sigstore.dev "to-delete" '
                             'not found')


def test_lab_works_behind_a_proxy_that_does_not_exempt_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP(S)_PROXY set for the internet, NO_PROXY empty: the lab's own loopback calls (health
    checks, AdmissionReviews, the catalog) must not go to the proxy, as Go tools' would not."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    lab = Lab.start("embedded", tmp_path / "home")
    try:
        assert all(h == "ok" or h.get("status") == "ok" for h in lab.status()["health"].values())
        assert lab.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                           "spec": {"containers": [{"name": "c", "image": "example.invalid/a/b:c"}]}}).admitted
        lab.reset()
    finally:
        lab.stop()


def _deployment(name: str, image: str, namespace: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def test_create_of_an_existing_name_is_already_exists_after_admission(lab: tuple[Lab, dict[str, str]],
                                                                        tmp_path: Path) -> None:
    """The storage layer answers after the webhooks: AlreadyExists for an admitted object, the
    webhook's denial for a refused one; a server dry run checks the name too."""
    the_lab, subs = lab
    signed = scenario.pod(scenario.Case("twice", "default", "{registry}/kyverno/signed:v1", True, ""), subs)
    assert the_lab.create(signed).message == "pod/twice created"
    assert the_lab.create(signed).message == 'Error from server (AlreadyExists): pods "twice" already exists'
    assert the_lab.create(signed, dry_run=True).message.endswith('pods "twice" already exists')
    path = tmp_path / "twice.yaml"
    path.write_text(yaml.safe_dump(signed))
    assert the_lab.create(path).message == ('Error from server (AlreadyExists): error when creating '
                                            f'"{path}": pods "twice" already exists')
    unsigned = scenario.pod(scenario.Case("twice", "default", "{registry}/kyverno/unsigned:v1", False, ""), subs)
    assert the_lab.create(unsigned).denied_by == "mutate.kyverno.svc-fail"
    deployment = _deployment("twice", f"{subs['registry']}/other/app:v1", "default", 1)
    assert the_lab.create(deployment).message == "deployment.apps/twice created"  # another kind, another object
    assert the_lab.create(deployment).message == ('Error from server (AlreadyExists): deployments.apps "twice" '
                                                  'already exists')


def test_update_is_kubectl_replace_through_an_update_review(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    the_lab, subs = lab
    image = f"{subs['registry']}/kyverno/signed:v1"
    obj = scenario.pod(scenario.Case("replaced", "default", "{registry}/kyverno/signed:v1", True, ""), subs)
    missing = the_lab.update(obj)
    assert not missing.admitted and missing.message == 'Error from server (NotFound): pods "replaced" not found'
    assert the_lab.create(obj).admitted
    obj["metadata"]["labels"] = {"tier": "web"}
    dry = the_lab.update(obj, dry_run=True)
    assert dry.admitted and dry.message == "pod/replaced replaced (server dry run)"
    replaced = the_lab.update(obj)
    assert replaced.admitted and replaced.message == "pod/replaced replaced", replaced.message
    assert replaced.images == (f"{image}@{subs['kyverno_signed']}",)
    assert replaced.object is not None and replaced.object["metadata"]["labels"] == {"tier": "web"}
    obj["spec"]["containers"][0]["image"] = f"{subs['registry']}/kyverno/unsigned:v1"
    path = tmp_path / "replace.yaml"
    path.write_text(yaml.safe_dump(obj))
    refused = the_lab.update(path)
    assert not refused.admitted and refused.denied_by == "mutate.kyverno.svc-fail"
    assert refused.message.startswith(f'Error from server: error when replacing "{path}": admission webhook '
                                      '"mutate.kyverno.svc-fail" denied the request: \n\nresource '
                                      'Pod/default/replaced was blocked'), refused.message
    with pytest.raises(LabError, match="one object"):
        the_lab.update(yaml.safe_dump_all([obj, obj]))


def test_policy_controller_skips_a_scale_down_update(lab: tuple[Lab, dict[str, str]]) -> None:
    """The UPDATE review carries the stored object: policy-controller lets a PodScalable that
    scales down through unchecked, unsigned image and all (IsScalingDown), and checks a scale-up."""
    the_lab, subs = lab
    registry = subs["registry"]
    assert the_lab.create(_deployment("scaled", f"{registry}/pc/signed:v1", "pc", 3)).admitted
    down = the_lab.update(_deployment("scaled", f"{registry}/pc/unsigned:v1", "pc", 2))
    assert down.admitted and down.message == "deployment.apps/scaled replaced", down.message
    assert down.images == (f"{registry}/pc/unsigned:v1",)  # not even resolved
    up = the_lab.update(_deployment("scaled", f"{registry}/pc/unsigned:v1", "pc", 3))
    assert not up.admitted and up.denied_by == "policy.sigstore.dev"
    assert "failed policy: signed-by-lab-key: spec.template.spec.containers[0].image" in up.message, up.message
    # replicas left out are the API server's default, 1: still a scale-down from 2
    default = _deployment("scaled", f"{registry}/pc/unsigned:v1", "pc", 1)
    del default["spec"]["replicas"]  # type: ignore[attr-defined]
    assert the_lab.update(default).admitted


def test_policy_controller_leaves_an_object_being_deleted_alone(lab: tuple[Lab, dict[str, str]]) -> None:
    """isDeletedOrStatusUpdate: an object with a deletionTimestamp (the API server carries it
    over from the stored one) is admitted unchecked; the same review without it is denied."""
    the_lab, subs = lab
    obj = scenario.pod(scenario.Case("going", "pc", "{registry}/pc/unsigned:v1", False, ""), subs)

    def review(o: dict[str, object]) -> bool:
        body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": "u", "operation": "UPDATE", "namespace": "pc", "name": "going",
            "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": o, "oldObject": o}}
        assert isinstance(the_lab, EmbeddedLab)
        return bool(the_lab.api.http.post("/validate/policy-controller", json=body).json()["response"]["allowed"])

    assert not review(obj)
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert review(obj)
