"""Which container images a Kubernetes object runs, and where each sits in the object.

Both engines read init, regular and ephemeral containers, in that order, from the pod spec
inside the object. They differ in two ways worth showing learners:

* Kyverno (``pkg/utils/api/image.go``) also knows ReplicationController, skips containers whose
  image is empty, and names positions by JSON pointer (``/spec/containers/0/image``), the
  path its digest patch replaces.
* policy-controller (``pkg/webhook/validator.go``) handles Pod, ReplicaSet, Deployment,
  StatefulSet, DaemonSet, Job and CronJob only, and names positions as knative field paths
  (``spec.containers[0].image``), the form its denial messages print.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Engine(str, Enum):
    KYVERNO = "kyverno"
    POLICY_CONTROLLER = "policy-controller"


CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

_POD = ("spec",)
_TEMPLATE = ("spec", "template", "spec")
_CRONJOB = ("spec", "jobTemplate", "spec", "template", "spec")

# kind → path of the pod spec inside the object.
POD_SPEC_PATHS: dict[Engine, dict[str, tuple[str, ...]]] = {
    Engine.KYVERNO: {
        "Pod": _POD,
        "Deployment": _TEMPLATE,
        "ReplicaSet": _TEMPLATE,
        "StatefulSet": _TEMPLATE,
        "DaemonSet": _TEMPLATE,
        "Job": _TEMPLATE,
        "ReplicationController": _TEMPLATE,
        "CronJob": _CRONJOB,
    },
    Engine.POLICY_CONTROLLER: {
        "Pod": _POD,
        "Deployment": _TEMPLATE,
        "ReplicaSet": _TEMPLATE,
        "StatefulSet": _TEMPLATE,
        "DaemonSet": _TEMPLATE,
        "Job": _TEMPLATE,
        "CronJob": _CRONJOB,
    },
}


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
    spec_path = POD_SPEC_PATHS[engine].get(str(resource.get("kind", "")))
    if spec_path is None:
        return None
    spec: Any = resource
    for key in spec_path:
        spec = spec.get(key) if isinstance(spec, Mapping) else None
    if not isinstance(spec, Mapping):
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
