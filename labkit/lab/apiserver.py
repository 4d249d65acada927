"""The embedded lab's small API server: namespaces, Secrets, policies, and admission.

It does what kube-apiserver does on ``kubectl create`` and no more: the namespace must exist,
then each matching mutating webhook is called in turn (configurations sorted by name, each
webhook's patch applied before the next call), then the validating webhooks see the mutated
object; the first denial becomes kubectl's error line. Webhook names, namespaceSelectors and
status reasons are those the real engines install:

* Kyverno (``kyverno-resource-*-webhook-cfg``): ``mutate.kyverno.svc-fail`` /
  ``validate.kyverno.svc-fail`` (``-ignore`` when every ClusterPolicy says failurePolicy
  Ignore), ``ivpol.*`` for ImageValidatingPolicies; skips Kyverno's own and the system
  namespaces (the chart's default resourceFilters). Its denials carry no status reason, so
  kubectl prints ``Error from server: …``.
* policy-controller (``policy.sigstore.dev``): namespaces labelled
  ``policy.sigstore.dev/include=true`` only; knative answers denials with ``BadRequest``, so
  kubectl prints ``Error from server (BadRequest): …``.

Admitted workloads are kept (``workloads.json``), as etcd would keep them: ``kubectl create`` of
a name that exists fails with ``AlreadyExists`` once the webhooks have admitted it (the storage
layer decides after admission), and ``kubectl replace`` (:meth:`ApiServer.update`) sends an
``UPDATE`` review whose ``oldObject`` is the stored object.

State lives in ``STATE_DIR/namespaces.json``, ``secrets.json`` (the webhook re-reads both) and
``workloads.json``, and one file per policy in the policies directory.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import yaml

from labkit._internal.files import write_atomic
from labkit.errors import PolicyError, UsageError
from labkit.lab.base import WORKLOAD_KINDS, AdmissionResult
from labkit.lab.names import POLICY_GROUPS, api_group, kind_slash_name, plural
from labkit.policy.load import load_objects
from labkit.policy.patches import apply_patches
from labkit.policy.podspec import Engine, extract_images

# The webhooks that validate policy objects themselves (Kyverno's kyverno-policy-validating-webhook-cfg,
# policy-controller's validating.clusterimagepolicy.sigstore.dev).
POLICY_WEBHOOKS = {"kyverno": "validate-policy.kyverno.svc",
                   "policy-controller": "validating.clusterimagepolicy.sigstore.dev"}
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
KYVERNO_SKIPPED_NAMESPACES = ("kyverno", "kube-system", "kube-public", "kube-node-lease")
PC_INCLUDE = "policy.sigstore.dev/include"
NAME_LABEL = "kubernetes.io/metadata.name"  # the API server sets it on every namespace


def kubectl_error(message: str, reason: str = "", source: str | None = None, verb: str = "creating") -> str:
    """kubectl's line for a failed create (``StandardErrorMessage`` + ``AddSourceToErr``; ``verb``
    is ``replacing`` for ``kubectl replace``)."""
    where = f'error when {verb} "{source}": ' if source else ""
    message = message.rstrip("\n")  # kubectl ends the line itself (Kyverno's YAML body ends with one)
    return f"Error from server ({reason}): {where}{message}" if reason else f"Error from server: {where}{message}"


def denied(webhook: str, status: Mapping[str, Any] | None) -> str:
    """The API server's text for a webhook denial (``webhook/errors.ToStatusErr``)."""
    status = status or {}
    if status.get("message"):
        return f'admission webhook "{webhook}" denied the request: {status["message"]}'
    if status.get("reason"):
        return f'admission webhook "{webhook}" denied the request: {status["reason"]}'
    return f'admission webhook "{webhook}" denied the request without explanation'


# Secrets hold registry passwords: owner-only, as docker's config.json and a kubeconfig are.
SECRETS_MODE = 0o600


class ObjectStore:
    """The lab's cluster objects that are not workloads: namespaces with labels, Secrets, policies."""

    def __init__(self, policies: Path, state: Path) -> None:
        self.policies, self.state = policies, state
        self.namespaces_file, self.secrets_file = state / "namespaces.json", state / "secrets.json"
        self.workloads_file = state / "workloads.json"

    def initialise(self) -> None:
        self.policies.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        if not self.namespaces_file.exists():
            self._write(self.namespaces_file, {ns: {NAME_LABEL: ns} for ns in SYSTEM_NAMESPACES})
        if not self.secrets_file.exists():
            self._write(self.secrets_file, {})
        self.secrets_file.chmod(SECRETS_MODE)  # a lab made before secrets were 0600 is narrowed too

    def reset(self) -> None:
        for f in self.policies.iterdir():
            f.unlink()
        self.namespaces_file.unlink(missing_ok=True)
        self.secrets_file.unlink(missing_ok=True)
        self.workloads_file.unlink(missing_ok=True)
        self.initialise()

    def namespaces(self) -> dict[str, dict[str, str]]:
        return self._read(self.namespaces_file)

    def label_namespace(self, namespace: str, labels: Mapping[str, str | None]) -> bool:
        """Merge labels (None removes one); True when the namespace was created."""
        spaces = self.namespaces()
        created = namespace not in spaces
        current = spaces.setdefault(namespace, {NAME_LABEL: namespace})
        for key, value in labels.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = str(value)
        self._write(self.namespaces_file, spaces)
        return created

    def put_secret(self, secret: Mapping[str, Any]) -> bool:
        meta = secret.get("metadata") or {}
        key = f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"
        data = dict(secret.get("data") or {})
        for k, v in (secret.get("stringData") or {}).items():  # the API server folds stringData in
            data[k] = base64.b64encode(str(v).encode()).decode()
        secrets = self._read(self.secrets_file)
        created = key not in secrets
        secrets[key] = {"type": secret.get("type", "Opaque"), "data": data}
        self._write(self.secrets_file, secrets)
        return created

    def workload(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored (admitted, mutated) workload, or None."""
        return self._read(self.workloads_file).get(_workload_key(kind, namespace, name))

    def put_workload(self, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        workloads = self._read(self.workloads_file)
        workloads[_workload_key(str(obj.get("kind", "")), str(meta.get("namespace") or "default"),
                                str(meta.get("name", "")))] = dict(obj)
        self._write(self.workloads_file, workloads)

    def put_policy(self, doc: Mapping[str, Any]) -> bool:
        text = yaml.safe_dump(dict(doc), sort_keys=False)
        load_objects(text)  # rejected as the engine's admission would reject it, before it is stored
        path = self._policy_path(doc)
        created = not path.exists()
        write_atomic(path, text.encode())  # the webhook must never read half a file
        return created

    def _policy_path(self, doc: Mapping[str, Any]) -> Path:
        """One file per object: ``KIND[.NAMESPACE].NAME.yaml``."""
        meta = doc.get("metadata") or {}
        ns = f"{meta['namespace']}." if meta.get("namespace") else ""
        return self.policies / f"{str(doc['kind']).lower()}.{ns}{meta.get('name')}.yaml"

    def delete_policy(self, doc: Mapping[str, Any]) -> bool:
        """Remove a stored policy; False when there was none of that kind and name."""
        path = self._policy_path(doc)
        if not path.exists():
            return False
        path.unlink()
        return True

    def list_policies(self) -> list[dict[str, Any]]:
        """The stored policies, ordered by kind and name (temporary files do not end in ``.yaml``)."""
        return [yaml.safe_load(f.read_text()) or {} for f in sorted(self.policies.glob("*.yaml"))]

    def kyverno_failure_policies(self) -> set[str]:
        return {((doc.get("spec") or {}).get("failurePolicy")) or "Fail" for doc in self.list_policies()
                if str(doc.get("apiVersion", "")).startswith("kyverno.io/")}

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(path.read_text())
            return doc
        except FileNotFoundError:
            return {}

    def _write(self, path: Path, doc: Mapping[str, Any]) -> None:
        write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(),
                     mode=SECRETS_MODE if path == self.secrets_file else None)


@dataclass(frozen=True)
class Route:
    """One webhook as the API server knows it."""

    path: str
    mutating: bool
    engine: Engine
    reason: str  # the status reason the real engine puts on denials
    selects: Callable[[str, Mapping[str, str]], bool]
    timeout: int = 10  # the webhook's timeoutSeconds


def _kyverno_selects(namespace: str, labels: Mapping[str, str]) -> bool:
    return namespace not in KYVERNO_SKIPPED_NAMESPACES


def _pc_selects(namespace: str, labels: Mapping[str, str]) -> bool:
    return labels.get(PC_INCLUDE) == "true" and "webhooks.knative.dev/exclude" not in labels


# timeoutSeconds of the webhooks the lab registers: the call's timeout, and sent as ``?timeout=``
# for the webhook to answer by. Kyverno's is the API's default, 10 s (webhookTimeoutSeconds);
# policy-controller's release sets 25 s (config/500-webhook-configuration.yaml at v0.13.1).
WEBHOOK_TIMEOUT = 10
PC_WEBHOOK_TIMEOUT = 25

# Mutating configurations run in name order: kyverno-resource-mutating-webhook-cfg < policy.sigstore.dev.
ROUTES = (
    Route("/mutate/kyverno", True, Engine.KYVERNO, "", _kyverno_selects, WEBHOOK_TIMEOUT),
    Route("/mutate/policy-controller", True, Engine.POLICY_CONTROLLER, "BadRequest", _pc_selects, PC_WEBHOOK_TIMEOUT),
    Route("/validate/kyverno", False, Engine.KYVERNO, "", _kyverno_selects, WEBHOOK_TIMEOUT),
    Route("/validate/policy-controller", False, Engine.POLICY_CONTROLLER, "BadRequest", _pc_selects,
          PC_WEBHOOK_TIMEOUT),
)


class _CallFailed(Exception):
    """The webhook call itself failed (no answer in time, unreachable, not HTTP 200): the API
    server's failurePolicy decides, unlike an answer, which stands whatever it says."""


class ApiServer:
    """Creates workloads through the webhook over HTTPS, as kube-apiserver would."""

    def __init__(self, store: ObjectStore, webhook_url: str, ca_file: Path) -> None:
        self.store, self.webhook_url = store, webhook_url
        self.http = httpx.Client(base_url=webhook_url, timeout=WEBHOOK_TIMEOUT,
                                 trust_env=False,  # loopback: never proxied
                                 verify=ssl.create_default_context(cafile=str(ca_file)))

    def close(self) -> None:
        self.http.close()

    def webhook_name(self, route: Route, message: str = "") -> str:
        if route.engine is Engine.POLICY_CONTROLLER:
            return "policy.sigstore.dev"
        step = "mutate" if route.mutating else "validate"
        # ImageValidatingPolicies answer from their own webhooks, with "Policy <name> …" texts.
        if message.startswith(("Policy ", "annotations not present")):
            return f"ivpol.{step}.kyverno.svc-{self.ivp_failure_policy(message)}{self.ivp_fine_grained(message)}"
        failure = "ignore" if self.store.kyverno_failure_policies() == {"Ignore"} else "fail"
        return f"{step}.kyverno.svc-{failure}"

    def ivp_failure_policy(self, message: str) -> str:
        """``ignore`` when every ImageValidatingPolicy the denial names says failurePolicy Ignore:
        Kyverno serves those from ``ivpol.validate.kyverno.svc-ignore`` (and ``ivpol.mutate…``),
        the others from ``…-fail`` (``buildWebhookRules``, pkg/controllers/webhook/validating.go:
        197-213 and 276-286; ``config.ImageValidatingPolicy*WebhookName``). A denial is a denial
        either way: failurePolicy only decides what an unanswered call does."""
        named = set(re.findall(r"Policy (\S+) (?:failed|error): ", message))
        settings = {str((doc.get("metadata") or {}).get("name", "")):
                    (doc.get("spec") or {}).get("failurePolicy") or "Fail"
                    for doc in self.store.list_policies() if doc.get("kind") == "ImageValidatingPolicy"}
        chosen = {settings.get(name, "Fail") for name in named}
        return "ignore" if chosen == {"Ignore"} else "fail"

    def ivp_fine_grained(self, message: str) -> str:
        """``-finegrained-NAME`` when the one ImageValidatingPolicy the denial names has a webhook of
        its own: match conditions, ``matchPolicy: Exact`` or a ``timeoutSeconds`` (``buildWebhookRules``
        and ``generateName``, pkg/controllers/webhook/validating.go:30-38 and 481-487 at v1.19.1)."""
        named = set(re.findall(r"Policy (\S+) (?:failed|error): ", message))
        if len(named) != 1:
            return ""
        (name,) = named
        for doc in self.store.list_policies():
            meta, spec = doc.get("metadata") or {}, doc.get("spec") or {}
            if doc.get("kind") != "ImageValidatingPolicy" or meta.get("name") != name:
                continue
            own = (spec.get("matchConditions") or (spec.get("matchConstraints") or {}).get("matchPolicy") == "Exact"
                   or (spec.get("webhookConfiguration") or {}).get("timeoutSeconds") is not None)
            return f"-finegrained-{name}" if own else ""
        return ""

    def _incoming(self, obj: Mapping[str, Any], source: str | None,
                  verb: str) -> tuple[dict[str, Any], AdmissionResult, AdmissionResult | None]:
        """The workload as the API server takes it for ``verb`` (``create`` or ``replace``): a
        private copy the webhooks' patches apply to, its namespace defaulted; the result to fill
        in; and kubectl's error when it has no name."""
        kind = str(obj.get("kind", ""))
        if kind not in WORKLOAD_KINDS:
            raise UsageError(f"cannot {verb} {kind or 'an object without kind'} through admission",
                             hint=f"lab.{'create' if verb == 'create' else 'update'} takes workloads: "
                                  + ", ".join(WORKLOAD_KINDS))
        copied: dict[str, Any] = json.loads(json.dumps(obj))
        meta = copied.setdefault("metadata", {})
        name = meta.get("name") or ""
        base = AdmissionResult(False, "", kind=kind, name=name, namespace=meta.setdefault("namespace", "default"))
        nameless = None if name else replace(base, message=kubectl_error(
            f"{kind} \"\" is invalid: metadata.name: Required value: name or generateName is required",
            "Invalid", source, "creating" if verb == "create" else "replacing"))
        return copied, base, nameless

    def create(self, obj: Mapping[str, Any], source: str | None = None, *, dry_run: bool = False) -> AdmissionResult:
        obj, base, nameless = self._incoming(obj, source, "create")
        if nameless is not None:
            return nameless
        kind, name, namespace = base.kind, base.name, base.namespace
        labels = self.store.namespaces().get(namespace)
        if labels is None:
            return replace(base, message=kubectl_error(f'namespaces "{namespace}" not found', "NotFound", source))
        # One uid per request, which the stored object keeps (Kyverno names reports by it).
        uid = str(uuid.uuid4())
        result = self._admit(base, obj, labels, None, source, dry_run, uid)
        if not result.admitted:
            return result
        # The storage layer runs after admission, so a denial wins over AlreadyExists.
        if self.store.workload(kind, namespace, name) is not None:
            return replace(result, admitted=False, message=kubectl_error(
                f'{_qualified_resource(kind)} "{name}" already exists', "AlreadyExists", source))
        if not dry_run:
            stored = json.loads(json.dumps(result.object))
            stored["metadata"].setdefault("uid", uid)  # as the API server fills it in
            self.store.put_workload(stored)
        return replace(result, message=f"{kind_slash_name(obj)} created" + (" (server dry run)" if dry_run else ""))

    def update(self, obj: Mapping[str, Any], source: str | None = None, *, dry_run: bool = False) -> AdmissionResult:
        """``kubectl replace -f``: the stored object must exist (else NotFound, before any webhook);
        the webhooks get an UPDATE review with the stored object as ``oldObject``; what they
        admit replaces it (``pod/NAME replaced``)."""
        obj, base, nameless = self._incoming(obj, source, "replace")
        if nameless is not None:
            return nameless
        kind, name, namespace = base.kind, base.name, base.namespace
        old = self.store.workload(kind, namespace, name)
        labels = self.store.namespaces().get(namespace)
        if old is None or labels is None:
            return replace(base, message=kubectl_error(f'{_qualified_resource(kind)} "{name}" not found',
                                                       "NotFound", source, "replacing"))
        # The API server carries the stored uid over (rest.BeforeUpdate); a replaced object keeps it.
        uid = str((old.get("metadata") or {}).get("uid") or uuid.uuid4())
        obj["metadata"].setdefault("uid", uid)
        result = self._admit(base, obj, labels, old, source, dry_run, str(uuid.uuid4()))
        if not result.admitted:
            return result
        if not dry_run:
            self.store.put_workload(json.loads(json.dumps(result.object)))
        return replace(result, message=f"{kind_slash_name(obj)} replaced" + (" (server dry run)" if dry_run else ""))

    def _admit(self, base: AdmissionResult, obj: dict[str, Any], labels: Mapping[str, str],
               old: Mapping[str, Any] | None, source: str | None, dry_run: bool, uid: str) -> AdmissionResult:
        """Every selected webhook in the API server's order: mutating (patches applied in turn),
        then validating; the first denial is kubectl's error line."""
        kind, name, namespace = base.kind, base.name, base.namespace
        verb = "creating" if old is None else "replacing"
        warnings: list[str] = []
        consulted: list[str] = []
        for route in ROUTES:
            if not route.selects(namespace, labels):
                continue
            try:
                response = self._review(route, obj, namespace, name, kind, dry_run, old, uid)
            except _CallFailed as failure:
                webhook = self.webhook_name(route)
                if webhook.endswith("-ignore"):
                    continue  # failurePolicy Ignore: on as if the webhook were not there
                # failurePolicy Fail: kube-apiserver's InternalError (webhook ErrCallingWebhook)
                return replace(base, warnings=tuple(warnings), webhooks=(*consulted, webhook), denied_by=webhook,
                               controller=route.engine.value, object=obj, images=_images(obj),
                               message=kubectl_error(f'Internal error occurred: failed calling webhook "{webhook}": '
                                                     f"failed to call webhook: {failure}", "InternalError",
                                                     source, verb))
            warnings += response.get("warnings") or []
            status = response.get("status") or {}
            webhook = self.webhook_name(route, str(status.get("message", "")))
            consulted.append(webhook)
            if not response.get("allowed"):
                return replace(base, warnings=tuple(warnings), webhooks=tuple(consulted), denied_by=webhook,
                                controller=route.engine.value, object=obj, images=_images(obj),
                                message=kubectl_error(denied(webhook, status),
                                                      str(status.get("reason") or route.reason), source, verb))
            if route.mutating and response.get("patch"):
                obj = apply_patches(obj, json.loads(base64.b64decode(response["patch"])))
        return AdmissionResult(True, "", kind=kind, name=name,
                               namespace=namespace, warnings=tuple(warnings), images=_images(obj),
                               webhooks=tuple(consulted), object=obj)

    def _review(self, route: Route, obj: Mapping[str, Any], namespace: str, name: str, kind: str,
                dry_run: bool, old: Mapping[str, Any] | None = None, uid: str | None = None) -> dict[str, Any]:
        group = WORKLOAD_KINDS[kind]
        operation, options = ("CREATE", "CreateOptions") if old is None else ("UPDATE", "UpdateOptions")
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": plural(kind)},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": plural(kind)},
            "name": name, "namespace": namespace, "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options}}}
        url = f"{self.webhook_url}{route.path}?timeout={route.timeout}s"
        try:
            resp = self.http.post(url, json=review, timeout=route.timeout)
        except httpx.TimeoutException:
            raise _CallFailed(f'Post "{url}": context deadline exceeded') from None
        except httpx.HTTPError as exc:
            raise _CallFailed(f'Post "{url}": {exc}') from None
        if resp.status_code != 200:  # client-go's text for an error status without a Status body
            raise _CallFailed(f'an error on the server ("{resp.text[:300]}") has prevented the request '
                              "from succeeding")
        return dict(resp.json()["response"])


def _workload_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def _qualified_resource(kind: str) -> str:
    """``pods``, ``deployments.apps``: the resource as the API server's status errors name it."""
    group = WORKLOAD_KINDS.get(kind, "")
    return f"{plural(kind)}.{group}" if group else plural(kind)


def _images(obj: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(c.image for c in extract_images(obj, Engine.KYVERNO) or [])


def delete_object(store: ObjectStore, doc: Mapping[str, Any]) -> AdmissionResult:
    """``kubectl delete`` of one policy: ``clusterpolicy.kyverno.io "name" deleted`` or NotFound."""
    kind, meta = str(doc.get("kind", "")), doc.get("metadata") or {}
    group = api_group(doc)
    if group not in POLICY_GROUPS:
        raise UsageError(f"the embedded lab deletes policies only, not {kind} ({doc.get('apiVersion')})",
                         hint="`labkit lab reset` removes namespaces and Secrets too")
    name = str(meta.get("name", ""))
    resource = f"{kind.lower()}.{group}"
    warnings = deprecation_warnings(doc)
    if store.delete_policy(doc):
        return AdmissionResult(True, f'{resource} "{name}" deleted', kind=kind, name=name, warnings=warnings)
    return AdmissionResult(False, kubectl_error(f'{plural(kind)}.{group} "{name}" not found', "NotFound"),
                           kind=kind, name=name, warnings=warnings)


# Served but deprecated CRD versions of the policies the lab stores, with the CRD's
# deprecationWarning (kyverno v1.19.1 config/crds/kyverno/kyverno.io_clusterpolicies.yaml and
# kyverno.io_policies.yaml, from the +kubebuilder:deprecatedversion markers in
# api/kyverno/v1/clusterpolicy_types.go:29, policy_types.go:28 and their v2beta1 twins). The API
# server adds it to every request for that version, a refused one too
# (apiextensions-apiserver customresource_handler.go:319-321).
_MIGRATE_CLUSTER = ("migrate to ValidatingPolicy, MutatingPolicy, GeneratingPolicy or "
                    "ImageValidatingPolicy (policies.kyverno.io)")
_MIGRATE_NAMESPACED = ("migrate to NamespacedValidatingPolicy and the other namespaced policy types "
                       "(policies.kyverno.io)")
DEPRECATED_VERSIONS = {
    (f"kyverno.io/{version}", kind): (f"kyverno.io/{version} {kind} is deprecated and will be removed in a "
                                      f"future release; {migrate}, see https://kyverno.io/docs/guides/migration-to-cel/")
    for version in ("v1", "v2beta1")
    for kind, migrate in (("ClusterPolicy", _MIGRATE_CLUSTER), ("Policy", _MIGRATE_NAMESPACED))
}


def deprecation_warnings(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``Warning:`` line kubectl prints for a request to a deprecated CRD version."""
    warning = DEPRECATED_VERSIONS.get((str(doc.get("apiVersion", "")), str(doc.get("kind", ""))))
    return (warning,) if warning else ()


def store_object(store: ObjectStore, doc: Mapping[str, Any]) -> AdmissionResult:
    """Apply one non-workload object as ``kubectl apply`` would; ``created``/``configured``."""
    kind, meta = str(doc.get("kind", "")), doc.get("metadata") or {}
    group = api_group(doc)
    warnings = deprecation_warnings(doc)
    if kind == "Namespace":
        created = store.label_namespace(str(meta.get("name", "")), meta.get("labels") or {})
    elif kind == "Secret":
        created = store.put_secret(doc)
    elif group in POLICY_GROUPS:
        try:
            created = store.put_policy(doc)
        except PolicyError as exc:
            # The engines validate policies in their own webhooks; kubectl quotes the webhook.
            webhook = POLICY_WEBHOOKS[POLICY_GROUPS[group]]
            detail = exc.message.removeprefix("<policy>: ")
            return AdmissionResult(False, kubectl_error(f'admission webhook "{webhook}" denied the request: {detail}'),
                                   kind=kind, name=str(meta.get("name", "")), controller=POLICY_GROUPS[group],
                                   denied_by=webhook, warnings=warnings)
    else:
        raise UsageError(f"the embedded lab does not store {kind} ({doc.get('apiVersion')})",
                         hint="it takes Namespaces, Secrets, Kyverno and policy-controller policies, and workloads")
    return AdmissionResult(True, f"{kind_slash_name(doc)} {'created' if created else 'configured'}",
                           kind=kind, name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")),
                           warnings=warnings)
