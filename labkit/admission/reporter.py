"""PolicyReports grouped as Policy Reporter (kyverno/policy-reporter, UI v2) presents them.

Policy Reporter reads every ``PolicyReport``/``ClusterPolicyReport`` (``wgpolicyk8s.io/v1alpha2``)
and openreports.io ``Report``/``ClusterReport`` into one table of results and shows it in views.
This module is the data behind labkit's copy of those views (rendered by
``labkit.widgets.policy_reporter``); it imports no widget. What each function follows, read in the
sources (github.com/kyverno/policy-reporter-ui at 78d6105: ``.vue`` and ``.ts`` paths below are
under its ``frontend/app/components/``, ``pages/`` under ``frontend/app/``, ``backend/`` at its
root; github.com/kyverno/policy-reporter at 4e5e05b8: the ``pkg/`` paths). Status names and
order: ``frontend/app/types/core.ts`` ``Status``; the UI's navigation names the views "Dashboard"
and "Policy Dashboard" (``frontend/app/layouts/default.vue``).

- **Dashboard** (:func:`dashboard`), per source, titled as ``utils.Title`` spells it ("kyverno" ->
  "Kyverno"): a pie of the source's results by status (``graph/CountDistribution.vue``), the bar
  chart "<Source> Results per Namespace" (``graph/CountPerNamespace.vue``; datasets in the backend's
  ``allStatus`` order pass, warn, fail, error, skip, namespaces sorted:
  ``backend/pkg/service/mapper.go`` ``MapNamespaceStatusCountsToChart``) and "<Source> Cluster Scoped
  Results", one count per status (``graph/SourceStatus.vue``, ``graph/ClusterResultCounts.vue``).
  A result is namespace scoped when its report has a namespace, cluster scoped when it has none
  (policy-reporter ``pkg/database/builder.go`` ``NamespaceScope``/``ClusterScope`` on
  ``resource_namespace``, which ``pkg/database/model.go`` ``MapPolicyReportFilter`` fills with the
  report's namespace). Each result counts once, for its first resource (``Subjects[0]``,
  ``pkg/openreports/result.go``), or the report's ``scope`` when it names none.
- **Policy Dashboard** (:func:`policies`): per source, per category, each policy with its counts by
  status (``pages/policies/index.vue``, ``policy/SourceGroup.vue``, ``policy/List.vue``,
  ``policy/Item.vue``); a result without a category is filed under "Other"
  (``pkg/report/result/reconditioner.go``, ``pkg/api/v2/views.go`` ``MapPolicies``).
- **Policy details** (:func:`policy_details`, ``pages/policies/[source]/[policy].vue``, titled
  "<Source>: <policy title>", the title ``utils.Title(policy)`` without a source plugin): the same
  pie and "Results per Namespace" chart for one policy (``policy/StatusCharts.vue``), "<policy>
  cluster scoped results", then "Namespace Scoped Results": one table per namespace with the
  columns APIVersion, Kind, Name, Rule, Severity, Status and the message in the expanded row
  (``policy/NamespaceSection.vue``, ``policy/Results.vue``, ``policy/ClusterResults.vue``).
- **Results** (:func:`filter_results`): the UI filters its result tables by namespace
  (``form/NamespaceAutocomplete.vue``), kind (``form/KindAutocomplete.vue``), status
  (``form/StatusSelect.vue``) and severity (``SeverityBtn.vue``); labkit gathers those filters
  over one list.

Status colours are the UI's light theme (``frontend/app/plugins/02.vuetify.ts``, ``status-*``), severities'
likewise (``severity-*``). :func:`text` renders every view as plain, sorted text with neither
timestamps nor UIDs, and loopback ports written ``127.0.0.1:PORT`` (the lab's registries listen
on a port of this machine; saved notebooks carry it so), for saved notebooks and their diff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("pass", "warn", "fail", "error", "skip")
"""The backend's ``allStatus`` order, in which the per-namespace chart stacks its datasets."""
STATUS_COLOURS = {"pass": "#43A047", "warn": "#FB8C00", "fail": "#EF5350", "error": "#950011", "skip": "#9E9E9E"}
SEVERITIES = ("unknown", "info", "low", "medium", "high", "critical")
SEVERITY_COLOURS = {"unknown": "#9E9E9E", "info": "#039BE5", "low": "#2194F3", "medium": "#FB8A00",
                    "high": "#D32F2F", "critical": "#FF1744"}
OTHER_CATEGORY = "Other"

Counts = dict[str, int]
"""How many results of each status, every key of :data:`STATUSES` present, in that order."""


def _counts(statuses: Iterable[str] = ()) -> Counts:
    counts = dict.fromkeys(STATUSES, 0)
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return counts


def title(name: str) -> str:
    """``utils.Title`` (Go ``cases.Title(language.English, cases.NoLower)``): each word's first
    letter upper-cased, the rest left as they are ("kyverno" -> "Kyverno")."""
    out, start = [], True
    for ch in name:
        out.append(ch.upper() if start else ch)
        start = not (ch.isalnum() or ch in "'’")
    return "".join(out)


@dataclass(frozen=True, order=True)
class Result:
    """One result of one report, as Policy Reporter stores it. ``namespace`` is the report's
    (empty: cluster scoped); the resource is the result's first, or the report's scope."""

    source: str
    namespace: str
    kind: str
    name: str
    policy: str
    rule: str
    status: str
    severity: str
    category: str
    api_version: str
    message: str

    @property
    def resource(self) -> str:
        return f"{self.kind}/{self.name}" if self.kind or self.name else "-"


def results(reports: Iterable[Mapping[str, Any]]) -> list[Result]:
    """Every result of ``reports`` (PolicyReport, ClusterPolicyReport, openreports Report and
    ClusterReport), sorted."""
    rows = []
    for report in reports:
        namespace = str((report.get("metadata") or {}).get("namespace") or "")
        scope = report.get("scope") or {}
        for r in report.get("results") or []:
            subjects = r.get("resources") or r.get("subjects") or []
            resource = subjects[0] if subjects else scope
            rows.append(Result(
                source=str(r.get("source") or report.get("source") or ""),
                namespace=namespace,
                kind=str(resource.get("kind") or ""),
                name=str(resource.get("name") or ""),
                policy=str(r.get("policy") or ""),
                rule=str(r.get("rule") or ""),
                status=str(r.get("result") or ""),
                severity=str(r.get("severity") or ""),
                category=str(r.get("category") or "") or OTHER_CATEGORY,
                api_version=str(resource.get("apiVersion") or ""),
                message=str(r.get("message") or r.get("description") or ""),
            ))
    return sorted(rows)


Reports = Iterable[Mapping[str, Any]] | Iterable[Result]
"""What every view takes: reports as ``lab.reports()`` returns them, or :func:`results` already read."""


def _as_results(items: Reports) -> list[Result]:
    listed: list[Mapping[str, Any] | Result] = list(items)
    rows = [i for i in listed if isinstance(i, Result)]
    return sorted([*rows, *results(i for i in listed if not isinstance(i, Result))])


def _per_namespace(rows: Iterable[Result]) -> dict[str, Counts]:
    grouped: dict[str, list[str]] = {}
    for r in rows:
        if r.namespace:
            grouped.setdefault(r.namespace, []).append(r.status)
    return {ns: _counts(grouped[ns]) for ns in sorted(grouped)}


# --- Dashboard -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceDashboard:
    """One source on the Dashboard: its results by status (the pie), "Results per Namespace"
    (namespace -> counts, sorted) and "Cluster Scoped Results"."""

    source: str
    title: str
    total: Counts
    namespaces: dict[str, Counts]
    cluster: Counts

    @property
    def count(self) -> int:
        return sum(self.total.values())


@dataclass(frozen=True)
class Dashboard:
    sources: tuple[SourceDashboard, ...]
    total: Counts = field(default_factory=_counts)

    @property
    def count(self) -> int:
        return sum(self.total.values())


def dashboard(reports: Reports) -> Dashboard:
    rows = _as_results(reports)
    sources = []
    for source in sorted({r.source for r in rows}, key=lambda s: (title(s), s)):
        mine = [r for r in rows if r.source == source]
        sources.append(SourceDashboard(source, title(source), _counts(r.status for r in mine), _per_namespace(mine),
                                       _counts(r.status for r in mine if not r.namespace)))
    return Dashboard(tuple(sources), _counts(r.status for r in rows))


# --- Policy Dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyItem:
    """One policy in the Policy Dashboard's list: its counts by status, and its severity (the
    first result's, as ``MapPolicies`` keeps it; empty when its results carry none)."""

    source: str
    category: str
    name: str
    severity: str
    counts: Counts


@dataclass(frozen=True)
class PolicySource:
    source: str
    title: str
    categories: dict[str, tuple[PolicyItem, ...]]  # category -> its policies, both sorted


def policies(reports: Reports) -> tuple[PolicySource, ...]:
    rows = _as_results(reports)
    out = []
    for source in sorted({r.source for r in rows}, key=lambda s: (title(s), s)):
        mine = [r for r in rows if r.source == source]
        categories: dict[str, tuple[PolicyItem, ...]] = {}
        for category in sorted({r.category for r in mine}):
            items = []
            for policy in sorted({r.policy for r in mine if r.category == category}):
                of = [r for r in mine if r.category == category and r.policy == policy]
                items.append(PolicyItem(source, category, policy, next((r.severity for r in of if r.severity), ""),
                                        _counts(r.status for r in of)))
            categories[category] = tuple(items)
        out.append(PolicySource(source, title(source), categories))
    return tuple(out)


# --- Policy details ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyDetails:
    """One policy's page: its results by status, "Results per Namespace", its cluster scoped
    counts, and its results per namespace ("" holds the cluster scoped ones), sorted."""

    source: str
    policy: str
    title: str
    total: Counts
    namespaces: dict[str, Counts]
    cluster: Counts
    results: dict[str, tuple[Result, ...]]


def policy_details(reports: Reports, policy: str,
                   source: str | None = None) -> PolicyDetails:
    """``policy``'s page (of ``source``; without it, of the first source, by title, that has it)."""
    rows = [r for r in _as_results(reports) if r.policy == policy]
    if source is None:
        source = min((r.source for r in rows), key=lambda s: (title(s), s), default="")
    rows = [r for r in rows if r.source == source]
    by_namespace: dict[str, tuple[Result, ...]] = {}
    for ns in sorted({r.namespace for r in rows}):
        by_namespace[ns] = tuple(sorted((r for r in rows if r.namespace == ns),
                                        key=lambda r: (r.kind, r.name, r.rule, r.status, r.message)))
    return PolicyDetails(source, policy, title(policy), _counts(r.status for r in rows), _per_namespace(rows),
                         _counts(r.status for r in rows if not r.namespace), by_namespace)


# --- Results, filtered ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Filter:
    """Keep a result when it matches every non-empty criterion (any of its values)."""

    namespaces: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    policies: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    def __call__(self, r: Result) -> bool:
        wanted: Sequence[tuple[tuple[str, ...], str]] = (
            (self.namespaces, r.namespace), (self.kinds, r.kind), (self.statuses, r.status),
            (self.severities, r.severity), (self.sources, r.source), (self.policies, r.policy),
            (self.categories, r.category))
        return all(not values or value in values for values, value in wanted)


def filter_results(reports: Reports, selection: Filter = Filter()) -> list[Result]:
    return [r for r in _as_results(reports) if selection(r)]


@dataclass(frozen=True)
class FilterOptions:
    """The values each filter can take in ``reports`` (what the UI's selects offer), sorted;
    statuses and severities in the UI's order."""

    namespaces: tuple[str, ...]
    kinds: tuple[str, ...]
    statuses: tuple[str, ...]
    severities: tuple[str, ...]
    sources: tuple[str, ...]
    policies: tuple[str, ...]


def filter_options(reports: Reports) -> FilterOptions:
    rows = _as_results(reports)

    def ordered(values: set[str], order: Sequence[str]) -> tuple[str, ...]:
        return tuple(sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v)))

    return FilterOptions(
        namespaces=tuple(sorted({r.namespace for r in rows if r.namespace})),
        kinds=tuple(sorted({r.kind for r in rows if r.kind})),
        statuses=ordered({r.status for r in rows}, STATUSES),
        severities=ordered({r.severity for r in rows if r.severity}, SEVERITIES),
        sources=tuple(sorted({r.source for r in rows})),
        policies=tuple(sorted({r.policy for r in rows})))


# --- plain text ----------------------------------------------------------------------------------


_LOOPBACK_PORT = re.compile(r"\b(127\.0\.0\.1|localhost):\d{2,5}\b")


def _unported(message: str) -> str:
    return _LOOPBACK_PORT.sub(r"\1:PORT", message)


def counts_text(counts: Mapping[str, int]) -> str:
    """``pass 1  warn 0  fail 1  error 0  skip 0``."""
    return "  ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES)


def _source_name(source: str) -> str:
    return title(source) or "(no source)"


def dashboard_text(view: Dashboard) -> str:
    """The Dashboard per source: the pie's title ("2 Kyverno Results") with its counts, "Kyverno
    Results per Namespace" one line per namespace, "Kyverno Cluster Scoped Results"."""
    lines = [f"Dashboard: {view.count} results  ({counts_text(view.total)})"]
    if not view.sources:
        lines.append("  No results found")
    for s in view.sources:
        name = _source_name(s.source)
        lines += [f"  {name}", f"    {s.count} {name} Results  ({counts_text(s.total)})",
                  f"    {name} Results per Namespace"]
        width = max((len(ns) for ns in s.namespaces), default=0)
        lines += [f"      {ns:<{width}}  {counts_text(c)}" for ns, c in s.namespaces.items()] or ["      (none)"]
        lines.append(f"    {name} Cluster Scoped Results  ({counts_text(s.cluster)})")
    return "\n".join(lines)


def policies_text(view: Sequence[PolicySource]) -> str:
    lines = ["Policy Dashboard"]
    for s in view:
        lines.append(f"  {_source_name(s.source)}")
        for category, items in s.categories.items():
            lines.append(f"    {category}")
            width = max(len(i.name) for i in items)
            lines += [f"      {i.name:<{width}}  {counts_text(i.counts)}"
                      + (f"  severity {i.severity}" if i.severity else "") for i in items]
    if not view:
        lines.append("  No policies found")
    return "\n".join(lines)


def details_text(view: PolicyDetails) -> str:
    """A policy's page, titled "Kyverno: Workshop-Verify-Images": the pie, "<policy> Results per
    Namespace", "<policy> cluster scoped results" when it has any, then its results: "Cluster
    Scoped Results" and "Namespace Scoped Results" per namespace, each with its message."""
    name = _source_name(view.source)
    lines = [f"{name}: {view.title}", f"  {sum(view.total.values())} {name} Results  ({counts_text(view.total)})",
             f"  {view.title} Results per Namespace"]
    lines += [f"    {ns}  {counts_text(c)}" for ns, c in view.namespaces.items()] or ["    (none)"]
    if any(view.cluster.values()):
        lines.append(f"  {view.title} cluster scoped results  ({counts_text(view.cluster)})")
    for ns, rows in view.results.items():  # "" (cluster scoped) sorts first, as the page shows it
        if ns and "  Namespace Scoped Results" not in lines:
            lines.append("  Namespace Scoped Results")
        lines.append(f"    {ns}" if ns else "  Cluster Scoped Results")
        lines += [f"      {r.status:<5}  {r.resource}  rule {r.rule or '-'}"
                  + (f"  severity {r.severity}" if r.severity else "")
                  + (f"\n             {_unported(r.message)}" if r.message else "") for r in rows]
    return "\n".join(lines)


def results_text(rows: Sequence[Result], selection: Filter = Filter()) -> str:
    chosen = ", ".join(f"{name} {'|'.join(values)}" for name, values in (
        ("namespace", selection.namespaces), ("kind", selection.kinds), ("status", selection.statuses),
        ("severity", selection.severities), ("source", selection.sources), ("policy", selection.policies),
        ("category", selection.categories)) if values) or "all"
    lines = [f"Results ({chosen}): {len(rows)}"]
    lines += [f"  {r.status:<5}  {r.namespace or '(cluster)'}  {r.resource}  {r.policy}/{r.rule or '-'}"
              + (f"  {r.severity}" if r.severity else "") for r in rows]
    return "\n".join(lines)


def text(reports: Reports) -> str:
    """Every view as plain text: the Dashboard, the Policy Dashboard, each policy's details and
    the unfiltered Results, all sorted (no timestamps, no report names or UIDs)."""
    rows = _as_results(reports)
    parts = [dashboard_text(dashboard(rows)), policies_text(policies(rows))]
    parts += [details_text(policy_details(rows, p.name, p.source))
              for s in policies(rows) for items in s.categories.values() for p in items]
    parts.append(results_text(rows))
    return "\n\n".join(parts)
