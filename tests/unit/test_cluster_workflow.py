""".github/workflows/cluster.yml does what notebook 08 teaches and what diagnosing a first run needs.

Oracles: GitHub Actions' workflow syntax (``uses: owner/repo@ref``, a step's ``if:``, steps run in
order); the pins are the tags' commits in actions/checkout and actions/setup-python (v7.0.1 →
3d3c42e5…, v7.0.0 → 5fda3b95…, read from those repositories' git tags); the versions are labkit's
own pins (labkit/lab/kind_setup.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.lab.kind import KEEP_ON_FAILURE
from labkit.lab.kind_setup import CLUSTER, KIND_VERSION, OWN_REGISTRY, PRIVATE_REGISTRY, RECIPE_REGISTRY

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "cluster.yml"
TEXT = WORKFLOW.read_text()
JOB: dict[str, Any] = yaml.safe_load(TEXT)["jobs"]["kind"]
STEPS: list[dict[str, Any]] = JOB["steps"]
_PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v\d+\.\d+\.\d+)$")


def _step(name: str) -> tuple[int, dict[str, Any]]:
    [found] = [(i, s) for i, s in enumerate(STEPS) if s.get("name", "").startswith(name)]
    return found


def test_every_action_is_pinned_by_full_commit_with_its_version_named() -> None:
    lines = [line for line in TEXT.splitlines() if re.match(r"^\s*(- )?uses:", line)]
    assert lines and len(lines) == sum("uses" in s for s in STEPS)
    for line in lines:
        assert _PINNED.match(line), f"not pinned by commit with a # vX.Y.Z comment: {line.strip()}"
    pins = {m.group(1): (m.group(2), m.group(3)) for m in map(_PINNED.match, lines) if m}
    assert pins == {"actions/checkout": ("3d3c42e5aac5ba805825da76410c181273ba90b1", "v7.0.1"),
                    "actions/setup-python": ("5fda3b95a4ea91299a34e894583c3862153e4b97", "v7.0.0")}
    [checkout] = [s for s in STEPS if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False  # no token left on the runner's disk


@pytest.mark.parametrize(("name", "url", "checksum", "archive"), [
    ("Install kind", "https://kind.sigs.k8s.io/dl/${KIND_VERSION}/kind-linux-amd64", "KIND_SHA256", "kind"),
    ("Install helm", "https://get.helm.sh/helm-${HELM_VERSION}-linux-amd64.tar.gz", "HELM_SHA256", "helm.tar.gz"),
])
def test_each_binary_is_checked_against_a_pinned_sha256_before_it_is_installed(
        name: str, url: str, checksum: str, archive: str) -> None:
    run = _step(name)[1]["run"]
    assert re.fullmatch(r"[0-9a-f]{64}", JOB["env"][checksum])
    assert f'"{url}"' in run and "--proto '=https'" in run
    verify = run.index(f'echo "${{{checksum}}}  {archive}" | sha256sum -c -')
    assert verify < run.index("sudo install")
    assert "set +e" not in run and "|| true" not in run


def test_the_versions_are_labkits_and_helm_touches_no_repository_list() -> None:
    assert JOB["env"]["KIND_VERSION"] == KIND_VERSION
    assert "setup-helm" not in TEXT and "helm repo add" not in TEXT and "get-helm" not in TEXT


def test_a_failed_run_keeps_its_cluster_for_diagnostics_then_tears_it_down() -> None:
    assert JOB["env"][KEEP_ON_FAILURE] == "1" and JOB["env"]["LABKIT_REQUIRE_CLUSTER"] == "1"
    tests, _ = _step("Cluster tests")
    diagnostics, diag = _step("Diagnostics")
    teardown, down = _step("Teardown")
    assert tests < diagnostics < teardown == len(STEPS) - 1
    assert diag["if"] == "failure()" and down["if"] == "always()"
    run = diag["run"]
    for needed in ("docker ps -a", f"kind export logs \"$RUNNER_TEMP/kind-logs\" --name {CLUSTER}",
                   f"kind export kubeconfig --name {CLUSTER}", "kubectl describe deployments,pods -n \"$ns\"",
                   "kubectl logs -n \"$ns\" \"$deploy\" --all-containers", "for ns in kyverno cosign-system",
                   "kubectl get events -A"):
        assert needed in run, needed
    assert f"kind delete cluster --name {CLUSTER}" in down["run"]
    assert f"docker rm -f {RECIPE_REGISTRY} {OWN_REGISTRY} {PRIVATE_REGISTRY}" in down["run"]


def test_the_cluster_fixture_honours_the_keep_switch() -> None:
    fixture = (WORKFLOW.parents[2] / "tests" / "cluster" / "test_kind.py").read_text()
    assert "os.environ.get(KEEP_ON_FAILURE) != \"1\" or request.session.testsfailed == failed_before" in fixture
