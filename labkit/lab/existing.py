"""The existing backend: one learner's share of a cluster a trainer already runs.

The cluster runs Kyverno and the policy-controller (installed from the pinned charts:
``labkit lab install-engines``) and pulls from a registry the trainer names. Each learner's lab
is a set of namespaces, ``labkit-LEARNER`` (what notebooks call ``default``) and
``labkit-LEARNER-NAME`` (what they call ``NAME``), and a repository prefix ``REGISTRY/LEARNER``
(``lab.registry.host``), so two learners' pods, Secrets, images and signatures never meet.

Policies are scoped where the engine allows it (``docs/existing-backend.md`` has the table):
a Kyverno ClusterPolicy gets an ``exclude`` of every namespace that is not the learner's, an
ImageValidatingPolicy a ``matchConstraints.namespaceSelector``; a ClusterImagePolicy cannot be
limited to namespaces (policy-controller matches images, not namespaces), so applying one says
so. Everything labkit makes carries the label ``labkit.dev/learner=LEARNER``; reset and
``lab down`` delete only what carries it, and a cluster-scoped name another learner (or anyone
else) holds is refused rather than overwritten.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from labkit._internal.tools import tools_dir
from labkit.errors import LabError, UsageError
from labkit.lab.base import WORKLOAD_KINDS, AdmissionResult, RegistryInfo
from labkit.lab.cosign_artifacts import delete_cosign_artifacts
from labkit.lab.kubectl import ENGINE_NAMESPACES, MANAGED_BY, POLICY_RESOURCES, REPORTS_SETTLE, KubectlLab
from labkit.lab.names import api_group, kind_slash_name
from labkit.lab.native import KUBERNETES
from labkit.lab.state import LabHome, LabState, clear

LEARNER_LABEL = "labkit.dev/learner"
NAMESPACE_PREFIX = "labkit-"
# What the engines must have installed: their CRDs and the webhook configurations they register.
REQUIRED = {"kyverno": (("crd", "clusterpolicies.kyverno.io"), ("crd", "imagevalidatingpolicies.policies.kyverno.io"),
                        ("validatingwebhookconfiguration", "kyverno-policy-validating-webhook-cfg")),
            "policy-controller": (("crd", "clusterimagepolicies.policy.sigstore.dev"),
                                  ("mutatingwebhookconfiguration", "policy.sigstore.dev"))}
CLUSTER_POLICY, IVP, CIP = ("kyverno.io", "ClusterPolicy"), ("policies.kyverno.io", "ImageValidatingPolicy"), \
    ("policy.sigstore.dev", "ClusterImagePolicy")
_LEARNER = re.compile(r"^[a-z0-9]([a-z0-9-]{0,18}[a-z0-9])?$")


def learner_id(name: str) -> str:
    """A learner name as labkit uses it in namespaces, labels and repository paths: lower case,
    letters, digits and ``-``, at most 20 characters."""
    candidate = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not _LEARNER.match(candidate):
        raise UsageError(f"{name!r} cannot name a learner: use 1-20 letters, digits or '-'",
                         hint="pass --learner NAME (e.g. your first name)")
    return candidate


def kubeconfig_path(given: str | Path | None) -> Path:
    """``given``, else the first file of ``$KUBECONFIG``, else ``~/.kube/config``; it must exist."""
    config = Path(given or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or Path.home() / ".kube" / "config")
    if not config.is_file():
        raise LabError(f"no kubeconfig at {config}", hint="pass --kubeconfig FILE (your trainer has it)")
    return config.resolve()


def find_kubectl() -> str:
    """``kubectl`` on PATH, else the one ``make tools`` built for the native lab."""
    built = tools_dir() / f"kubectl-{KUBERNETES}"
    found = shutil.which("kubectl") or (str(built) if built.exists() else None)
    if found is None:
        raise LabError("the existing backend drives the cluster with kubectl, which is not on PATH",
                       hint="install it: https://kubernetes.io/docs/tasks/tools/")
    return found


class ExistingLab(KubectlLab):
    backend = "existing"

    def __init__(self, home: LabHome, state: LabState) -> None:
        super().__init__(home, state)
        self.kubectl_binary = state.info["kubectl"]
        self.learner = state.info["learner"]
        # the cluster runs the pods: builds put the app on its pinned FROM, as on kind, unless the
        # room has no way to that FROM's registry (`lab up --no-pull-base`)
        self.pulls_base_images = state.info.get("pull_base", "1") == "1"
        self._cluster_scoped: set[tuple[str, str]] | None = None

    # --- life cycle ------------------------------------------------------------------------

    @classmethod
    def launch(cls, home: LabHome, *, timeout: float = 60.0, kubeconfig: str | Path | None = None,
               context: str | None = None, registry: str | None = None, registry_pod_host: str | None = None,
               learner: str | None = None, pull_base: bool = True) -> ExistingLab:
        """Join the cluster ``kubeconfig`` (default ``$KUBECONFIG``, else ``~/.kube/config``) names
        as ``learner`` (default: the login name), with images under ``registry/learner``.
        ``registry_pod_host`` is the registry as the cluster names it, when that differs;
        ``pull_base=False`` keeps builds to the app layer (no registry beyond the room's)."""
        state = LabState.load(home)
        if state is not None:
            if state.backend != cls.backend:
                raise LabError(f"a {state.backend} lab is already recorded in {home.root}",
                               hint="stop it first (`labkit lab down`) or use another LABKIT_HOME")
            return cls.attach(home, state)
        if not registry:
            raise UsageError("the existing backend needs the registry the cluster pulls from",
                             hint="labkit lab up --backend existing --registry HOST:PORT (your trainer has it)")
        info = {"kubeconfig": str(kubeconfig_path(kubeconfig)), "kubectl": find_kubectl(),
                "learner": learner_id(learner or getpass.getuser()),
                "registry": registry.rstrip("/"), "registry_pod_host": (registry_pod_host or registry).rstrip("/"),
                "pull_base": "1" if pull_base else "0"}
        if context:
            info["context"] = context
        lab = cls(home, LabState(cls.backend, info=info))
        lab._require_engines()
        _require_registry(registry, timeout)
        home.create()
        lab._own_namespace(lab.namespace("default"))
        lab.state.save(home)
        return lab

    @classmethod
    def attach(cls, home: LabHome, state: LabState) -> ExistingLab:
        return cls(home, state)

    def stop_services(self) -> None:
        """Leave the cluster as it was: delete this learner's policies and namespaces."""
        self._delete_owned()
        clear(self.home)

    # --- the interface ---------------------------------------------------------------------

    @property
    def registry(self) -> RegistryInfo:
        info = self.state.info
        return RegistryInfo(host=f"{info['registry']}/{self.learner}",
                            pod_host=f"{info['registry_pod_host']}/{self.learner}")

    def served_registries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.state.info["registry"], self.state.info["registry_pod_host"])))

    def namespace(self, name: str) -> str:
        if name in ENGINE_NAMESPACES:
            raise LabError(f"the {name} namespace belongs to the shared cluster's engines, not to one learner",
                           hint="on a shared cluster, ask your trainer to add what the engines must read")
        base = f"{NAMESPACE_PREFIX}{self.learner}"
        return base if name == "default" else f"{base}-{name}"

    def prepare(self, doc: dict[str, Any]) -> dict[str, Any]:
        doc = super().prepare(doc)
        doc = json.loads(json.dumps(doc))
        meta = doc.setdefault("metadata", {})
        key = (api_group(doc), str(doc.get("kind")))
        if key == ("", "Namespace"):
            meta["name"] = self.namespace(str(meta.get("name", "")))
        elif key not in self.cluster_scoped():
            meta["namespace"] = self.namespace(str(meta.get("namespace") or "default"))
        if doc.get("kind") not in WORKLOAD_KINDS:
            meta.setdefault("labels", {})[LEARNER_LABEL] = self.learner
        if key == CLUSTER_POLICY:
            _exclude_others(doc, self.learner)
        elif key == IVP:
            constraints = doc.setdefault("spec", {}).setdefault("matchConstraints", {})
            selector = constraints.setdefault("namespaceSelector", {})
            selector.setdefault("matchExpressions", []).append(
                {"key": LEARNER_LABEL, "operator": "In", "values": [self.learner]})
        return doc

    def send(self, docs: list[dict[str, Any]], where: str | None) -> list[AdmissionResult]:
        for doc in docs:
            self._require_ours(doc)
        return [_with_warning(result, self._cip_warning(doc))
                if result.admitted and (api_group(doc), doc.get("kind")) == CIP else result
                for doc, result in zip(docs, super().send(docs, where), strict=True)]

    def label_namespace(self, namespace: str, labels: Mapping[str, str | None]) -> None:
        if LEARNER_LABEL in labels:
            raise UsageError(f"{LEARNER_LABEL} is labkit's: it marks whose namespace this is")
        self._own_namespace(self.namespace(namespace))
        super().label_namespace(namespace, labels)

    def policies(self) -> list[dict[str, Any]]:
        out = self.kubectl("get", ",".join(POLICY_RESOURCES), "--all-namespaces", "-l", self._selector(), "-o", "json")
        if out.returncode != 0:
            raise LabError(f"kubectl get policies failed: {out.stderr.strip()}")
        return list(json.loads(out.stdout).get("items", []))

    def reports(self, *, settle: float = REPORTS_SETTLE) -> list[dict[str, Any]]:
        mine = set(self._namespaces())
        return [r for r in super().reports(settle=settle) if (r.get("metadata") or {}).get("namespace") in mine]

    def reset(self) -> None:
        self._delete_owned()
        self._own_namespace(self.namespace("default"))
        delete_cosign_artifacts(self.state.info["registry"], prefix=f"{self.learner}/")

    def status(self) -> dict[str, Any]:
        health = {engine: f"not installed: {', '.join(missing)}" if missing else "ok"
                  for engine, missing in self._missing_objects().items()}
        return {"backend": self.backend, "home": str(self.home.root), "registry": self.registry.host,
                "webhook": "the cluster's Kyverno and policy-controller", "kubeconfig": self.kubeconfig,
                "context": self.state.info.get("context", "(current)"), "learner": self.learner,
                "namespaces": self._namespaces(), "health": health}

    # --- what is whose ---------------------------------------------------------------------

    def cluster_scoped(self) -> set[tuple[str, str]]:
        """(API group, kind) of every cluster-scoped resource the API server serves."""
        if self._cluster_scoped is None:
            out = self.kubectl("api-resources", "--namespaced=false", "--no-headers")
            if out.returncode != 0:
                raise LabError(f"kubectl api-resources failed: {out.stderr.strip()}")
            rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
            # NAME [SHORTNAMES] APIVERSION NAMESPACED KIND: read from the right
            self._cluster_scoped = {(row[-3].rpartition("/")[0], row[-1]) for row in rows if len(row) >= 4}
        return self._cluster_scoped

    def _selector(self) -> str:
        return f"{LEARNER_LABEL}={self.learner}"

    def _namespaces(self) -> list[str]:
        out = self.kubectl("get", "namespaces", "-l", self._selector(), "-o", "jsonpath={.items[*].metadata.name}")
        return out.stdout.split() if out.returncode == 0 else []

    def _own_namespace(self, name: str) -> None:
        """Create ``name`` labelled as this learner's, or check that it already is."""
        out = self.kubectl("get", "namespace", name, "-o", "json")
        if out.returncode != 0:
            body = {"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": name, "labels": {LEARNER_LABEL: self.learner, MANAGED_BY[0]: MANAGED_BY[1]}}}
            self.must("create", "-f", "-", stdin=json.dumps(body))
            return
        owner = (json.loads(out.stdout)["metadata"].get("labels") or {}).get(LEARNER_LABEL)
        if owner != self.learner:
            raise LabError(f"namespace {name} exists and is not {self.learner}'s "
                           f"({'learner ' + owner if owner else 'not made by labkit'})",
                           hint="choose another learner name: labkit lab up --backend existing --learner NAME")

    def _require_ours(self, doc: Mapping[str, Any]) -> None:
        """A cluster-scoped object of that name must not exist, or be this learner's: applying
        would otherwise overwrite someone else's."""
        key = (api_group(doc), str(doc.get("kind")))
        meta = doc.get("metadata") or {}
        if key not in self.cluster_scoped() or key == ("", "Namespace"):
            return
        resource = kind_slash_name(doc)
        out = self.kubectl("get", resource, "-o", "json")
        if out.returncode != 0:
            return
        owner = (json.loads(out.stdout)["metadata"].get("labels") or {}).get(LEARNER_LABEL)
        if owner != self.learner:
            holder = f"learner {owner}'s" if owner else "not made by labkit"
            raise LabError(f"{resource} already exists on the shared cluster and is {holder}",
                           hint=f"give your policy another name, e.g. {self.learner}-{meta.get('name')}")

    def _missing_objects(self) -> dict[str, list[str]]:
        """Per engine, which of its :data:`REQUIRED` objects the cluster lacks (one kubectl call)."""
        wanted = [(engine, what, name) for engine, objects in REQUIRED.items() for what, name in objects]
        listed = self.kubectl("get", *(f"{what}/{name}" for _, what, name in wanted), "-o", "name").stdout.split()
        return {engine: [f"{what}/{name}" for e, what, name in wanted
                         if e == engine and not any(line.endswith(f"/{name}") for line in listed)]
                for engine in REQUIRED}

    def _require_engines(self) -> None:
        probe = self.kubectl("get", "--raw", "/readyz")
        if probe.returncode != 0:
            raise LabError(f"the cluster in {self.kubeconfig} does not answer: {probe.stderr.strip()}",
                           hint="check the kubeconfig and --context your trainer gave you")
        missing = [f"{engine} ({', '.join(objects)})" for engine, objects in self._missing_objects().items() if objects]
        if missing:
            raise LabError(f"the cluster does not run {' and '.join(missing)}",
                           hint="the trainer installs both from labkit's pinned charts: labkit lab install-engines")

    def _cip_warning(self, doc: Mapping[str, Any]) -> str:
        globs = [str(i.get("glob", "")) for i in (doc.get("spec") or {}).get("images") or []]
        beyond = [g for g in globs if not g.startswith(f"{self.registry.pod_host}/")]
        text = ("ClusterImagePolicy cannot be limited to your namespaces (policy-controller matches images, "
                "not namespaces): it decides every opted-in namespace's pods whose images match it")
        return text + (f"; {', '.join(beyond)} reaches beyond your images ({self.registry.pod_host}/…)"
                       if beyond else "")

    def _delete_owned(self) -> None:
        cluster_policies = [r for r in POLICY_RESOURCES if not r.startswith("policies.kyverno.io")]
        self.kubectl("delete", ",".join(cluster_policies), "-l", self._selector(), "--ignore-not-found")
        self.delete_namespaces(self._namespaces())



def _exclude_others(doc: dict[str, Any], learner: str) -> None:
    """Every rule of a ClusterPolicy leaves out namespaces that are not ``learner``'s: one more
    ``exclude.any`` entry (entries of ``any`` are alternatives, so the rule's own still hold)."""
    others = {"resources": {"namespaceSelector": {"matchExpressions": [
        {"key": LEARNER_LABEL, "operator": "NotIn", "values": [learner]}]}}}
    for rule in (doc.get("spec") or {}).get("rules") or []:
        exclude = rule.setdefault("exclude", {})
        if "all" in exclude:
            raise UsageError(f"rule {rule.get('name')!r} excludes with `all`, which labkit cannot narrow to your "
                             "namespaces on a shared cluster", hint="write the exclusion as `exclude: any:`")
        legacy = {k: exclude.pop(k) for k in list(exclude) if k != "any"}  # exclude.resources/subjects/… as one entry
        exclude["any"] = [*exclude.get("any", []), *([legacy] if legacy else []), others]


def _with_warning(result: AdmissionResult, warning: str) -> AdmissionResult:
    return dataclasses.replace(result, warnings=(*result.warnings, warning))


def _require_registry(registry: str, timeout: float) -> None:
    """The registry answers the OCI distribution API (200, or 401 asking for credentials)."""
    for scheme in ("https", "http"):
        try:
            code = httpx.get(f"{scheme}://{registry}/v2/", timeout=min(timeout, 10), trust_env=False).status_code
        except httpx.HTTPError:
            continue
        if code in (200, 401):
            return
    raise LabError(f"no registry answers at {registry} (GET /v2/ over https and http)",
                   hint="check the registry address your trainer gave you (HOST:PORT)")

