"""What is compared, how it is normalised, the known differences, and the agreement table."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

KNOWN_FILE = Path(__file__).with_name("known_differences.yaml")
REGISTRY = "{registry}"
COMPARED = ("admitted", "message", "warnings", "images", "before", "report")


@dataclass(frozen=True)
class Observation:
    """One case on one lab, normalised: what kubectl said and what the cluster kept."""

    admitted: bool
    message: str
    warnings: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    before: str = ""  # UPDATE: kubectl's line for the object created first
    report: tuple[str, ...] = ()  # Audit groups: "policy/rule: result" rows for this object

    def decision(self) -> str:
        word = "admitted" if self.admitted else "denied"
        return f"{word} (warned)" if self.warnings else word


@dataclass(frozen=True)
class Substitution:
    pattern: re.Pattern[str]
    replacement: str


@dataclass(frozen=True)
class KnownDifference:
    cases: str  # fnmatch pattern over case ids
    fields: tuple[str, ...]
    reason: str
    source: str

    def covers(self, case_id: str, differing: Iterable[str]) -> bool:
        return fnmatch.fnmatchcase(case_id, self.cases) and set(differing) <= set(self.fields)


@dataclass(frozen=True)
class Known:
    environment: tuple[Substitution, ...]
    differences: tuple[KnownDifference, ...]

    @classmethod
    def load(cls, path: Path = KNOWN_FILE) -> Known:
        doc = yaml.safe_load(path.read_text()) or {}
        env = tuple(Substitution(re.compile(e["pattern"]), e["replacement"]) for e in doc.get("environment") or [])
        diffs = []
        for d in doc.get("differences") or []:
            unknown = set(d["fields"]) - set(COMPARED)
            if unknown or not d.get("reason") or not d.get("source"):
                raise ValueError(f"{path}: entry {d.get('cases')!r} needs fields among {COMPARED}, "
                                 f"a reason and an upstream source (got {sorted(d)})")
            diffs.append(KnownDifference(d["cases"], tuple(d["fields"]), d["reason"], d["source"]))
        return cls(env, tuple(diffs))

    def match(self, case_id: str, differing: Sequence[str]) -> KnownDifference | None:
        return next((d for d in self.differences if d.covers(case_id, differing)), None)


def normalise(text: str, hosts: Iterable[str], known: Known) -> str:
    for host in sorted(set(hosts), key=len, reverse=True):
        text = text.replace(host, REGISTRY)
    for sub in known.environment:
        text = sub.pattern.sub(sub.replacement, text)
    return text


def observation(result: Any, hosts: Iterable[str], known: Known, *, before: str = "",
                report: Sequence[str] = ()) -> Observation:
    """An ``AdmissionResult`` (any lab) as an Observation."""
    hosts = tuple(hosts)
    return Observation(bool(result.admitted), normalise(result.message, hosts, known),
                       tuple(normalise(w, hosts, known) for w in result.warnings),
                       # images after mutation exist only for an admitted object: kubectl shows none on a denial
                       tuple(normalise(i, hosts, known) for i in result.images) if result.admitted else (),
                       normalise(before, hosts, known), tuple(report))


def report_rows(reports: Sequence[Mapping[str, Any]], namespace: str, kind: str, name: str,
                policy: str) -> tuple[str, ...]:
    """The results one PolicyReport holds for one object under one policy, sorted."""
    rows = []
    for report in reports:
        scope = report.get("scope") or {}
        if (report.get("metadata") or {}).get("namespace") != namespace:
            continue
        for r in report.get("results") or []:
            resources = r.get("resources") or [scope]
            if r.get("policy") != policy or not any(
                    res.get("kind") == kind and res.get("name") == name for res in resources):
                continue
            rows.append(f"{r.get('policy')}/{r.get('rule')}: {r.get('result')}")
    return tuple(sorted(rows))


@dataclass(frozen=True)
class Verdict:
    case: str
    subject: Observation
    reference: Observation
    differing: tuple[str, ...]
    known: KnownDifference | None = None

    @property
    def status(self) -> str:
        return "equal" if not self.differing else "known" if self.known else "different"

    def explain(self) -> str:
        lines = [f"{self.case}: {', '.join(self.differing)} differ"]
        for name in self.differing:
            lines += [f"  {name}:", f"    embedded:  {getattr(self.subject, name)!r}",
                      f"    reference: {getattr(self.reference, name)!r}"]
        return "\n".join(lines)


def compare(case: str, subject: Observation, reference: Observation, known: Known | None) -> Verdict:
    differing = tuple(f.name for f in fields(Observation) if getattr(subject, f.name) != getattr(reference, f.name))
    match = known.match(case, differing) if known is not None and differing else None
    return Verdict(case, subject, reference, differing, match)


@dataclass
class Table:
    """The agreement table of one run (embedded lab against one reference lab)."""

    reference: str
    verdicts: list[Verdict] = field(default_factory=list)

    def markdown(self) -> str:
        n = len(self.verdicts)
        equal = sum(v.status == "equal" for v in self.verdicts)
        known = sum(v.status == "known" for v in self.verdicts)
        lines = [f"## embedded vs {self.reference}", "",
                 f"Agreement: **{equal} of {n}** cases equal; {known} known differences; "
                 f"{n - equal - known} different.", "",
                 "| case | embedded | reference | verdict |", "|---|---|---|---|"]
        for v in self.verdicts:
            verdict = v.status if v.status == "equal" else f"{v.status}: {', '.join(v.differing)}"
            lines.append(f"| `{v.case}` | {v.subject.decision()} | {v.reference.decision()} | {verdict} |")
        details = [v for v in self.verdicts if v.status != "equal"]
        if details:
            lines += ["", "### What differs", ""]
            for v in details:
                why = f" (known: {v.known.reason}; {v.known.source})" if v.known else ""
                lines += ["```", v.explain() + why, "```"]
        return "\n".join(lines) + "\n"


def write_tables(path: Path, tables: Sequence[Table]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ("# Differential agreement\n\nEach case of tests/differential/matrix.py on the embedded lab and on a "
            "reference lab: admitted/denied, kubectl's message, warnings, mutated images, the create before an "
            "update, and PolicyReport results, after the registry host and environment-dependent text are "
            "replaced (tests/differential/known_differences.yaml).\n\n")
    path.write_text(head + "\n".join(t.markdown() for t in tables))
