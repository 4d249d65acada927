"""Registry credentials the admission engines take from Kubernetes pull Secrets.

Both engines read ``kubernetes.io/dockerconfigjson`` Secrets, but from different places, and
that difference is what locks learners out of their own private registry:

* Kyverno verifyImages (``imageRegistryCredentials.secrets``; ``pkg/engine/factories/
  registryclientfactory.go``) reads each name **in Kyverno's own namespace** (``kyverno``), not
  in the workload's. Up to 1.17 a name is only a name: ``default/regcred`` is looked up as a
  Secret literally called that, in ``kyverno``. 1.18 (#15112) accepts ``namespace/name`` and adds
  the pod's ``imagePullSecrets`` (in the pod's namespace). But Kyverno reads Secrets through
  informers it starts only for its own namespace and the namespaces its ``--imagePullSecrets``
  flag names (``cmd/internal/registry.go``, ``multiLister``): ``default/regcred`` is "not found"
  even though it exists, unless the flag names ``default``. A Secret that is not found is
  skipped silently (``k8serrors.IsNotFound`` in ``registryclient/utils.go``): the pull goes out
  anonymously and the registry answers UNAUTHORIZED.
* Kyverno ImageValidatingPolicy ``credentials.secrets``: 1.14.0 to 1.17.0 built the lookup with
  ``Secrets("")``, no namespace, so no Secret was ever found (#15120); fixed in 1.17.1 (#15136),
  where names resolve in the Kyverno namespace.
* policy-controller reads the pod's ``imagePullSecrets`` and an authority's
  ``source[].signaturePullSecrets``, both **in the workload's namespace**
  (``pkg/webhook/validator.go``, ``clusterimagepolicy_types.go``). Service-account pull
  secrets and cloud helpers are not modelled.

labkit follows :data:`KYVERNO_VERSION` (1.19, the CLI the corpus is checked against); pass an
older ``version`` to see the trap, or set ``LABKIT_KYVERNO_VERSION`` (e.g. ``1.17.0``) in the
environment of the process that evaluates policies (the embedded lab's webhook inherits it from
whatever starts the lab): :func:`emulated_kyverno_version`. Only these credential lookups follow
it; everything else labkit's Kyverno does is 1.19's.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from labkit.errors import PolicyError
from labkit.oci.auth import Credentials, auth_entry_credentials, auth_key_hostname
from labkit.oci.reference import Reference

if TYPE_CHECKING:  # the registry client loads only when a registry is used
    from labkit.oci.client import RegistryClient

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
KYVERNO_NAMESPACE = "kyverno"
KYVERNO_VERSION = (1, 19, 1)
KYVERNO_VERSION_ENV = "LABKIT_KYVERNO_VERSION"
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io")


@dataclass(frozen=True)
class Secret:
    namespace: str
    name: str
    type: str
    data: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def registry_credentials(self, registry: str) -> Credentials | None:
        """The ``.dockerconfigjson`` entry for ``registry`` (matched on host[:port], as docker's
        file store and ggcr's k8schain do); None if this Secret has none or is another type."""
        if self.type != DOCKER_CONFIG_JSON or ".dockerconfigjson" not in self.data:
            return None
        try:
            auths = json.loads(self.data[".dockerconfigjson"]).get("auths") or {}
        except (ValueError, AttributeError):
            return None
        wanted = set(_DOCKER_HUB_KEYS) if registry in ("docker.io", "index.docker.io") else {registry}
        for key, entry in auths.items():
            if (key in wanted or auth_key_hostname(key) in wanted) and isinstance(entry, dict):
                try:
                    return auth_entry_credentials(entry)
                except ValueError:
                    return None  # the engines treat an unreadable entry as no credentials
        return None


class SecretStore(Protocol):
    """Where the lab keeps Secrets: ``get`` returns None for a Secret that does not exist."""

    def get(self, namespace: str, name: str) -> Secret | None: ...


def parse_secrets(doc: Any, origin: str = "secrets") -> dict[tuple[str, str], Secret]:
    """``{"namespace/name": {"type": …, "data": {key: base64}}}`` → Secrets (the state-file format)."""
    if not isinstance(doc, dict):
        raise PolicyError(f"{origin}: expected {{\"namespace/name\": {{\"type\": …, \"data\": {{…}}}}}}")
    out: dict[tuple[str, str], Secret] = {}
    for key, body in doc.items():
        namespace, sep, name = str(key).partition("/")
        if not sep or not name or not isinstance(body, dict) or not isinstance(body.get("data", {}), dict):
            raise PolicyError(f"{origin}: entry {key!r} is not \"namespace/name\": {{\"type\", \"data\"}}",
                              hint="write one entry per Secret, keyed namespace/name")
        try:
            data = {str(k): base64.b64decode(str(v), validate=True) for k, v in body.get("data", {}).items()}
        except binascii.Error as exc:
            raise PolicyError(f"{origin}: Secret {key}: data is not base64",
                              hint="Secret data values are base64, as in the Kubernetes API") from exc
        out[(namespace, name)] = Secret(namespace, name, str(body.get("type", "Opaque")), data)
    return out


def dockerconfigjson_secret(namespace: str, name: str, registry: str, username: str, password: str) -> Secret:
    """The Secret ``kubectl create secret docker-registry`` writes."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    return Secret(namespace, name, DOCKER_CONFIG_JSON, {".dockerconfigjson": json.dumps(config).encode()})


def secrets_document(secrets: Iterable[Secret]) -> dict[str, Any]:
    """The state-file form of ``secrets`` (inverse of :func:`parse_secrets`)."""
    return {f"{s.namespace}/{s.name}": {"type": s.type,
                                        "data": {k: base64.b64encode(v).decode() for k, v in s.data.items()}}
            for s in secrets}


@dataclass
class MemorySecretStore:
    secrets: dict[tuple[str, str], Secret] = field(default_factory=dict)

    @classmethod
    def of(cls, *secrets: Secret) -> MemorySecretStore:
        return cls({(s.namespace, s.name): s for s in secrets})

    def get(self, namespace: str, name: str) -> Secret | None:
        return self.secrets.get((namespace, name))


@dataclass
class SecretsFile:
    """``secrets.json`` in the webhook's state directory, re-read when it changes. An unreadable
    file counts as no Secrets (and says why in ``error``), as a missing Secret would."""

    path: Path | None
    error: str = ""
    _stamp: tuple[int, int] | None = None
    _secrets: dict[tuple[str, str], Secret] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, namespace: str, name: str) -> Secret | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        with self._lock:
            if stamp != self._stamp:
                self._stamp, self._secrets, self.error = stamp, {}, ""
                if stamp is not None:
                    try:
                        self._secrets = parse_secrets(json.loads(self.path.read_text(encoding="utf-8")),
                                                      str(self.path))
                    except (OSError, ValueError, PolicyError) as exc:
                        self.error = f"{self.path}: Secrets not read: {exc}"
            return self._secrets.get((namespace, name))


@dataclass(frozen=True)
class Keychain:
    """Secrets an engine consults for one pull, in order; the first with an entry wins."""

    secrets: tuple[Secret, ...] = ()
    missing: tuple[str, ...] = ()  # "namespace/name" looked up and not found (skipped silently)

    def credentials(self, image: str) -> Credentials | None:
        registry = Reference.parse(image).registry
        for secret in self.secrets:
            creds = secret.registry_credentials(registry)
            if creds is not None:
                return creds
        return None

    def describe(self) -> str:
        found = ", ".join(f"{s.namespace}/{s.name}" for s in self.secrets) or "none"
        return f"pull secrets: {found}" + (f"; not found: {', '.join(self.missing)}" if self.missing else "")


def _keychain(store: SecretStore | None, refs: Sequence[tuple[str, str]],
              readable: Collection[str] | None = None) -> Keychain:
    """The Secrets ``refs`` name; with ``readable``, only those in namespaces the engine can read."""
    found: list[Secret] = []
    missing: list[str] = []
    for namespace, name in refs:
        visible = readable is None or namespace in readable
        secret = store.get(namespace, name) if store is not None and visible else None
        if secret is None:
            missing.append(f"{namespace}/{name}")
        else:
            found.append(secret)
    return Keychain(tuple(found), tuple(missing))


def emulated_kyverno_version() -> tuple[int, ...]:
    """The Kyverno version whose credential lookups labkit follows: ``LABKIT_KYVERNO_VERSION``
    (``1.17.0`` or ``v1.17.0``) when set, else :data:`KYVERNO_VERSION`."""
    raw = os.environ.get(KYVERNO_VERSION_ENV, "").strip().removeprefix("v")
    if not raw:
        return KYVERNO_VERSION
    try:
        version = tuple(int(part) for part in raw.split("."))
    except ValueError:
        version = ()
    if not 1 <= len(version) <= 3:
        raise PolicyError(f"{KYVERNO_VERSION_ENV}={raw!r} is not a Kyverno version",
                          hint="write it as 1.17.0, or unset it for 1.19's behaviour")
    return version


def kyverno_keychain(
    store: SecretStore | None,
    secrets: Sequence[str],
    *,
    resource_namespace: str,
    image_pull_secrets: Sequence[str] = (),
    version: tuple[int, ...] | None = None,
    kyverno_namespace: str = KYVERNO_NAMESPACE,
    pull_secret_namespaces: Collection[str] = (),
) -> Keychain:
    """The Secrets a ClusterPolicy verifyImages entry pulls with (see the module docstring).
    ``pull_secret_namespaces``: the namespaces Kyverno's ``--imagePullSecrets`` flag names (none
    in the lab), whose Secrets it can read besides its own namespace's. ``version``: default
    :func:`emulated_kyverno_version`."""
    version = emulated_kyverno_version() if version is None else version
    if version < (1, 18):
        return _keychain(store, [(kyverno_namespace, s) for s in secrets])
    refs = [_prefixed(s, kyverno_namespace) for s in secrets]
    refs += [_prefixed(s, resource_namespace or kyverno_namespace) for s in image_pull_secrets]
    return _keychain(store, refs, {kyverno_namespace, *pull_secret_namespaces})


def kyverno_ivp_keychain(
    store: SecretStore | None,
    secrets: Sequence[str],
    *,
    version: tuple[int, ...] | None = None,
    kyverno_namespace: str = KYVERNO_NAMESPACE,
) -> Keychain:
    """The Secrets an ImageValidatingPolicy's ``credentials.secrets`` pull with: none at all in
    1.14.0–1.17.0 (the cluster-scoped lookup never finds one), the Kyverno namespace after.
    ``version``: default :func:`emulated_kyverno_version`."""
    version = emulated_kyverno_version() if version is None else version
    if (1, 14) <= version < (1, 17, 1):
        return Keychain((), tuple(f"(no namespace)/{s}" for s in secrets))
    return _keychain(store, [(kyverno_namespace, s) for s in secrets])


def policy_controller_keychain(
    store: SecretStore | None, names: Sequence[str], *, namespace: str
) -> Keychain:
    """The pod's ``imagePullSecrets`` or an authority's ``signaturePullSecrets``: the workload's
    namespace."""
    return _keychain(store, [(namespace, n) for n in names])


def _prefixed(ref: str, default_namespace: str) -> tuple[str, str]:
    ref = ref.removeprefix("/")
    namespace, sep, name = ref.partition("/")
    return (namespace, name) if sep else (default_namespace, ref)


def image_pull_secrets(pod_spec: Mapping[str, Any] | None) -> list[str]:
    return [str(s.get("name", "")) for s in (pod_spec or {}).get("imagePullSecrets") or []
            if isinstance(s, Mapping) and s.get("name")]


class RegistryAccess:
    """Verifier and Resolver over real registries: one client per set of credentials, so each
    pull authenticates as the engine would (anonymous pulls share ``client``)."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self._clients: dict[Credentials, RegistryClient] = {}
        self._lock = threading.Lock()

    def client_for(self, credentials: Credentials | None) -> RegistryClient:
        if credentials is None:
            return self.client
        with self._lock:
            client = self._clients.get(credentials)
            if client is None:
                from labkit.oci.client import RegistryClient

                client = self._clients[credentials] = RegistryClient(
                    allow_insecure=self.client.allow_insecure, credentials=credentials,
                    timeout=self.client.timeout)  # the webhook's bound, for every client
            return client

    def __call__(self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
                 repository: str | None = None, credentials: Credentials | None = None,
                 digest_algorithm: str = "sha256", bundles: bool = False) -> Any:
        from labkit.errors import ImageTagNotFoundError, RegistryError
        from labkit.signing.verify import verify_image  # signing is only needed once verifying

        client = self.client_for(credentials)
        try:
            # digest_algorithm: the engine's signature hash (Kyverno signatureAlgorithm, IVP and
            # policy-controller hashAlgorithm), which, like cosign's verifier, does not follow the key
            return verify_image(ref, keys, client=client, annotations=annotations,
                                signature_repository=repository or None, digest_algorithm=digest_algorithm,
                                bundles=bundles)
        except ImageTagNotFoundError as exc:
            # cosign's ResolveDigest GETs the manifest (remote.Get, pkg/oci/remote/digest.go:30)
            # and quotes ggcr's error for it (pkg/cosign/verify.go:660): the registry's error
            # body, which a HEAD does not carry, so ask once more as cosign did
            try:
                client.get_manifest(ref)
            except RegistryError as answer:
                if answer.transport:
                    raise ImageTagNotFoundError(f"image tag not found: {answer.transport}",
                                                hint=exc.hint) from exc
            raise

    def verify_keyless(self, ref: str, trust: Any, policy: Any, *, repository: str | None = None,
                       credentials: Credentials | None = None, bundles: bool = False) -> Any:
        """``verify_image_keyless`` with this registry's client (``KeylessVerifier``)."""
        from labkit.signing.keyless_verify import verify_image_keyless

        return verify_image_keyless(ref, trust, policy, client=self.client_for(credentials),
                                    signature_repository=repository or None, bundles=bundles)

    def resolve(self, ref: str, *, credentials: Credentials | None = None) -> str:
        return self.client_for(credentials).resolve(ref)

    def fetch_manifest(self, ref: str, *, credentials: Credentials | None = None) -> str:
        """The digest of ``ref``'s manifest read with a GET, as go-containerregistry's
        ``remote.Image`` reads it (Kyverno's image data loader): a failure's ``transport`` text is
        then the GET's, body and all, not a HEAD's."""
        return self.client_for(credentials).get_manifest(ref).digest

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
