"""AdmissionReview v1 (``admission.k8s.io/v1``): parse a request, build the response.

Field names follow ``k8s.io/api/admission/v1/types.go``. Parsing is strict about the envelope
(the API server always sends ``apiVersion``, ``kind`` and ``request.uid``) and lenient about the
rest, so a hand-written review in a notebook works too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labkit._internal.yamlsafe import object_meta_error
from labkit.errors import AdmissionError
from labkit.policy.podspec import pod_spec_problem

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
_HINT = "send an admission.k8s.io/v1 AdmissionReview with a request.uid and the object"


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    namespace: str
    name: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None
    kind: Mapping[str, str] = field(default_factory=dict)  # {group, version, kind}
    sub_resource: str = ""
    dry_run: bool = False

    def resource(self) -> dict[str, Any] | None:
        """The object with ``metadata.namespace`` filled from the request when it is missing
        (a CREATE often carries it only in the request, and both engines name the namespace)."""
        if self.object is None:
            return None
        obj = dict(self.object)
        meta = dict(obj.get("metadata") or {})
        if self.namespace and not meta.get("namespace"):
            meta["namespace"] = self.namespace
        if self.name and not meta.get("name"):
            meta["name"] = self.name
        obj["metadata"] = meta
        return obj


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview; AdmissionError (an HTTP 400) for anything else."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdmissionError(f"request body is not JSON: {exc}", hint=_HINT) from None
    if not isinstance(doc, dict):
        raise AdmissionError("request body is not a JSON object", hint=_HINT)
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if kind != KIND or api_version != API_VERSION:
        raise AdmissionError(
            f"expected apiVersion {API_VERSION} kind {KIND}, got apiVersion {api_version!r} kind {kind!r}",
            hint="this webhook speaks admissionReviewVersions [v1] only",
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise AdmissionError("AdmissionReview has no request", hint=_HINT)
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise AdmissionError("AdmissionReview request has no uid", hint=_HINT)
    obj, old = request.get("object"), request.get("oldObject")
    for name, value in (("object", obj), ("oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise AdmissionError(f"AdmissionReview request.{name} is not an object", hint=_HINT)
        # what the API server's decoding guarantees, and the engines rely on
        problem = value and (object_meta_error(value) or pod_spec_problem(value))
        if problem:
            raise AdmissionError(f"AdmissionReview request.{name}: {problem}", hint=_HINT)
    kind_field = request.get("kind")
    return AdmissionRequest(
        uid=uid,
        operation=str(request.get("operation") or "CREATE"),
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or ""),
        object=obj,
        old_object=old,
        kind=kind_field if isinstance(kind_field, dict) else {},
        sub_resource=str(request.get("subResource") or ""),
        dry_run=bool(request.get("dryRun")),
    )


def review_response(
    uid: str,
    allowed: bool,
    *,
    message: str = "",
    warnings: Sequence[str] = (),
    patch: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The AdmissionReview the API server expects back; ``patch`` becomes a base64 JSONPatch."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed or message:
        # As the engines answer (metav1.Status without a code: the API server makes it 403 and
        # prints status.message after "denied the request: ").
        response["status"] = {"status": "Success" if allowed else "Failure", "message": message}
    if warnings:
        response["warnings"] = list(warnings)
    if patch and allowed:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(patch), separators=(",", ":")).encode()).decode()
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
