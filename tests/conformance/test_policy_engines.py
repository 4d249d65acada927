"""labkit's admission decisions against the real engines on the shared corpus in ``cases/``.

Each case directory holds ``policy.yaml``, ``resource.yaml`` and ``case.yaml`` (see
``cases/README.md``). For every case labkit must reach ``expect``; then the oracle for the
policy's engine must reach the same decision and print the same policy error:

* Kyverno policies: ``kyverno apply`` (Kyverno CLI v1.19.1), whose summary counts are pinned too;
* ClusterImagePolicies: policy-controller's ``tester`` (v0.13.1), once per container image.

The corpus so far needs no registry: its images point at 127.0.0.1:1, where nothing listens,
so a tool that unexpectedly tried to verify would report an error instead of reaching out.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit.errors import PolicyError
from labkit.policy.decision import Decision, evaluate
from labkit.policy.images import Engine, extract_images
from labkit.policy.load import load_policies
from tests.conftest import reference_tool

CASES = Path(__file__).parent / "cases"
KYVERNO = "kyverno-v1.19.1"
POLICY_TESTER = "policy-tester-v0.13.1"
_COUNTS = re.compile(r"pass: (\d+), fail: (\d+), warn: (\d+), error: (\d+), skip: (\d+)")


@dataclass
class Case:
    name: str
    directory: Path
    spec: dict[str, Any]
    resource: dict[str, Any] = field(default_factory=dict)

    @property
    def expect(self) -> dict[str, Any]:
        return self.spec["expect"]

    @property
    def engine(self) -> Engine:
        text = (self.directory / "policy.yaml").read_text()
        return Engine.POLICY_CONTROLLER if "policy.sigstore.dev/" in text else Engine.KYVERNO


def load_cases() -> list[Case]:
    cases = []
    for directory in sorted(p for p in CASES.iterdir() if (p / "case.yaml").is_file()):
        spec = yaml.safe_load((directory / "case.yaml").read_text())
        resource = yaml.safe_load((directory / "resource.yaml").read_text())
        cases.append(Case(directory.name, directory, spec, resource))
    return cases


ALL = load_cases()


def by_engine(engine: Engine) -> list[Any]:
    return [pytest.param(c, id=c.name) for c in ALL if c.engine is engine]


def offline_verifier(ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None) -> Any:
    raise AssertionError(f"an offline case asked to verify {ref}")


def assert_invalid_text(text: str, expect: Mapping[str, Any]) -> None:
    assert expect["invalid"] in text
    if "invalid_reason" in expect:
        assert expect["invalid_reason"] in text


def labkit_decision(case: Case) -> Decision:
    policies = load_policies(case.directory / "policy.yaml")
    return evaluate(
        policies,
        case.resource,
        namespace_labels=case.spec.get("namespace_labels") or {},
        verifier=offline_verifier,
    )


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in ALL])
def test_labkit(case: Case) -> None:
    if "invalid" in case.expect:
        with pytest.raises(PolicyError) as err:
            labkit_decision(case)
        assert_invalid_text(err.value.message, case.expect)
        return
    decision = labkit_decision(case)
    assert decision.allowed is case.expect["allowed"]
    if "message" in case.expect:
        assert decision.message == case.expect["message"]
    if "trace" in case.expect:
        assert [t.status for t in decision.trace] == case.expect["trace"]


@pytest.mark.parametrize("case", by_engine(Engine.KYVERNO))
def test_kyverno_cli_agrees(case: Case) -> None:
    kyverno = reference_tool(KYVERNO)
    run = subprocess.run(
        [str(kyverno), "apply", "policy.yaml", "--resource", "resource.yaml"],
        cwd=case.directory, capture_output=True, text=True, timeout=300, check=False,
    )
    found = _COUNTS.search(run.stdout)
    assert found, run.stdout + run.stderr
    counts = dict(zip(("pass", "fail", "warn", "error", "skip"), map(int, found.groups()), strict=True))
    assert counts == case.spec["kyverno"]["counts"], run.stdout
    if "invalid" in case.expect:
        # an invalid policy is listed under "Policies Skipped" and counted as an error
        assert "Policies Skipped:" in run.stdout
        assert_invalid_text(run.stdout, case.expect)
        assert run.returncode == 1
    else:
        admitted = counts["fail"] == 0 and counts["error"] == 0
        assert admitted is case.expect["allowed"]
        assert run.returncode == (0 if admitted else 1)


@pytest.mark.parametrize("case", by_engine(Engine.POLICY_CONTROLLER))
def test_policy_controller_tester_agrees(case: Case) -> None:
    tester = reference_tool(POLICY_TESTER)
    images = extract_images(case.resource, Engine.POLICY_CONTROLLER) or []
    assert images, "a ClusterImagePolicy case needs a resource with containers"
    outputs = []
    for container in images:
        run = subprocess.run(
            [str(tester), "-policy", "policy.yaml", "-image", container.image, "-log-level", "error"],
            cwd=case.directory, capture_output=True, text=True, timeout=300, check=False,
        )
        outputs.append(run)
    rc = max(r.returncode for r in outputs)
    assert rc == case.spec["tester"]["exit"], [r.stdout + r.stderr for r in outputs]
    text = "".join(r.stdout + r.stderr for r in outputs)
    if "invalid" in case.expect:
        # log.Fatalf("CIP is invalid: …") wraps the webhook's text in the tester's own FieldError
        assert "CIP is invalid: " in text
        assert_invalid_text(text, case.expect)
    else:
        assert (rc == 0) is case.expect["allowed"]
        if "contains" in case.spec["tester"]:
            assert case.spec["tester"]["contains"] in text
