"""Keyless on the embedded lab held to the real engines, case by case.

The session's native lab (real Kyverno v1.19.1 and policy-controller v0.13.1) and an embedded lab
get the same keyless policies (``labkit.keyless_policies``: Kyverno's ClusterPolicy; policy-
controller's ClusterImagePolicy and its TrustRoot; Kyverno's ImageValidatingPolicy, through the
Sigstore's TUF repository), trusting the session's local Sigstore. Each
lab's registry gets the same images (same bytes, same digests), each signed there by real cosign
(v2.6.1 legacy; v3.1.3 default bundle and legacy switches) against that Sigstore, by alice or bob;
three policy sets: alice exactly, alice under a lookalike issuer URL, ``subjectRegExp`` for alice.
Each case creates the same Pod on both labs and compares admitted/denied, kubectl's message and
the rest of ``Observation`` after the registry ``host:port`` is normalised; a difference fails
unless tests/differential/known_differences.yaml lists it. Kyverno's TUF client is one per process
and keeps the first mirror named (docs/keyless.md), so the native Kyverno is restarted before and
after, as tests/lab/test_keyless_engines.py does.

    tools/netns-run .venv/bin/python -m pytest tests/differential/test_keyless.py -q
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from labkit import keyless_policies
from labkit.keyless_policies import Identity
from labkit.lab import AdmissionResult, Lab
from labkit.lab.native import NativeLab
from labkit.lab.sigstore import LocalSigstore
from labkit.lab.state import LabHome
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from tests.differential.compare import Known, Table, Verdict, compare, observation
from tests.interop.cosign import sign_keyless
from tests.interop.test_sign_cosign import push_image

pytestmark = pytest.mark.interop  # real cosign signs; the real engines decide

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "differential-keyless.md"
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
# case → the policy set that checks it (its own repositories): "" is the exact identity
POLICY_SETS = {"lookalike-issuer": "-lookalike", "regexp-alice": "-regexp", "regexp-bob": "-regexp"}
NAMESPACES = {"kyverno-cpol": "keyless-diff", "kyverno-ivp": "keyless-diff", "policy-controller": "keyless-diff-pc"}
KNOWN = Known.load()
_TABLE = Table("native (keyless)")


def _repository(engine: str, case: str) -> str:
    return f"keyless-diff-{engine}{POLICY_SETS.get(case, '')}/{case}"




def _policies(sigstore: LocalSigstore, pod_host: str) -> list[dict[str, Any]]:
    issuer = sigstore.urls.oidc_issuer
    lookalike = issuer.replace("127.0.0.1", "localhost")  # the same issuer, under another name
    out: list[dict[str, Any]] = []
    for prefix, identities, suffix in (
            ("kd", [Identity(ALICE, issuer)], ""),
            ("kd-lookalike", [Identity(ALICE, lookalike)], "-lookalike"),
            ("kd-regexp", [Identity(subject_regexp="^alice@example[.]com$", issuer=issuer)], "-regexp")):
        out += [keyless_policies.kyverno_cluster_policy(f"{prefix}-cpol", sigstore, identities,
                                                        [f"{pod_host}/keyless-diff-kyverno-cpol{suffix}/*"]),
                keyless_policies.kyverno_image_validating_policy(
                    f"{prefix}-ivp", sigstore, identities, [f"{pod_host}/keyless-diff-kyverno-ivp{suffix}/*"]),
                keyless_policies.trust_root(f"{prefix}-lab", sigstore),
                keyless_policies.cluster_image_policy(f"{prefix}-cip", sigstore, identities,
                                                      [f"{pod_host}/keyless-diff-policy-controller{suffix}/**"],
                                                      f"{prefix}-lab")]
    return out


@dataclass
class Side:
    lab: Lab
    images: dict[tuple[str, str], str] = field(default_factory=dict)
    results: dict[tuple[str, str], AdmissionResult] = field(default_factory=dict)

    def admit(self, engine: str, case: str) -> AdmissionResult:
        if (engine, case) not in self.results:
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": f"kd-{engine}-{case}", "namespace": NAMESPACES[engine]},
                   "spec": {"containers": [{"name": "app", "image": self.images[engine, case]}]}}
            self.results[engine, case] = self.lab.create(pod)
        return self.results[engine, case]


def _prepare(lab: Lab, sigstore: LocalSigstore, workdir: Path) -> tuple[Side, list[dict[str, Any]]]:
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
    policies = _policies(sigstore, registry.pod_host)
    lab.label_namespace(NAMESPACES["kyverno-cpol"], {})
    lab.label_namespace(NAMESPACES["policy-controller"], {"policy.sigstore.dev/include": "true"})
    applied = lab.apply(yaml.safe_dump_all(policies))
    assert all(r.admitted for r in applied), [r.message for r in applied]
    return side, policies


@pytest.fixture(scope="module")
def sides(native_lab: Lab, local_sigstore: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Side, Side]]:
    sigstore = LocalSigstore.find(LabHome(local_sigstore))
    assert sigstore is not None
    workdir = tmp_path_factory.mktemp("keyless-diff-cosign")
    embedded = Lab.start("embedded", tmp_path_factory.mktemp("keyless-diff-embedded"))
    applied: list[tuple[Lab, list[dict[str, Any]]]] = []
    try:
        subject, policies = _prepare(embedded, sigstore, workdir)
        applied.append((embedded, policies))
        if isinstance(native_lab, NativeLab):
            native_lab.restart_kyverno()  # the IVP's mirror must be the first this Kyverno names
        reference, policies = _prepare(native_lab, sigstore, workdir)
        applied.append((native_lab, policies))
        yield subject, reference
    finally:
        for lab, policies in applied:
            for policy in reversed(policies):
                lab.delete(policy)
        embedded.stop()
        if isinstance(native_lab, NativeLab):
            native_lab.restart_kyverno()  # no later attestor may inherit the lab's mirror
        if _TABLE.verdicts:
            ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
            said = [f"- `{v.case}`: {v.subject.message!r}" for v in _TABLE.verdicts]
            ARTIFACT.write_text("# Keyless: the embedded lab against the real engines\n\n" + _TABLE.markdown()
                                + "\n### What the embedded lab said (normalised)\n\n" + "\n".join(said) + "\n")


def _hosts(*labs: Lab) -> tuple[str, ...]:
    return tuple(h for lab in labs for h in lab.served_registries())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("engine", ENGINES)
def test_keyless_agrees(sides: tuple[Side, Side], engine: str, case: str) -> None:
    """The same Pod, the same keyless policy, the same signatures: the embedded lab decides as
    the real engine does, in its words."""
    subject, reference = sides
    hosts = _hosts(subject.lab, reference.lab)
    verdict: Verdict = compare(f"keyless/{engine}/{case}",
                               observation(subject.admit(engine, case), hosts, KNOWN),
                               observation(reference.admit(engine, case), hosts, KNOWN), KNOWN)
    _TABLE.verdicts.append(verdict)
    assert verdict.status != "different", verdict.explain()
