"""The seed scenario on a real kind cluster with Kyverno and policy-controller.

Oracle: the real controllers and kubectl, held to the same tests/scenario_expectations.yaml as the
embedded lab. Needs Docker, kind, helm and kubectl (and network access for images and charts);
skipped with the reason where any is missing, unless LABKIT_REQUIRE_CLUSTER=1 (the GitHub Actions
workflow .github/workflows/cluster.yml sets it, so a skip there is a failure).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit import check
from labkit.lab import Lab
from labkit.lab.kind import KEEP_ON_FAILURE
from tests.lab import scenario


def _missing() -> str | None:
    for tool in ("docker", "kind", "helm", "kubectl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=60).returncode != 0:
        return "Docker is installed but its daemon is not running (`docker info` failed)"
    return None


_REASON = _missing()
if _REASON and os.environ.get("LABKIT_REQUIRE_CLUSTER") == "1":
    raise RuntimeError(f"LABKIT_REQUIRE_CLUSTER=1 but the kind backend cannot run: {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"kind backend not runnable here: {_REASON}")


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, str]]]:
    lab = Lab.start("kind", tmp_path_factory.mktemp("labkit-home"))
    failed_before = request.session.testsfailed
    try:
        yield lab, scenario.prepare(lab, tmp_path_factory.mktemp("keys"))
    finally:
        # The workflow's Diagnostics step reads the cluster of a failed run; its Teardown removes it.
        if os.environ.get(KEEP_ON_FAILURE) != "1" or request.session.testsfailed == failed_before:
            lab.stop()


@pytest.mark.parametrize("case", scenario.cases(), ids=lambda c: c.object)
def test_scenario(lab: tuple[Lab, dict[str, str]], case: scenario.Case) -> None:
    the_lab, subs = lab
    scenario.check(the_lab.create(scenario.pod(case, subs)), case, subs)


def test_ivp_pulls_with_credentials_secrets_in_the_kyverno_namespace(lab: tuple[Lab, dict[str, str]],
                                                                      tmp_path: Path) -> None:
    scenario.private_registry_ivp_round_trip(lab[0], tmp_path)


def test_private_registry_needs_the_pull_secret(lab: tuple[Lab, dict[str, str]], tmp_path: Path) -> None:
    scenario.private_registry_round_trip(lab[0], tmp_path)


def test_policies_lists_what_delete_removes(lab: tuple[Lab, dict[str, str]]) -> None:
    scenario.list_and_delete_policy(lab[0], scenario.POLICY_TO_DELETE)
    [again] = lab[0].delete(scenario.POLICY_TO_DELETE)
    assert not again.admitted and "NotFound" in again.message


def test_status_reports_both_controllers(lab: tuple[Lab, dict[str, str]]) -> None:
    status = lab[0].status()
    assert status["backend"] == "kind" and status["registry"] == "localhost:5001"
    # every Deployment of both charts, ready (templates/*/deployment.yaml of Kyverno chart 3.9.1 and
    # policy-controller chart 0.10.6)
    assert set(status["health"]["kyverno"].split()) == {
        "kyverno-admission-controller=1/1", "kyverno-background-controller=1/1",
        "kyverno-cleanup-controller=1/1", "kyverno-reports-controller=1/1"}
    assert status["health"]["policy-controller"] == "policy-controller-webhook=1/1"
    assert check.lab_running(lab[0]).passed, status


def test_the_signed_sample_runs_and_answers(lab: tuple[Lab, dict[str, str]], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 15, item 11: the workshop's sample, built as the kind lab builds it (on its FROM, pinned
    by digest), signed and admitted by Kyverno, becomes Ready (its readiness probe is an HTTP GET)
    and answers through kubectl port-forward."""
    import http.client
    import socket
    import time

    from labkit import keys, workshop
    from labkit.cli import main
    from labkit.oci.client import RegistryClient
    from labkit.signing.sign import sign_image

    the_lab = lab[0]
    monkeypatch.setenv("LABKIT_BUILD_PULL_BASE", the_lab.env()["LABKIT_BUILD_PULL_BASE"])
    push, pods = the_lab.registry.host, the_lab.registry.pod_host
    assert main(["build", str(workshop.SAMPLE_APP), "-t", f"{push}/sample/hello:v1", "--push"]) == 0
    digest = capsys.readouterr().out.strip().rsplit("@", 1)[1]
    keys.generate_key_pair(tmp_path / "sample", b"")
    private = keys.load_private_key(tmp_path / "sample.key", b"")
    with RegistryClient() as client:
        sign_image(f"{push}/sample/hello@{digest}", private, client=client)
    entry = {"keys": scenario.OFFLINE | {"publicKeys": (tmp_path / "sample.pub").read_text()}}
    verify = {"imageReferences": [f"{pods}/sample/*"], "failureAction": "Enforce", "attestors": [{"entries": [entry]}]}
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "sample-signed"},
              "spec": {"rules": [{"name": "sample-signed", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                                  "verifyImages": [verify]}]}}
    container = {"name": "hello", "image": f"{pods}/sample/hello@{digest}", "ports": [{"containerPort": 5000}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": 5000}, "periodSeconds": 2}}
    template = {"metadata": {"labels": {"app": "hello"}}, "spec": {"containers": [container]}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello", "namespace": "default"},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hello"}}, "template": template}}
    forward = None
    try:
        assert [r.message for r in the_lab.apply(policy)] == ["clusterpolicy.kyverno.io/sample-signed created"]
        created = the_lab.create(deployment)
        assert created.admitted, created.message
        rollout = the_lab.kubectl("rollout", "status", "deployment/hello", "-n", "default", "--timeout=180s",
                                  timeout=200)
        pods_now = the_lab.kubectl("describe", "pods", "-n", "default", "-l", "app=hello").stdout
        assert rollout.returncode == 0, rollout.stdout + rollout.stderr + pods_now
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        forward = subprocess.Popen(["kubectl", "--kubeconfig", str(the_lab.kubeconfig), "port-forward",
                                    "-n", "default", "deployment/hello", f"{port}:5000"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline, body = time.monotonic() + 60, b""
        while time.monotonic() < deadline and not body:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                assert resp.status == 200
                body = resp.read()
            except OSError:
                time.sleep(1)
        assert body.startswith(b"Hello from a signed image! (host hello-"), body
    finally:
        if forward is not None:
            forward.terminate()
            forward.communicate(timeout=30)
        the_lab.kubectl("delete", "deployment", "hello", "-n", "default", "--ignore-not-found")
        the_lab.delete(policy)
