"""Checkpoints: ``labkit.check.<topic>()`` looks at the learner's real state (files, registry,
lab) and says precisely what is missing and how to fix it.

Each returns a :class:`Checkpoint`; a notebook cell shows it as a short list of ✓ / ✗ lines.
Checkpoints never change anything: they read the key files, the registry and the lab.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from labkit import workshop
from labkit.checkpoint import Checkpoint, Item, admission_item, checkpoint
from labkit.errors import LabkitError, PrerequisiteError
from labkit.exercises import (
    exercise_00,
    exercise_01,
    exercise_02,
    exercise_03,
    exercise_04,
    exercise_05,
    exercise_06,
    exercise_07,
    exercise_08,
    exercise_09,
    exercise_10,
    exercise_11,
    exercise_12,
)

__all__ = [
    "Checkpoint",
    "Item",
    "attacks",
    "ci_workflow",
    "cip",
    "exercise_00",
    "exercise_01",
    "exercise_02",
    "exercise_03",
    "exercise_04",
    "exercise_05",
    "exercise_06",
    "exercise_07",
    "exercise_08",
    "exercise_09",
    "exercise_10",
    "exercise_11",
    "exercise_12",
    "image",
    "image_ref",
    "images_for",
    "ivp",
    "keyless",
    "keys",
    "lab_running",
    "ready_for",
    "reset",
    "signed",
    "verify_images",
]

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.oci.client import RegistryClient


def _client() -> RegistryClient:
    from labkit.oci.client import RegistryClient

    return RegistryClient(allow_insecure=True)


def image_ref(lab: Lab) -> str:
    """The sample image's tag in the lab registry, as the learner pushes it in notebook 02."""
    return f"{lab.registry.host}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}"


# --- notebook 00 -------------------------------------------------------------------------------


@checkpoint("lab")
def lab_running(lab: Lab) -> Iterator[Item]:
    """The lab's registry and admission webhook answer."""
    import re

    status = lab.status()
    for name, health in status["health"].items():
        text = health if isinstance(health, str) else health.get("status", "")
        # embedded services say "ok"; a kind lab lists its Deployments as name=ready/wanted
        replicas = re.findall(r"=(\d*)/(\d+)", text)
        ready = text == "ok" or (bool(replicas) and all(have == want for have, want in replicas))
        yield Item(ready, f"the lab's {name} answers",
                   f"it reports {text!r}: restart the lab (`labkit lab down`, then `labkit lab up`); "
                   f"its log is in {lab.home.logs}")


# --- notebook 01 -------------------------------------------------------------------------------


@checkpoint("keys")
def keys(home: Path | str | None = None) -> Iterator[Item]:
    """A cosign key pair in the workshop directory: encrypted, 0600, the .pub matching the .key."""
    from labkit import keys as keylib

    key_path, pub_path = workshop.key(home), workshop.public_key(home)
    if not key_path.exists():
        yield Item(False, f"a private key at {workshop.shown(key_path, home)}",
                   "run `labkit generate-key-pair` in the workshop directory (notebook 01, step 1)")
        return
    yield Item(True, f"a private key at {workshop.shown(key_path, home)}")
    mode = key_path.stat().st_mode & 0o777
    yield Item(mode == 0o600, f"{key_path.name} is readable by you alone (mode {mode:04o})",
               f"chmod 600 {workshop.shown(key_path, home)}: cosign writes keys 0600, and so should you")
    block = keylib.pem_decode_first(key_path.read_bytes())
    encrypted = block is not None and block.type in (keylib.SIGSTORE_PRIVATE_KEY_PEM_TYPE,
                                                      keylib.COSIGN_PRIVATE_KEY_PEM_TYPE)
    yield Item(encrypted, f"{key_path.name} is an encrypted cosign key",
               "regenerate it with `labkit generate-key-pair --force` (or import a PEM key with "
               "`labkit import-key-pair --key my.pem`)")
    if not encrypted:
        return
    workshop.use_password(home)  # sets COSIGN_PASSWORD: a kernel has no terminal to prompt on
    try:
        private = keylib.load_private_key(key_path, os.environ[keylib.PASSWORD_ENV].encode())
    except LabkitError as exc:
        yield Item(False, f"the workshop password opens {key_path.name}",
                   f"{exc.message}; if you set COSIGN_PASSWORD yourself, set it to this key's password")
        return
    yield Item(True, f"the workshop password opens {key_path.name}")
    if not pub_path.exists():
        yield Item(False, f"a public key at {workshop.shown(pub_path, home)}",
                   f"write it from the private key: `labkit public-key --key {key_path.name} "
                   f"--outfile {pub_path.name}`")
        return
    matches = pub_path.read_text() == keylib.public_key_pem(private)
    yield Item(matches, f"{pub_path.name} is the public half of {key_path.name}",
               f"the files are from different pairs: `labkit public-key --key {key_path.name} "
               f"--outfile {pub_path.name}`")


# --- notebook 02 -------------------------------------------------------------------------------


@checkpoint("image")
def image(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """The sample image pushed to the lab registry, multi-arch, with the digest a reproducible
    build of the learner's copy of the sample (``hello-app/`` in the workshop directory, as it
    is now) gives; the package's own copy until notebook 02 makes the learner's."""
    from labkit.errors import NotFoundError, RegistryError
    from labkit.oci.base_image import build_like_cli
    from labkit.oci.model import Platform

    ref = image_ref(lab)
    copy = workshop.workdir(home) / workshop.SAMPLE_APP.name
    source = copy if copy.is_dir() else workshop.SAMPLE_APP
    with _client() as client:
        try:
            fetched = client.get_manifest(ref)
        except NotFoundError:
            yield Item(False, f"{ref} is in the lab registry",
                       f"build and push it from the workshop directory: `labkit build {copy.name} -t {ref} "
                       "--platform linux/amd64,linux/arm64/v8 --push` (notebook 02)")
            return
        except RegistryError as exc:
            yield Item(False, "the lab registry answers", f"{exc.message}; start the lab: `labkit lab up`")
            return
    yield Item(True, f"{ref} is in the lab registry")
    platforms = [str(d.platform) for d in getattr(fetched.parsed(), "manifests", ()) if d.platform]
    yield Item(len(platforms) >= 2, f"it is a multi-platform index ({', '.join(platforms) or 'one image'})",
               "rebuild with --platform linux/amd64,linux/arm64/v8 and push again")
    expected = build_like_cli(source, platforms=[Platform.parse(p) for p in platforms] or None)
    want = expected.digest
    yield Item(fetched.digest == want, f"its digest is the reproducible build's of {copy.name}/ ({want[:19]}…)",
               f"the pushed image was not built from {copy.name}/ as it is now: rebuild it from "
               f"{copy.name} and push again, or undo your changes to it")


# --- notebooks 03 and 04 -----------------------------------------------------------------------


@checkpoint("signed")
def signed(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """The sample image signed by digest with the workshop key, and every platform image too."""
    from labkit import keys as keylib
    from labkit.errors import RegistryError, VerificationError
    from labkit.signing.verify import verify_image

    pub = workshop.public_key(home)
    if not pub.exists():
        yield Item(False, f"the workshop public key {workshop.shown(pub, home)}",
                   "finish notebook 01 first: check.keys() says what is missing")
        return
    public_key = keylib.load_public_key(pub)
    ref = image_ref(lab)
    with _client() as client:
        try:
            index = client.get_manifest(ref)
        except RegistryError as exc:
            yield Item(False, f"{ref} is in the lab registry", f"{exc.message}; finish notebook 02 first")
            return
        name = ref.rsplit(":", 1)[0]
        targets = [("the index", index.digest)] + [
            (f"the {d.platform} image", d.digest) for d in getattr(index.parsed(), "manifests", ()) if d.platform]
        for what, digest in targets:
            try:
                verify_image(f"{name}@{digest}", public_key, client=client)
            except VerificationError as exc:
                fix = (f"sign it by digest: `labkit sign --key cosign.key --tlog-upload=false --recursive "
                       f"{name}@{index.digest}`" if what == "the index" else
                       "sign with --recursive so each platform image carries a signature too")
                yield Item(False, f"{what} ({digest[:19]}…) has a signature cosign.pub verifies ({exc.message})", fix)
                continue
            yield Item(True, f"{what} ({digest[:19]}…) has a signature cosign.pub verifies")


# --- notebook 10 -------------------------------------------------------------------------------


@checkpoint("reset")
def reset(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """After ``lab reset``: no signatures on the sample image, the image and the keys kept."""
    from labkit.errors import RegistryError
    from labkit.signing.artifact import is_attachment_tag

    ref = image_ref(lab)
    repository = ref.rsplit(":", 1)[0]
    with _client() as client:
        try:
            digest = client.resolve(ref)
            tags = client.list_tags(repository)
        except RegistryError as exc:
            yield Item(False, f"{ref} is still in the lab registry",
                       f"{exc.message}; a reset keeps images: rebuild it as in notebook 02")
            return
    yield Item(True, f"{ref} is still in the lab registry ({digest[:19]}…)")
    left = [t for t in tags if is_attachment_tag(t)]
    yield Item(not left, f"no signatures are left in {repository}",
               f"{', '.join(left)} remain: run `labkit lab reset` (lab.reset())")
    yield Item(workshop.key(home).exists(), "your workshop key pair is kept",
               "a reset never removes keys: make a new pair as in notebook 01")


# --- notebooks 05 to 07: admission ----------------------------------------------------------------


def images_for(lab: Lab) -> tuple[str, str]:
    """What pods name in notebooks 05–07: the signed sample by tag, and the unsigned image."""
    return (f"{lab.registry.pod_host}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}",
            f"{lab.registry.pod_host}/workshop/unsigned:{workshop.IMAGE_TAG}")


def _policy_file(name: str, kind: str, notebook: str, home: Path | str | None) -> Iterator[Item]:
    """The learner's policy file exists and loads (strictly) as ``kind``; yields nothing more if not."""
    from labkit.policy.load import load_policies

    path = workshop.workdir(home) / name
    if not path.exists():
        yield Item(False, f"your policy file {name}", f"write it as in notebook {notebook} (workshop.write_policy)")
        return
    try:
        kinds = [p.kind for p in load_policies(path)]
    except LabkitError as exc:
        yield Item(False, f"{name} is a valid policy", exc.message)
        return
    yield Item(kind in kinds, f"{name} is a valid {kind}",
               f"it holds {', '.join(kinds)}; start again from notebook {notebook}")


@checkpoint("ivp")
def ivp(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """Notebook 05: the ImageValidatingPolicy admits the signed image and denies the unsigned one."""
    items = list(_policy_file("ivp.yaml", "ImageValidatingPolicy", "05", home))
    yield from items
    if not all(i.ok for i in items):
        return
    signed, unsigned = images_for(lab)
    yield admission_item(lab, f"a pod running {signed} is admitted, its image pinned to a digest", signed,
                     admitted=True, pinned=True, fix="apply ivp.yaml (lab.apply) and sign the image (notebook 03)")
    yield admission_item(lab, f"a pod running {unsigned} is denied by the IVP webhook", unsigned, admitted=False,
                     denied_by="ivpol.", fix="apply ivp.yaml (lab.apply); is the unsigned image pushed?")


@checkpoint("verify_images")
def verify_images(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """Notebook 06: the ClusterPolicy pins the signed image's tag to its digest; the unsigned image
    is denied (Enforce) or admitted and reported (Audit)."""
    import yaml

    items = list(_policy_file("clusterpolicy.yaml", "ClusterPolicy", "06", home))
    yield from items
    if not all(i.ok for i in items):
        return
    signed, unsigned = images_for(lab)
    doc = yaml.safe_load((workshop.workdir(home) / "clusterpolicy.yaml").read_text())
    rule = doc["spec"]["rules"][0]["verifyImages"][0]
    action, pins = rule.get("failureAction", "Audit"), rule.get("mutateDigest", True) is not False
    pinned_note = ", its tag pinned to the signed digest" if pins else ""
    yield admission_item(lab, f"a pod running {signed} is admitted{pinned_note}",
                     signed, admitted=True, pinned=pins, fix="apply clusterpolicy.yaml (lab.apply)")
    if action == "Enforce":
        yield admission_item(lab, f"a pod running {unsigned} is denied (Enforce)", unsigned, admitted=False,
                         denied_by="kyverno", fix="apply clusterpolicy.yaml (lab.apply)")
        return
    reported = [r for report in lab.reports() for r in report.get("results", [])
                if r.get("result") == "fail" and r.get("policy") == doc["metadata"]["name"]]
    yield Item(bool(reported), "the Audit policy reported a failing pod (lab.reports())",
               "create the unsigned pod once under the Audit policy (notebook 06, step 4)")


@checkpoint("cip")
def cip(lab: Lab, home: Path | str | None = None, namespace: str = "secure") -> Iterator[Item]:
    """Notebook 07: policy-controller checks only the opted-in namespace; there it admits the signed
    image and refuses the unsigned one (or warns, in warn mode)."""
    import yaml

    items = list(_policy_file("cip.yaml", "ClusterImagePolicy", "07", home))
    yield from items
    if not all(i.ok for i in items):
        return
    signed, unsigned = images_for(lab)
    yield admission_item(lab, f"in {namespace} (opted in), a pod running {signed} is admitted", signed, admitted=True,
                     namespace=namespace, fix=f"label the namespace: lab.label_namespace({namespace!r}, "
                     "{'policy.sigstore.dev/include': 'true'}) and apply cip.yaml")
    warn = yaml.safe_load((workshop.workdir(home) / "cip.yaml").read_text())["spec"].get("mode") == "warn"
    if warn:
        yield admission_item(lab, f"in {namespace}, {unsigned} is admitted with a warning (mode: warn)", unsigned,
                         admitted=True, warned=True, namespace=namespace, fix="apply cip.yaml (lab.apply)")
    else:
        yield admission_item(lab, f"in {namespace}, a pod running {unsigned} is denied by policy.sigstore.dev",
                         unsigned, admitted=False, denied_by="policy.sigstore.dev", namespace=namespace,
                         fix=f"apply cip.yaml and label {namespace} policy.sigstore.dev/include=true")


@checkpoint("keyless")
def keyless(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """Notebook 11: alice's image carries her keyless signature, which verifies by identity, and
    keyless-policy.yaml makes Kyverno admit it and deny bob's."""
    from labkit import keyless_lab

    images = keyless_lab.tagged(lab)
    try:
        found = keyless_lab.signature(lab, images["alice"], keyless_lab.SIGNERS["alice"])
        yield Item(True, f"alice's image is signed keyless by {found.subject} (issuer {found.issuer})")
    except LabkitError as exc:
        yield Item(False, "alice's image is signed keyless by alice@example.com",
                   f"run step 2 (keyless_lab.sign): {exc.message}")
        return
    yield from _policy_file("keyless-policy.yaml", "ClusterPolicy", "11", home)
    yield admission_item(lab, "a pod running alice's image is admitted", images["alice"], admitted=True,
                         fix="apply keyless-policy.yaml (step 5)")
    yield admission_item(lab, "a pod running bob's image is denied by Kyverno", images["bob"], admitted=False,
                         denied_by="kyverno", fix="apply keyless-policy.yaml (step 5)")


# --- notebook 08: the attack lab --------------------------------------------------------------


def _everywhere_denied(lab: Lab, what: str, image: str, fix: str) -> Item:
    from labkit import attack_lab

    tried = attack_lab.attempt(lab, image)
    admitted = tried.admitted_by()
    return Item(not admitted, f"{what} is denied by all three engines",
                f"{fix} (admitted by: {', '.join(admitted)})")


def _attack_ref(lab: Lab, tag: str) -> str | None:
    from labkit import attack_lab

    try:
        with _client() as client:
            return client.resolve(f"{lab.registry.host}/{attack_lab.REPOSITORY}/app:{tag}")
    except LabkitError:
        return None


@checkpoint("attacks")
def attacks(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """Notebook 08: the three guards stand, fail closed, and stop the attacks that must fail."""
    from labkit import attack_lab

    applied = {p["metadata"]["name"]: p for p in lab.policies()}
    missing = [Path(f).stem for f in attack_lab.GUARD_FILES if Path(f).stem not in applied]
    yield Item(not missing, "the three guard policies are applied",
               f"{', '.join(missing)} missing: run step 0 of notebook 08")
    if missing:
        return
    ignoring = [name for name in ("attack-ivp", "attack-cpol")
                if (applied[name].get("spec") or {}).get("failurePolicy") == "Ignore"]
    yield Item(not ignoring, "the Kyverno guards fail closed (failurePolicy: Fail)",
               f"{', '.join(ignoring)} still say Ignore: apply them as written by "
               "attack_lab.write_guards(lab, 'cosign.pub') (end of attack 8)")
    evil = _attack_ref(lab, "evil")
    if evil is None:
        yield Item(False, "the attacker's image is pushed", "run step 1 of notebook 08")
        return
    pods = lab.registry.pod_host
    yield _everywhere_denied(lab, "the hijacked tag attack/app:v1", f"{pods}/attack/app:v1",
                             "push the attacker's image as v1 (attack 1)")
    yield _everywhere_denied(lab, "the attacker's digest, with a replayed and a self-made signature",
                             f"{pods}/attack/app@{evil}", "run attacks 2 and 3")
    yield _everywhere_denied(lab, "the attacker's digest on an unreachable registry",
                             f"{attack_lab.UNREACHABLE}/attack/app@{evil}",
                             "put failurePolicy: Fail back on the Kyverno guards (end of attack 8)")


# --- notebook 09 -------------------------------------------------------------------------------


@checkpoint("ci_workflow")
def ci_workflow(path: Path | str | None = None, home: Path | str | None = None) -> Iterator[Item]:
    """Your copy of the CI template signs the build step's digest in the classic ``.sig`` format,
    pins every action, sets up QEMU for arm64 and lower-cases the image name."""
    from labkit.ci_workflow import check_workflow

    path = Path(path) if path is not None else workshop.workdir(home) / "sign-by-digest.yml"
    if not path.exists():
        yield Item(False, f"your workflow at {workshop.shown(path, home)}",
                   "copy the template as in notebook 09, step 1")
        return
    try:
        findings = check_workflow(path)
    except LabkitError as exc:
        yield Item(False, f"{path.name} is a GitHub Actions workflow", exc.message)
        return
    if not any("cosign sign" in f.what or "signs" in f.what for f in findings):
        yield Item(False, f"{path.name} signs the image", "add the `cosign sign … \"${IMAGE}@${DIGEST}\"` step")
    for finding in findings:
        yield Item(finding.ok, finding.what, finding.fix)


# --- every notebook's first cell -------------------------------------------------------------------


# What each notebook uses from earlier ones, and the checkpoint that shows it is there. Notebooks
# 04 to 10 need the signed sample (03), which needs the key (01) and the pushed image (02).
_NEEDS: dict[str, tuple[str, ...]] = {
    "00": (), "01": (), "02": (), "03": ("01", "02"), "04": ("03",), "05": ("03",), "06": ("03",),
    "07": ("03",), "08": ("03",), "09": ("01",), "10": ("03",), "11": (), "12": (),
}
_SHOWN_BY: dict[str, Callable[[Lab, Path | str | None], Checkpoint]] = {
    "01": lambda lab, home: keys(home),
    "02": image,
    "03": signed,
}


def ready_for(notebook: str, lab: Lab, home: Path | str | None = None) -> None:
    """Raise :class:`PrerequisiteError` naming the earlier notebook to finish first, with the fix,
    when this notebook would use a key, image or signature that is not there yet."""
    for earlier in _NEEDS[notebook]:
        if earlier == "03":  # the signature needs the key and the image: name the first missing
            for first in ("01", "02"):
                _require(notebook, first, _SHOWN_BY[first](lab, home))
        _require(notebook, earlier, _SHOWN_BY[earlier](lab, home))
    print(f"Notebook {notebook}: everything it needs from earlier notebooks is in place.")


def _require(notebook: str, earlier: str, found: Checkpoint) -> None:
    missing = [item for item in found.items if not item.ok]  # stale policies are no notebook's to redo
    if not missing:
        return
    item = missing[0]
    raise PrerequisiteError(f"notebook {notebook} needs notebook {earlier} finished first: missing {item.what}",
                            hint=f"open notebook {earlier} and run it to the end ({item.fix})")
