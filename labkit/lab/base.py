"""The ``Lab`` interface notebooks use, whatever runs behind it: labkit's loopback services, the
real engines as local processes, or kind."""

from __future__ import annotations

import abc
import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit._internal.files import names_a_file
from labkit._internal.yamlsafe import METADATA_HINT, YAMLInputError, load_all, object_meta_error
from labkit.errors import LabError, UsageError
from labkit.lab.environment import shell_environment
from labkit.lab.stale import StalePolicy, stale_policies
from labkit.lab.state import LabHome, LabState
from labkit.oci.auth import Credentials
from labkit.oci.base_image import PULL_BASE_ENV

if TYPE_CHECKING:
    from labkit.lab.sigstore import LocalSigstore

# Objects the lab creates through admission; everything else is configuration it stores.
WORKLOAD_KINDS = {"Pod": "", "Deployment": "apps", "ReplicaSet": "apps", "StatefulSet": "apps",
                  "DaemonSet": "apps", "Job": "batch", "CronJob": "batch"}


@dataclass(frozen=True)
class RegistryInfo:
    """Where images go. ``host`` is what you push to from this machine; ``pod_host`` is what pod
    specs and policies name (the same registry, as the cluster's nodes and controllers reach it)."""

    host: str
    pod_host: str

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@dataclass(frozen=True)
class PrivateRegistry(RegistryInfo):
    """A registry that wants basic auth: push with ``credentials()``, let the cluster pull with
    the Secret from ``pull_secret()`` (what ``kubectl create secret docker-registry`` makes)."""

    username: str = ""
    password: str = field(default="", repr=False)

    def credentials(self) -> Credentials:
        return Credentials(self.username, self.password)

    def pull_secret(self, name: str = "regcred", namespace: str = "default") -> dict[str, Any]:
        auth = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        config = {"auths": {self.pod_host: {"username": self.username, "password": self.password, "auth": auth}}}
        return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                "metadata": {"name": name, "namespace": namespace},
                "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


@dataclass(frozen=True)
class AdmissionResult:
    """What creating one object came to, as ``kubectl create`` would report it.

    ``message`` is kubectl's line: ``pod/app created`` or ``Error from server: admission webhook
    "…" denied the request: …``. ``warnings`` are the ``Warning:`` lines kubectl prints on stderr.
    ``images`` are the container images after mutation (tags pinned to digests). ``denied_by`` is
    the webhook that refused it and ``controller`` its engine (``kyverno`` / ``policy-controller``);
    ``webhooks`` lists every webhook that reviewed it, in order.
    """

    admitted: bool
    message: str
    kind: str = ""
    name: str = ""
    namespace: str = ""
    warnings: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    denied_by: str | None = None
    controller: str | None = None
    webhooks: tuple[str, ...] = ()
    object: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return "\n".join([*(f"Warning: {w}" for w in self.warnings), self.message])


def pod(name: str, image: str, namespace: str = "default") -> dict[str, Any]:
    """A one-container Pod, as ``kubectl run NAME --image IMAGE -n NAMESPACE --dry-run=client -o yaml``
    would write it (minus its defaults)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": name, "image": image}]}}


def load_documents(source: str | Path | Mapping[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    """YAML documents from a path, a YAML string or one object; also the file name kubectl would
    quote in ``error when creating "FILE"`` (None for objects not read from a file)."""
    if isinstance(source, Mapping):
        return [dict(source)], None
    text, where = str(source), None
    data: str | bytes = text
    if isinstance(source, Path) or names_a_file(text):
        where = str(source)
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    try:
        docs = [d for d in load_all(data) if d is not None]
    except YAMLInputError as exc:
        raise UsageError(f"{where or 'the given YAML'}: {exc}", hint=exc.hint) from None
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise UsageError(f"{where or 'the given YAML'}: every document must be a Kubernetes object "
                             "with apiVersion and kind")
        if meta_error := object_meta_error(doc):
            raise UsageError(f'unable to decode "{where or "the given YAML"}": {meta_error}', hint=METADATA_HINT)
    return docs, where


class Lab(abc.ABC):
    """One lab: a registry, admission control, namespaces and their labels.

    ``Lab.start(backend="embedded")`` starts one (or returns the one already running in this
    ``LABKIT_HOME``); ``Lab.connect()`` finds a running one, e.g. after a kernel restart.
    """

    backend: str
    # Whether `labkit build` puts the sample on its FROM image here (LABKIT_BUILD_PULL_BASE=1 in
    # env()): only where pods really run images and the internet is at hand (kind). The embedded
    # and native labs never run them and stay offline, so their images are the app layer alone.
    pulls_base_images = False

    def __init__(self, home: LabHome, state: LabState) -> None:
        self.home, self.state = home, state

    @staticmethod
    def start(backend: str = "embedded", home: Path | str | None = None, **options: Any) -> Lab:
        """Start a lab (``embedded``, ``native``, ``kind`` or ``existing``) in ``home``, or return the
        one running there; ``sigstore=True`` adds the lab's own Sigstore: :func:`labkit.lab.factory.start`."""
        return _factory["start"](backend, home, **options)

    @staticmethod
    def connect(home: Path | str | None = None) -> Lab:
        """The lab running in ``home``: :func:`labkit.lab.factory.connect`."""
        return _factory["connect"](home)

    # What a backend implements for the factory (Lab.start and Lab.connect are the public calls).

    @classmethod
    @abc.abstractmethod
    def launch(cls, home: LabHome, *, timeout: float) -> Lab:
        """Start this backend's lab in ``home``, or return the one already running there."""

    @classmethod
    @abc.abstractmethod
    def attach(cls, home: LabHome, state: LabState) -> Lab:
        """The lab ``state`` records as running in ``home``; a clear error if it is not."""

    @property
    @abc.abstractmethod
    def registry(self) -> RegistryInfo: ...

    @property
    def private_registry(self) -> PrivateRegistry:
        """A second registry that needs credentials, for the private-registry exercise."""
        raise LabError(f"the {self.backend} lab has no private registry", hint="use the embedded backend for it")

    @abc.abstractmethod
    def apply(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        """Apply policies, Secrets, Namespaces and workloads; one result per object, in order."""

    @abc.abstractmethod
    def delete(self, source: str | Path | Mapping[str, Any]) -> list[AdmissionResult]:
        """``kubectl delete -f``: remove the policies named in ``source``; one result per object."""

    @abc.abstractmethod
    def policies(self) -> list[dict[str, Any]]:
        """``kubectl get clusterpolicies,policies,imagevalidatingpolicies,clusterimagepolicies -A``:
        the policies in the lab, as objects (each can be passed to ``delete``)."""

    @abc.abstractmethod
    def label_namespace(self, namespace: str, labels: Mapping[str, str | None]) -> None:
        """Set labels on a namespace (created if missing); a None value removes the label."""

    @abc.abstractmethod
    def create(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        """Create one workload through admission control. ``dry_run`` is ``kubectl create
        --dry-run=server``: the webhooks decide (and record no reports), nothing is kept."""

    @abc.abstractmethod
    def update(self, resource: str | Path | Mapping[str, Any], *, dry_run: bool = False) -> AdmissionResult:
        """``kubectl replace -f``: replace one existing workload through admission control. The
        webhooks see an UPDATE with the stored object as ``oldObject``; the message is
        ``pod/NAME replaced`` (NotFound when there is no such object). ``dry_run`` is
        ``--dry-run=server``."""

    @abc.abstractmethod
    def reports(self) -> list[dict[str, Any]]:
        """PolicyReports (wgpolicyk8s.io/v1alpha2) of the lab's Audit results."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]:
        """backend, registry, webhook and health, for ``labkit lab status``."""

    def namespace(self, name: str) -> str:
        """The cluster's name for the namespace notebooks call ``name``: ``name`` itself, except on
        a shared cluster (the existing backend), where each learner's namespaces are their own."""
        return name

    def served_registries(self) -> tuple[str, ...]:
        """Every ``host:port`` the lab's registries answer on: push and pod hosts, private included."""
        hosts = [self.registry.host, self.registry.pod_host]
        try:
            private = self.private_registry
            hosts += [private.host, private.pod_host]
        except LabError:
            pass  # a lab without a private registry
        return tuple(dict.fromkeys(hosts))

    def stale_policies(self) -> list[StalePolicy]:
        """Stored policies (``policies()``) that name a loopback registry ``host:port`` this lab does not
        serve: one :class:`~labkit.lab.stale.StalePolicy` per policy and host, empty when all is well.
        Such a policy matches none of the lab's images, so what it used to deny is admitted."""
        from labkit.lab.sigstore import LocalSigstore

        sigstore = LocalSigstore.find(self.home)
        return stale_policies(self.policies(), self.served_registries(),
                              sigstore.addresses() if sigstore is not None else ())

    def env(self) -> dict[str, str]:
        """The shell environment for this lab (``labkit lab env`` prints it as ``export`` lines):
        ``PATH`` (labkit's bin directory, the real tools when built), ``LABKIT_HOME``, ``LAB_BACKEND``,
        ``KUBECONFIG`` where the backend has an API server, and the lab's addresses
        (``LABKIT_REGISTRY``, ``LABKIT_REGISTRY_POD_HOST``, ``LABKIT_PRIVATE_REGISTRY``…)."""
        return shell_environment(self.home, self.backend, self.env_addresses())

    def env_addresses(self) -> dict[str, str]:
        """The lab's addresses as environment variables (part of :meth:`env`), and
        ``LABKIT_BUILD_PULL_BASE=1`` where the lab :attr:`pulls_base_images`, and the local Sigstore's
        addresses and trust files where it runs (:meth:`labkit.lab.sigstore.LocalSigstore.env`)."""
        found = {"LABKIT_REGISTRY": self.registry.host, "LABKIT_REGISTRY_POD_HOST": self.registry.pod_host}
        try:
            private = self.private_registry
            found |= {"LABKIT_PRIVATE_REGISTRY": private.host, "LABKIT_PRIVATE_REGISTRY_POD_HOST": private.pod_host}
        except LabError:
            pass
        if self.pulls_base_images:
            found[PULL_BASE_ENV] = "1"
        from labkit.lab.sigstore import LocalSigstore

        sigstore = LocalSigstore.find(self.home)
        return found | (sigstore.env() if sigstore is not None else {})

    @abc.abstractmethod
    def reset(self) -> None:
        """Remove the lab's namespaces, policies, secrets and signatures; keep the services."""

    def stop(self) -> None:
        """Stop everything the lab started (its local Sigstore too) and forget its state."""
        from labkit.lab.sigstore import LocalSigstore

        sigstore = LocalSigstore.find(self.home)
        if sigstore is not None:
            sigstore.down()
        self.stop_services()

    @abc.abstractmethod
    def stop_services(self) -> None:
        """Stop the backend's own processes (or cluster) and forget its state."""

    @property
    def sigstore(self) -> LocalSigstore:
        """The lab's own Sigstore (OIDC issuer, Fulcio, Rekor, CT log), started with
        ``labkit lab up --sigstore`` or ``Lab.start(sigstore=True)``: :mod:`labkit.lab.sigstore`."""
        from labkit.lab.sigstore import LocalSigstore

        found = LocalSigstore.find(self.home)
        if found is None:
            raise LabError(f"the lab in {self.home.root} has no local Sigstore running",
                           hint="start it: `labkit lab up --sigstore` (or Lab.start(..., sigstore=True))")
        return found

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Lab.start and Lab.connect: labkit.lab.factory's start and connect. The factory imports the backends,
# which import this module, so it registers itself here instead of being imported (labkit/lab/__init__.py
# imports it, so it is registered before Lab is reachable).
_factory: dict[str, Callable[..., Lab]] = {}


def register_factory(start: Callable[..., Lab], connect: Callable[..., Lab]) -> None:
    """Make ``Lab.start`` / ``Lab.connect`` call ``start`` / ``connect`` (see :mod:`labkit.lab.factory`)."""
    _factory.update(start=start, connect=connect)
