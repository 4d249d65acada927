"""Keyless, offline: what the real engines say, and the embedded lab held to them case by case.

One set-up serves both halves. The session's native lab (real Kyverno v1.19.1 and policy-controller
v0.13.1) gets the keyless policies of ``labkit.keyless_policies`` (Kyverno's ClusterPolicy;
policy-controller's ClusterImagePolicy and its TrustRoot; Kyverno's ImageValidatingPolicy, through
the Sigstore's TUF repository) in three sets, each for its own repositories: alice exactly, alice
under a lookalike issuer URL, ``subjectRegExp`` for alice. Real cosign signs the images in its
registry (v2.6.1 legacy ``.sig``; v3.1.3 in its default bundle format and with its legacy
switches), by alice or bob, against the session's local Sigstore.

1. The real engines are held to what is known without labkit: alice admitted; bob, the lookalike
   issuer and no signature denied, each engine saying why in its own words; the format matrix
   (signature format × engine) as recorded in ``labkit/samples/keyless_format_matrix.yaml``, which
   ``LABKIT_RECORD_KEYLESS_MATRIX=1`` writes from the engines' answers instead.
2. An embedded lab gets the same policies, the same images and the very same signatures, copied
   byte for byte from the native lab's registry (every tag and every referrer). Each case creates
   the same Pod on both labs and compares admitted/denied, kubectl's message and the rest of
   ``Observation`` after the registry ``host:port`` is normalised; a difference fails unless
   tests/differential/known_differences.yaml lists it.

Kyverno's TUF client is one per process and keeps the first mirror named (docs/keyless.md), so the
native Kyverno is restarted before and after.

    tools/netns-run .venv/bin/python -m pytest tests/differential/test_keyless.py -q
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import keyless_policies
from labkit.attack_lab import copy
from labkit.keyless_lab import FORMAT_MATRIX
from labkit.keyless_policies import Identity
from labkit.lab import AdmissionResult, Lab
from labkit.lab.native import NativeLab
from labkit.lab.sigstore import LocalSigstore
from labkit.lab.state import LabHome
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3
from tests.differential.compare import Known, Table, Verdict, compare, observation
from tests.interop.cosign import sign_keyless
from tests.interop.test_sign_cosign import push_image

pytestmark = pytest.mark.interop  # real cosign signs; the real engines decide

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "differential-keyless.md"
RECORD = os.environ.get("LABKIT_RECORD_KEYLESS_MATRIX") == "1"
ALICE, BOB = "alice@example.com", "bob@example.com"
ENGINES = ("kyverno-cpol", "kyverno-ivp", "policy-controller")
# case → (signer, how): None signs nothing
CASES: dict[str, tuple[str, str] | None] = {
    "alice": (ALICE, "cosign-v2-legacy"),
    "bob": (BOB, "cosign-v2-legacy"),
    "lookalike-issuer": (ALICE, "cosign-v2-legacy"),  # checked by policies naming the issuer otherwise
    "unsigned": None,
    "v3-default": (ALICE, "cosign-v3-default"),
    "v3-legacy-flags": (ALICE, "cosign-v3-legacy-flags"),
    # checked by policies trusting subjectRegExp ^alice@example[.]com$
    "regexp-alice": (ALICE, "cosign-v2-legacy"),
    "regexp-bob": (BOB, "cosign-v2-legacy"),
}
# the format matrix's rows: alice's signature in each format
FORMATS = {"cosign-v2-legacy": "alice", "cosign-v3-default": "v3-default", "cosign-v3-legacy-flags": "v3-legacy-flags"}
# case → the policy set that checks it (its own repositories): "" is the exact identity
POLICY_SETS = {"lookalike-issuer": "-lookalike", "regexp-alice": "-regexp", "regexp-bob": "-regexp"}
NAMESPACES = {"kyverno-cpol": "keyless", "kyverno-ivp": "keyless", "policy-controller": "keyless-pc"}
KNOWN = Known.load()
_TABLE = Table("native (keyless)")


def _repository(engine: str, case: str) -> str:
    return f"keyless-{engine}{POLICY_SETS.get(case, '')}/{case}"


def _policies(sigstore: LocalSigstore, pod_host: str) -> list[dict[str, Any]]:
    issuer = sigstore.urls.oidc_issuer
    lookalike = issuer.replace("127.0.0.1", "localhost")  # the same issuer, under another name
    out: list[dict[str, Any]] = []
    for prefix, identities, suffix in (
            ("keyless", [Identity(ALICE, issuer)], ""),
            ("lookalike", [Identity(ALICE, lookalike)], "-lookalike"),
            ("regexp", [Identity(subject_regexp="^alice@example[.]com$", issuer=issuer)], "-regexp")):
        out += keyless_policies.all_three(
            sigstore, identities, prefix=prefix,
            kyverno_images=[f"{pod_host}/keyless-kyverno-cpol{suffix}/*"],
            ivp_images=[f"{pod_host}/keyless-kyverno-ivp{suffix}/*"],
            policy_controller_images=[f"{pod_host}/keyless-policy-controller{suffix}/**"])
    return out


@dataclass
class Side:
    lab: Lab
    policies: list[dict[str, Any]] = field(default_factory=list)
    images: dict[tuple[str, str], str] = field(default_factory=dict)
    results: dict[tuple[str, str], AdmissionResult] = field(default_factory=dict)

    def admit(self, engine: str, case: str) -> AdmissionResult:
        """The Pod of ``(engine, case)``, created once: later asks get the first answer."""
        if (engine, case) not in self.results:
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"{engine}-{case}", "namespace": NAMESPACES[engine]},
                   "spec": {"containers": [{"name": "app", "image": self.images[engine, case]}]}}
            self.results[engine, case] = self.lab.create(pod)
        return self.results[engine, case]

    def enforce(self, sigstore: LocalSigstore) -> None:
        self.policies = _policies(sigstore, self.lab.registry.pod_host)
        self.lab.label_namespace(NAMESPACES["kyverno-cpol"], {})
        self.lab.label_namespace(NAMESPACES["policy-controller"], {"policy.sigstore.dev/include": "true"})
        applied = self.lab.apply(yaml.safe_dump_all(self.policies))
        assert all(r.admitted for r in applied), [r.message for r in applied]

    def withdraw(self) -> None:
        for policy in reversed(self.policies):
            self.lab.delete(policy)


def _signed(lab: Lab, sigstore: LocalSigstore, workdir: Path) -> Side:
    """Each case's image pushed to ``lab``'s registry and signed there by real cosign."""
    side = Side(lab)
    registry = lab.registry
    with RegistryClient() as client:
        for engine in ENGINES:
            for case, signing in CASES.items():
                ref = push_image(client, Reference.parse(f"{registry.host}/{_repository(engine, case)}:v1"),
                                 b"the same app, signed keyless on both labs\n")
                side.images[engine, case] = str(ref).replace(registry.host, registry.pod_host, 1)
                if signing is not None:
                    sign_keyless(sigstore, workdir, signing[1], str(ref), signing[0])
    return side


def _copied(lab: Lab, source: Side) -> Side:
    """``source``'s repositories copied into ``lab``'s registry: every tag (the image and cosign's
    ``.sig``) and every referrer of the image (cosign v3's bundle), byte for byte."""
    side = Side(lab)
    here, there = lab.registry, source.lab.registry
    with RegistryClient() as client:
        for (engine, case), image in source.images.items():
            repository = _repository(engine, case)
            origin = Reference.parse(image.replace(there.pod_host, there.host, 1))
            for tag in client.list_tags(origin):
                copy(f"{there.host}/{repository}:{tag}", f"{here.host}/{repository}:{tag}")
            for referrer in client.referrers(origin).manifests:
                copy(f"{there.host}/{repository}@{referrer.digest}", f"{here.host}/{repository}@{referrer.digest}")
            side.images[engine, case] = image.replace(there.pod_host, here.pod_host, 1)
    return side


@pytest.fixture(scope="module")
def sigstore(local_sigstore: Path) -> LocalSigstore:
    found = LocalSigstore.find(LabHome(local_sigstore))
    assert found is not None
    return found


@pytest.fixture(scope="module")
def native(native_lab: Lab, sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    """The real engines' side: signed by real cosign, the keyless policies enforced."""
    side = _signed(native_lab, sigstore, tmp_path_factory.mktemp("keyless-cosign"))
    assert isinstance(native_lab, NativeLab)
    native_lab.restart_kyverno()  # the IVP's mirror must be the first this Kyverno names
    try:
        side.enforce(sigstore)
        yield side
    finally:
        side.withdraw()
        native_lab.restart_kyverno()  # no later attestor may inherit the lab's mirror


@pytest.fixture(scope="module")
def embedded(native: Side, sigstore: LocalSigstore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Side]:
    """The embedded lab's side: the native side's images and signatures, the same policies."""
    lab = Lab.start("embedded", tmp_path_factory.mktemp("keyless-embedded"))
    try:
        side = _copied(lab, native)
        side.enforce(sigstore)
        yield side  # its policies go with the lab
    finally:
        lab.stop()
        if _TABLE.verdicts:
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            said = [f"- `{v.case}`: {v.subject.message!r}" for v in _TABLE.verdicts]
            ARTIFACT.write_text("# Keyless: the embedded lab against the real engines\n\n" + _TABLE.markdown()
                                + "\n### What the embedded lab said (normalised)\n\n" + "\n".join(said) + "\n")


# --- 1. the real engines ------------------------------------------------------------------------

# what each engine says, in its own words (loosely: ports and digests vary). The IVP's message is
# the policy's own: verifyImageSignatures only logs why an attestor failed and counts it 0.
DENIALS = {
    ("kyverno-cpol", "bob"): ('admission webhook "mutate.kyverno.svc-fail" denied the request',
                              ".attestors[0].entries[0].keyless: subject mismatch: expected alice@example.com, "
                              "received bob@example.com"),
    ("kyverno-cpol", "lookalike-issuer"): (".attestors[0].entries[0].keyless: issuer mismatch: "
                                           "expected http://localhost:", "received http://127.0.0.1:"),
    ("kyverno-cpol", "unsigned"): (".attestors[0].entries[0].keyless: no signatures found",),
    ("kyverno-ivp", "bob"): ('admission webhook "ivpol.validate.kyverno.svc-fail-finegrained-keyless-ivp" denied',
                             "Policy keyless-ivp failed: failed to verify a keyless signature from the lab's Sigstore"),
    ("kyverno-ivp", "lookalike-issuer"): ("Policy lookalike-ivp failed: failed to verify a keyless signature",),
    ("kyverno-ivp", "unsigned"): ("Policy keyless-ivp failed: failed to verify a keyless signature",),
    ("policy-controller", "bob"): ('admission webhook "policy.sigstore.dev" denied the request: validation failed: '
                                   "failed policy: keyless-cip",
                                   "signature keyless validation failed for authority lab-keyless",
                                   "no matching signatures: none of the expected identities matched what was in the "
                                   "certificate, got subjects [bob@example.com] with issuer http://127.0.0.1:"),
    ("policy-controller", "lookalike-issuer"): ("failed policy: lookalike-cip", "none of the expected identities "
                                                "matched what was in the certificate, got subjects "
                                                "[alice@example.com] with issuer http://127.0.0.1:"),
    ("policy-controller", "unsigned"): ("signature keyless validation failed for authority lab-keyless",
                                        ": no signatures found"),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", ("alice", "bob", "lookalike-issuer", "unsigned"))
def test_identity(native: Side, engine: str, case: str) -> None:
    """alice's legacy keyless signature is admitted; bob's, alice's checked against a lookalike
    issuer, and none at all are denied, each engine saying why."""
    result = native.admit(engine, case)
    if case == "alice":
        assert result.admitted, result.message
        assert result.message == f"pod/{engine}-alice created"
        return
    assert not result.admitted, result.message
    for fragment in DENIALS[engine, case]:
        assert fragment in result.message, result.message


@pytest.mark.parametrize("engine", ENGINES)
def test_subject_regexp(native: Side, engine: str) -> None:
    """An identity given as a regexp: alice matches it, bob does not."""
    assert native.admit(engine, "regexp-alice").admitted
    denied = native.admit(engine, "regexp-bob")
    assert not denied.admitted
    expected = {"kyverno-cpol": "subject mismatch: expected ^alice@example[.]com$, received bob@example.com",
                "kyverno-ivp": "Policy regexp-ivp failed: failed to verify a keyless signature",
                "policy-controller": "none of the expected identities matched what was in the certificate, "
                                     "got subjects [bob@example.com]"}[engine]
    assert expected in denied.message, denied.message


def test_format_matrix(native: Side) -> None:
    """The same image signed three ways, each checked by each engine: the table the real engines
    gave when it was recorded (the date and versions are in the file)."""
    results = {(fmt, engine): native.admit(engine, case) for fmt, case in FORMATS.items() for engine in ENGINES}
    observed = {fmt: {engine: "admitted" if results[fmt, engine].admitted else "denied" for engine in ENGINES}
                for fmt in FORMATS}
    if RECORD:
        FORMAT_MATRIX.write_text("# written by tests/differential/test_keyless.py from the real engines' answers "
                                 "(LABKIT_RECORD_KEYLESS_MATRIX=1)\n" + yaml.safe_dump({
            "observed": dt.date.today().isoformat(),
            "versions": {"kyverno": "v1.19.1", "policy-controller": "v0.13.1", "signers": [COSIGN_V2_PIN, COSIGN_V3]},
            "matrix": observed,
            "denials": {f"{fmt} / {engine}": r.message for (fmt, engine), r in results.items() if not r.admitted},
        }, sort_keys=False, width=100))
    expected = yaml.safe_load(FORMAT_MATRIX.read_text())["matrix"]
    assert observed == expected


# --- 2. the embedded lab, held to them ----------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("engine", ENGINES)
def test_keyless_agrees(embedded: Side, native: Side, engine: str, case: str) -> None:
    """The same Pod, the same keyless policy, the same signatures: the embedded lab decides as
    the real engine does, in its words."""
    hosts = tuple(h for lab in (embedded.lab, native.lab) for h in lab.served_registries())
    verdict: Verdict = compare(f"keyless/{engine}/{case}",
                               observation(embedded.admit(engine, case), hosts, KNOWN),
                               observation(native.admit(engine, case), hosts, KNOWN), KNOWN)
    _TABLE.verdicts.append(verdict)
    assert verdict.status != "different", verdict.explain()
