"""Driving one lab through the fault proxy: images, policies, pods, reviews in parallel.

Each engine has its own repository under each fault (``<engine>/f-<fault>``), so exactly one
engine's policy matches each pod; policies are named per failurePolicy, so no engine can answer
one phase from what it cached in the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from labkit import keys
from labkit.lab import Lab
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from tests.faults.proxy import FAULTS, repository
from tests.lab.scenario import OFFLINE, one_layer_image

ENGINES = ("cp", "ivp", "cip")
FAILURE_POLICIES = ("Fail", "Ignore")
PC_NAMESPACE = "faults-pc"  # policy-controller reviews opted-in namespaces only
WORKERS = 16  # every review of a phase at once: the slow ones then cost one timeout, not one each


@dataclass(frozen=True)
class Review:
    admitted: bool
    message: str
    seconds: float


def push_signed(host: str, private: keys.PrivateKey, engines: tuple[str, ...]) -> dict[str, str]:
    """Push and sign one image per fault and engine on the real registry; its digests by repository."""
    digests: dict[str, str] = {}
    with RegistryClient() as client:
        for fault in FAULTS:
            for engine in engines:
                repo = repository(fault, engine)
                digest = client.push_image(f"{host}/{repo}:v1", one_layer_image(f"{repo}\n".encode()))
                sign_image(f"{host}/{repo}@{digest}", private, client=client)
                digests[repo] = digest
    return digests


def policies(proxy: str, pem: str, failure_policy: str) -> list[dict[str, Any]]:
    """The three engines' policies for one failurePolicy. policy-controller's webhook has one
    failurePolicy of its own (Fail, in its release's webhook configuration), so a
    ClusterImagePolicy takes part in the Fail phase only."""
    suffix = failure_policy.lower()
    attestors = [{"entries": [{"keys": OFFLINE | {"publicKeys": pem}}]}]
    cp = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": f"faults-cp-{suffix}"},
          "spec": {"failurePolicy": failure_policy,
                   "rules": [{"name": "signed", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                              "verifyImages": [{"imageReferences": [f"{proxy}/cp/*"], "failureAction": "Enforce",
                                                "mutateDigest": True, "verifyDigest": True, "required": True,
                                                "attestors": attestors}]}]}}
    ivp = {"apiVersion": "policies.kyverno.io/v1", "kind": "ImageValidatingPolicy",
           "metadata": {"name": f"faults-ivp-{suffix}"},
           "spec": {"validationActions": ["Deny"], "failurePolicy": failure_policy,
                    "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                            "operations": ["CREATE"], "resources": ["pods"]}]},
                    "matchImageReferences": [{"glob": f"{proxy}/ivp/*"}],
                    "attestors": [{"name": "lab", "cosign": {"key": {"data": pem + "\n"}, "ctlog": {
                        "insecureIgnoreTlog": True, "insecureIgnoreSCT": True}}}],
                    "validations": [{"expression": "images.containers.map(i, verifyImageSignatures(i, "
                                                   "[attestors.lab])).all(e, e > 0)", "message": "unsigned image"}]}}
    cip = {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
           "metadata": {"name": "faults-cip"},
           "spec": {"images": [{"glob": f"{proxy}/cip/**"}], "authorities": [{"key": {"data": pem}}]}}
    return [cp, ivp, cip] if failure_policy == "Fail" else [cp, ivp]


def pod(fault: str, engine: str, failure_policy: str, proxy: str, digests: Mapping[str, str]) -> dict[str, Any]:
    repo = repository(fault, engine)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{fault}-{engine}-{failure_policy.lower()}",
                         "namespace": PC_NAMESPACE if engine == "cip" else "default"},
            "spec": {"containers": [{"name": "c", "image": f"{proxy}/{repo}@{digests[repo]}"}]}}


def prepare_namespaces(lab: Lab) -> None:
    lab.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PC_NAMESPACE}})
    lab.label_namespace(PC_NAMESPACE, {"policy.sigstore.dev/include": "true"})


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def run_phases(lab: Lab, proxy: str, pem: str, digests: Mapping[str, str],
               extra: Callable[[str], Mapping[tuple[str, str], Callable[[], Any]]] | None = None,
               ) -> tuple[dict[tuple[str, str, str], Review], dict[tuple[str, str], tuple[Any, float]]]:
    """Every fault × engine pod under each failurePolicy (all of a phase's reviews at once), the
    phase's policies applied before and deleted after. ``extra(failure_policy)`` adds calls to
    run beside the pods (their results by key)."""
    reviews: dict[tuple[str, str, str], Review] = {}
    extras: dict[tuple[str, str], tuple[Any, float]] = {}
    for failure_policy in FAILURE_POLICIES:
        docs = policies(proxy, pem, failure_policy)
        for doc in docs:
            [applied] = lab.apply(doc)
            assert applied.admitted, applied.message
        try:
            engines = [e for e in ENGINES if e != "cip" or failure_policy == "Fail"]
            jobs = {(fault, engine, failure_policy): pod(fault, engine, failure_policy, proxy, digests)
                    for fault in FAULTS for engine in engines}
            more = dict(extra(failure_policy)) if extra else {}
            with ThreadPoolExecutor(max_workers=WORKERS) as pool:
                futures = {key: pool.submit(timed, lambda p=p: lab.create(p)) for key, p in jobs.items()}
                other = {key: pool.submit(timed, call) for key, call in more.items()}
                for key, future in futures.items():
                    result, seconds = future.result()
                    reviews[key] = Review(result.admitted, result.message, seconds)
                for k, f in other.items():
                    extras[k] = f.result()
        finally:
            for doc in docs:
                lab.delete(doc)
    return reviews, extras
