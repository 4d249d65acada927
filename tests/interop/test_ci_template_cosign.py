"""The CI template's steps, replayed against the embedded lab with the real cosign v3.1.3.

The template (labkit/samples/github-actions/sign-by-digest.yml) is read as YAML; its steps' own
`run:` scripts are run by bash as GitHub runs them (``bash --noprofile --norc -eo pipefail``),
with the `${{ … }}` expressions of the sign step's env filled in: the build's digest (labkit
builds and pushes the sample for the platforms the build step names), the key and its password.
`cosign` on the PATH is the real v3.1.3 — the release the template's installer step pins. The one
change for an offline lab: no transparency log, through cosign's own environment binding
(COSIGN_TLOG_UPLOAD=false; in CI the signature goes to Rekor). Only loopback is contacted.

Oracles, all independent of labkit's signing: real cosign v2.6.1 (`cosign verify --key`), the
lab's ClusterPolicy (type: Cosign) and ClusterImagePolicy from labkit/samples/policies — which
tests/differential holds to the real Kyverno and policy-controller — and cosign v3 itself for the
negative: the same command without the two classic-format flags writes a Sigstore bundle that
cosign v3 verifies but v2.6.1 and both policies cannot see. That is the trap
labkit.ci_workflow guards.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from labkit import keys, workshop
from labkit.ci_workflow import CLASSIC_FLAGS, TEMPLATE, load_workflow
from labkit.lab import AdmissionResult, Lab
from labkit.oci.build import build_image
from labkit.oci.client import RegistryClient
from labkit.oci.model import Image, ImageIndex, Index, Platform
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3, TOOLS_DIR, reference_tool

pytestmark = pytest.mark.interop

PASSWORD = "ci template pw"
REPOSITORY = "Workshop/CI-App"  # ${{ github.repository }}, with the owner's capitals
ENGINES = {"ClusterPolicy": "mutate.kyverno.svc-fail", "ClusterImagePolicy": "policy.sigstore.dev"}  # who decides


@pytest.fixture(scope="module")
def cosign_v3() -> Path:
    path = TOOLS_DIR / COSIGN_V3
    if not path.is_file():
        pytest.skip(f"{COSIGN_V3} is not built in {TOOLS_DIR} (make tools builds it from the Go module proxy): "
                    "the template's steps cannot be replayed with the cosign release they install")
    return path


@pytest.fixture(scope="module")
def steps() -> list[Mapping[str, Any]]:
    [job] = load_workflow(TEMPLATE)["jobs"].values()
    return [s for s in job["steps"] if isinstance(s, Mapping)]


def _step(steps: list[Mapping[str, Any]], *, uses: str | None = None, runs: str | None = None) -> Mapping[str, Any]:
    [step] = [s for s in steps if (uses and str(s.get("uses", "")).startswith(uses + "@"))
              or (runs and runs in str(s.get("run", "")))]
    return step


@dataclass
class Replay:
    lab: Lab
    home: Path
    bin: Path  # holds `cosign`, the real v3.1.3
    key: Path
    pub: Path
    image: str  # IMAGE as the template's lower-casing step sets it, on the lab's registry
    digest: str  # steps.build.outputs.digest
    sample: Image | ImageIndex  # what the build step pushed

    def run_step(self, step: Mapping[str, Any], script: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``script`` (the step's run:, maybe changed) under GitHub's bash, with the step's env."""
        values = {"${{ steps.build.outputs.digest }}": self.digest,
                  "${{ secrets.COSIGN_PRIVATE_KEY }}": self.key.read_text(),
                  "${{ secrets.COSIGN_PASSWORD }}": PASSWORD}
        step_env = {}
        for name, value in (step.get("env") or {}).items():
            assert str(value) in values, f"the replay does not know {value} (the template changed?)"
            step_env[name] = values[str(value)]
        full = {"PATH": f"{self.bin}:{os.environ.get('PATH', '')}", "HOME": str(self.home),
                "TUF_ROOT": str(self.home / ".sigstore"), "IMAGE": self.image,
                # cosign looks for Sigstore's TUF root online; a dead loopback proxy keeps it here
                "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
                **step_env, **env}
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], env=full,
                              cwd=self.home, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)

    def pod(self, name: str, namespace: str, image: str) -> AdmissionResult:
        return self.lab.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                                "spec": {"containers": [{"name": "app", "image": image}]}}, dry_run=True)

    def pod_image(self, image: str) -> str:
        return image.replace(self.lab.registry.host, self.lab.registry.pod_host, 1)


@pytest.fixture(scope="module")
def replay(cosign_v3: Path, steps: list[Mapping[str, Any]],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    home = tmp_path_factory.mktemp("ci-replay")
    lab = Lab.start("embedded", home / "labkit-home")
    try:
        (home / "bin").mkdir()
        (home / "bin" / "cosign").symlink_to(cosign_v3)
        pair = keys.generate_key_pair(home / "cosign", PASSWORD.encode())
        # the template's lower-casing step, as GitHub runs it: it appends IMAGE=… to $GITHUB_ENV
        lower = _step(steps, runs="GITHUB_ENV")
        github_env = home / "github_env"
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", str(lower["run"])],
                              env={"PATH": os.environ.get("PATH", ""), "GITHUB_REPOSITORY": REPOSITORY,
                                   "GITHUB_ENV": str(github_env)}, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert github_env.read_text() == "IMAGE=ghcr.io/workshop/ci-app\n"
        image = github_env.read_text().strip().removeprefix("IMAGE=").replace("ghcr.io", lab.registry.host, 1)
        # the build step: the sample for the platforms it names, pushed as IMAGE:<sha>
        build = _step(steps, uses="docker/build-push-action")
        platforms = [Platform.parse(p) for p in str(build["with"]["platforms"]).split(",")]
        sample = build_image(workshop.SAMPLE_APP, platforms=platforms)
        with RegistryClient() as client:
            digest = client.push_image(f"{image}:0123abc", sample)
        yield Replay(lab, home, home / "bin", Path(pair.private_key), Path(pair.public_key), image, digest, sample)
    finally:
        lab.stop()


def test_the_template_installs_the_cosign_this_replay_runs(steps: list[Mapping[str, Any]]) -> None:
    installer = _step(steps, uses="sigstore/cosign-installer")
    assert f"cosign-{installer['with']['cosign-release']}" == COSIGN_V3


def test_the_template_signs_what_cosign_v2_and_both_policies_read(replay: Replay,
                                                                  steps: list[Mapping[str, Any]]) -> None:
    sign = _step(steps, runs="cosign sign")
    assert CLASSIC_FLAGS in str(sign["run"])
    signed = replay.run_step(sign, str(sign["run"]), COSIGN_TLOG_UPLOAD="false")
    assert signed.returncode == 0, signed.stderr
    ref = f"{replay.image}@{replay.digest}"

    # the classic artifact: sha256-<digest>.sig, for the index and (--recursive) each platform
    with RegistryClient() as client:
        tags = client.list_tags(replay.image)
        index = client.get_manifest(ref).parsed()
    assert isinstance(index, Index)
    platforms = [m.digest for m in index.manifests]
    assert f"{replay.digest.replace(':', '-')}.sig" in tags
    assert all(f"{d.replace(':', '-')}.sig" in tags for d in platforms), tags

    # real cosign v2.6.1, which reads only that format, verifies it with the public key
    v2 = _cosign(reference_tool(COSIGN_V2_PIN), replay.home, "verify", "--key", str(replay.pub),
                 "--insecure-ignore-tlog", ref)
    assert v2.returncode == 0, v2.stderr

    # the lab's taught policies admit the image: ClusterPolicy (type: Cosign) and ClusterImagePolicy
    for policy, result in _decisions(replay, ref, "ci-classic").items():
        assert result.admitted and ENGINES[policy] in result.webhooks, (policy, result.message)


def test_without_the_flags_cosign_v3_writes_a_bundle_the_policies_deny(replay: Replay,
                                                                      steps: list[Mapping[str, Any]]) -> None:
    """The trap: the same step without the classic-format flags signs into a Sigstore bundle."""
    sign = _step(steps, runs="cosign sign")
    script = str(sign["run"])
    assert CLASSIC_FLAGS in script
    default = script.replace(CLASSIC_FLAGS, "")
    # a second repository, so the classic signature of the other test is not there
    image = replay.image + "-v3-default"
    with RegistryClient() as client:
        assert client.push_image(f"{image}:0123abc", replay.sample) == replay.digest
    # offline: v3 refuses --tlog-upload=false with its signing config, so give it one without Rekor
    config = replay.home / "signing-config.json"
    made = _cosign(replay.bin / "cosign", replay.home, "signing-config", "create", "--out", str(config))
    assert made.returncode == 0, made.stderr
    signed = replay.run_step(sign, default, IMAGE=image, COSIGN_SIGNING_CONFIG=str(config))
    assert signed.returncode == 0, signed.stderr
    ref = f"{image}@{replay.digest}"

    with RegistryClient() as client:
        assert not [t for t in client.list_tags(image) if t.endswith(".sig")]
    # a valid signature: cosign v3 verifies it ...
    v3 = _cosign(replay.bin / "cosign", replay.home, "verify", "--key", str(replay.pub), "--insecure-ignore-tlog", ref)
    assert v3.returncode == 0, v3.stderr
    # ... and cosign v2.6.1 finds none (exit 10), nor do the taught policies
    v2 = _cosign(reference_tool(COSIGN_V2_PIN), replay.home, "verify", "--key", str(replay.pub),
                 "--insecure-ignore-tlog", ref)
    assert v2.returncode == 10 and "no signatures found" in v2.stderr, v2.stderr
    for policy, result in _decisions(replay, ref, "ci-bundle").items():
        assert not result.admitted, (policy, result.message)
        assert f'admission webhook "{ENGINES[policy]}" denied' in result.message, result.message
        assert "no signatures found" in result.message, result.message


def _cosign(binary: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "TUF_ROOT": str(home / ".sigstore"),
           "COSIGN_PASSWORD": PASSWORD, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
           "NO_PROXY": ""}
    return subprocess.run([str(binary), *args], env=env, cwd=home, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def _decisions(replay: Replay, ref: str, name: str) -> dict[str, AdmissionResult]:
    """A pod running ``ref`` (dry run) under notebook 06's ClusterPolicy alone (namespace
    ``default``), then under notebook 07's ClusterImagePolicy alone (``ci-secure``, opted in)."""
    lab, work, results = replay.lab, replay.home, {}
    cpol = workshop.write_policy("clusterpolicy", work / "clusterpolicy.yaml", public_key=replay.pub,
                                 registry=lab.registry.pod_host, action="Enforce", mutate_digest="true")
    assert all(r.admitted for r in lab.apply(cpol))
    try:
        results["ClusterPolicy"] = replay.pod(f"{name}-cpol", "default", replay.pod_image(ref))
    finally:
        lab.delete(cpol)
    cip = workshop.write_policy("clusterimagepolicy", work / "cip.yaml", public_key=replay.pub,
                                registry=lab.registry.pod_host, mode="enforce")
    lab.label_namespace("ci-secure", {"policy.sigstore.dev/include": "true"})
    assert all(r.admitted for r in lab.apply(cip))
    try:
        results["ClusterImagePolicy"] = replay.pod(f"{name}-cip", "ci-secure", replay.pod_image(ref))
    finally:
        lab.delete(cip)
    return results
