"""Checkpoints, in the passing state and in each failing state a learner can reach.

Oracles: files written by labkit's cosign-compatible key code (checked against real cosign in
tests/interop), images in a real embedded lab registry, and admission decisions of the lab's
webhook (held to the real engines by tests/conformance).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labkit import check, keys, workshop
from labkit.ci_workflow import TEMPLATE
from labkit.lab import Lab
from labkit.oci.build import build_image
from labkit.oci.client import RegistryClient
from labkit.oci.model import Platform
from labkit.signing.sign import sign_image

PLATFORMS = [Platform.parse("linux/amd64"), Platform.parse("linux/arm64/v8")]


def _failed(cp: check.Checkpoint) -> list[str]:
    return [item.what for item in cp.missing]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    the_lab = Lab.start("embedded", tmp_path_factory.mktemp("labkit-home"))
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture
def home(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    shutil.rmtree(lab.home.root / "workshop", ignore_errors=True)
    return lab.home.root


def _keys(home: Path) -> None:
    workshop.use_password(home)
    keys.generate_key_pair(workshop.workdir(home) / "cosign", os.environ["COSIGN_PASSWORD"].encode())


def test_keys_pass_and_each_failure_names_its_fix(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = check.keys(home)
    assert not missing and "generate-key-pair" in missing.missing[0].fix
    _keys(home)
    assert check.keys(home).passed, str(check.keys(home))
    key = workshop.key(home)
    key.chmod(0o644)
    loose = check.keys(home)
    assert _failed(loose) == ["cosign.key is readable by you alone (mode 0644)"]
    assert loose.missing[0].fix.startswith("chmod 600 $LABKIT_HOME/workshop/cosign.key")
    key.chmod(0o600)
    monkeypatch.setenv("COSIGN_PASSWORD", "not-it")
    wrong = check.keys(home)
    assert _failed(wrong) == ["the workshop password opens cosign.key"]
    assert "decryption failed" in wrong.missing[0].fix and "COSIGN_PASSWORD" in wrong.missing[0].fix
    monkeypatch.delenv("COSIGN_PASSWORD")
    other = ec.generate_private_key(ec.SECP256R1())
    workshop.public_key(home).write_text(keys.public_key_pem(other))
    mismatched = check.keys(home)
    assert _failed(mismatched) == ["cosign.pub is the public half of cosign.key"]
    assert "`labkit public-key --key cosign.key --outfile cosign.pub`" in mismatched.missing[0].fix
    key.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    plain = check.keys(home)
    assert _failed(plain) == ["cosign.key is an encrypted cosign key"] and "import-key-pair" in plain.missing[0].fix


def test_image_and_signed(lab: Lab, home: Path) -> None:
    _keys(home)
    ref = check.image_ref(lab)
    absent = check.image(lab)
    assert not absent and "labkit build" in absent.missing[0].fix
    sample = build_image(workshop.SAMPLE_APP, platforms=PLATFORMS)
    with RegistryClient() as client:
        client.push_image(ref, build_image(workshop.SAMPLE_APP))  # one platform only
        single = check.image(lab)
        assert _failed(single) == ["it is a multi-platform index (one image)"]
        assert "--platform linux/amd64,linux/arm64/v8" in single.missing[0].fix
        client.push_image(ref, sample)
        assert check.image(lab).passed
        unsigned = check.signed(lab, home)
        assert len(unsigned.missing) == 3 and "no signatures found" in unsigned.missing[0].what
        assert (f"`labkit sign --key cosign.key --tlog-upload=false --recursive {ref.rsplit(':', 1)[0]}@{sample.digest}`"
                in unsigned.missing[0].fix)
        private = keys.load_private_key(workshop.key(home), os.environ["COSIGN_PASSWORD"].encode())
        sign_image(f"{ref.rsplit(':', 1)[0]}@{sample.digest}", private, client=client)
        index_only = check.signed(lab, home)
        assert [i.ok for i in index_only.items] == [True, False, False]
        assert [i.what.split(" (")[0] for i in index_only.missing] == ["the linux/amd64 image", "the linux/arm64/v8 image"]
        assert all("--recursive" in i.fix for i in index_only.missing)
        sign_image(f"{ref.rsplit(':', 1)[0]}@{sample.digest}", private, client=client, recursive=True)
        assert check.signed(lab, home).passed
    # The learner's copy (notebook 02 makes it) is the reference: edited and pushed, it passes;
    # pushed from elsewhere, the fix names the copy as the learner sees it, never a machine path.
    copy = workshop.workdir(home) / "hello-app"
    shutil.copytree(workshop.SAMPLE_APP, copy)
    (copy / "app.py").write_text("changed\n")
    edited = build_image(copy, platforms=PLATFORMS)
    with RegistryClient() as client:
        assert _failed(check.image(lab, home)) == [
            f"its digest is the reproducible build's of hello-app/ ({edited.digest[:19]}…)"]
        assert "rebuild it from hello-app and push again" in check.image(lab, home).missing[0].fix
        assert str(workshop.SAMPLE_APP) not in check.image(lab, home).missing[0].fix
        client.push_image(ref, edited)
        assert check.image(lab, home).passed


def test_admission_checkpoints(lab: Lab, home: Path) -> None:
    _keys(home)
    signed, unsigned = check.images_for(lab)
    sample = build_image(workshop.SAMPLE_APP, platforms=PLATFORMS)
    with RegistryClient() as client:
        client.push_image(check.image_ref(lab), sample)
        client.push_image(f"{lab.registry.host}/workshop/unsigned:v1", build_image(workshop.SAMPLE_APP))
        private = keys.load_private_key(workshop.key(home), os.environ["COSIGN_PASSWORD"].encode())
        sign_image(f"{lab.registry.host}/workshop/hello@{sample.digest}", private, client=client, recursive=True)
    work = workshop.workdir(home)
    assert "notebook 05" in check.ivp(lab, home).missing[0].fix  # no policy file yet
    workshop.write_policy("imagevalidatingpolicy", work / "ivp.yaml", public_key=work / "cosign.pub",
                          registry=lab.registry.pod_host)
    unapplied = check.ivp(lab, home)  # written, not applied: no pin, no denial
    assert _failed(unapplied) == [f"a pod running {signed} is admitted, its image pinned to a digest",
                                  f"a pod running {unsigned} is denied by the IVP webhook"]
    lab.apply(work / "ivp.yaml")
    assert check.ivp(lab, home).passed
    lab.delete(work / "ivp.yaml")

    workshop.write_policy("clusterpolicy", work / "clusterpolicy.yaml", public_key=work / "cosign.pub",
                          registry=lab.registry.pod_host, action="Enforce", mutate_digest="true")
    assert len(check.verify_images(lab, home).missing) == 2  # written, not applied: no pin, no denial
    lab.apply(work / "clusterpolicy.yaml")
    assert check.verify_images(lab, home).passed
    lab.delete(work / "clusterpolicy.yaml")

    workshop.write_policy("clusterimagepolicy", work / "cip.yaml", public_key=work / "cosign.pub",
                          registry=lab.registry.pod_host, mode="enforce")
    lab.apply(work / "cip.yaml")
    lab.label_namespace("secure", {})
    opted_out = check.cip(lab, home)
    assert _failed(opted_out) == [f"in secure, a pod running {unsigned} is denied by policy.sigstore.dev"]
    lab.label_namespace("secure", {"policy.sigstore.dev/include": "true"})
    assert check.cip(lab, home).passed
    lab.delete(work / "cip.yaml")


def test_reset_and_ci_workflow(lab: Lab, home: Path) -> None:
    _keys(home)
    sample = build_image(workshop.SAMPLE_APP, platforms=PLATFORMS)
    with RegistryClient() as client:
        client.push_image(check.image_ref(lab), sample)
        private = keys.load_private_key(workshop.key(home), os.environ["COSIGN_PASSWORD"].encode())
        sign_image(f"{lab.registry.host}/workshop/hello@{sample.digest}", private, client=client)
    assert _failed(check.reset(lab, home)) == [f"no signatures are left in {lab.registry.host}/workshop/hello"]
    lab.reset()
    assert check.reset(lab, home).passed

    assert "notebook 09" in check.ci_workflow(home=home).missing[0].fix
    copy = workshop.workdir(home) / "sign-by-digest.yml"
    copy.write_text(TEMPLATE.read_text().replace('"${IMAGE}@${DIGEST}"', '"${IMAGE}:latest"'))
    assert len(check.ci_workflow(home=home).missing) == 1
    shutil.copy(TEMPLATE, copy)
    assert check.ci_workflow(home=home).passed


def test_lab_checkpoint_names_a_service_that_does_not_answer(lab: Lab) -> None:
    assert check.lab_running(lab).passed

    class Broken:
        home = lab.home

        def status(self) -> dict:
            return {"health": {"registry": "ok", "webhook": "not answering (connection refused)"}}

    broken = check.lab_running(Broken())  # type: ignore[arg-type]
    assert _failed(broken) == ["the lab's webhook answers"] and "labkit lab down" in broken.missing[0].fix


def test_lab_checkpoint_reads_a_kind_labs_deployment_counts(lab: Lab) -> None:
    class Kind:
        home = lab.home

        def __init__(self, kyverno: str) -> None:
            self.kyverno = kyverno

        def status(self) -> dict:
            return {"health": {"kyverno": self.kyverno,
                               "policy-controller": "policy-controller-webhook=1/1 "}}

    assert check.lab_running(Kind("kyverno-admission-controller=1/1 kyverno-reports-controller=1/1 ")).passed  # type: ignore[arg-type]
    assert _failed(check.lab_running(Kind("kyverno-admission-controller=/1 "))) == ["the lab's kyverno answers"]  # type: ignore[arg-type]


def test_ready_for_names_the_notebook_to_finish_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each missing piece names the notebook that makes it, in the order a learner makes them."""
    from labkit.errors import PrerequisiteError

    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    fresh = Lab.start("embedded", tmp_path)
    try:
        for notebook in ("00", "01", "02"):
            check.ready_for(notebook, fresh, tmp_path)  # nothing needed from earlier notebooks

        def first_missing(notebook: str) -> PrerequisiteError:
            with pytest.raises(PrerequisiteError) as raised:
                check.ready_for(notebook, fresh, tmp_path)
            return raised.value

        assert "notebook 06 needs notebook 01 finished first" in first_missing("06").message
        assert "generate-key-pair" in first_missing("06").hint
        assert "needs notebook 01" in first_missing("09").message
        _keys(tmp_path)
        check.ready_for("09", fresh, tmp_path)
        assert "notebook 03 needs notebook 02 finished first" in first_missing("03").message
        assert "labkit build" in first_missing("10").hint
        sample = build_image(workshop.SAMPLE_APP, platforms=PLATFORMS)
        ref = check.image_ref(fresh)
        with RegistryClient() as client:
            client.push_image(ref, sample)
            check.ready_for("03", fresh, tmp_path)
            missing = first_missing("04")
            assert "needs notebook 03" in missing.message and "labkit sign" in missing.hint
            private = keys.load_private_key(workshop.key(tmp_path), os.environ["COSIGN_PASSWORD"].encode())
            sign_image(f"{ref.rsplit(':', 1)[0]}@{sample.digest}", private, client=client, recursive=True)
        for notebook in ("04", "05", "06", "07", "08", "10"):
            check.ready_for(notebook, fresh, tmp_path)
    finally:
        fresh.stop()


def test_every_check_of_a_lab_fails_while_a_policy_names_a_registry_it_does_not_serve(tmp_path: Path) -> None:
    """A policy left over from another port matches nothing the learner pushes: each checkpoint
    and exercise check of that lab says so (and ready_for does not blame a notebook for it);
    the discard port notebook 08 names on purpose is not such a registry."""
    fresh = Lab.start("embedded", tmp_path)
    try:
        workshop.use_password(tmp_path)
        pub = workshop.workdir(tmp_path) / "cosign.pub"
        keys.generate_key_pair(workshop.workdir(tmp_path) / "cosign", os.environ["COSIGN_PASSWORD"].encode())
        moved = workshop.write_policy("imagevalidatingpolicy", tmp_path / "old.yaml", public_key=pub,
                                      registry="127.0.0.1:1")
        fresh.apply(moved)
        status = check.lab_running(fresh)
        assert not status and [i.what for i in status.missing] == ["ImageValidatingPolicy/workshop-signed guards "
                                                                     "the lab's registry"]
        assert "127.0.0.1:1" in status.missing[0].fix and fresh.registry.pod_host in status.missing[0].fix
        assert len(check.exercise_07(fresh).stale) == 1  # exercises too
        check.ready_for("02", fresh, tmp_path)  # no notebook to redo: the warning is the checks' own
        fresh.delete(moved)
        discard = workshop.write_policy("imagevalidatingpolicy", tmp_path / "discard.yaml", public_key=pub,
                                        registry="127.0.0.1:9")
        fresh.apply(discard)
        assert check.lab_running(fresh).passed
    finally:
        fresh.stop()
