"""Admission webhook latency: AdmissionReviews for a 3-container pod at fixed request rates.

Not a test. Reviews go to ``/mutate/kyverno``, Kyverno's mutating webhook: the one that verifies
signatures and pins digests (the validating one only reads the annotation it writes). The
registry (``labkit registry serve``) and the webhook (``labkit admission serve``) each run in
their own process on loopback; this process is only the load generator: an open-loop schedule
at --rates req/s for --seconds each, sent by a thread pool of keep-alive HTTPS clients verifying
the generated CA (http.client). Each rate runs twice: cold (``--cache-ttl 0``, every
review re-verifies all three signatures in the registry) and cached (the default TTL, warmed).
Latency is measured from the scheduled send time, so queueing behind a slow server counts.

    .venv/bin/python bench/admission_latency.py [--rates 50 200] [--seconds 5]

Goal (issue 4): p99 <= 10 ms at 200 req/s cached on 2 cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _common  # noqa: F401  (puts the repository on sys.path)
import httpx
import yaml
from _common import Result, print_table

from labkit import keys
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.signing.sign import sign_image
from tests.peers import free_port, run_labkit_registry


def push_signed(client: RegistryClient, host: str, private: Any, n: int) -> list[str]:
    refs = []
    for i in range(n):
        layer = f"bench layer {i}\n".encode()
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(layer)]}}).encode()
        image = Image(manifest=Manifest(config=Descriptor.of(OCI_CONFIG, config),
                                        layers=(Descriptor.of(OCI_LAYER, layer),)), config=config, layers=[layer])
        digest = client.push_image(Reference.parse(f"{host}/bench/app{i}:v1"), image)
        ref = f"{host}/bench/app{i}@{digest}"
        sign_image(ref, private, client=client)
        refs.append(ref)
    return refs


def policy(host: str, pem: str) -> dict[str, Any]:
    """The bench's ClusterPolicy, offline as the lab is: its signatures are in no transparency log."""
    key = {"publicKeys": pem.strip(), "rekor": {"ignoreTlog": True}, "ctlog": {"ignoreSCT": True}}
    rule = {"name": "signed", "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
            "verifyImages": [{"imageReferences": [f"{host}/bench/*"], "failureAction": "Enforce",
                              "attestors": [{"entries": [{"keys": key}]}]}]}
    return {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "bench"},
            "spec": {"rules": [rule]}}


def review(images: list[str], namespace: str = "default", dry_run: bool = False) -> bytes:
    """A CREATE of a pod running ``images``, as kube-apiserver sends it to a webhook (the real
    engines look policies up by ``kind``/``resource``); one body, sent again and again.
    ``dry_run``: ``kubectl create --dry-run=server``, which the engines record no report for."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bench", "namespace": namespace},
           "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}
    kind = {"group": "", "version": "v1", "kind": "Pod"}
    resource = {"group": "", "version": "v1", "resource": "pods"}
    request = {"uid": str(uuid.uuid4()), "kind": kind, "resource": resource, "requestKind": kind,
               "requestResource": resource, "name": "bench", "namespace": namespace, "operation": "CREATE",
               "userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]},
               "object": pod, "oldObject": None, "dryRun": dry_run,
               "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": request}).encode()


@contextmanager
def webhook(policies: Path, home: Path, cache_ttl: float, state: Path | None = None) -> Iterator[str]:
    """``labkit admission serve`` in its own process; yields its base URL once it answers.
    ``state``: a directory whose ``namespaces.json`` gives namespace labels."""
    port = free_port()
    argv = [sys.executable, "-m", "labkit", "admission", "serve", "--policies", str(policies),
            "--port", str(port), "--cache-ttl", str(cache_ttl), *(["--state", str(state)] if state else [])]
    proc = subprocess.Popen(argv, env={**os.environ, "LABKIT_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                ctx = ssl.create_default_context(cafile=str(home / "admission" / "ca.pem"))
                if httpx.get(url + "/healthz", verify=ctx, timeout=1).status_code == 200:
                    break
            except (httpx.TransportError, FileNotFoundError, ssl.SSLError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"webhook did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Target:
    """A webhook endpoint: ``url`` (https://host:port/path), the CA that verifies it, and the name
    its certificate is checked for (policy-controller's names its Service, as the API server calls it)."""

    url: str
    ca: ssl.SSLContext
    server_name: str = "127.0.0.1"


class Connection(http.client.HTTPSConnection):
    """One keep-alive HTTPS connection (http.client: a third of httpx's client CPU per request)
    to the URL's address, with the certificate checked for ``server_name``."""

    def __init__(self, target: Target, timeout: float) -> None:
        url = urlsplit(target.url)
        super().__init__(url.hostname or "", url.port, timeout=timeout)
        self.path, self.target = url.path, target

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.target.ca.wrap_socket(sock, server_hostname=self.target.server_name)

    def post(self, body: bytes) -> tuple[int, bytes]:
        self.request("POST", self.path, body, {"Content-Type": "application/json"})
        resp = self.getresponse()
        return resp.status, resp.read()


def allowed(status: int, answer: bytes) -> bool:
    return status == 200 and json.loads(answer)["response"]["allowed"] is True


def open_loop(target: Target, body: bytes, rate: float, seconds: float,
              workers: int) -> tuple[list[tuple[float, bool]], float]:
    """``rate * seconds`` reviews sent at fixed times whatever the answers (open loop) by
    ``workers`` threads with one warm connection each; each sample is (seconds from the scheduled
    send to the answer, admitted), so queueing behind a slow server counts. Also returns the
    time from the first scheduled send to the last answer."""
    local = threading.local()
    connections: list[Connection] = []
    lock = threading.Lock()
    warm = threading.Barrier(workers, timeout=30)

    def send(scheduled: float) -> tuple[float, bool]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = Connection(target, timeout=15)
            with lock:
                connections.append(conn)
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        try:
            status, answer = conn.post(body)
        except (OSError, http.client.HTTPException):  # no answer (a saturated server): failed
            conn.close()  # the next request reconnects
            return time.perf_counter() - scheduled, False
        return time.perf_counter() - scheduled, allowed(status, answer)

    def warm_up(_: int) -> None:  # every thread's handshake done before the clock starts
        send(time.perf_counter())
        warm.wait()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(warm_up, range(workers)))
        start = time.perf_counter() + 0.05
        futures = [pool.submit(send, start + i / rate) for i in range(int(rate * seconds))]
        samples = [f.result() for f in futures]
        elapsed = time.perf_counter() - start
    for conn in connections:
        conn.close()
    return samples, elapsed


def summary(samples: list[tuple[float, bool]], elapsed: float) -> dict[str, float]:
    latencies = sorted(s[0] * 1000 for s in samples)

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    return {"n": len(samples), "failed": sum(not s[1] for s in samples), "p50": pct(50), "p99": pct(99),
            "max": latencies[-1], "throughput": len(samples) / elapsed}


def run(target: Target, body: bytes, rate: float, seconds: float, workers: int) -> dict[str, float]:
    return summary(*open_loop(target, body, rate, seconds, workers))


GOAL_P99_MS = 10.0


def measure(rates: tuple[float, ...] = (50, 200), seconds: float = 5.0, workers: int = 16) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policies = root / "policies"
        policies.mkdir()
        keys.generate_key_pair(root / "k", b"")
        with run_labkit_registry(root / "registry") as registry, RegistryClient() as client:
            images = push_signed(client, registry.host, keys.load_private_key(root / "k.key", b""), 3)
            (policies / "bench.yaml").write_text(yaml.safe_dump(policy(registry.host, (root / "k.pub").read_text())))
            body = review(images)
            ca = root / "home" / "admission" / "ca.pem"
            print(f"3-container pod, Kyverno ClusterPolicy, {seconds:g} s per row, "
                  f"{workers} client threads, {os.cpu_count()} CPUs")
            print(f"{'mode':<7} {'rate':>6} {'n':>5} {'fail':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
                  f"{'req/s':>7}")
            cached: dict[float, dict[str, float]] = {}
            for mode, ttl in (("cold", 0.0), ("cached", 600.0)):
                with webhook(policies, root / "home", ttl) as url:
                    target = Target(url + "/mutate/kyverno", ssl.create_default_context(cafile=str(ca)))
                    for rate in rates:
                        r = run(target, body, rate, seconds, workers)
                        if mode == "cached":
                            cached[rate] = r
                        print(f"{mode:<7} {rate:>6g} {r['n']:>5} {r['failed']:>4} {r['p50']:>8.2f} "
                              f"{r['p99']:>8.2f} {r['max']:>8.2f} {r['throughput']:>7.1f}", flush=True)
    top = max(rates)
    worst = cached[top]
    return Result(f"admission webhook p99, 3-container pod, cached, {top:g} req/s", worst["p99"], "ms",
                  f"≤ {GOAL_P99_MS:g} ms", worst["p99"] <= GOAL_P99_MS and worst["failed"] == 0,
                  f"p50 {worst['p50']:.1f} ms, {worst['failed']:g} failed of {worst['n']:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[50, 200])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args()
    print_table([measure(tuple(args.rates), args.seconds, args.workers)])


if __name__ == "__main__":
    main()
