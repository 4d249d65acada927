"""Policy Reporter's views of the embedded lab's PolicyReports, made as notebook 06 Step 4 makes
them (the workshop's ClusterPolicy in Audit, a signed and an unsigned pod): every view's totals
equal ``result_counts`` (the flat per-policy count notebook 06 prints), the namespaced reports
land in the Dashboard's per-namespace chart, and the text face is the same on every read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from labkit import keys, workshop
from labkit.admission import reporter
from labkit.admission.reports import result_counts
from labkit.lab import Lab
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from tests.lab.scenario import one_layer_image

POLICY = "workshop-verify-images"


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    work = tmp_path_factory.mktemp("keys")
    lab = Lab.start("embedded", tmp_path_factory.mktemp("labkit-home"))
    try:
        keys.generate_key_pair(work / "cosign", b"")
        push, pods = lab.registry.host, lab.registry.pod_host
        with RegistryClient() as client:
            signed = client.push_image(f"{push}/workshop/signed:v1", one_layer_image(b"signed\n"))
            unsigned = client.push_image(f"{push}/workshop/unsigned:v1", one_layer_image(b"unsigned\n"))
            sign_image(f"{push}/workshop/signed@{signed}", keys.load_private_key(work / "cosign.key", b""),
                       client=client)
        policy = workshop.write_policy("clusterpolicy", work / "clusterpolicy.yaml", public_key=work / "cosign.pub",
                                       registry=pods, action="Audit", mutate_digest="false")
        assert [r.message for r in lab.apply(policy)] == [f"clusterpolicy.kyverno.io/{POLICY} created"]
        for name, digest in (("audited-unsigned", unsigned), ("audited-signed", signed)):
            repo = name.removeprefix("audited-")
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                   "spec": {"containers": [{"name": "app", "image": f"{pods}/workshop/{repo}@{digest}"}]}}
            assert lab.create(pod).admitted
        yield lab.reports()
    finally:
        lab.stop()


def test_views_total_what_result_counts_counts(reports: list[dict[str, Any]]) -> None:
    counts = result_counts(reports)
    assert counts == {POLICY: {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}}
    flat = counts[POLICY]

    board = reporter.dashboard(reports)
    assert board.total == {s: flat[s] for s in reporter.STATUSES}
    (kyverno,) = board.sources
    assert (kyverno.source, kyverno.title) == ("kyverno", "Kyverno")
    assert kyverno.namespaces == {"default": board.total} and kyverno.cluster == dict.fromkeys(reporter.STATUSES, 0)

    (source,) = reporter.policies(reports)
    ((category, (item,)),) = source.categories.items()
    assert (category, item.name, item.counts) == ("Other", POLICY, board.total)

    details = reporter.policy_details(reports, POLICY)
    assert details.total == board.total and details.namespaces == {"default": board.total}
    assert [(r.kind, r.name, r.status) for r in details.results["default"]] == [
        ("Pod", "audited-signed", "pass"), ("Pod", "audited-unsigned", "fail")]
    assert all(r.message for r in details.results["default"])

    for status, n in flat.items():
        assert len(reporter.filter_results(reports, reporter.Filter(statuses=(status,)))) == n
    assert len(reporter.filter_results(reports, reporter.Filter(namespaces=("default",), kinds=("Pod",)))) == 2


def test_text_is_stable_and_has_no_timestamps_or_ports(reports: list[dict[str, Any]]) -> None:
    text = reporter.text(reports)
    assert text == reporter.text(list(reversed(reports)))
    for report in reports:
        for result in report["results"]:
            assert str(result["timestamp"]["seconds"]) not in text
        assert report["metadata"]["name"] not in text  # the report's name is the pod's uid
    assert "Kyverno Results per Namespace\n      default  pass 1  warn 0  fail 1  error 0  skip 0" in text
    assert ("Kyverno: Workshop-Verify-Images\n  2 Kyverno Results  (pass 1  warn 0  fail 1  error 0  skip 0)\n"
            "  Workshop-Verify-Images Results per Namespace\n") in text
    assert not re.search(r"\b\d{10}\b", text)
    # The unsigned pod's message names the lab's registry, on a port of this machine: saved masked.
    assert "failed to verify image 127.0.0.1:PORT/workshop/unsigned@sha256:" in text
    assert not re.search(r"(127\.0\.0\.1|localhost):\d", text)
