"""The embedded lab's API server applies a webhook's failurePolicy as kube-apiserver does: only
to a call that failed (timed out, unreachable, not HTTP 200), never to an answer, even a denial."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from labkit.admission.tls import ensure_tls
from labkit.lab.apiserver import ApiServer, ObjectStore

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "namespace": "default"},
       "spec": {"containers": [{"name": "c", "image": "127.0.0.1:5000/team/app:v1"}]}}
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"


def _api(tmp_path: Path, failure_policy: str, answer: Any) -> tuple[ApiServer, list[str]]:
    store = ObjectStore(tmp_path / "policies", tmp_path / "state")
    store.initialise()
    rule = {"name": "r", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "verifyImages": [{"imageReferences": ["*"], "attestors": [{"entries": [{"keys": {"publicKeys": PEM}}]}]}]}
    (tmp_path / "policies" / "p.yaml").write_text(json.dumps(
        {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "p"},
         "spec": {"failurePolicy": failure_policy, "rules": [rule]}}))
    api = ApiServer(store, "https://127.0.0.1:9", ensure_tls(tmp_path / "tls", ["lab"]).ca_cert)
    called: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        called.append(str(request.url))
        return answer(request)

    api.http = httpx.Client(transport=httpx.MockTransport(handler))
    return api, called


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _denial(request: httpx.Request) -> httpx.Response:
    uid = json.loads(request.content)["request"]["uid"]
    return httpx.Response(200, json={"response": {"uid": uid, "allowed": False,
                                                  "status": {"message": "no signatures found"}}})


@pytest.mark.parametrize("answer", [_timeout, lambda r: httpx.Response(500, json={"error": "no decision"})])
def test_a_failed_call_is_ignored_under_ignore_and_denied_under_fail(tmp_path: Path, answer: Any) -> None:
    ignored, called = _api(tmp_path / "ignore", "Ignore", answer)
    assert ignored.create(POD).admitted
    assert called and called[0].endswith("/mutate/kyverno?timeout=10s")  # what kube-apiserver sends
    failed, _ = _api(tmp_path / "fail", "Fail", answer)
    result = failed.create(POD)
    assert not result.admitted
    assert result.denied_by == "mutate.kyverno.svc-fail"
    assert ('Internal error occurred: failed calling webhook "mutate.kyverno.svc-fail": failed to call webhook: '
            in result.message)


def test_a_denial_stands_under_ignore(tmp_path: Path) -> None:
    api, _ = _api(tmp_path, "Ignore", _denial)
    result = api.create(POD)
    assert not result.admitted
    assert 'admission webhook "mutate.kyverno.svc-ignore" denied the request: no signatures found' in result.message
