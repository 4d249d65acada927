"""``labkit policy lint|test`` exit codes and output, on cases that need no registry."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from labkit.cli import main

DIGEST = "sha256:" + "cd" * 32

CIP = """\
apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {name: signed}
spec:
  images: [{glob: "ghcr.io/labkit/**"}]
  authorities: [{static: {action: fail, message: not today}}]
"""

KYVERNO_AUDIT_DIGEST = """\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata: {name: check-image}
spec:
  rules:
    - name: check-image
      match: {any: [{resources: {kinds: [Pod]}}]}
      verifyImages:
        - imageReferences: ["ghcr.io/labkit/*"]
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def pod(tmp_path: Path, image: str) -> str:
    return write(tmp_path, "pod.yaml", f"""\
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: default}}
spec:
  containers: [{{name: web, image: "{image}"}}]
""")


def test_lint_valid_and_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "lint", write(tmp_path, "cip.yaml", CIP)]) == 0
    assert "valid (ClusterImagePolicy signed)" in capsys.readouterr().out
    assert main(["policy", "lint", write(tmp_path, "k.yaml", KYVERNO_AUDIT_DIGEST)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: ") and "mutateDigest must be set to false for \u2018Audit\u2019" in err


def test_static_fail_denies_with_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = f"ghcr.io/labkit/app@{DIGEST}"
    args = ["policy", "test", "--policy", write(tmp_path, "cip.yaml", CIP), "--resource", pod(tmp_path, image)]
    assert main([*args, "--namespace-labels", "policy.sigstore.dev/include=true"]) == 1
    out = capsys.readouterr().out
    assert out.startswith(
        "denied by policy-controller: validation failed: failed policy: signed: spec.containers[0].image\n"
        f"{image} disallowed by static policy: not today\n"
    )
    # without the opt-in label policy-controller never sees the request
    assert main(args) == 0
    assert capsys.readouterr().out == "admitted\n"


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cip = write(tmp_path, "cip.yaml", CIP)
    assert main(["policy", "test", "--policy", cip, "--resource", write(tmp_path, "r.yaml", "- a\n")]) == 2
    assert main(["policy", "test", "--policy", cip, "--resource", pod(tmp_path, "x"),
                 "--namespace-labels", "novalue"]) == 2
    assert "is not KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(("glob", "answer"), [
    # Kyverno CLI v1.19.1 (kyverno apply --policy-report) on the same policy: gobwas/glob's lexer
    # error for an unclosed '[', and an unclosed '{' accepted (the alternatives end the pattern)
    ("ghcr.io/team/[abc", 'spec.MatchImageReferences[0].glob: Invalid value: "ghcr.io/team/[abc": '
                          "unexpected end of input"),
    ("ghcr.io/team/{a,b", "valid (ImageValidatingPolicy check-signed)"),
])
def test_lint_answers_malformed_ivp_globs_at_once(tmp_path: Path, glob: str, answer: str) -> None:
    policy = write(tmp_path, "ivp.yaml", f"""\
apiVersion: policies.kyverno.io/v1
kind: ImageValidatingPolicy
metadata: {{name: check-signed}}
spec:
  matchConstraints:
    resourceRules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [pods]}}]
  matchImageReferences: [{{glob: "{glob}"}}]
  validations: [{{expression: "true"}}]
""")
    # a subprocess with a deadline: a matcher that loops must fail this test, not stall the run
    run = subprocess.run([sys.executable, "-m", "labkit", "policy", "lint", policy], capture_output=True,
                         text=True, timeout=10, check=False, stdin=subprocess.DEVNULL)
    assert answer in run.stdout + run.stderr
    assert "Traceback" not in run.stderr
