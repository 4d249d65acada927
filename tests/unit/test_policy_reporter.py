"""labkit.admission.reporter and widgets.policy_reporter: PolicyReports grouped as Policy Reporter's
views group them, checked against reports published by others, counted by hand.

Oracles: the example PolicyReport of Kyverno's documentation and the Policy WG's sample reports
(copied below with their addresses); every expected count is read off those documents by eye, not
computed. The grouping rules themselves (namespace scope = the report's namespace, category
"Other" when none, one count per result) are Policy Reporter's, cited in the module's docstring.
"""

from __future__ import annotations

import re

import pytest
import yaml

from labkit.admission import reporter
from labkit.admission.reporter import Filter

# https://kyverno.io/docs/policy-reports/ ("Below is an example of a PolicyReport generated for a
# Pod which shows passing and failed rules"; kyverno/website content/en/docs/policy-reports/_index.md).
# Published with "# ..." after its second result: the summary (pass 10, fail 2) counts results the
# page leaves out; Policy Reporter counts the results it is given, as below.
KYVERNO_DOCS = """
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  creationTimestamp: "2023-12-06T13:19:03Z"
  generation: 2
  labels:
    app.kubernetes.io/managed-by: kyverno
  name: 487df031-11d8-4ab4-b089-dfc0db1e533e
  namespace: kube-system
  ownerReferences:
  - apiVersion: v1
    kind: Pod
    name: kube-apiserver-kind-control-plane
    uid: 487df031-11d8-4ab4-b089-dfc0db1e533e
  resourceVersion: "720507"
  uid: 0ec04a57-4c3d-492d-9278-951cd1929fe3
results:
- category: Pod Security Standards (Baseline)
  message: validation rule 'adding-capabilities' passed.
  policy: disallow-capabilities
  result: pass
  rule: adding-capabilities
  scored: true
  severity: medium
  source: kyverno
  timestamp:
    nanos: 0
    seconds: 1701868762
- category: Pod Security Standards (Baseline)
  message: 'validation error: Sharing the host namespaces is disallowed. The fields
    spec.hostNetwork, spec.hostIPC, and spec.hostPID must be unset or set to `false`.
    rule host-namespaces failed at path /spec/hostNetwork/'
  policy: disallow-host-namespaces
  result: fail
  rule: host-namespaces
  scored: true
  severity: medium
  source: kyverno
  timestamp:
    nanos: 0
    seconds: 1701868762
# ...
scope:
  apiVersion: v1
  kind: Pod
  name: kube-apiserver-kind-control-plane
  namespace: kube-system
  uid: 487df031-11d8-4ab4-b089-dfc0db1e533e
summary:
  error: 0
  fail: 2
  pass: 10
  skip: 0
  warn: 0
"""

# https://github.com/kubernetes-sigs/wg-policy-prototypes/blob/master/policy-report/samples/sample-falco-policy.yaml
# A namespaced PolicyReport naming its Pod in `resources`, and a ClusterPolicyReport naming nothing;
# neither sets `source`, `category` or a result-level `severity` (Falco's is a property).
WG_FALCO = """
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  name: falco-alerts-policy
  namespace: my-namespace
  labels:
    policy.kubernetes.io/engine: falco-agent
summary:
  fail: 1
results:
- policy: "Change thread namespace"
  message: "Falco alert created due to the Change thread namespace rule"
  result: fail
  scored: false
  resources:
    - apiVersion: v1
      kind: Pod
      name: a-pod
      namespace: my-namespace
  properties:
    details: '12:57:37.086240437: Notice Namespace change (setns) by unexpected program (user=root user_loginuid=-1 command=ovnkube --init-node ...'
    container.id: "0f8d7e2a3296"
    evt.arg.path: "/bin/directory-created-by-event-generator"
    proc.cmdline: "event-generator run --loop ^syscall"
    severity: low
---
apiVersion: wgpolicyk8s.io/v1alpha2
kind: ClusterPolicyReport
metadata:
  name: falco-alerts-policy
  labels:
    policy.kubernetes.io/engine: falco-agent
summary:
  fail: 1
results:
- policy: audit
  message: "audit rule violation from the kubernetes api server"
  result: fail
  scored: false
  properties:
    details: 'Warning K8s Operation performed by user not in allowed list of users'
    severity: medium
    user: username
    target: kubernetes/endpoints
    verb: create
    uri: '/api/v1/namespaces/default/endpoints/kubernetes'
    resp: '200'
"""  # noqa: E501

# https://github.com/kubernetes-sigs/wg-policy-prototypes/blob/master/policy-report/samples/sample-cis-k8s.yaml
# A PolicyReport without a namespace (cluster scoped for Policy Reporter), whose summary (pass 8,
# fail 2) disagrees with its three results (warn, fail, warn): the views count the results.
WG_CIS = """
apiVersion: wgpolicyk8s.io/v1alpha2
kind: PolicyReport
metadata:
  name: sample-cis-bench-api-server
  labels:
    wgpolicyk8s.io/engine: kube-cis
  annotations:
    name: CIS Kubernetes Benchmarks
    category: API Server
    version: v1.5.1 - 02-14-2020
summary:
  pass: 8
  fail: 2
  warn: 0
  error: 0
  skip: 0
results:
  - policy: api-server:anonymous-auth
    message: ensure that --anonymous-auth argument is set to false
    result: warn
    scored: true
    properties:
      category: API Server
      index: 1.2.2
  - policy: api-server:basic-auth-file
    message: ensure that --basic-auth-file argument is not set
    result: fail
    scored: true
    properties:
      category: API Server
      index: 1.2.2
  - policy: api-server:token-auth-file
    message: ensure that --token-auth-file argument is not set
    result: warn
    scored: false
    properties:
      category: API Server
      index: 1.2.2
"""


def _load(*documents: str) -> list[dict[str, object]]:
    return [d for doc in documents for d in yaml.safe_load_all(doc)]


def _c(**counts: int) -> dict[str, int]:
    return {"pass": 0, "warn": 0, "fail": 0, "error": 0, "skip": 0, **counts}


PUBLISHED = _load(KYVERNO_DOCS, WG_FALCO, WG_CIS)


def test_dashboard_of_the_published_reports() -> None:
    view = reporter.dashboard(PUBLISHED)
    # By hand: Kyverno's example has one pass and one fail, both in kube-system. The Policy WG's
    # samples name no source: Falco's fail in my-namespace, Falco's cluster fail, and CIS's warn,
    # fail, warn in a report without a namespace.
    assert view.total == _c(**{"pass": 1, "fail": 4, "warn": 2})
    assert [s.title for s in view.sources] == ["", "Kyverno"]
    no_source, kyverno = view.sources
    assert kyverno.total == _c(**{"pass": 1, "fail": 1})
    assert kyverno.namespaces == {"kube-system": _c(**{"pass": 1, "fail": 1})}
    assert kyverno.cluster == _c()
    assert no_source.total == _c(fail=3, warn=2)
    assert no_source.namespaces == {"my-namespace": _c(fail=1)}
    assert no_source.cluster == _c(fail=2, warn=2)


def test_policy_dashboard_of_the_published_reports() -> None:
    no_source, kyverno = reporter.policies(PUBLISHED)
    assert kyverno.title == "Kyverno"
    assert list(kyverno.categories) == ["Pod Security Standards (Baseline)"]
    items = kyverno.categories["Pod Security Standards (Baseline)"]
    assert [(i.name, i.severity, i.counts) for i in items] == [
        ("disallow-capabilities", "medium", _c(**{"pass": 1})),
        ("disallow-host-namespaces", "medium", _c(fail=1))]
    # No `category` on any WG sample result (CIS's is a property and an annotation): "Other".
    assert list(no_source.categories) == ["Other"]
    assert [(i.name, i.severity, i.counts) for i in no_source.categories["Other"]] == [
        ("Change thread namespace", "", _c(fail=1)),
        ("api-server:anonymous-auth", "", _c(warn=1)),
        ("api-server:basic-auth-file", "", _c(fail=1)),
        ("api-server:token-auth-file", "", _c(warn=1)),
        ("audit", "", _c(fail=1))]


def test_policy_details_of_the_published_reports() -> None:
    details = reporter.policy_details(PUBLISHED, "disallow-host-namespaces")
    assert (details.source, details.title) == ("kyverno", "Disallow-Host-Namespaces")
    assert details.total == _c(fail=1) and details.cluster == _c()
    assert details.namespaces == {"kube-system": _c(fail=1)}
    (row,) = details.results["kube-system"]
    # The result names no resource: the report's scope is the resource.
    assert (row.api_version, row.kind, row.name, row.rule, row.severity, row.status) == (
        "v1", "Pod", "kube-apiserver-kind-control-plane", "host-namespaces", "medium", "fail")
    assert row.message.startswith("validation error: Sharing the host namespaces is disallowed.")

    falco = reporter.policy_details(PUBLISHED, "Change thread namespace")
    (pod,) = falco.results["my-namespace"]
    assert (pod.kind, pod.name) == ("Pod", "a-pod")
    assert pod.message == "Falco alert created due to the Change thread namespace rule"
    audit = reporter.policy_details(PUBLISHED, "audit")
    assert audit.namespaces == {} and audit.cluster == _c(fail=1)
    assert [(r.kind, r.name) for r in audit.results[""]] == [("", "")]


@pytest.mark.parametrize(("selection", "expected"), [
    (Filter(), 7),
    (Filter(namespaces=("kube-system",)), 2),
    (Filter(namespaces=("kube-system", "my-namespace")), 3),
    (Filter(kinds=("Pod",)), 3),  # two via the Kyverno report's scope, one via Falco's resources
    (Filter(statuses=("fail",)), 4),
    (Filter(statuses=("warn",)), 2),
    (Filter(severities=("medium",)), 2),  # Falco's "severity: medium" is a property, not a field
    (Filter(kinds=("Pod",), statuses=("fail",)), 2),
    (Filter(sources=("kyverno",), statuses=("pass",)), 1),
])
def test_results_filtered(selection: Filter, expected: int) -> None:
    assert len(reporter.filter_results(PUBLISHED, selection)) == expected


def test_filter_options() -> None:
    options = reporter.filter_options(PUBLISHED)
    assert options.namespaces == ("kube-system", "my-namespace")
    assert options.kinds == ("Pod",)
    assert options.statuses == ("pass", "warn", "fail")  # the UI's order, not the alphabet's
    assert options.severities == ("medium",)


def test_openreports_report() -> None:
    """openreports.io Report: `subjects` and `description` where v1alpha2 has `resources` and `message`."""
    report = {"apiVersion": "openreports.io/v1alpha1", "kind": "Report", "source": "kyverno",
              "metadata": {"name": "r", "namespace": "team"},
              "results": [{"policy": "p", "rule": "r", "result": "error", "description": "boom",
                           "subjects": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]}]}
    (row,) = reporter.results([report])
    assert (row.source, row.namespace, row.kind, row.name, row.status, row.message) == (
        "kyverno", "team", "Deployment", "web", "error", "boom")


def test_title_is_policy_reporters() -> None:
    assert reporter.title("kyverno") == "Kyverno"
    assert reporter.title("KyvernoImageValidatingPolicy") == "KyvernoImageValidatingPolicy"
    assert reporter.title("falco-agent") == "Falco-Agent"


def test_text_is_sorted_and_carries_no_timestamps() -> None:
    text = reporter.text(PUBLISHED)
    assert text == reporter.text(list(reversed(PUBLISHED)))
    assert "1701868762" not in text and "487df031" not in text and "2023-12-06" not in text
    assert not re.search(r"\d+\.\d+\.\d+\.\d+:\d+", text)
    assert ("  Kyverno\n    2 Kyverno Results  (pass 1  warn 0  fail 1  error 0  skip 0)\n"
            "    Kyverno Results per Namespace\n      kube-system  pass 1  warn 0  fail 1  error 0  skip 0\n") in text
    assert "Kyverno Cluster Scoped Results  (pass 0  warn 0  fail 0  error 0  skip 0)" in text
    assert text.startswith("Dashboard: 7 results  (pass 1  warn 2  fail 4  error 0  skip 0)")


def test_widget_tabs_colours_and_text() -> None:
    pytest.importorskip("ipywidgets")
    from labkit import widgets

    view = widgets.policy_reporter(PUBLISHED)
    assert [view.widget.get_title(i) for i in range(4)] == [
        "Dashboard", "Policy Dashboard", "Policy Details", "Results"]
    assert view._repr_mimebundle_()["text/plain"] == reporter.text(PUBLISHED) == str(view)
    dashboard = view.widget.children[0].value
    assert "Kyverno Results per Namespace" in dashboard and "#43A047" in dashboard and "#EF5350" in dashboard
    view.filters["namespace"].value = "kube-system"
    view.filters["status"].value = "fail"
    assert view.results.value.count("<tr>") == 2  # the header and disallow-host-namespaces
    assert "disallow-host-namespaces" in view.results.value
    view.policy.value = ("kyverno", "disallow-capabilities")
    assert "adding-capabilities" in view.details.value and "kube-system" in view.details.value
