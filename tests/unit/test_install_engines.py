"""`labkit lab install-engines`: what a trainer runs to prepare a shared cluster.

Oracles: the charts' own Chart.yaml and values.yaml at the pinned versions
(tests/fixtures/charts, SOURCE.md there), and the arguments a stand-in `helm` receives."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

FIXTURES = Path(__file__).parent.parent / "fixtures" / "charts"
CHARTS = {"kyverno": FIXTURES / "kyverno-3.9.1", "policy-controller": FIXTURES / "policy-controller-0.10.6"}


def labkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labkit", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def helm_lines(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if line.startswith("helm ")]


def test_the_printed_commands_install_each_pinned_chart_from_its_repository() -> None:
    out = labkit("lab", "install-engines")
    assert out.returncode == 0, out.stderr
    lines = helm_lines(out.stdout)
    assert [line[3] for line in lines] == list(CHARTS)
    for line in lines:
        chart = yaml.safe_load((CHARTS[line[3]] / "Chart.yaml").read_text())
        assert line[:5] == ["helm", "upgrade", "--install", chart["name"], chart["name"]]
        assert line[line.index("--version") + 1] == chart["version"]
        assert f"v{str(chart['appVersion']).lstrip('v')}" in out.stdout.splitlines()[0]
        assert not [a for a in line if a.startswith("--set")]  # the charts' defaults unless told otherwise
        assert "--kubeconfig" not in line and "--values" not in line


def test_an_insecure_registry_sets_only_values_the_chart_has() -> None:
    out = labkit("lab", "install-engines", "--insecure-registry", "--context", "room")
    [kyverno, policy_controller] = helm_lines(out.stdout)
    sets = [a.removeprefix("--set=") for a in kyverno if a.startswith("--set=")]
    assert sets == ["features.registryClient.allowInsecure=true"]
    node = yaml.safe_load((CHARTS["kyverno"] / "values.yaml").read_text())
    for key in sets[0].split("=")[0].split("."):
        node = node[key]
    assert node is False  # the chart's default, which the room's plain-HTTP registry needs turned on
    assert not [a for a in policy_controller if a.startswith("--set")]
    assert kyverno[kyverno.index("--kube-context") + 1] == "room"


def _stand_in(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def test_apply_runs_helm_with_its_own_directories_and_waits_for_the_engines(tmp_path: Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "helm.log"
    bin_dir.mkdir()
    _stand_in(bin_dir, "helm", f'echo "$HELM_CONFIG_HOME $*" >> {log}\n')
    ready = {"items": [{"kind": kind, "metadata": {"name": name}, "webhooks": [{"clientConfig": {"caBundle": "Q0E="}}]}
                       for kind, name in (("MutatingWebhookConfiguration", "policy.sigstore.dev"),
                                          ("ValidatingWebhookConfiguration", "policy.sigstore.dev"),
                                          ("MutatingWebhookConfiguration",
                                           "defaulting.clusterimagepolicy.sigstore.dev"),
                                          ("ValidatingWebhookConfiguration",
                                           "validating.clusterimagepolicy.sigstore.dev"))]}
    _stand_in(bin_dir, "kubectl", f"cat <<'EOF'\n{json.dumps(ready)}\nEOF\n")
    kubeconfig = tmp_path / "room.kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    home = tmp_path / "home"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LABKIT_HOME": str(home)}
    out = labkit("lab", "install-engines", "--apply", "--kubeconfig", str(kubeconfig), "--context", "room",
                 "--timeout", "5", env=env)
    assert out.returncode == 0, out.stderr
    calls = log.read_text().splitlines()
    assert [c.split()[4] for c in calls] == ["kyverno", "policy-controller"]
    for call in calls:
        config_home, *args = call.split()
        assert Path(config_home).is_relative_to(home) and "--kube-context room" in call
        assert args[args.index("--kubeconfig") + 1] == str(kubeconfig.resolve())
    assert (home / "engines" / "values-kyverno.yaml").read_text() == "{}\n"  # no --insecure-registry


def test_a_failing_helm_is_named_with_the_next_step(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stand_in(bin_dir, "helm", 'echo "Error: INSTALLATION FAILED: cannot reach the cluster" >&2\nexit 1\n')
    _stand_in(bin_dir, "kubectl", "exit 0\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    out = labkit("lab", "install-engines", "--apply", "--kubeconfig", str(kubeconfig),
                 env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LABKIT_HOME": str(tmp_path / "home")})
    assert out.returncode != 0 and "cannot reach the cluster" in out.stderr
    assert "helm status kyverno -n kyverno" in out.stderr
