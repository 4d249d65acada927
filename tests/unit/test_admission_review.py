"""AdmissionReview v1 parsing and responses, against the field names of k8s.io/api admission/v1
and the response shape the API server accepts (base64 JSONPatch with patchType JSONPatch)."""

from __future__ import annotations

import base64
import json
import re

import pytest

from labkit.admission.review import parse_review, review_response
from labkit.errors import AdmissionError


def _doc(**request: object) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": request}).encode()


def test_request_namespace_fills_the_object() -> None:
    req = parse_review(_doc(uid="u1", operation="CREATE", namespace="team", name="p",
                            object={"kind": "Pod", "metadata": {}}))
    assert (req.uid, req.operation, req.namespace) == ("u1", "CREATE", "team")
    assert req.resource()["metadata"] == {"namespace": "team", "name": "p"}
    assert req.object == {"kind": "Pod", "metadata": {}}  # the original is not modified


@pytest.mark.parametrize("body, needle", [
    (b"\xff\xfe", "not JSON"),
    (b'"text"', "not a JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}).encode(),
     "'admission.k8s.io/v1beta1'"),
    (_doc(object={}), "has no uid"),
    (_doc(uid="u", object=[1]), "request.object is not an object"),
])
def test_malformed(body: bytes, needle: str) -> None:
    with pytest.raises(AdmissionError) as exc:
        parse_review(body)
    assert needle in str(exc.value)


def test_allowed_with_patch_and_warnings() -> None:
    patch = [{"op": "replace", "path": "/spec/containers/0/image", "value": "r/a@sha256:" + "0" * 64}]
    doc = review_response("u", True, warnings=["w"], patch=patch)
    assert doc["apiVersion"] == "admission.k8s.io/v1" and doc["kind"] == "AdmissionReview"
    resp = doc["response"]
    assert resp["uid"] == "u" and resp["allowed"] is True and resp["warnings"] == ["w"]
    assert resp["patchType"] == "JSONPatch" and json.loads(base64.b64decode(resp["patch"])) == patch
    assert "status" not in resp


def test_denied_carries_message_and_no_patch() -> None:
    resp = review_response("u", False, message="validation failed: x", patch=[{"op": "add"}])["response"]
    assert resp["allowed"] is False and resp["status"] == {"status": "Failure", "message": "validation failed: x"}
    assert "patch" not in resp and "patchType" not in resp


@pytest.mark.parametrize(("obj", "problem"), [
    ({"kind": "Pod", "metadata": True}, "json: cannot unmarshal bool into Go struct field"),
    ({"kind": "Pod", "spec": {"containers": "c"}}, "spec.containers is not an array"),
    ({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{"image": 7}]}}}},
     "spec.template.spec.containers[0].image is not a string"),
    ({"kind": "Pod", "spec": {"imagePullSecrets": [True]}}, "spec.imagePullSecrets[0] is not an object"),
])
def test_an_object_the_api_server_could_not_have_decoded_is_a_400(obj: dict[str, object], problem: str) -> None:
    # found by tests/fuzz: the engines crashed on them (HTTP 500) where the API server never sends them
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": "u", "object": obj}}).encode()
    with pytest.raises(AdmissionError, match=re.escape(problem)):
        parse_review(body)
