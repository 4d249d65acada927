"""PolicyReports (``wgpolicyk8s.io/v1alpha2``) for Kyverno policies in Audit mode.

An Audit rule never blocks; Kyverno records its outcome in a PolicyReport in the resource's
namespace instead (one report per resource, named by the resource's uid, with a ``scope``
naming it; ``pkg/controllers/report``), results carrying ``source: kyverno``, ``policy``,
``rule``, ``result`` and ``message``. The webhook keeps the latest report per resource in
memory and serves them as a ``PolicyReportList`` at ``GET /reports``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit.policy.trace import ImageTrace

API_VERSION = "wgpolicyk8s.io/v1alpha2"
_RESULTS = ("pass", "fail", "warn", "error", "skip")


def _resource_ref(resource: Mapping[str, Any]) -> dict[str, str]:
    meta = resource.get("metadata") or {}
    ref = {"apiVersion": str(resource.get("apiVersion", "")), "kind": str(resource.get("kind", "")),
           "name": str(meta.get("name", "")), "namespace": str(meta.get("namespace", ""))}
    if meta.get("uid"):
        ref["uid"] = str(meta["uid"])
    return ref


@dataclass
class ReportStore:
    _reports: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, resource: Mapping[str, Any], trace: Sequence[ImageTrace], audit_policies: set[str],
               *, uid: str) -> None:
        """Keep the Audit results in ``trace`` for ``resource`` (``uid``: the request's, when the
        object has none yet, as on CREATE)."""
        results = [t for t in trace if t.policy in audit_policies and t.status in _RESULTS]
        if not results:
            return
        ref = _resource_ref(resource)
        name = ref.get("uid") or uid
        now = time.time()
        report = {
            "apiVersion": API_VERSION,
            "kind": "PolicyReport",
            "metadata": {"name": name, "namespace": ref["namespace"],
                         "labels": {"app.kubernetes.io/managed-by": "labkit"}},
            "scope": ref,
            "summary": {r: sum(t.status == r for t in results) for r in _RESULTS},
            "results": [
                {
                    "source": t.engine.value,
                    "policy": t.policy,
                    "rule": t.rule,
                    "result": t.status,
                    "message": t.message or _default_message(t),
                    "scored": True,
                    "resources": [ref],
                    "properties": {"image": t.image, "path": t.path},
                    "timestamp": {"seconds": int(now), "nanos": int((now % 1) * 1e9)},
                }
                for t in results
            ],
        }
        with self._lock:
            self._reports[(ref["namespace"], name)] = report

    def merge(self, resource: Mapping[str, Any], trace: Sequence[ImageTrace], *, uid: str,
              source: str = "KyvernoImageValidatingPolicy", now: float | None = None) -> None:
        """Add ImageValidatingPolicy results (``trace``: one per policy) to ``resource``'s report
        as Kyverno's reports controller aggregates them (``MergeReports``,
        pkg/controllers/report/aggregate/utils.go:57-64): one result per source and policy; a
        result from a later second replaces it, one from the same second leaves it as it was."""
        if not trace:
            return
        ref = _resource_ref(resource)
        name = ref.get("uid") or uid
        now = time.time() if now is None else now
        with self._lock:
            report = self._reports.get((ref["namespace"], name)) or {
                "apiVersion": API_VERSION, "kind": "PolicyReport",
                "metadata": {"name": name, "namespace": ref["namespace"],
                             "labels": {"app.kubernetes.io/managed-by": "labkit"}},
                "scope": ref, "results": []}
            results = list(report["results"])
            for t in trace:
                if t.status not in _RESULTS:
                    continue
                new = {"source": source, "policy": t.policy, "rule": t.rule, "result": t.status,
                       # RulePass(…, "success") for a passing policy (engine.go evaluatePolicies)
                       "message": t.message or ("success" if t.status == "pass" else t.status),
                       "scored": True, "resources": [ref],
                       "properties": {"image": t.image, "path": t.path},
                       "timestamp": {"seconds": int(now), "nanos": int((now % 1) * 1e9)}}
                same = [i for i, r in enumerate(results)
                        if r.get("source") == source and r.get("policy") == t.policy]
                if not same:
                    results.append(new)
                elif results[same[0]]["timestamp"]["seconds"] < int(now):
                    results[same[0]] = new
            report = {**report, "results": results,
                      "summary": {r: sum(x["result"] == r for x in results) for r in _RESULTS}}
            self._reports[(ref["namespace"], name)] = report

    def list(self, namespace: str | None = None) -> dict[str, Any]:
        with self._lock:
            items = [r for (ns, _), r in sorted(self._reports.items()) if namespace in (None, ns)]
        return {"apiVersion": API_VERSION, "kind": "PolicyReportList", "items": items}


def _default_message(t: ImageTrace) -> str:
    return {"pass": "verified image signatures", "skip": "image skipped"}.get(t.status, t.status)


@dataclass(frozen=True)
class ReportRow:
    """One result of one PolicyReport, flattened: what ``kubectl get policyreports -o wide`` and
    Kyverno's Policy Reporter show per row."""

    namespace: str
    resource: str  # Kind/name
    policy: str
    rule: str
    result: str
    message: str


def report_rows(reports: Sequence[Mapping[str, Any]]) -> list[ReportRow]:
    """Rows of a ``PolicyReportList``'s items (embedded webhook or a cluster), in a stable order."""
    rows = []
    for report in reports:
        scope = report.get("scope") or {}
        resource = f"{scope.get('kind', '?')}/{scope.get('name', '?')}"
        namespace = str((report.get("metadata") or {}).get("namespace", ""))
        for r in report.get("results") or []:
            rows.append(ReportRow(namespace, resource, str(r.get("policy", "")), str(r.get("rule", "")),
                                  str(r.get("result", "")), str(r.get("message", ""))))
    return sorted(rows, key=lambda r: (r.namespace, r.resource, r.policy, r.rule))


def result_counts(reports: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per policy, how many results of each kind (pass, fail, warn, error, skip)."""
    counts: dict[str, dict[str, int]] = {}
    for row in report_rows(reports):
        per_policy = counts.setdefault(row.policy, dict.fromkeys(_RESULTS, 0))
        per_policy[row.result] = per_policy.get(row.result, 0) + 1
    return counts
