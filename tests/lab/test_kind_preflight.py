"""The kind backend on a machine that cannot run it: clear messages, nothing created.

Oracles: the PATH the test builds (tools present or not, a docker whose daemon is down) and the
Kyverno field names in shared/reference/kyverno.md (imageRegistryCredentials, credentials).
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from labkit.errors import LabError
from labkit.lab import Lab
from labkit.lab.kind import POD_HOST, PRIVATE_POD_HOST, _allow_lab_registry, _write_htpasswd
from labkit.lab.state import PRIVATE_USER
from tests.peers import PeerMissing, run_distribution


def _tool(directory: Path, name: str, status: int) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {status}\n")
    path.chmod(0o755)


def test_missing_tools_are_named_and_embedded_is_offered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    _tool(tmp_path / "bin", "kubectl", 0)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(LabError) as err:
        Lab.start("kind", tmp_path / "home")
    text = str(err.value)
    assert "the kind backend needs docker, kind, helm, not found on PATH" in text
    assert "https://helm.sh/docs/intro/install/" in text and "labkit lab up --backend embedded" in (err.value.hint or "")
    assert not (tmp_path / "home" / "lab.json").exists() and not (tmp_path / "home" / "kind").exists()


def test_docker_without_a_daemon_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bin").mkdir()
    for tool in ("kind", "helm", "kubectl"):
        _tool(tmp_path / "bin", tool, 0)
    _tool(tmp_path / "bin", "docker", 1)  # `docker info` fails as it does with no daemon
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(LabError, match=r"needs a running Docker daemon \(`docker info` failed\)"):
        Lab.start("kind", tmp_path / "home")


def test_kyverno_rules_on_the_lab_registry_allow_http() -> None:
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
              "spec": {"rules": [{"name": "lab", "verifyImages": [{"imageReferences": [f"{POD_HOST}/app/*"]}]},
                                 {"name": "ghcr", "verifyImages": [{"imageReferences": ["ghcr.io/*"]}]}]}}
    out = _allow_lab_registry(policy)
    lab_rule, other = (r["verifyImages"][0] for r in out["spec"]["rules"])
    assert lab_rule["imageRegistryCredentials"] == {"allowInsecureRegistry": True}
    assert "imageRegistryCredentials" not in other
    assert "imageRegistryCredentials" not in policy["spec"]["rules"][0]["verifyImages"][0]  # the caller's copy stays
    ivp = {"apiVersion": "policies.kyverno.io/v1beta1", "kind": "ImageValidatingPolicy", "metadata": {"name": "i"},
           "spec": {"matchImageReferences": [{"glob": f"{POD_HOST}/*"}]}}
    assert _allow_lab_registry(ivp)["spec"]["credentials"] == {"allowInsecureRegistry": True}


def test_private_registry_rules_allow_http_and_keep_their_secrets() -> None:
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
              "spec": {"rules": [{"name": "private", "verifyImages": [{
                  "imageReferences": [f"{PRIVATE_POD_HOST}/private/*"],
                  "imageRegistryCredentials": {"secrets": ["default/regcred"]}}]}]}}
    rule = _allow_lab_registry(policy)["spec"]["rules"][0]["verifyImages"][0]
    assert rule["imageRegistryCredentials"] == {"secrets": ["default/regcred"], "allowInsecureRegistry": True}


def test_private_registry_htpasswd_is_accepted_by_distribution(tmp_path: Path) -> None:
    """The kind lab's private registry is distribution with this htpasswd file; Debian's
    distribution build reads it the same way (it accepts bcrypt entries only)."""
    htpasswd = _write_htpasswd(tmp_path / "htpasswd", "s3cret-pass")
    auth = f"auth: {{htpasswd: {{realm: labkit, path: {htpasswd}}}}}\n"
    try:
        with run_distribution(tmp_path / "registry", extra_config=auth) as registry:
            url = f"http://{registry.host}/v2/"
            assert httpx.get(url).status_code == 401
            assert httpx.get(url, auth=(PRIVATE_USER, "wrong")).status_code == 401
            assert httpx.get(url, auth=(PRIVATE_USER, "s3cret-pass")).status_code == 200
    except PeerMissing as exc:
        pytest.skip(str(exc))
