"""Lab operations through ``kubectl`` against a real API server: shared by the native and kind backends.

Everything a learner does goes through the same verbs they would type (``kubectl create``,
``apply``, ``replace``, ``delete``, ``label``, ``wait``), so every message is kubectl's own and
every decision is the real webhooks'. The backends differ only in how the cluster, its engines
and its registry come to be (:mod:`labkit.lab.native`, :mod:`labkit.lab.kind`).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from labkit.errors import LabError
from labkit.lab.base import WORKLOAD_KINDS, AdmissionResult, Lab, load_documents
from labkit.lab.cosign_artifacts import delete_cosign_artifacts
from labkit.lab.environment import shell_environment
from labkit.lab.names import POLICY_GROUPS, api_group, kind_slash_name, plural
from labkit.lab.state import LabHome, LabState
from labkit.policy.podspec import Engine, extract_images

POLICY_RESOURCES = ("clusterpolicies.kyverno.io", "policies.kyverno.io",
                    "imagevalidatingpolicies.policies.kyverno.io", "clusterimagepolicies.policy.sigstore.dev")
WORKLOAD_RESOURCES = "pods,deployments,statefulsets,daemonsets,jobs,cronjobs"
# Namespaces a reset keeps: the API server's own and the engines'.
KEPT_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease", "local-path-storage",
                   "kyverno", "cosign-system"}
# Secrets labkit stores carry this label, so a reset removes those (and only those) from the engines'
# namespaces, where Kyverno reads registry credentials.
MANAGED_BY = ("app.kubernetes.io/managed-by", "labkit")
ENGINE_NAMESPACES = ("kyverno", "cosign-system")
# policy-controller compiles each ClusterImagePolicy into this ConfigMap; its webhook reads it.
PC_POLICIES = ("cosign-system", "config-image-policies")
PC_TRUST_ROOTS = "config-sigstore-keys"  # where policy-controller compiles TrustRoots (pkg/apis/config)
KUBECTL_TIMEOUT = 300.0
READY_TIMEOUT = 120.0
REPORTS_SETTLE = 90.0
SECRET_SETTLE = 1.0
_DENIED_BY = re.compile(r'admission webhook "([^"]+)" denied the request')


def run_kubectl(binary: str, kubeconfig: str | Path, args: Sequence[str], *, stdin: str | None = None,
                timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """One bounded kubectl call; its exit status and output are the caller's to read."""
    try:
        return subprocess.run([binary, "--kubeconfig", str(kubeconfig), *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"kubectl {' '.join(args[:3])} did not finish within {timeout:g}s",
                       hint="check the lab: `labkit lab status`") from None


def controller_of(webhook: str) -> str:
    return "policy-controller" if "sigstore" in webhook else "kyverno"


class KubectlLab(Lab):
    """A lab whose cluster is a real API server, reached with ``kubectl --kubeconfig``."""

    kubectl_binary = "kubectl"

    def __init__(self, home: LabHome, state: LabState) -> None:
        super().__init__(home, state)
        self.kubeconfig = state.info["kubeconfig"]
        context = state.info.get("context")
        self.kubectl_options: tuple[str, ...] = ("--context", context) if context else ()

    def env(self) -> dict[str, str]:
        """As :meth:`Lab.env`, with ``KUBECONFIG`` for the lab's API server (and, where labkit runs
        its own kubectl, that kubectl linked into ``$LABKIT_HOME/bin``)."""
        kubectl = self.kubectl_binary if Path(self.kubectl_binary).is_absolute() else None
        return shell_environment(self.home, self.backend, self.env_addresses(), kubeconfig=str(self.kubeconfig),
                                 kubectl=kubectl)

    # --- hooks for the backends ------------------------------------------------------------

    def prepare_policy(self, doc: dict[str, Any]) -> dict[str, Any]:
        """A policy as this backend must store it (kind marks its HTTP registries insecure)."""
        return doc

    def prepare(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Any object as this backend sends it: policies through :meth:`prepare_policy`, Secrets
        labelled as labkit's (so :meth:`reset` finds them in the engines' namespaces)."""
        if api_group(doc) in POLICY_GROUPS:
            return self.prepare_policy(doc)
        if doc.get("kind") == "Secret" and doc.get("apiVersion") == "v1":
            doc = json.loads(json.dumps(doc))
            doc.setdefault("metadata", {}).setdefault("labels", {}).setdefault(*MANAGED_BY)
        return doc

    # --- the interface ---------------------------------------------------------------------

    def apply(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        docs, where = load_documents(source)
        return self.send([self.prepare(doc) for doc in docs], where)

    def send(self, docs: list[dict[str, Any]], where: str | None) -> list[AdmissionResult]:
        """Apply prepared objects, in order: workloads through ``kubectl create``, the rest ``apply``."""
        return [self._create(doc, where) if doc.get("kind") in WORKLOAD_KINDS else self._apply(doc) for doc in docs]

    def create(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        return self._create(*self._one(resource), dry_run=dry_run)

    def update(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        return self._create(*self._one(resource), dry_run=dry_run, verb="replace")

    def delete(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        results = []
        for doc in map(self.prepare, load_documents(source)[0]):
            meta = doc.get("metadata") or {}
            out = self.kubectl("delete", "-f", "-", stdin=yaml.safe_dump(doc))
            ok = out.returncode == 0
            if ok and api_group(doc) == "policy.sigstore.dev":
                self._wait_pc_policy(str(meta.get("name", "")), present=False, kind=str(doc.get("kind")))
            results.append(AdmissionResult(ok, (out.stdout if ok else out.stderr).strip(), kind=str(doc.get("kind")),
                                           name=str(meta.get("name", "")), namespace=str(meta.get("namespace", ""))))
        return results

    def policies(self) -> list[dict[str, Any]]:
        out = self.kubectl("get", ",".join(POLICY_RESOURCES), "--all-namespaces", "-o", "json")
        if out.returncode != 0:
            raise LabError(f"kubectl get policies failed: {out.stderr.strip()}")
        return list(json.loads(out.stdout).get("items", []))

    def label_namespace(self, namespace: str, labels: Mapping[str, str | None]) -> None:
        namespace = self.namespace(namespace)
        if self.kubectl("get", "namespace", namespace).returncode != 0:
            self.must("create", "namespace", namespace)
        args = [f"{k}-" if v is None else f"{k}={v}" for k, v in labels.items()]
        if args:
            self.must("label", "namespace", namespace, "--overwrite", *args)

    def reports(self, *, settle: float = REPORTS_SETTLE) -> list[dict[str, Any]]:
        """PolicyReports once Kyverno's reports controller has caught up: admission results reach
        it as EphemeralReports, aggregated into PolicyReports some seconds later, so wait until
        none is pending and the result count holds still (at most ``settle`` seconds)."""
        deadline, last = time.monotonic() + settle, None
        while True:
            pending = self.kubectl("get", "ephemeralreports.reports.kyverno.io", "--all-namespaces", "-o", "name")
            out = self.kubectl("get", "policyreports.wgpolicyk8s.io", "--all-namespaces", "-o", "json")
            if out.returncode != 0:
                raise LabError(f"kubectl get policyreports failed: {out.stderr.strip()}")
            items = list(json.loads(out.stdout).get("items", []))
            count = sum(len(r.get("results") or []) for r in items)
            settled = pending.returncode == 0 and not pending.stdout.strip() and count == last
            if settled or time.monotonic() > deadline:
                return items
            last = count
            time.sleep(1)

    def reset(self) -> None:
        for resource in POLICY_RESOURCES:
            self.kubectl("delete", resource, "--all", "--all-namespaces", "--ignore-not-found")
            if resource.endswith("policy.sigstore.dev"):
                self._wait_pc_policies_dropped()
        listed = self.kubectl("get", "namespaces", "-o", "jsonpath={.items[*].metadata.name}")
        self.delete_namespaces([ns for ns in listed.stdout.split() if ns not in KEPT_NAMESPACES])
        self.kubectl("delete", WORKLOAD_RESOURCES, "--all", "-n", "default", "--ignore-not-found")
        self.kubectl("delete", "secrets", "-n", "default", "--field-selector", "type=kubernetes.io/dockerconfigjson")
        for namespace in ENGINE_NAMESPACES:  # the registry credentials learners gave Kyverno
            self.kubectl("delete", "secrets", "-n", namespace, "-l", "=".join(MANAGED_BY), "--ignore-not-found")
        self.delete_signatures()

    def delete_signatures(self) -> None:
        """cosign's signatures, attestations and SBOMs in the lab's registries (part of :meth:`reset`)."""
        delete_cosign_artifacts(self.registry.host)
        delete_cosign_artifacts(self.private_registry.host, self.private_registry.credentials())

    def delete_namespaces(self, names: Sequence[str]) -> None:
        """Delete ``names`` and return once they are gone (the namespace controller empties each
        first), so a notebook re-run right after a reset can create them again."""
        if not names:
            return
        out = self.kubectl("delete", "namespace", *names, "--ignore-not-found", "--wait=true",
                           f"--timeout={int(READY_TIMEOUT)}s", timeout=READY_TIMEOUT + 30)
        if out.returncode != 0:
            raise LabError(f"namespaces {', '.join(names)} were not deleted within {READY_TIMEOUT:g}s: "
                           f"{out.stderr.strip()}", hint="`kubectl get namespace -o yaml` shows what holds them "
                           "(their status.conditions); run `labkit lab reset` again once they are gone")

    # --- kubectl ---------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None,
                timeout: float = KUBECTL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return run_kubectl(self.kubectl_binary, self.kubeconfig, [*self.kubectl_options, *args], stdin=stdin,
                           timeout=timeout)

    def must(self, *args: str, stdin: str | None = None) -> str:
        out = self.kubectl(*args, stdin=stdin)
        if out.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def _one(self, resource: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        docs, where = load_documents(resource)
        if len(docs) != 1:
            raise LabError(f"one object expected, got {len(docs)}", hint="use lab.apply for several")
        return self.prepare(docs[0]), where

    def _apply(self, doc: dict[str, Any]) -> AdmissionResult:
        group = api_group(doc)
        out = self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
        meta = doc.get("metadata") or {}
        warnings = _warnings(out.stderr)
        base: dict[str, Any] = {"kind": str(doc["kind"]), "name": str(meta.get("name", "")),
                                    "namespace": str(meta.get("namespace", "")), "warnings": warnings}
        if out.returncode != 0:
            webhook = _DENIED_BY.search(out.stderr)
            return AdmissionResult(False, _message(out.stderr), controller=POLICY_GROUPS.get(group),
                                   denied_by=webhook.group(1) if webhook else None, **base)
        if group in POLICY_GROUPS:
            self._wait_ready(doc)
        elif doc.get("kind") == "Secret" and meta.get("namespace") in ENGINE_NAMESPACES:
            # Kyverno reads registry credentials from its informer's cache, which shows no sign of
            # having caught up; a watch event reaches it well within this on one machine.
            time.sleep(SECRET_SETTLE)
        return AdmissionResult(True, out.stdout.strip(), **base)

    def _wait_ready(self, doc: Mapping[str, Any]) -> None:
        """Return once the engine enforces the policy: Kyverno registers webhooks asynchronously
        and says so in the policy's status; policy-controller compiles it into a ConfigMap."""
        meta, group = doc.get("metadata") or {}, api_group(doc)
        name = str(meta.get("name", ""))
        if group == "policy.sigstore.dev":
            self._wait_pc_policy(name, present=True, kind=str(doc.get("kind")))
            return
        resource = f"{str(doc['kind']).lower()}.{group}/{name}"
        condition = ("--for=jsonpath={.status.conditionStatus.ready}=true" if group == "policies.kyverno.io"
                     else "--for=condition=Ready")
        out = self.kubectl("wait", condition, resource, f"--timeout={int(READY_TIMEOUT)}s",
                           *(["-n", meta["namespace"]] if meta.get("namespace") else []), timeout=READY_TIMEOUT + 30)
        if out.returncode != 0:
            raise LabError(f"{resource} did not become ready within {READY_TIMEOUT:g}s: {out.stderr.strip()}",
                           hint=f"kubectl describe {resource} shows the engine's reason")
        self._wait_kyverno_webhooks(resource, meta)

    def _wait_kyverno_webhooks(self, resource: str, meta: Mapping[str, Any]) -> None:
        """Ready comes before Kyverno has computed the policy's autogen rules (Deployments, Jobs, …)
        and added their resources to its webhooks; until then such objects are not even sent to it."""
        namespace = ["-n", meta["namespace"]] if meta.get("namespace") else []
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            policy = json.loads(self.must("get", resource, "-o", "json", *namespace))
            wanted = _policy_resources(policy)
            listed = json.loads(self.must("get", "mutatingwebhookconfigurations,validatingwebhookconfigurations",
                                          "-o", "json"))["items"]
            served = {r for cfg in listed if cfg["metadata"]["name"].startswith("kyverno-resource-")
                      for hook in cfg.get("webhooks") or [] for rule in hook.get("rules") or []
                      for r in rule.get("resources") or []}
            if wanted is not None and wanted <= served:
                return
            time.sleep(0.2)
        raise LabError(f"Kyverno did not register webhooks for every kind {resource} matches within "
                       f"{READY_TIMEOUT:g}s", hint="see the Kyverno log (`labkit lab status` names it)")

    def _wait_pc_policy(self, name: str, *, present: bool, kind: str = "ClusterImagePolicy") -> None:
        """policy-controller compiles ClusterImagePolicies (and TrustRoots) asynchronously: wait until
        ``name`` is in (or out of) the ConfigMap its webhook decides from."""
        self._until_compiled(lambda names: (name in names) == present,
                             f"{'compile' if present else 'drop'} {kind} {name}",
                             PC_TRUST_ROOTS if kind == "TrustRoot" else PC_POLICIES[1])

    def _wait_pc_policies_dropped(self) -> None:
        self._until_compiled(lambda names: not names, "drop every ClusterImagePolicy")

    def _until_compiled(self, done: Callable[[set[str]], bool], what: str, configmap: str = PC_POLICIES[1]) -> None:
        namespace = PC_POLICIES[0]
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            out = self.kubectl("get", "configmap", configmap, "-n", namespace, "-o", "json")
            data = json.loads(out.stdout).get("data") or {} if out.returncode == 0 else {}
            names = {key for key in data if not key.startswith("_")}  # knative's `_example` is no policy
            if done(names):
                return
            time.sleep(0.2)
        raise LabError(f"policy-controller did not {what} within {READY_TIMEOUT:g}s",
                       hint="see the policy-controller log (`labkit lab status`)")

    def _create(self, doc: Mapping[str, Any], source: str | None, *, dry_run: bool = False,
                verb: str = "create") -> AdmissionResult:
        meta = doc.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        # One document at a time through stdin; kubectl names the file as it would have read it.
        out = self.kubectl(verb, "-o", "json", *(["--dry-run=server"] if dry_run else []), "-f", "-",
                           stdin=json.dumps(doc))
        base: dict[str, Any] = {"kind": str(doc.get("kind")), "name": str(meta.get("name", "")),
                                    "namespace": namespace, "warnings": _warnings(out.stderr)}
        if out.returncode != 0:
            message = _message(out.stderr)
            # an object, not a file: no `error when creating "…"`, as in the embedded lab
            stdin_prefix = f'error when {"replacing" if verb == "replace" else "creating"} "STDIN": '
            message = message.replace(stdin_prefix, stdin_prefix.replace("STDIN", source) if source else "")
            webhook = _DENIED_BY.search(message)
            name = webhook.group(1) if webhook else None
            return AdmissionResult(False, message, denied_by=name,
                                   controller=None if name is None else controller_of(name), **base)
        created = json.loads(out.stdout)
        images = tuple(c.image for c in extract_images(created, Engine.KYVERNO) or [])
        done = "replaced" if verb == "replace" else "created"
        message = f"{kind_slash_name(created)} {done}" + (" (server dry run)" if dry_run else "")
        return AdmissionResult(True, message, images=images, object=created, **base)


def _policy_resources(policy: Mapping[str, Any]) -> set[str] | None:
    """The resources a Kyverno policy's webhooks must cover, its autogen rules included; None until
    Kyverno has written the policy's status (``autogen`` is there, empty when it generates none)."""
    spec, status = policy.get("spec") or {}, policy.get("status") or {}
    autogen = status.get("autogen") or {}
    if policy.get("apiVersion", "").startswith("policies.kyverno.io/"):
        rules = [(spec.get("matchConstraints") or {}).get("resourceRules") or []]
        rules += [((c.get("spec") or {}).get("matchConstraints") or {}).get("resourceRules") or []
                  for c in (autogen.get("configs") or {}).values()]
        return {r for rr in rules for rule in rr for r in rule.get("resources") or []}
    if "autogen" not in status:
        return None
    kinds = [k for rule in [*(spec.get("rules") or []), *(autogen.get("rules") or [])]
             for block in (rule.get("match") or {}).get("any") or (rule.get("match") or {}).get("all") or []
             for k in (block.get("resources") or {}).get("kinds") or []]
    kinds += [k for rule in spec.get("rules") or []
              for k in ((rule.get("match") or {}).get("resources") or {}).get("kinds") or []]
    return {plural(k.rpartition("/")[2]) for k in kinds}



def _warnings(stderr: str) -> tuple[str, ...]:
    return tuple(line[len("Warning: "):] for line in stderr.splitlines() if line.startswith("Warning: "))


def _message(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("Warning: ")).strip()
