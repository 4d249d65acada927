"""Kyverno and the policy-controller from their pinned Helm charts, on any cluster kubectl reaches:
the kind lab installs them so, and a trainer so prepares a shared cluster for the existing backend
(``labkit lab install-engines``). The charts, their values and Helm's arguments are
:mod:`labkit.lab.kind_setup`'s; Helm runs with its directories under the lab's home."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from labkit.errors import LabError
from labkit.lab.commands import run
from labkit.lab.kind_setup import (
    CHARTS,
    POLICY_CONTROLLER,
    Chart,
    helm_environment,
    helm_install_args,
    helm_values,
    webhooks_without_ca,
)

# KubectlLab.kubectl's shape: kubectl's arguments in, its finished process out
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def chart_values(chart: Chart, *, insecure_registry: bool) -> dict[str, Any]:
    """What ``chart`` is given: the kind lab's values when the registry serves plain HTTP, else none."""
    return helm_values(chart) if insecure_registry else {}


def install(kubectl: Kubectl, workdir: Path, kubeconfig: Path, *, timeout: float, insecure_registry: bool,
            context: str | None = None, before: Callable[[Chart], None] = lambda chart: None) -> None:
    """``helm upgrade --install`` each chart (``before(chart)`` first: the kind lab records the
    release as its own), wait for its Deployments, then for policy-controller's CA bundles."""
    env = helm_environment(workdir / "helm")
    for chart in CHARTS:
        values = workdir / f"values-{chart.release}.yaml"
        values.write_text(yaml.safe_dump(chart_values(chart, insecure_registry=insecure_registry)))
        before(chart)
        run(*helm_install_args(chart, kubeconfig, values, timeout), *(["--kube-context", context] if context else []),
            env=env, timeout=timeout + 60, hint=f"`helm status {chart.release} -n {chart.namespace}` shows its state")
        wait = kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", chart.namespace,
                       f"--timeout={int(timeout)}s", timeout=timeout + 30)
        if wait.returncode != 0:
            raise LabError(f"{chart.chart}'s Deployments are not available after {timeout:g}s: {wait.stderr.strip()}",
                           hint=f"kubectl -n {chart.namespace} get pods,events")
    wait_webhook_ca(kubectl, timeout)


def wait_webhook_ca(kubectl: Kubectl, timeout: float) -> None:
    """Helm creates policy-controller's webhook configurations without a CA bundle; the API server
    can call them only once the webhook has filled every entry's ``caBundle``."""
    deadline, missing = time.monotonic() + timeout, ["(not listed yet)"]
    while time.monotonic() < deadline:
        listed = kubectl("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations", "-o", "json")
        if listed.returncode == 0:
            missing = webhooks_without_ca(json.loads(listed.stdout).get("items") or [])
            if not missing:
                return
        time.sleep(1)
    raise LabError(f"policy-controller's webhooks have no CA bundle after {timeout:g}s: {', '.join(missing)}",
                   hint=f"its webhook fills them when it starts: kubectl -n {POLICY_CONTROLLER.namespace} "
                        "logs deploy/policy-controller-webhook")


def install_script(*, timeout: float, insecure_registry: bool, context: str | None = None) -> str:
    """The same installation as shell commands for a trainer to read and run: Helm against the
    cluster of ``KUBECONFIG`` (or its current context), values as ``--set``."""
    lines = ["# " + " and ".join(f"{c.chart} chart {c.version} (v{c.app_version.lstrip('v')})" for c in CHARTS)
             + ": the engines labkit's native and kind labs run"]
    for chart in CHARTS:
        args = helm_install_args(chart, None, None, timeout)
        sets = [f"--set={key}={json.dumps(value)}" for key, value in
                _flatten(chart_values(chart, insecure_registry=insecure_registry))]
        lines.append(shlex.join([*args, *(["--kube-context", context] if context else []), *sets]))
    return "\n".join(lines) + "\n"


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
