"""The webhook as a plain ASGI application: one endpoint per engine and webhook kind.

=============================== ==========================================================
``POST /mutate/kyverno``        Kyverno's mutating webhook (``mutate.kyverno.svc-fail``):
                                verify, pin tags to digests, write ``kyverno.io/verify-images``
                                (and ``-scoped``); Enforce failures deny
``POST /validate/kyverno``      Kyverno's validating webhook (``validate.kyverno.svc-fail``):
                                ``missing digest for …`` / ``unverified image …``, no patch
``POST /mutate/policy-controller``   resolve tags to ``repo:tag@digest`` (never denies)
``POST /validate/policy-controller`` ClusterImagePolicies (digests required)
``GET /healthz``                policies in force, policy files that failed to load
``GET /reports``                PolicyReports of Audit results (``?namespace=`` filters)
=============================== ==========================================================

Separate endpoints let a caller apply each engine's namespaceSelector as the API server does;
each endpoint runs one ``phase`` of :func:`labkit.policy.evaluate`, so it says only what that
real webhook says. Pull credentials come from the lab's Secrets (``secrets.json``, see
:mod:`labkit.admission`). Decisions are ``evaluate``'s; this module only carries them over HTTP, maps
registry errors through failurePolicy, and bounds what a request may cost: a body limit (the
API server's own 3 MiB request limit) and one deadline per review, every registry request
included (the API server's ``?timeout=``, else Kyverno's default 10 s, plus a moment's grace).
A real engine stuck on a registry has not answered when the API server gives up at its timeout,
and the API server's failurePolicy then decides; so does labkit's: its registry requests run
until :data:`GRACE` past the caller's timeout, and the worker is free again by then. A review that
still has no decision gets HTTP 500, a failed call, which the API server maps through its failurePolicy.
Malformed requests get HTTP 400 with a JSON message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from labkit.admission.cache import CachingVerifier
from labkit.admission.reports import ReportStore
from labkit.admission.review import AdmissionRequest, parse_review, review_response
from labkit.admission.sources import NamespaceLabels, PolicyDirectory
from labkit.errors import AdmissionError
from labkit.oci.client import RegistryClient
from labkit.oci.transport import deadline
from labkit.policy.credentials import RegistryAccess, SecretStore
from labkit.policy.load import kyverno_failure_action
from labkit.policy.phases import evaluate
from labkit.policy.podspec import Engine
from labkit.policy.schema import ImageValidatingPolicy, KyvernoPolicy

log = logging.getLogger("labkit.admission")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_BODY_BYTES = 3 * 1024 * 1024  # k8s apiserver MaxRequestBodyBytes
DEFAULT_TIMEOUT = 10.0  # Kyverno's webhook timeoutSeconds default
MAX_TIMEOUT = 30.0  # admissionregistration/v1 validation: timeoutSeconds between 1 and 30
GRACE = 1.0  # registry requests outlive the caller's timeout by this much (see the module docstring)
# Reviews wait on registries, not the CPU, and each ends by its deadline, so many run at once as
# the engines' goroutines do: ten reviews stuck on a slow registry leave the rest to others.
DEFAULT_WORKERS = 64
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)")
_GO_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
ENDPOINTS: dict[str, tuple[Engine, bool]] = {
    "/mutate/kyverno": (Engine.KYVERNO, True),
    "/validate/kyverno": (Engine.KYVERNO, False),
    "/mutate/policy-controller": (Engine.POLICY_CONTROLLER, True),
    "/validate/policy-controller": (Engine.POLICY_CONTROLLER, False),
}
_REVIEWED_OPERATIONS = ("CREATE", "UPDATE")


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Outcome:
    allowed: bool
    message: str = ""
    warnings: tuple[str, ...] = ()
    patch: tuple[dict[str, Any], ...] = ()


class Webhook:
    """Reviews AdmissionRequests for one engine at a time (synchronous; the ASGI app runs it in
    worker threads). Usable without HTTP, e.g. from a notebook."""

    def __init__(
        self,
        policies: PolicyDirectory,
        namespaces: NamespaceLabels,
        client: RegistryClient,
        *,
        cache_ttl: float,
        no_match_policy: str = "deny",
        secrets: SecretStore | None = None,
    ) -> None:
        self.policies, self.namespaces, self.client = policies, namespaces, client
        self.access = RegistryAccess(client)
        self.verifier = CachingVerifier(self.access, cache_ttl)
        self.secrets = secrets
        self.no_match_policy = no_match_policy
        self.reports = ReportStore()

    def review(self, engine: Engine, mutating: bool, request: AdmissionRequest) -> Outcome:
        resource = request.resource()
        if request.operation not in _REVIEWED_OPERATIONS or resource is None or request.sub_resource:
            return Outcome(True)
        if engine is Engine.POLICY_CONTROLLER and _policy_controller_skips(request):
            return Outcome(True)
        labels = self.namespaces.labels(request.namespace)
        policies = [p for p in self.policies.current()[0] if p.engine is engine]
        # policy-controller reviews an opted-in namespace's images with or without policies:
        # with none, each image matches none (validator.go:1182, no-match policy deny).
        if not policies and engine is not Engine.POLICY_CONTROLLER:
            return Outcome(True)
        decision = evaluate(policies, resource, namespace_labels=labels, verifier=self.verifier,
                            resolver=self.access.resolve, secrets=self.secrets,
                            no_match_policy=self.no_match_policy,
                            old_resource=request.old_object if request.operation == "UPDATE" else None,
                            phase="mutate" if mutating else "validate",
                            policy_controller=engine is Engine.POLICY_CONTROLLER)
        warnings = list(decision.warnings)
        if decision.allowed:
            # failurePolicy Ignore: an error (registry unreachable) admits, and says so. Kyverno's
            # own warnings already carry its errors (GetWarningMessages, in decision.warnings).
            warnings += [f"{t.policy}/{t.rule}: {t.image}: {t.message} (failurePolicy Ignore)"
                         for t in decision.trace if t.status == "error" and t.engine is not Engine.KYVERNO]
        # Reports carry the verification results, which come from the mutating webhook; the
        # validating one only re-reads them (a report per object, so one writer keeps them).
        if engine is Engine.KYVERNO and mutating and not request.dry_run:
            audit = {p.name for p in policies
                     if isinstance(p, KyvernoPolicy) and kyverno_failure_action(p) == "Audit"}
            self.reports.record(resource, decision.trace, audit, uid=request.uid)
        # ImageValidatingPolicies report from their validating webhook only (ivpol handler.audit)
        ivps = [p for p in policies if isinstance(p, ImageValidatingPolicy)]
        if ivps and engine is Engine.KYVERNO and not mutating and not request.dry_run:
            from labkit.policy.ivp import admission_report

            self.reports.merge(resource, admission_report(ivps, decision.trace), uid=request.uid)
        patch = tuple(decision.patches) if mutating and decision.allowed else ()
        return Outcome(decision.allowed, decision.message, tuple(warnings), patch)

    def health(self) -> dict[str, Any]:
        policies, errors = self.policies.current()
        problems = dict(errors)
        if self.namespaces.error:
            problems["namespaces"] = self.namespaces.error
        return {
            "status": "degraded" if problems else "ok",
            "policies": [f"{p.kind}/{p.name}" for p in policies],
            "errors": problems,
            "cache": self.verifier.stats,
        }


# The kinds policy-controller reviews as PodScalable (cmd/webhook/main.go:205-207 at v0.13.1).
_POD_SCALABLE = ("Deployment", "ReplicaSet", "StatefulSet")


def _policy_controller_skips(request: AdmissionRequest) -> bool:
    """What policy-controller v0.13.1 admits without resolving or checking anything
    (pkg/webhook/validator.go): an object being deleted (``isDeletedOrStatusUpdate``, :73) and a
    PodScalable UPDATE that lowers ``spec.replicas`` (``IsScalingDown``,
    pkg/apis/duck/v1beta1/podscalable_types.go:108) — whatever its new images are."""
    obj, old = request.object or {}, request.old_object or {}
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return True
    if request.operation != "UPDATE" or obj.get("kind") not in _POD_SCALABLE or not old:
        return False

    def replicas(o: Mapping[str, Any]) -> int:
        # The API server has defaulted spec.replicas to 1 before any webhook sees the object.
        value = (o.get("spec") or {}).get("replicas")
        return 1 if value is None else int(value)

    return replicas(obj) < replicas(old)


class WebhookApp:
    """ASGI wrapper: routing, body limit, deadline, 400s for malformed input."""

    def __init__(self, webhook: Webhook, *, timeout: float = DEFAULT_TIMEOUT,
                 max_body: int = MAX_BODY_BYTES, workers: int = DEFAULT_WORKERS) -> None:
        self.webhook, self.timeout, self.max_body = webhook, timeout, max_body
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labkit-admission")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path in ENDPOINTS:
                if method != "POST":
                    raise _BadRequest(405, f"{path} takes POST with an AdmissionReview")
                body = await self._body(scope, receive)
                request = parse_review(body)
                engine, mutating = ENDPOINTS[path]
                budget = _caller_timeout(scope.get("query_string", b"").decode(), self.timeout)
                await _json(send, 200, await self._review(engine, mutating, request, budget))
            elif path == "/healthz" and method == "GET":
                await _json(send, 200, await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.webhook.health))
            elif path == "/reports" and method == "GET":
                ns = parse_qs(scope.get("query_string", b"").decode()).get("namespace", [None])[0]
                await _json(send, 200, self.webhook.reports.list(ns))
            else:
                raise _BadRequest(404, f"no such endpoint: {method} {path}; endpoints: "
                                       + ", ".join(["GET /healthz", "GET /reports",
                                                    *(f"POST {p}" for p in ENDPOINTS)]))
        except _BadRequest as exc:
            await _json(send, exc.status, {"error": exc.message})
        except AdmissionError as exc:
            await _json(send, 400, {"error": exc.diagnostics()})

    async def _body(self, scope: dict[str, Any], receive: Receive) -> bytes:
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise _BadRequest(400, f"request body of {int(value)} bytes exceeds the "
                                       f"{self.max_body}-byte limit")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _BadRequest(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise _BadRequest(400, f"request body exceeds the {self.max_body}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _review(self, engine: Engine, mutating: bool, request: AdmissionRequest,
                      budget: float) -> dict[str, Any]:
        # Registry requests end just after the caller gave up: as with the real engines, a review
        # stuck on a registry is decided by the API server's failurePolicy, not by the engine's
        # registry error (tests/faults: a hanging registry under Ignore is admitted natively).
        def review() -> Outcome:
            with deadline(budget + GRACE):
                return self.webhook.review(engine, mutating, request)

        job = asyncio.get_running_loop().run_in_executor(self.executor, review)
        try:
            outcome = await asyncio.wait_for(job, budget + 2 * GRACE)
        except TimeoutError:
            raise _BadRequest(500, f"labkit admission ({engine.value}): no decision within {budget:g}s") from None
        except Exception as exc:  # a bug or an unexpected registry answer must not kill the server
            log.exception("review %s of %s failed", request.uid, engine.value)
            raise _BadRequest(500, f"labkit admission ({engine.value}): internal error: {exc}") from None
        return review_response(request.uid, outcome.allowed, message=outcome.message,
                               warnings=outcome.warnings, patch=outcome.patch)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _caller_timeout(query: str, default: float) -> float:
    """The API server's ``?timeout=10s`` (a Go duration: the webhook's timeoutSeconds, 25 s for
    policy-controller's), at most 30 s (the API's limit on timeoutSeconds); ``default`` without
    one. An answer after it is never read."""
    value = parse_qs(query).get("timeout", [""])[0]
    match = _GO_DURATION.fullmatch(value)
    if match is None:
        return default
    seconds = float(match[1]) * _GO_UNITS[match[2]]
    return min(MAX_TIMEOUT, seconds) if seconds > 0 else default


async def _json(send: Send, status: int, doc: Any) -> None:
    body = json.dumps(doc).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
