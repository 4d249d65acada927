"""Growth: admission time as a pod grows from 1 to 100 containers, and policy load time from
1 to 500 policies. Goal: both linear; 500 policies load in ≤ 1 s.

Containers: ``labkit.policy.evaluate`` (both webhook phases, as the API server calls them) of a
pod whose N containers are N distinct signed images on labkit's registry (loopback), under one
Kyverno ClusterPolicy; every container is verified in the registry (no verification cache), so
this is the cold path. Policies: ``labkit.policy.load_policies`` on one YAML stream of N
ClusterPolicies, each with its own public key (every key is parsed, as the engine's webhook does).
Medians over --repeats; "linear" means the per-item cost over the upper half of the range is at
most 1.5× the per-item cost over the lower half (fixed costs excluded by taking differences).

    .venv/bin/python bench/growth.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from _common import Result, print_table, push_small_image

from labkit import keys
from labkit.oci.client import RegistryClient
from labkit.policy import evaluate, load_policies
from labkit.policy.credentials import RegistryAccess
from labkit.signing.sign import sign_image
from tests.peers import run_labkit_registry

CONTAINERS = (1, 10, 50, 100)
POLICIES = (1, 50, 250, 500)
LOAD_GOAL_S = 1.0
LINEAR_SLACK = 1.5


def median_s(call: Callable[[], object], repeats: int) -> float:
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def linear(sizes: Sequence[int], times: Sequence[float]) -> tuple[bool, float, float]:
    """(upper-half per-item cost ≤ slack × lower-half per-item cost, lower, upper)."""
    mid = len(sizes) // 2
    lower = (times[mid] - times[0]) / (sizes[mid] - sizes[0])
    upper = (times[-1] - times[mid]) / (sizes[-1] - sizes[mid])
    return upper <= LINEAR_SLACK * lower, lower, upper


def cluster_policy(name: str, images: str, pem: str) -> dict[str, Any]:
    rule = {"name": "signed", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "verifyImages": [{"imageReferences": [images], "failureAction": "Enforce",
                              "attestors": [{"entries": [{"keys": {"publicKeys": pem.strip()}}]}]}]}
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": name},
            "spec": {"rules": [rule]}}


def pod(images: Sequence[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench", "namespace": "default"},
            "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}


def containers(work: Path, repeats: int) -> list[float]:
    paths = keys.generate_key_pair(work / "k", b"")
    private = keys.load_private_key(paths.private_key, b"")
    with run_labkit_registry(work / "registry") as registry, RegistryClient() as client:
        images = []
        for i in range(max(CONTAINERS)):
            image = push_small_image(client, f"{registry.host}/bench/app{i}:v1", f"layer {i}".encode())
            sign_image(image, private, client=client)
            images.append(str(image))
        policies = load_policies(yaml.safe_dump(
            cluster_policy("bench", f"{registry.host}/bench/*", paths.public_key.read_text())))
        access = RegistryAccess(client)

        def admit(n: int) -> None:
            decision = evaluate(policies, pod(images[:n]), verifier=access, resolver=access.resolve)
            assert decision.allowed, decision.message

        return [median_s(lambda: admit(n), repeats) for n in CONTAINERS]


def policies(repeats: int) -> list[float]:
    pems = [keys.public_key_pem(ec.generate_private_key(ec.SECP256R1())) for _ in range(max(POLICIES))]
    docs = [cluster_policy(f"bench-{i}", f"127.0.0.1:5000/team{i}/*", pem) for i, pem in enumerate(pems)]
    streams = {n: yaml.safe_dump_all(docs[:n]) for n in POLICIES}

    def load(n: int) -> None:
        assert len(load_policies(streams[n])) == n

    return [median_s(lambda: load(n), repeats) for n in POLICIES]


def measure(repeats: int = 5) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        pod_times = containers(Path(tmp), repeats)
        load_times = policies(repeats)
    print(f"medians of {repeats}")
    print(f"{'containers':>10} {'evaluate ms':>12} {'ms/container':>13}")
    for n, t in zip(CONTAINERS, pod_times):
        print(f"{n:>10} {t * 1000:>12.1f} {t * 1000 / n:>13.2f}")
    print(f"{'policies':>10} {'load ms':>12} {'ms/policy':>13}")
    for n, t in zip(POLICIES, load_times):
        print(f"{n:>10} {t * 1000:>12.1f} {t * 1000 / n:>13.2f}")
    pod_linear, pod_lo, pod_hi = linear(CONTAINERS, pod_times)
    load_linear, load_lo, load_hi = linear(POLICIES, load_times)
    print(f"marginal cost lower/upper half: containers {pod_lo * 1000:.2f}/{pod_hi * 1000:.2f} ms "
          f"({'linear' if pod_linear else 'SUPERLINEAR'}), policies {load_lo * 1000:.2f}/{load_hi * 1000:.2f} ms "
          f"({'linear' if load_linear else 'SUPERLINEAR'})")
    load_500 = load_times[-1]
    return Result("growth: 500 policies load (and linear in containers/pod and policies)", load_500, "s",
                  f"linear; ≤ {LOAD_GOAL_S:g} s", pod_linear and load_linear and load_500 <= LOAD_GOAL_S,
                  f"100-container pod {pod_times[-1] * 1000:.0f} ms; marginal ms/container "
                  f"{pod_lo * 1000:.2f}→{pod_hi * 1000:.2f}, ms/policy {load_lo * 1000:.2f}→{load_hi * 1000:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    print_table([measure(parser.parse_args().repeats)])


if __name__ == "__main__":
    main()
