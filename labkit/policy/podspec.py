"""Which container images a Kubernetes object runs, and where each sits in the object.

The engines read init, regular and ephemeral containers from the pod spec inside the object,
found through one table (:data:`POD_SPEC_PATHS`). They differ in ways worth showing learners:

* Kyverno's verifyImages (``pkg/utils/api/image.go``) also knows ReplicationController, skips
  containers whose image is empty, and names positions by JSON pointer (``/spec/containers/0/image``),
  the path its digest patch replaces.
* policy-controller (``pkg/webhook/validator.go``) handles Pod, ReplicaSet, Deployment,
  StatefulSet, DaemonSet, Job and CronJob only, and names positions as knative field paths
  (``spec.containers[0].image``), the form its denial messages print.
* An ImageValidatingPolicy's built-in image extractors (``pkg/cel/compiler/images.go``) know
  policy-controller's kinds, looked up by the request's group and resource
  (:data:`EXTRACTOR_PATHS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from labkit.errors import LabkitError
from labkit.oci.reference import kyverno_normalize


class Engine(str, Enum):  # noqa: UP042 -- a StrEnum member would print differently
    KYVERNO = "kyverno"
    POLICY_CONTROLLER = "policy-controller"


CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

_POD = ("spec",)
_TEMPLATE = ("spec", "template", "spec")
_CRONJOB = ("spec", "jobTemplate", "spec", "template", "spec")

# kind → (API group, path of the pod spec inside the object)
POD_SPEC_PATHS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Pod": ("", _POD),
    "Deployment": ("apps", _TEMPLATE),
    "ReplicaSet": ("apps", _TEMPLATE),
    "StatefulSet": ("apps", _TEMPLATE),
    "DaemonSet": ("apps", _TEMPLATE),
    "Job": ("batch", _TEMPLATE),
    "ReplicationController": ("", _TEMPLATE),
    "CronJob": ("batch", _CRONJOB),
}

# the kinds whose images each engine reads: only Kyverno's verifyImages reads ReplicationControllers
_ENGINE_KINDS: dict[Engine, frozenset[str]] = {
    Engine.KYVERNO: frozenset(POD_SPEC_PATHS),
    Engine.POLICY_CONTROLLER: frozenset(POD_SPEC_PATHS) - {"ReplicationController"},
}


def resource_name(kind: str) -> str:
    """The resource (plural) of a workload kind: ``meta.UnsafeGuessKindToResource`` for these kinds."""
    return kind.lower() + "s"


# (group, resource) → path of the pod spec, for ImageValidatingPolicies' image extractors
EXTRACTOR_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    (group, resource_name(kind)): path
    for kind, (group, path) in POD_SPEC_PATHS.items() if kind in _ENGINE_KINDS[Engine.POLICY_CONTROLLER]
}


def find_pod_spec(obj: Mapping[str, Any], path: Sequence[str]) -> Mapping[str, Any] | None:
    """The mapping at ``path`` in ``obj``, or None when there is none."""
    spec: Any = obj
    for key in path:
        spec = spec.get(key) if isinstance(spec, Mapping) else None
    return spec if isinstance(spec, Mapping) else None


def pod_spec_path(resource: Mapping[str, Any], engine: Engine) -> tuple[str, ...] | None:
    """Where ``engine`` reads the pod spec of ``resource``; None for a kind it does not read."""
    kind = str(resource.get("kind", ""))
    return POD_SPEC_PATHS[kind][1] if kind in _ENGINE_KINDS[engine] else None


def pod_spec(resource: Mapping[str, Any], engine: Engine) -> Mapping[str, Any] | None:
    path = pod_spec_path(resource, engine)
    return None if path is None else find_pod_spec(resource, path)


def pod_spec_problem(resource: Mapping[str, Any]) -> str:
    """Why ``resource``'s pod spec could not have come from the API server ("" when it could):
    the API server decodes every object into its Go type before a webhook sees it, so each level
    of the path is an object, each container list an array of objects, each image a string."""
    kind = str(resource.get("kind", ""))
    if kind not in POD_SPEC_PATHS:
        return ""
    node: Any = resource
    where: list[str] = []
    for key in POD_SPEC_PATHS[kind][1]:
        node, where = node.get(key), [*where, key]
        if node is None:
            return ""
        if not isinstance(node, Mapping):
            return f"{'.'.join(where)} is not an object"
    for list_name in (*CONTAINER_LISTS, "imagePullSecrets"):
        items = node.get(list_name)
        field = ".".join((*where, list_name))
        if items is not None and not isinstance(items, list):
            return f"{field} is not an array"
        for index, item in enumerate(items or []):
            if not isinstance(item, Mapping):
                return f"{field}[{index}] is not an object"
            for name in ("image", "name"):
                if item.get(name) is not None and not isinstance(item[name], str):
                    return f"{field}[{index}].{name} is not a string"
    return ""


@dataclass(frozen=True)
class ContainerImage:
    """One container's image as written in the object, with its position in both notations."""

    image: str
    container: str
    list_name: str  # initContainers | containers | ephemeralContainers
    index: int
    pod_spec_path: tuple[str, ...]

    @property
    def pointer(self) -> str:
        """JSON pointer, as in Kyverno's patches: ``/spec/template/spec/containers/0/image``."""
        return "/" + "/".join((*self.pod_spec_path, self.list_name, str(self.index), "image"))

    @property
    def field_path(self) -> str:
        """knative field path, as in policy-controller's messages: ``spec.containers[0].image``."""
        return ".".join((*self.pod_spec_path, f"{self.list_name}[{self.index}]", "image"))


def extract_images(resource: Mapping[str, Any], engine: Engine) -> list[ContainerImage] | None:
    """The images ``engine`` checks in ``resource``; ``None`` when it does not look at this kind."""
    spec_path = pod_spec_path(resource, engine)
    if spec_path is None:
        return None
    spec = find_pod_spec(resource, spec_path)
    if spec is None:
        return []
    found: list[ContainerImage] = []
    for list_name in CONTAINER_LISTS:
        containers = spec.get(list_name) or []
        for index, container in enumerate(containers):
            image = container.get("image") if isinstance(container, Mapping) else None
            if not isinstance(image, str):
                continue
            # Kyverno skips blank images; policy-controller parses them and fails.
            if engine is Engine.KYVERNO and not image.strip():
                continue
            found.append(
                ContainerImage(
                    image=image,
                    container=str(container.get("name", "")),
                    list_name=list_name,
                    index=index,
                    pod_spec_path=spec_path,
                )
            )
    return found


def kyverno_extraction_error(containers: Sequence[ContainerImage]) -> str:
    """Why Kyverno's image extraction (``ExtractImagesFromResource``, pkg/utils/api/image.go) fails:
    the first image it cannot parse, in its words (``invalid image '…' (bad image: …,
    defaultRegistry: docker.io, enableDefaultRegistryMutation: true: …)``); "" when all parse.
    The extraction fails as a whole, so the policy context of a ClusterPolicy then holds no
    image, and an ImageValidatingPolicy's digest pinning errs."""
    for c in containers:
        try:
            kyverno_normalize(c.image)
        except LabkitError as exc:
            full, _, reason = exc.message.removeprefix("bad image ").partition(": ")
            return (f"invalid image '{c.image}' (bad image: {full.strip(chr(39))}, defaultRegistry: docker.io, "
                    f"enableDefaultRegistryMutation: true: {reason})")
    return ""
