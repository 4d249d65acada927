"""The embedded lab held to a reference lab, case by case (tests/differential/matrix.py).

The reference is the native lab (the real kube-apiserver, Kyverno and policy-controller, from
the session fixture ``native_lab`` in tests/conftest.py) or, as a check of the suite itself, a
second embedded lab: the embedded lab against itself must agree on every case with nothing
excused, or the suite's own comparison is unstable. Each group's policy is applied once on each
lab and its workloads reviewed under it; each case then compares admitted/denied, kubectl's
message, warnings, mutated images, the create before an update and (Audit) the PolicyReport
results. Differences fail unless tests/differential/known_differences.yaml gives their upstream
reason. The agreement table goes to test-artifacts/differential-agreement.md.

Oracles: the real engines (native); anchor decisions below (from the engines' documented
behaviour and tests/scenario_expectations.yaml) keep both labs from agreeing by being equally
broken.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from labkit.lab import Lab
from tests.differential import matrix, setup
from tests.differential.compare import Known, Table, Verdict, compare, write_tables
from tests.differential.runner import GroupResult, LabRunner

ARTIFACT = Path(__file__).resolve().parents[2] / "test-artifacts" / "differential-agreement.md"
REFERENCES = ("native", "embedded")
CASES = matrix.cases()
GROUPS = {g.id: g for g in matrix.policy_sets()}
BY_GROUP = matrix.cases_by_group()
KNOWN = Known.load()
_TABLES: dict[str, Table] = {}

# Decisions any faithful lab makes (signed by the policy's key, unsigned, the other key).
ANCHORS = {
    "cp-key-a-enforce-fail/pod/signed-a@digest/plain/create": True,
    "cp-key-a-enforce-fail/pod/signed-a:tag/plain/create": True,
    "cp-key-a-enforce-fail/pod/unsigned:tag/plain/create": False,
    "cp-key-a-enforce-fail/pod/signed-b@digest/plain/create": False,
    "cp-key-a-audit-fail/pod/unsigned:tag/plain/create": True,
    "ivp-key-a-deny-fail/pod/signed-a@digest/plain/create": True,
    "ivp-key-a-deny-fail/pod/unsigned@digest/plain/create": False,
    "cip-key-a-enforce-fail/pod/signed-a:tag/include/create": True,
    "cip-key-a-enforce-fail/pod/unsigned@digest/include/create": False,
    "cip-key-a-enforce-fail/pod/unsigned:tag/plain/create": True,
    "cip-key-a-warn-fail/pod/unsigned@digest/include/create": True,
}


@dataclass
class Run:
    """The embedded lab (subject) and one reference lab, run group by group on demand."""

    reference_name: str
    subject: LabRunner
    reference: LabRunner
    known: Known | None  # None: nothing is excused (the embedded lab against itself)
    groups: dict[str, tuple[GroupResult, GroupResult]] = field(default_factory=dict)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    table: Table = field(default_factory=lambda: Table(""))

    failed: dict[str, Exception] = field(default_factory=dict)

    def group(self, group_id: str) -> tuple[GroupResult, GroupResult]:
        # A group that broke is not run again for each of its cases (its objects now exist).
        if group_id in self.failed:
            raise RuntimeError(f"group {group_id} could not be run: {self.failed[group_id]!r}")
        if group_id not in self.groups:
            group, cases = GROUPS[group_id], BY_GROUP[group_id]
            try:
                self.groups[group_id] = (self.subject.run_group(group, cases),
                                         self.reference.run_group(group, cases))
            except Exception as exc:
                self.failed[group_id] = exc
                raise
        return self.groups[group_id]

    def verdict(self, case: matrix.Case) -> Verdict:
        if case.id not in self.verdicts:
            mine, theirs = self.group(case.group)
            self.verdicts[case.id] = compare(case.id, mine.cases[case.id], theirs.cases[case.id], self.known)
            self.table.verdicts.append(self.verdicts[case.id])
        return self.verdicts[case.id]


@pytest.fixture(scope="module")
def ring(tmp_path_factory: pytest.TempPathFactory) -> setup.KeyRing:
    return setup.make_keys(tmp_path_factory.mktemp("diff-keys"))


@pytest.fixture(scope="module", params=REFERENCES)
def run(request: pytest.FixtureRequest, ring: setup.KeyRing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    started: list[Lab] = []
    if request.param == "native":
        try:
            reference: Lab = request.getfixturevalue("native_lab")
        except pytest.FixtureLookupError:
            pytest.skip("tests/conftest.py has no native_lab fixture yet: the embedded lab is compared with "
                        "itself only (run the native reference once the fixture exists)")
    else:
        reference = Lab.start("embedded", tmp_path_factory.mktemp("diff-reference"))
        started.append(reference)
    subject = Lab.start("embedded", tmp_path_factory.mktemp("diff-subject"))
    started.append(subject)
    # A shared reference may hold other tests' policies, which would decide our workloads too:
    # they are set aside for the run and given back after it.
    foreign = reference.policies() if reference not in started else []
    for doc in foreign:
        reference.delete(doc)
    runners = [LabRunner(lab, ring, KNOWN) for lab in (subject, reference)]
    try:
        for runner in runners:
            runner.prepare()
        the_run = Run(request.param, *runners, KNOWN if request.param == "native" else None,
                      table=Table(f"{request.param} lab" + ("" if request.param == "native" else " (itself)")))
        begun = time.monotonic()
        yield the_run
        _TABLES[request.param] = the_run.table
        seconds = {"embedded": sum(g[0].seconds for g in the_run.groups.values()),
                   request.param: sum(g[1].seconds for g in the_run.groups.values())}
        the_run.table.reference += (f" — {len(the_run.groups)} groups; embedded {seconds['embedded']:.1f} s, "
                                    f"reference {seconds[request.param]:.1f} s, wall {time.monotonic() - begun:.1f} s")
        write_tables(ARTIFACT, [_TABLES[r] for r in REFERENCES if r in _TABLES])
    finally:
        if reference not in started:
            if runners[1].previous is not None:
                reference.delete(runners[1].previous)  # the last group's policy
            for doc in foreign:
                reference.apply(doc)
        for lab in started:
            lab.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case(run: Run, case: matrix.Case) -> None:
    verdict = run.verdict(case)
    assert verdict.status != "different", verdict.explain()


@pytest.mark.parametrize("group_id", list(GROUPS))
def test_policy_apply(run: Run, group_id: str) -> None:
    """kubectl apply of each group's policy: both labs accept it, with the same lines."""
    mine, theirs = run.group(group_id)
    assert mine.applied.admitted, mine.applied.message
    verdict = compare(f"{group_id}/policy/apply", mine.applied, theirs.applied, run.known)
    assert verdict.status != "different", verdict.explain()


@pytest.mark.parametrize("case_id", list(ANCHORS))
def test_anchor_decisions(run: Run, case_id: str) -> None:
    """Both labs decide the anchor cases as the engines document: agreement is not enough."""
    case = next(c for c in CASES if c.id == case_id)
    mine, theirs = run.group(case.group)
    assert mine.cases[case_id].admitted is ANCHORS[case_id], mine.cases[case_id].message
    assert theirs.cases[case_id].admitted is ANCHORS[case_id], theirs.cases[case_id].message


def test_known_differences_are_still_needed(run: Run) -> None:
    """Every excuse in known_differences.yaml matches a case that still differs (native only)."""
    if run.known is None:
        pytest.skip("the embedded lab against itself excuses nothing")
    verdicts = [run.verdict(c) for c in CASES]
    used = {id(v.known) for v in verdicts if v.known is not None}
    stale = [d.cases for d in run.known.differences if id(d) not in used]
    assert not stale, f"known_differences.yaml entries no case needs any more: {stale}"
