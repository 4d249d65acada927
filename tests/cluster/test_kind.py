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

from labkit.lab import Lab
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
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, dict[str, str]]]:
    lab = Lab.start("kind", tmp_path_factory.mktemp("labkit-home"))
    try:
        yield lab, scenario.prepare(lab, tmp_path_factory.mktemp("keys"))
    finally:
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
    assert "kyverno-admission-controller=1/1" in status["health"]["kyverno"]
    assert "policy-controller-webhook=1/1" in status["health"]["policy-controller"]
