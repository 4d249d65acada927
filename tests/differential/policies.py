"""The policy document of each policy set, for one lab's registry and the run's keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.differential.matrix import SKIP_LABEL, PolicySet

SIGSTORE_REPO = "diff/sigstore"  # where sig-elsewhere's signature lives (COSIGN_REPOSITORY)
ANNOTATION = {"env": "workshop"}  # annotated-a is signed with it (-a env=workshop)


@dataclass(frozen=True)
class Keys:
    """Public keys as PEM: a and b are P-256, c is P-384."""

    a: str
    b: str
    c: str


def policy(group: PolicySet, registry: str, keys: Keys) -> dict[str, Any]:
    name = f"diff-{group.index:02d}"
    if group.engine == "cp":
        return _cluster_policy(name, group, registry, keys)
    if group.engine == "ivp":
        return _image_validating_policy(name, group, registry, keys)
    return _cluster_image_policy(name, group, registry, keys)


def _cp_key(pem: str, *, tlog: bool = False, algorithm: str = "") -> dict[str, Any]:
    key: dict[str, Any] = {"publicKeys": pem}
    if not tlog:  # the lab runs offline: signatures are in no transparency log
        key["rekor"] = {"ignoreTlog": True}
        key["ctlog"] = {"ignoreSCT": True}
    if algorithm:
        key["signatureAlgorithm"] = algorithm
    return {"keys": key}


def _cp_attestors(variant: str, keys: Keys) -> list[dict[str, Any]]:
    if variant in ("key-a", "key-a-repo"):
        return [{"entries": [_cp_key(keys.a)]}]
    if variant == "key-a-tlog":
        return [{"entries": [_cp_key(keys.a, tlog=True)]}]
    if variant == "keys-ab-count1":
        return [{"count": 1, "entries": [_cp_key(keys.a), _cp_key(keys.b)]}]
    if variant == "keys-ab-all":
        return [{"entries": [_cp_key(keys.a), _cp_key(keys.b)]}]
    if variant == "pem-ab":
        return [{"entries": [_cp_key(keys.a.strip() + "\n" + keys.b.strip())]}]
    if variant == "key-c-sha384":
        return [{"entries": [_cp_key(keys.c, algorithm="sha384")]}]
    if variant == "key-c-default":
        return [{"entries": [_cp_key(keys.c)]}]
    if variant == "key-a-annotated":
        return [{"entries": [_cp_key(keys.a) | {"annotations": ANNOTATION}]}]
    raise ValueError(f"no ClusterPolicy attestors for {variant}")


def _cluster_policy(name: str, g: PolicySet, registry: str, keys: Keys) -> dict[str, Any]:
    verify: dict[str, Any] = {
        "imageReferences": [f"{registry}/diff/*"],
        "failureAction": g.action,
        # mutateDigest must be false in Audit (ImageVerification.Validate); verifyDigest would
        # then fail every tag, so Audit checks signatures only.
        "mutateDigest": not g.audit,
        "verifyDigest": not g.audit,
        "required": True,
        "attestors": _cp_attestors(g.variant, keys),
    }
    if g.variant == "key-a-repo":
        verify["repository"] = f"{registry}/{SIGSTORE_REPO}"
    rule = {"name": "verify-signature",
            "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "exclude": {"any": [{"resources": {"selector": {"matchLabels": {SKIP_LABEL: "true"}}}}]},
            "verifyImages": [verify]}
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name},
            "spec": {"failurePolicy": g.failure_policy, "webhookTimeoutSeconds": 20, "rules": [rule]}}


def _ivp_attestor(name: str, pem: str, *, tlog: bool = False, algorithm: str = "",
                  repository: str = "", annotations: dict[str, str] | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"data": pem}
    if algorithm:
        key["hashAlgorithm"] = algorithm
    cosign: dict[str, Any] = {"key": key}
    if not tlog:
        cosign["ctlog"] = {"insecureIgnoreTlog": True, "insecureIgnoreSCT": True}
    if repository:
        cosign["source"] = {"repository": repository}
    if annotations:
        cosign["annotations"] = annotations
    return {"name": name, "cosign": cosign}


def _image_validating_policy(name: str, g: PolicySet, registry: str, keys: Keys) -> dict[str, Any]:
    v = g.variant
    if v == "key-a":
        attestors, need = [_ivp_attestor("a", keys.a)], "e > 0"
    elif v == "key-a-tlog":
        attestors, need = [_ivp_attestor("a", keys.a, tlog=True)], "e > 0"
    elif v == "keys-ab-count1":
        attestors, need = [_ivp_attestor("a", keys.a), _ivp_attestor("b", keys.b)], "e > 0"
    elif v == "keys-ab-all":
        attestors, need = [_ivp_attestor("a", keys.a), _ivp_attestor("b", keys.b)], "e >= 2"
    elif v == "key-c-sha384":
        attestors, need = [_ivp_attestor("c", keys.c, algorithm="sha384")], "e > 0"
    elif v == "key-a-repo":
        attestors, need = [_ivp_attestor("a", keys.a, repository=f"{registry}/{SIGSTORE_REPO}")], "e > 0"
    elif v == "key-a-annotated":
        attestors, need = [_ivp_attestor("a", keys.a, annotations=ANNOTATION)], "e > 0"
    else:
        raise ValueError(f"no ImageValidatingPolicy attestors for {v}")
    refs = ", ".join(f"attestors.{a['name']}" for a in attestors)
    return {"apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy", "metadata": {"name": name},
            "spec": {"validationActions": [g.action], "failurePolicy": g.failure_policy,
                     "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                             "operations": ["CREATE", "UPDATE"],
                                                             "resources": ["pods"]}]},
                     "matchImageReferences": [{"glob": f"{registry}/diff/*"}],
                     "attestors": attestors,
                     "validations": [{"expression": f"images.containers.map(image, verifyImageSignatures("
                                                    f"image, [{refs}])).all(e, {need})",
                                      "message": "failed to verify image signatures"}]}}


def _cluster_image_policy(name: str, g: PolicySet, registry: str, keys: Keys) -> dict[str, Any]:
    v = g.variant
    if v in ("key-a", "key-a-repo"):
        authorities: list[dict[str, Any]] = [{"key": {"data": keys.a}}]
        if v == "key-a-repo":
            authorities[0]["source"] = [{"oci": f"{registry}/{SIGSTORE_REPO}"}]
    elif v == "keys-ab":
        authorities = [{"name": "a", "key": {"data": keys.a}}, {"name": "b", "key": {"data": keys.b}}]
    elif v == "key-c-sha384":
        authorities = [{"key": {"data": keys.c, "hashAlgorithm": "sha384"}}]
    elif v == "key-c-default":
        authorities = [{"key": {"data": keys.c}}]
    else:
        raise ValueError(f"no ClusterImagePolicy authorities for {v}")
    return {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": name},
            "spec": {"mode": g.action, "images": [{"glob": f"{registry}/diff/**"}], "authorities": authorities}}
