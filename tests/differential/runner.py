"""Runs the matrix on one lab, group by group: apply the group's policy once (removing the
previous group's), review every workload of the group, then read the Audit reports once."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labkit.lab import Lab
from tests.differential import setup
from tests.differential.compare import Known, Observation, normalise, observation, report_rows
from tests.differential.matrix import NAMESPACES, Case, PolicySet
from tests.differential.policies import policy

REPORT_WAIT = 45.0  # seconds: the native reports controller is asynchronous
REPORT_POLL = 2.0


@dataclass(frozen=True)
class GroupResult:
    applied: Observation  # kubectl apply of the group's policy
    cases: Mapping[str, Observation]
    seconds: float


@dataclass
class LabRunner:
    """One lab's side of the run."""

    lab: Lab
    ring: setup.KeyRing
    known: Known
    digests: dict[str, str] = field(default_factory=dict)
    previous: dict[str, Any] | None = None

    def prepare(self) -> None:
        self.digests = setup.push_images(self.lab, self.ring)
        setup.prepare_namespaces(self.lab)

    @property
    def hosts(self) -> tuple[str, ...]:
        return (self.lab.registry.host, self.lab.registry.pod_host)

    def run_group(self, group: PolicySet, cases: list[Case]) -> GroupResult:
        start = time.monotonic()
        if self.previous is not None:
            self.lab.delete(self.previous)
        self.previous = policy(group, self.lab.registry.pod_host, self.ring.public())  # lab.apply prepares it
        [applied] = self.lab.apply(self.previous)
        results: dict[str, Any] = {}
        befores: dict[str, str] = {}
        for case in cases:
            namespace = NAMESPACES[case.namespace]
            if case.before is not None:
                before = self.lab.create(self._manifest(case, case.before, namespace, group))
                befores[case.id] = before.message
                if group.audit:
                    # Kyverno's reports controller keeps one result per policy (and rule) and
                    # object: a later one replaces it only if its timestamp is a later whole
                    # second (MergeReports, kyverno@v1.19.1 pkg/controllers/report/aggregate/
                    # utils.go:41-64). An update in the create's second would leave the report to
                    # the clock; start it in the next one, on both labs.
                    time.sleep(1.0 - time.time() % 1.0)
                results[case.id] = self.lab.update(self._manifest(case, case.workload, namespace, group))
            else:
                results[case.id] = self.lab.create(self._manifest(case, case.workload, namespace, group))
        reports = self._reports(group, cases, results) if group.audit else {}
        observed = {c.id: observation(results[c.id], self.hosts, self.known, before=befores.get(c.id, ""),
                                      report=reports.get(c.id, ())) for c in cases}
        return GroupResult(observation(applied, self.hosts, self.known), observed, time.monotonic() - start)

    def _manifest(self, case: Case, w: Any, namespace: str, group: PolicySet) -> dict[str, Any]:
        image = setup.image_ref(self.lab.registry.pod_host, self.digests, w)
        return setup.manifest(case.name, namespace, w, image, forged_for=f"diff-{group.index:02d}")

    def _reports(self, group: PolicySet, cases: list[Case], results: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
        """Report rows per case, read once after the group: polled (bounded) until every admitted
        object has a result, since a cluster's reports controller writes them asynchronously."""
        name = f"diff-{group.index:02d}"
        wanted = [c for c in cases if results[c.id].admitted]
        deadline = time.monotonic() + (0.0 if self.lab.backend == "embedded" else REPORT_WAIT)
        while True:
            reports = self.lab.reports()
            rows = {c.id: report_rows(reports, NAMESPACES[c.namespace], c.kind, c.name, name) for c in cases}
            if all(rows[c.id] for c in wanted) or time.monotonic() >= deadline:
                return {cid: tuple(normalise(r, self.hosts, self.known) for r in rs) for cid, rs in rows.items()}
            time.sleep(REPORT_POLL)
