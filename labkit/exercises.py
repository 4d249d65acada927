"""Each notebook exercise's check: ``check.exercise_NN(lab)`` looks at what the learner made (files
in the workshop directory, images and signatures in the registry, policies in the lab, admission
decisions) and says precisely what is still missing. Like checkpoints, they change nothing.

The solutions are in the instructor notebooks (``make solutions``), never in the learner's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit import workshop
from labkit.checkpoint import Item, admission_item, checkpoint
from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.keys import PublicKey
    from labkit.lab import Lab
    from labkit.oci.client import RegistryClient

TAG_DEMO_MINE = "workshop/tag-demo:mine"           # 00
RELEASE_NOTES = "release-notes.txt"                # 01
CHANGED_IMAGE = "workshop/exercise-02:changed"     # 02
TEAM_SIGNED_IMAGE = "workshop/team-signed:v1"      # 05: signed with team.key only
ROTATED_IMAGE = "workshop/rotated:v1"              # 06: signed with team.key only
TEAM_B = "team-b"                                  # 07
FIX_ME_WORKFLOW = "fix-me.yml"                     # 09


def _client() -> RegistryClient:
    from labkit.oci.client import RegistryClient

    return RegistryClient(allow_insecure=True)


def _digest(ref: str) -> str | None:
    try:
        with _client() as client:
            return client.resolve(ref)
    except LabkitError:
        return None


def _verifies(ref: str, key: PublicKey, **options: Any) -> str | None:
    """``None`` when a signature on ``ref`` verifies with ``key``, else cosign's reason."""
    from labkit.signing.verify import verify_image

    try:
        with _client() as client:
            verify_image(ref, key, client=client, **options)
    except LabkitError as exc:
        return exc.message
    return None


def _public_key(name: str, home: Path | str | None) -> PublicKey | None:
    from labkit import keys

    path = workshop.workdir(home) / name
    return keys.load_public_key(path) if path.exists() else None


def _team_key(home: Path | str | None) -> tuple[Item, PublicKey | None]:
    key = _public_key("team.pub", home)
    return (Item(key is not None, "team.pub is in the workshop directory",
                 "import the team key as in notebook 01, step 3 (labkit import-key-pair --key team.pem "
                 "--output-key-prefix team)"), key)


@checkpoint("00 · a tag of your own", kind="Exercise")
def exercise_00(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """``workshop/tag-demo:mine`` holds the sample as first pushed: same bytes, same digest."""
    from labkit.oci.base_image import build_like_cli

    ref = f"{lab.registry.host}/{TAG_DEMO_MINE}"
    digest = _digest(ref)
    yield Item(digest is not None, f"{TAG_DEMO_MINE} is in the lab registry",
               f"push it: `labkit build hello-app -t {ref} --push`")
    if digest is None:
        return
    want = build_like_cli(workshop.copy_sample(home)).digest
    yield Item(digest == want, f"its digest is the first push's ({want[:19]}…)",
               "build it from hello-app/ unchanged, with the default platform, and push again")


@checkpoint("01 · sign and tamper with a blob", kind="Exercise")
def exercise_01(lab: Lab | None = None, home: Path | str | None = None) -> Iterator[Item]:
    """``release-notes.sig`` verifies ``release-notes.txt`` with cosign.pub; the one-byte-changed
    copy ``release-notes-tampered.txt`` does not."""
    from labkit.signing.blob import verify_blob

    work = workshop.workdir(home)
    key = _public_key("cosign.pub", home)
    if key is None:
        yield Item(False, "cosign.pub is in the workshop directory", "finish step 1 of this notebook first")
        return
    text, sig = work / RELEASE_NOTES, work / "release-notes.sig"
    tampered = work / "release-notes-tampered.txt"
    for path, how in ((text, "write a few lines to it"),
                      (sig, f"`labkit sign-blob --key cosign.key --tlog-upload=false --output-signature "
                            f"release-notes.sig {RELEASE_NOTES}`"),
                      (tampered, f"copy {RELEASE_NOTES} to it and change one character")):
        yield Item(path.exists(), f"{path.name} is in the workshop directory", how)
        if not path.exists():
            return

    def reason(path: Path) -> str | None:
        try:
            verify_blob(key, path.read_bytes(), sig.read_bytes())
        except LabkitError as exc:
            return exc.message
        return None

    yield Item(reason(text) is None, f"release-notes.sig verifies {RELEASE_NOTES} with cosign.pub",
               f"sign {RELEASE_NOTES} again as it is now ({reason(text)})")
    yield Item(tampered.read_bytes() != text.read_bytes(), f"{tampered.name} differs from {RELEASE_NOTES}",
               "change one character of the copy")
    yield Item(reason(tampered) is not None, f"the same signature does not verify {tampered.name}",
               "the copy must be changed after signing the original")


@checkpoint("02 · one character changes the digest", kind="Exercise")
def exercise_02(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """The changed app was pushed as ``workshop/exercise-02:changed`` with a digest unlike the
    sample's, and ``hello-app/`` was changed back (notebook 03 signs what 02 pushed)."""
    from labkit.oci.base_image import build_like_cli
    from labkit.oci.model import Platform

    ref = f"{lab.registry.host}/{CHANGED_IMAGE}"
    try:
        with _client() as client:
            fetched = client.get_manifest(ref)
    except LabkitError:
        yield Item(False, f"{CHANGED_IMAGE} is in the lab registry",
                   f"change one character of hello-app/app.py, then `labkit build hello-app -t {ref} "
                   "--platform linux/amd64,linux/arm64/v8 --push`")
        return
    yield Item(True, f"{CHANGED_IMAGE} is in the lab registry")
    platforms = [d.platform for d in getattr(fetched.parsed(), "manifests", ()) if d.platform]
    copy = workshop.copy_sample(home)
    unchanged = build_like_cli(workshop.SAMPLE_APP, platforms=[Platform.parse(str(p)) for p in platforms] or None)
    yield Item(fetched.digest != unchanged.digest, "its digest differs from the unchanged sample's",
               "it was built from the unchanged app: change one character of hello-app/app.py and push again")
    same = (copy / "app.py").read_bytes() == (workshop.SAMPLE_APP / "app.py").read_bytes()
    yield Item(same, "hello-app/app.py is back as it was",
               "undo your change (the check of notebook 02 and the signature of 03 need the original)")


@checkpoint("03 · a second signature", kind="Exercise")
def exercise_03(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """The sample index carries a signature ``team.pub`` verifies, beside the workshop key's."""
    item, team = _team_key(home)
    yield item
    if team is None:
        return
    ref = f"{lab.registry.host}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}"
    digest = _digest(ref)
    if digest is None:
        yield Item(False, f"{ref} is in the lab registry", "finish notebook 02 first")
        return
    signed = f"{ref.rsplit(':', 1)[0]}@{digest}"
    # team.key is P-384: cosign signs SHA-384 with it, and verifies it with --signature-digest-algorithm sha384
    why = _verifies(signed, team, digest_algorithm="sha384")
    yield Item(why is None, "the index has a signature team.pub verifies",
               f"`labkit sign --key team.key --tlog-upload=false {signed}` ({why})")


@checkpoint("04 · the arm64 image by its own digest", kind="Exercise")
def exercise_04(lab: Lab, answer: str, home: Path | str | None = None) -> Iterator[Item]:
    """``answer`` is the arm64 platform image's digest, and cosign.pub verifies it."""
    ref = f"{lab.registry.host}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}"
    try:
        with _client() as client:
            index = client.get_manifest(ref).parsed()
    except LabkitError as exc:
        yield Item(False, f"{ref} is in the lab registry", f"{exc.message}; finish notebook 02 first")
        return
    arm64 = [d.digest for d in getattr(index, "manifests", ()) if d.platform and d.platform.architecture == "arm64"]
    yield Item(str(answer).strip() in arm64, f"{str(answer)[:19]}… is the arm64 image's digest",
               "read it from the index: `labkit verify … -o text` prints each platform, or "
               "client.get_manifest(ref).parsed().manifests lists them with their platform")
    if arm64 and str(answer).strip() in arm64:
        key = _public_key("cosign.pub", home)
        why = _verifies(f"{ref.rsplit(':', 1)[0]}@{arm64[0]}", key) if key else "no cosign.pub"
        yield Item(why is None, "cosign.pub verifies the arm64 image by its digest",
                   f"sign the index with --recursive (notebook 03) ({why})")


def _applied(lab: Lab, kind: str, name: str) -> dict[str, Any] | None:
    return next((p for p in lab.policies() if p.get("kind") == kind and p["metadata"]["name"] == name), None)


@checkpoint("05 · accept the team key too", kind="Exercise")
def exercise_05(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """The applied ImageValidatingPolicy has a second attestor with team.pub (``hashAlgorithm:
    sha384``) and accepts either: ``workshop/team-signed:v1`` (team.key only) and the sample are
    admitted, the unsigned image still denied."""
    item, team = _team_key(home)
    yield item
    if team is None:
        return
    pushed = f"{lab.registry.host}/{TEAM_SIGNED_IMAGE}"
    digest = _digest(pushed)
    name = pushed.rsplit(":", 1)[0]
    why = _verifies(f"{name}@{digest}", team, digest_algorithm="sha384") if digest else "not pushed"
    yield Item(why is None, f"{TEAM_SIGNED_IMAGE} is signed with team.key", f"run the exercise's first cell ({why})")
    policy = _applied(lab, "ImageValidatingPolicy", "workshop-signed")
    yield Item(policy is not None, "the ImageValidatingPolicy workshop-signed is applied",
               "apply ivp.yaml: `labkit lab apply -f ivp.yaml`")
    if policy is None:
        return
    team_pem = "".join((workshop.workdir(home) / "team.pub").read_text().split())
    keys = [(a.get("cosign") or {}).get("key") or {} for a in policy["spec"].get("attestors") or []]
    team_keys = [k for k in keys if "".join(str(k.get("data", "")).split()) == team_pem]
    yield Item(bool(team_keys), "it has an attestor with team.pub",
               "in ivp.yaml, add a second attestor (name: team) with team.pub under cosign.key.data, "
               "and name it in the validation: verifyImageSignatures(image, [attestors.workshop, attestors.team])")
    if not team_keys:
        return
    yield Item(team_keys[0].get("hashAlgorithm") == "sha384", "the team attestor's key says hashAlgorithm: sha384",
               "add `hashAlgorithm: sha384` under the team attestor's cosign.key: a P-384 key signs SHA-384, "
               "and Kyverno verifies SHA-256 unless told")
    pods = lab.registry.pod_host
    yield admission_item(lab, f"a pod running {pods}/{TEAM_SIGNED_IMAGE} (team.key) is admitted",
                         f"{pods}/{TEAM_SIGNED_IMAGE}", admitted=True,
                         fix="name attestors.team in the validation's list, beside attestors.workshop")
    yield admission_item(lab, f"a pod running {pods}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG} (cosign.key) "
                         "is admitted", f"{pods}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}", admitted=True,
                         fix="either attestor must be enough: keep `.all(e, e > 0)`")
    unsigned = f"{pods}/workshop/unsigned:{workshop.IMAGE_TAG}"
    yield admission_item(lab, f"a pod running {unsigned} is still denied", unsigned, admitted=False,
                         denied_by="ivpol.", fix="keep the validation requiring a signature")


@checkpoint("06 · rotate the key", kind="Exercise")
def exercise_06(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """The Enforce ClusterPolicy accepts either key: the sample (cosign.key) and
    ``workshop/rotated:v1`` (team.key, P-384) are both admitted."""
    item, team = _team_key(home)
    yield item
    if team is None:
        return
    rotated = f"{lab.registry.host}/{ROTATED_IMAGE}"
    digest = _digest(rotated)
    yield Item(digest is not None, f"{ROTATED_IMAGE} is in the lab registry",
               f"push the sample there: `labkit build hello-app -t {rotated} --push`")
    if digest is None:
        return
    name = rotated.rsplit(":", 1)[0]
    why = _verifies(f"{name}@{digest}", team, digest_algorithm="sha384")
    yield Item(why is None, f"{ROTATED_IMAGE} is signed with team.key",
               f"`labkit sign --key team.key --tlog-upload=false {name}@{digest}` ({why})")
    policy = _applied(lab, "ClusterPolicy", "workshop-verify-images")
    yield Item(policy is not None, "the ClusterPolicy workshop-verify-images is applied",
               "apply clusterpolicy.yaml: `labkit lab apply clusterpolicy.yaml`")
    if policy is None:
        return
    pods = lab.registry.pod_host
    yield admission_item(lab, f"a pod running {pods}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG} "
                         "(cosign.key) is admitted", f"{pods}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}",
                         admitted=True, fix="give the attestor `count: 1`: without it every entry must verify")
    yield admission_item(lab, f"a pod running {pods}/{ROTATED_IMAGE} (team.key) is admitted",
                         f"{pods}/{ROTATED_IMAGE}", admitted=True,
                         fix="add an entry with team.pub to the attestor, with `signatureAlgorithm: sha384` "
                             "in its `keys:` (a P-384 key signs SHA-384; Kyverno assumes sha256), and "
                             "`count: 1` on the attestor")


@checkpoint("07 · a second namespace opts in", kind="Exercise")
def exercise_07(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """Namespace ``team-b`` is opted in: there the unsigned image is denied, the signed admitted."""
    signed = f"{lab.registry.pod_host}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}"
    unsigned = f"{lab.registry.pod_host}/workshop/unsigned:{workshop.IMAGE_TAG}"
    opt_in = f"`labkit lab label {TEAM_B} policy.sigstore.dev/include=true`"
    yield admission_item(lab, f"in {TEAM_B}, a pod running {unsigned} is denied by policy.sigstore.dev",
                         unsigned, admitted=False, denied_by="policy.sigstore.dev", namespace=TEAM_B,
                         fix=f"opt the namespace in: {opt_in}")
    yield admission_item(lab, f"in {TEAM_B}, a pod running {signed} is admitted", signed, admitted=True,
                         namespace=TEAM_B, fix="apply cip.yaml in enforce mode (step 1)")


@checkpoint("08 · close the sibling gap", kind="Exercise")
def exercise_08(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """An unsigned image in a sibling repository of the attack lab is checked, and denied."""
    from labkit import attack_lab

    try:
        with _client() as client:
            evil = client.resolve(f"{lab.registry.host}/{attack_lab.REPOSITORY}/app:evil")
    except LabkitError:
        yield Item(False, "the attacker's image is pushed", "run step 1 of notebook 08")
        return
    image = f"{lab.registry.pod_host}/attack-staging/app@{evil}"
    admitted = attack_lab.attempt(lab, image).admitted_by()
    yield Item(not admitted, f"the unsigned {image} is denied by all three engines",
               "in attack-ivp.yaml and attack-cpol.yaml, widen the glob from …/attack/* to the whole "
               f"registry (…/*), save, and apply both (labkit lab apply) (admitted by: {', '.join(admitted)})")


@checkpoint("09 · fix the workflow", kind="Exercise")
def exercise_09(lab: Lab | None = None, home: Path | str | None = None) -> Iterator[Item]:
    """``fix-me.yml`` passes every check notebook 09 teaches."""
    from labkit.ci_workflow import check_workflow

    path = workshop.workdir(home) / FIX_ME_WORKFLOW
    if not path.exists():
        yield Item(False, f"{FIX_ME_WORKFLOW} is in the workshop directory", "run the exercise's first cell")
        return
    try:
        findings = check_workflow(path)
    except LabkitError as exc:
        yield Item(False, f"{FIX_ME_WORKFLOW} is a GitHub Actions workflow", exc.message)
        return
    for finding in findings:
        yield Item(finding.ok, finding.what, f"in fix-me.yml: {finding.fix}; save, and run the check again")


@checkpoint("10 · sign again after a reset", kind="Exercise")
def exercise_10(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """After the reset, the sample is signed by digest again and cosign.pub verifies it."""
    key = _public_key("cosign.pub", home)
    ref = f"{lab.registry.host}/{workshop.IMAGE_REPOSITORY}:{workshop.IMAGE_TAG}"
    digest = _digest(ref)
    if key is None or digest is None:
        yield Item(False, "the workshop key and the sample image are kept", "a reset keeps both: see step 1")
        return
    signed = f"{ref.rsplit(':', 1)[0]}@{digest}"
    why = _verifies(signed, key)
    yield Item(why is None, f"{workshop.IMAGE_REPOSITORY}@{digest[:19]}… is signed again",
               f"`labkit sign --key cosign.key --tlog-upload=false --recursive {signed}` ({why})")


@checkpoint("11 · trust bob too, not the lookalike", kind="Exercise")
def exercise_11(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """keyless-policy.yaml admits alice's and bob's keyless images and denies the lookalike's."""
    from labkit import keyless_lab

    images = keyless_lab.tagged(lab)
    fix = ("give attestors[0] `count: 1` and one keyless entry per identity, each with an exact `subject:` "
           "and the lab's `issuer:`, then `labkit lab apply -f keyless-policy.yaml`")
    yield admission_item(lab, "alice's keyless image is admitted", images["alice"], admitted=True, fix=fix)
    yield admission_item(lab, "bob's keyless image is admitted", images["bob"], admitted=True, fix=fix)
    yield admission_item(lab, f"the image signed by {keyless_lab.SIGNERS['lookalike']} is denied by Kyverno",
                         images["lookalike"], admitted=False, denied_by="kyverno",
                         fix="no subjectRegExp: name each identity exactly (subject:)")


@checkpoint("12 · the format table", kind="Exercise")
def exercise_12(lab: Lab, home: Path | str | None = None) -> Iterator[Item]:
    """formats.yaml holds, per format and engine, what the lab's engine answers, which is what the
    real engines answered when the project recorded them."""
    import yaml

    from labkit import keyless_lab

    path = workshop.workdir(home) / keyless_lab.TABLE
    try:
        table = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        yield Item(False, f"{keyless_lab.TABLE} is readable", f"run the exercise's first cell ({exc})")
        return
    recorded = keyless_lab.recorded_matrix()
    for fmt, engines in recorded.items():
        for engine, expected in engines.items():
            given = str((table.get(fmt) or {}).get(engine, "?"))
            image = f"{lab.registry.pod_host}/{keyless_lab.FORMAT_REPOSITORY.format(engine=engine, fmt=fmt)}:v1"
            answer = keyless_lab.ask(lab, image, engine).split(":")[0]
            yield Item(given == answer == expected, f"{fmt} × {engine}: {expected}",
                       f"your table says {given!r}; this lab's {engine} answers {answer!r} (step 4)")
