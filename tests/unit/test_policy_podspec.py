"""Image extraction: positions checked against Kyverno's ``pkg/utils/api/image.go`` extractors
(JSON pointers) and policy-controller's ``validatePodSpec`` field paths."""

from __future__ import annotations

from typing import Any

import pytest

from labkit.policy.podspec import Engine, extract_images


def pod_spec() -> dict[str, Any]:
    return {
        "initContainers": [{"name": "init", "image": "busybox:1"}],
        "containers": [{"name": "app", "image": "ghcr.io/x/app:v1"}, {"name": "side", "image": ""}],
        "ephemeralContainers": [{"name": "debug", "image": "alpine"}],
    }


def wrap(kind: str) -> dict[str, Any]:
    spec = pod_spec()
    if kind == "Pod":
        return {"kind": kind, "spec": spec}
    if kind == "CronJob":
        return {"kind": kind, "spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}
    return {"kind": kind, "spec": {"template": {"spec": spec}}}


@pytest.mark.parametrize(
    ("kind", "prefix"),
    [
        ("Pod", "spec"),
        ("Deployment", "spec/template/spec"),
        ("StatefulSet", "spec/template/spec"),
        ("DaemonSet", "spec/template/spec"),
        ("ReplicaSet", "spec/template/spec"),
        ("Job", "spec/template/spec"),
        ("CronJob", "spec/jobTemplate/spec/template/spec"),
    ],
)
def test_both_engines_read_init_regular_ephemeral_in_order(kind: str, prefix: str) -> None:
    kyverno = extract_images(wrap(kind), Engine.KYVERNO)
    assert kyverno is not None
    assert [(c.image, c.pointer) for c in kyverno] == [
        ("busybox:1", f"/{prefix}/initContainers/0/image"),
        ("ghcr.io/x/app:v1", f"/{prefix}/containers/0/image"),
        ("alpine", f"/{prefix}/ephemeralContainers/0/image"),
    ]
    pc = extract_images(wrap(kind), Engine.POLICY_CONTROLLER)
    assert pc is not None
    dotted = prefix.replace("/", ".")
    # policy-controller does not skip the blank image: it fails to parse it instead
    assert [(c.image, c.field_path) for c in pc] == [
        ("busybox:1", f"{dotted}.initContainers[0].image"),
        ("ghcr.io/x/app:v1", f"{dotted}.containers[0].image"),
        ("", f"{dotted}.containers[1].image"),
        ("alpine", f"{dotted}.ephemeralContainers[0].image"),
    ]


def test_replication_controller_is_kyverno_only() -> None:
    rc = wrap("ReplicationController")
    assert [c.container for c in extract_images(rc, Engine.KYVERNO) or []] == ["init", "app", "debug"]
    assert extract_images(rc, Engine.POLICY_CONTROLLER) is None


def test_unknown_kind_and_missing_spec() -> None:
    assert extract_images({"kind": "ConfigMap"}, Engine.KYVERNO) is None
    assert extract_images({"kind": "Pod"}, Engine.KYVERNO) == []
