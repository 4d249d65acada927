"""The real engines enforce keyless signatures from the lab's own Sigstore, offline.

The session's native lab (real Kyverno v1.19.1 and policy-controller v0.13.1) gets the three
policies of ``labkit.keyless_policies``, each for its own images; real cosign signs (v2.6.1 legacy
``.sig``; v3.1.3 in its default bundle format and with its legacy switches) against the session's
local Sigstore. Every decision and message is the engine's. The format matrix (signature format
× engine) observed on the real engines is kept in ``keyless_format_matrix.yaml``; the test holds
the engines to it. ``LABKIT_RECORD_KEYLESS_MATRIX=1`` writes what the engines answer instead.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from labkit import keyless_policies
from labkit.keyless_lab import FORMAT_MATRIX
from labkit.keyless_policies import Identity
from labkit.lab.native import NativeLab
from labkit.lab.sigstore import LocalSigstore
from labkit.lab.state import LabHome
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3
from tests.interop.cosign import sign_keyless
from tests.interop.test_sign_cosign import push_image

if TYPE_CHECKING:
    from labkit.lab import AdmissionResult, Lab

pytestmark = pytest.mark.interop  # real cosign signs; the real engines decide

ALICE, BOB = "alice@example.com", "bob@example.com"
ENGINES = ("kyverno-cpol", "kyverno-ivp", "policy-controller")
FORMATS = ("cosign-v2-legacy", "cosign-v3-default", "cosign-v3-legacy-flags")
IDENTITY_CASES = ("alice", "bob", "lookalike-issuer", "unsigned")
REGEXP_CASES = ("regexp-alice", "regexp-bob")  # a policy trusting subjectRegExp ^alice@example[.]com$
PC_NAMESPACE = "keyless-pc"
MATRIX_FILE = FORMAT_MATRIX  # packaged: notebook 12's check compares the learner's table with it
RECORD = os.environ.get("LABKIT_RECORD_KEYLESS_MATRIX") == "1"


@dataclass
class Keyless:
    lab: Lab
    sigstore: LocalSigstore
    images: dict[tuple[str, str], str]  # (engine, case or format) → image by digest

    def admit(self, engine: str, case: str) -> AdmissionResult:
        name = f"{engine}-{case}".replace("cosign-", "")
        namespace = self.lab.namespace(PC_NAMESPACE) if engine == "policy-controller" else "default"
        return self.lab.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                                "spec": {"containers": [{"name": "app", "image": self.images[engine, case]}]}})


def _repository(engine: str, case: str) -> str:
    # the lookalike and regexp cases have their own policies, hence their own repositories
    group = (f"keyless-{engine}-lookalike" if case == "lookalike-issuer"
             else f"keyless-{engine}-regexp" if case in REGEXP_CASES else f"keyless-{engine}")
    return f"{group}/{case}"




@pytest.fixture(scope="module")
def keyless(native_lab: Lab, local_sigstore: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyless]:
    sigstore = LocalSigstore.find(LabHome(local_sigstore))
    assert sigstore is not None
    workdir = tmp_path_factory.mktemp("keyless-cosign")
    host = native_lab.registry.host
    images: dict[tuple[str, str], str] = {}
    with RegistryClient() as client:
        for engine in ENGINES:
            for case in (*IDENTITY_CASES, *REGEXP_CASES, *FORMATS):
                ref = push_image(client, Reference.parse(f"{host}/{_repository(engine, case)}:v1"),
                                 b"the same app, signed keyless\n")
                images[engine, case] = str(ref)
                if case in ("alice", "lookalike-issuer", "regexp-alice"):
                    sign_keyless(sigstore, workdir, "cosign-v2-legacy", str(ref))
                elif case in ("bob", "regexp-bob"):
                    sign_keyless(sigstore, workdir, "cosign-v2-legacy", str(ref), BOB)
                elif case in FORMATS:
                    sign_keyless(sigstore, workdir, case, str(ref))
    issuer = sigstore.urls.oidc_issuer
    lookalike = issuer.replace("127.0.0.1", "localhost")  # the same server, under another name
    policies = [
        *keyless_policies.all_three(sigstore, [Identity(ALICE, issuer)],
                                    kyverno_images=[f"{host}/keyless-kyverno-cpol/*"],
                                    ivp_images=[f"{host}/keyless-kyverno-ivp/*"],
                                    policy_controller_images=[f"{host}/keyless-policy-controller/**"]),
        *keyless_policies.all_three(sigstore, [Identity(ALICE, lookalike)], prefix="lookalike",
                                    kyverno_images=[f"{host}/keyless-kyverno-cpol-lookalike/*"],
                                    ivp_images=[f"{host}/keyless-kyverno-ivp-lookalike/*"],
                                    policy_controller_images=[f"{host}/keyless-policy-controller-lookalike/**"]),
        *keyless_policies.all_three(sigstore, [Identity(subject_regexp="^alice@example[.]com$", issuer=issuer)],
                                    prefix="regexp", kyverno_images=[f"{host}/keyless-kyverno-cpol-regexp/*"],
                                    ivp_images=[f"{host}/keyless-kyverno-ivp-regexp/*"],
                                    policy_controller_images=[f"{host}/keyless-policy-controller-regexp/**"]),
    ]
    # Kyverno's TUF client is one per process and keeps the first mirror named: a fresh process
    # before (the IVP's mirror must be the first) and after (no later attestor may inherit it)
    assert isinstance(native_lab, NativeLab)
    native_lab.restart_kyverno()
    native_lab.label_namespace(PC_NAMESPACE, {"policy.sigstore.dev/include": "true"})
    try:
        applied = native_lab.apply(yaml.safe_dump_all(policies))
        assert all(r.admitted for r in applied), [r.message for r in applied]
        yield Keyless(native_lab, sigstore, images)
    finally:
        for policy in reversed(policies):
            native_lab.delete(policy)
        native_lab.restart_kyverno()


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
@pytest.mark.parametrize("case", IDENTITY_CASES)
def test_identity(keyless: Keyless, engine: str, case: str) -> None:
    """alice's legacy keyless signature is admitted; bob's, alice's checked against a lookalike
    issuer, and none at all are denied, each engine saying why."""
    result = keyless.admit(engine, case)
    if case == "alice":
        assert result.admitted, result.message
        assert result.message == f"pod/{engine}-alice created"
        return
    assert not result.admitted, result.message
    for fragment in DENIALS[engine, case]:
        assert fragment in result.message, result.message


@pytest.mark.parametrize("engine", ENGINES)
def test_subject_regexp(keyless: Keyless, engine: str) -> None:
    """An identity given as a regexp: alice matches it, bob does not."""
    assert keyless.admit(engine, "regexp-alice").admitted
    denied = keyless.admit(engine, "regexp-bob")
    assert not denied.admitted
    expected = {"kyverno-cpol": "subject mismatch: expected ^alice@example[.]com$, received bob@example.com",
                "kyverno-ivp": "Policy regexp-ivp failed: failed to verify a keyless signature",
                "policy-controller": "none of the expected identities matched what was in the certificate, "
                                     "got subjects [bob@example.com]"}[engine]
    assert expected in denied.message, denied.message


def test_format_matrix(keyless: Keyless) -> None:
    """The same image signed three ways, each checked by each engine: the table the real engines
    gave when it was recorded (the date and versions are in the file)."""
    results = {(fmt, engine): keyless.admit(engine, fmt) for fmt in FORMATS for engine in ENGINES}
    observed = {fmt: {engine: "admitted" if results[fmt, engine].admitted else "denied" for engine in ENGINES}
                for fmt in FORMATS}
    if RECORD:
        MATRIX_FILE.write_text("# written by tests/lab/test_keyless_engines.py from the real engines' answers "
                               "(LABKIT_RECORD_KEYLESS_MATRIX=1)\n" + yaml.safe_dump({
            "observed": dt.date.today().isoformat(),
            "versions": {"kyverno": "v1.19.1", "policy-controller": "v0.13.1", "signers": [COSIGN_V2_PIN, COSIGN_V3]},
            "matrix": observed,
            "denials": {f"{fmt} / {engine}": r.message for (fmt, engine), r in results.items() if not r.admitted},
        }, sort_keys=False, width=100))
    expected = yaml.safe_load(MATRIX_FILE.read_text())["matrix"]
    assert observed == expected


