"""The matrix and the comparison machinery, without any lab: size, coverage, stable ids, and
that a difference is found, excused only by a matching known difference, and reported."""

from __future__ import annotations

import fnmatch
from pathlib import Path

from tests.differential import matrix
from tests.differential.compare import COMPARED, Known, Observation, Table, compare, normalise, write_tables


def test_matrix_is_large_covers_every_dimension_and_has_stable_unique_ids() -> None:
    cases = matrix.cases()
    assert len(cases) >= 200
    assert [c.id for c in cases] == [c.id for c in matrix.cases()]  # generated the same way every time
    assert len({c.id for c in cases}) == len(cases)
    assert len({c.name for c in cases}) == len(cases)  # both labs keep every admitted object
    assert all(matrix.ID_PATTERN.fullmatch(c.id) for c in cases), [c.id for c in cases
                                                                   if not matrix.ID_PATTERN.fullmatch(c.id)]
    covered = dict(matrix.dimensions(cases))
    assert covered["engine"] == set(matrix.ENGINES)
    assert covered["image"] == set(matrix.IMAGES)
    assert covered["ref"] == set(matrix.REFS)
    assert covered["namespace"] == set(matrix.NAMESPACES)
    assert covered["workload"] == set(matrix.WORKLOADS)
    assert covered["operation"] == set(matrix.OPERATIONS)
    assert covered["action"] >= {"Enforce", "Audit", "Deny", "enforce", "warn"}
    assert covered["failurePolicy"] == {"Fail", "Ignore"}
    assert covered["variant"] == set(matrix.VARIANT_IMAGES)
    assert all(c.before is not None for c in cases if c.operation == "UPDATE")


def test_groups_are_applied_once_each() -> None:
    """Cases of a group are contiguous, so one policy set is applied once per lab."""
    order = [c.group for c in matrix.cases()]
    assert len(set(order)) == len([g for i, g in enumerate(order) if i == 0 or order[i - 1] != g])


def test_every_known_difference_is_well_formed_and_names_matrix_cases() -> None:
    known = Known.load()
    ids = [c.id for c in matrix.cases()] + [f"{g.id}/policy/apply" for g in matrix.policy_sets()]
    for d in known.differences:
        assert set(d.fields) <= set(COMPARED) and d.reason and d.source
        assert any(fnmatch.fnmatchcase(i, d.cases) for i in ids), f"{d.cases} matches no case"


def test_normalise_replaces_hosts_and_environment_text() -> None:
    known = Known.load()
    text = ("failed to verify image 127.0.0.1:5001/diff/a:v1: .attestors[0].entries[0].keys: failed to load "
            "Rekor public keys: updating local metadata and targets: error updating to TUF remote mirror: "
            "dial udp 10.0.0.1:53: connect: network is unreachable'")
    assert normalise(text, ["127.0.0.1:5001"], known) == (
        "failed to verify image {registry}/diff/a:v1: .attestors[0].entries[0].keys: failed to load "
        "Rekor public keys: {environment}'")


def test_normalise_puts_policy_controller_authority_errors_in_one_order() -> None:
    """The native lab's policy-controller printed, for cip-keys-ab-enforce-fail/pod/unsigned@digest,
    authority b's error before a's in one run and after it in another (goroutine order,
    ValidatePolicy in pkg/webhook/validator.go:497-550 at v0.13.1); both normalise to a, b."""
    known = Known.load()
    image = "127.0.0.1:5001/diff/unsigned@sha256:" + "60" * 32

    def text(first: str, second: str) -> str:
        return ('Error from server (BadRequest): admission webhook "policy.sigstore.dev" denied the request: '
                "validation failed: failed policy: diff-21: spec.containers[0].image\n" + image + "".join(
                    f" signature key validation failed for authority {n} for {image}: no signatures found"
                    for n in (first, second)))

    expected = normalise(text("a", "b"), ["127.0.0.1:5001"], known)
    assert "authority a for {registry}" in expected and expected.index("authority a") < expected.index("authority b")
    assert normalise(text("b", "a"), ["127.0.0.1:5001"], known) == expected


def test_compare_finds_each_field_and_excuses_only_what_is_listed(tmp_path: Path) -> None:
    base = Observation(True, "pod/x created", images=("{registry}/diff/a@sha256:1",))
    assert compare("c", base, base, None).status == "equal"
    for name, value in (("admitted", False), ("message", "pod/y created"), ("warnings", ("w",)),
                        ("images", ()), ("before", "pod/x created"), ("report", ("p/r: fail",))):
        other = Observation(**{**base.__dict__, name: value})
        verdict = compare("c", base, other, None)
        assert verdict.status == "different" and verdict.differing == (name,)
    (tmp_path / "k.yaml").write_text(
        "differences:\n  - cases: 'cp-*/x'\n    fields: [admitted, message]\n    reason: r\n    source: s\n")
    known = Known.load(tmp_path / "k.yaml")
    denied = Observation(False, "Error from server: no", images=base.images)
    assert compare("cp-1/x", base, denied, known).status == "known"
    assert compare("ivp-1/x", base, denied, known).status == "different"  # another case
    warned = Observation(False, "Error from server: no", warnings=("w",), images=base.images)
    assert compare("cp-1/x", base, warned, known).status == "different"  # a field not listed
    table = Table("test", [compare("cp-1/x", base, denied, known), compare("a/b", base, base, None)])
    write_tables(tmp_path / "t.md", [table])
    text = (tmp_path / "t.md").read_text()
    assert "**1 of 2** cases equal; 1 known differences; 0 different" in text
    assert "| `cp-1/x` | admitted | denied | known: admitted, message |" in text
