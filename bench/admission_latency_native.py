"""Admission latency, labkit's webhook beside the real engines' webhooks on the native lab.

Not a test. One run, in a loopback-only network namespace (``tools/netns-run``), on one native
lab: the same AdmissionReview (a CREATE of a 3-container pod, every image signed, by digest, in
the lab's registry; a server dry run, so that no engine writes a report) is POSTed straight to each
engine's HTTPS endpoint and to labkit's, no API server in between:

- labkit ``/mutate/kyverno`` and real Kyverno's ``/mutate/fail`` (its mutating resource webhook,
  the one that verifies images), both with the same ClusterPolicy ``verifyImages``;
- labkit ``/validate/policy-controller`` and real policy-controller's ``/validations`` (its
  validating webhook, the one that verifies), both with the same ClusterImagePolicy.

URLs, paths and CA bundles come from the webhook configurations the engines registered in the
API server. labkit's webhook is ``labkit admission serve`` in its own process with its defaults,
so each side verifies as it does out of the box: Kyverno caches successful verifications (60 min),
labkit too (60 s), policy-controller caches nothing and re-verifies every image of every review.
A fifth endpoint, labkit's policy-controller webhook with its cache off (a second process,
``--cache-ttl 0``), does the work policy-controller does. Each endpoint gets the same open-loop
rate in ``--window``-second windows (longer at a low rate: at least 200 reviews each), the
windows of a round in a rotated order, for ``--rounds`` rounds, so the machine's load drift falls
on all alike; p50/p99 are over all of an endpoint's samples at that rate, latency counted from
each request's scheduled send time (:func:`admission_latency.open_loop`). Two rates: 200 req/s
(the single-webhook bench's) and 25, which policy-controller, re-verifying, sustains on 2 cores.

    .venv/bin/python bench/admission_latency_native.py [--rates 25 200] [--window 4] [--rounds 5]

Goal (issue 7): p99 ratio labkit / real ≤ 1.0 for each engine.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import yaml
from _common import ROOT, Result, print_table, push_small_image
from admission_latency import Connection, Target, allowed, open_loop, policy, push_signed, review, summary, webhook

from labkit import keys
from labkit.admission.cache import DEFAULT_TTL
from labkit.lab import Lab
from labkit.lab.kubectl import KubectlLab
from labkit.lab.native import missing_binaries
from labkit.oci.client import RegistryClient
from tests.conftest import loopback_only

NAME = "admission p99 on the native lab, labkit / real engine"
GOAL = "≤ 1.0"
NAMESPACE = "bench"  # opted in to policy-controller
PC_INCLUDE = {"policy.sigstore.dev/include": "true"}
# labkit's endpoint for each engine, and where the engine's own is registered: (configuration kind, name)
LABKIT_PATHS = {"kyverno": "/mutate/kyverno", "policy-controller": "/validate/policy-controller"}
REAL_WEBHOOKS = {"kyverno": ("mutatingwebhookconfiguration", "kyverno-resource-mutating-webhook-cfg"),
                 "policy-controller": ("validatingwebhookconfiguration", "policy.sigstore.dev")}
PC_CERTS = ("-n", "cosign-system", "webhook-certs")  # knative's serving certificate
MIN_WINDOW_SAMPLES = 200  # a p99 over rounds * 200 samples at the low rate, not over a handful
UNCACHED = "labkit policy-controller, no cache"  # verifying every review, as policy-controller does


def cluster_image_policy(host: str, pem: str) -> dict[str, Any]:
    return {"apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy", "metadata": {"name": "bench"},
            "spec": {"images": [{"glob": f"{host}/bench/**"}], "authorities": [{"key": {"data": pem.strip()}}]}}


def real_target(lab: KubectlLab, engine: str) -> Target:
    """The engine's webhook as the API server calls it: by URL (Kyverno) or through the Service
    ``cosign-system/webhook``, an ExternalName for 127.0.0.1 (policy-controller)."""
    kind, name = REAL_WEBHOOKS[engine]
    [hook] = json.loads(lab.must("get", kind, name, "-o", "json"))["webhooks"]
    config = hook["clientConfig"]
    if "url" in config:
        return Target(config["url"], ssl.create_default_context(cadata=base64.b64decode(config["caBundle"]).decode()))
    # knative issues its serving certificate under its CA's own name and with no authority key
    # identifier, so OpenSSL takes it for self-signed (Go, the API server, checks the signature):
    # trust that certificate itself, as knative keeps it in its Secret.
    secret = json.loads(lab.must("get", "secret", *PC_CERTS, "-o", "json"))
    pinned = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["server-cert.pem"]).decode())
    pinned.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    service = config["service"]
    return Target(f"https://127.0.0.1:{service['port']}{service['path']}", pinned,
                  server_name=f"{service['name']}.{service['namespace']}.svc")


def check(targets: dict[str, Target], signed: bytes, unsigned: bytes) -> None:
    """Every endpoint admits the signed pod and denies the one with an unsigned image: the
    policies are in force and the decisions agree before anything is timed."""
    for name, target in targets.items():
        conn = Connection(target, timeout=30)
        try:
            for body, want in ((signed, True), (unsigned, False)):
                status, answer = conn.post(body)
                if allowed(status, answer) is not want:
                    raise SystemExit(f"{name} {'denied' if want else 'admitted'} the "
                                     f"{'signed' if want else 'unsigned'} pod: HTTP {status} {answer[:600]!r}")
        except OSError as exc:
            raise SystemExit(f"{name} at {target.url}: {exc}") from None
        finally:
            conn.close()


def inside(rates: list[float], window: float, rounds: int, workers: int) -> dict[str, dict[str, dict[str, float]]]:
    """The measurement, run in the loopback-only namespace: rate → endpoint → summary."""
    with tempfile.TemporaryDirectory(prefix="labkit-bench-admission-") as tmp:
        root = Path(tmp)
        keys.generate_key_pair(root / "k", b"")
        pem = (root / "k.pub").read_text()
        lab = Lab.start("native", root / "lab")
        try:
            assert isinstance(lab, KubectlLab)
            host = lab.registry.host
            with RegistryClient() as client:
                images = push_signed(client, host, keys.load_private_key(root / "k.key", b""), 3)
                unsigned = str(push_small_image(client, f"{host}/bench/unsigned:v1", b"unsigned\n"))
            lab.label_namespace(NAMESPACE, PC_INCLUDE)
            docs = [policy(host, pem), cluster_image_policy(host, pem)]
            for doc in docs:
                [applied] = lab.apply(doc)
                if not applied.admitted:
                    raise SystemExit(f"applying {doc['kind']}: {applied.message}")
            (root / "policies").mkdir()
            (root / "policies" / "bench.yaml").write_text(yaml.safe_dump_all(docs))
            (root / "state").mkdir()
            (root / "state" / "namespaces.json").write_text(json.dumps({NAMESPACE: PC_INCLUDE}))
            home, state = root / "home", root / "state"
            with webhook(root / "policies", home, DEFAULT_TTL, state) as url, \
                    webhook(root / "policies", home, 0, state) as uncached:
                ca = ssl.create_default_context(cafile=str(home / "admission" / "ca.pem"))
                targets: dict[str, Target] = {}
                for engine, path in LABKIT_PATHS.items():
                    targets[f"labkit {engine}"] = Target(url + path, ca)
                    targets[engine] = real_target(lab, engine)
                targets[UNCACHED] = Target(uncached + LABKIT_PATHS["policy-controller"], ca)
                signed = review(images, NAMESPACE, dry_run=True)
                check(targets, signed, review([*images[:2], unsigned], NAMESPACE, dry_run=True))
                return {f"{rate:g}": windows(targets, signed, rate, window, rounds, workers) for rate in rates}
        finally:
            lab.stop()


def windows(targets: dict[str, Target], body: bytes, rate: float, window: float, rounds: int,
            workers: int) -> dict[str, dict[str, float]]:
    """``rounds`` windows per endpoint at ``rate``, each round's in a rotated order, each window
    long enough for ``MIN_WINDOW_SAMPLES`` reviews; the summary of every endpoint's samples."""
    names = list(targets)
    window = max(window, MIN_WINDOW_SAMPLES / rate)
    samples: dict[str, list[tuple[float, bool]]] = {n: [] for n in names}
    elapsed = dict.fromkeys(names, 0.0)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            got, took = open_loop(targets[name], body, rate, window, workers)
            samples[name] += got
            elapsed[name] += took
            s = summary(got, took)
            print(f"{rate:g} req/s round {r + 1} {name:<34} p50 {s['p50']:7.2f} p99 {s['p99']:8.2f} ms, "
                  f"{s['failed']:g} failed", flush=True)
    return {n: summary(samples[n], elapsed[n]) for n in names}


def measure(rates: tuple[float, ...] = (25, 200), window: float = 4.0, rounds: int = 5, workers: int = 16) -> Result:
    """Run :func:`inside` in a loopback-only namespace of its own; print the tables and ratios."""
    missing = missing_binaries()
    if missing:
        return Result(NAME, None, "×", GOAL, None, f"not built: {', '.join(missing)} (make tools)")
    with tempfile.TemporaryDirectory(prefix="labkit-bench-admission-out-") as tmp:
        out = Path(tmp) / "stats.json"
        argv = [str(ROOT / "tools" / "netns-run"), sys.executable, __file__, "--inside", str(out),
                "--rates", *map(str, rates), "--window", str(window), "--rounds", str(rounds),
                "--workers", str(workers)]
        load = os.getloadavg()
        # bounded: the lab's start and stop, and each window (a saturated engine drains its queue)
        bound = sum(rounds * 5 * (4 * max(window, MIN_WINDOW_SAMPLES / r) + 5) for r in rates)
        proc = subprocess.run(argv, timeout=400 + bound)
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"the native admission bench failed (exit {proc.returncode})")
        stats: dict[str, dict[str, dict[str, float]]] = json.loads(out.read_text())
    print(f"\n3-container pod, signed, by digest; {rounds} windows of {window:g} s per endpoint and rate, "
          f"{workers} client threads, {os.cpu_count()} CPUs; load average (1, 5 min) "
          f"{load[0]:.2f}, {load[1]:.2f} before, {os.getloadavg()[0]:.2f}, {os.getloadavg()[1]:.2f} after")
    worst, failed, notes = 0.0, 0.0, []
    print(f"\n{'req/s':>5} {'endpoint':<34} {'n':>5} {'failed':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'served/s':>8}")
    for rate, by_endpoint in stats.items():
        for name, s in by_endpoint.items():
            print(f"{rate:>5} {name:<34} {s['n']:>5g} {s['failed']:>6g} {s['p50']:>8.2f} {s['p99']:>8.2f} "
                  f"{s['max']:>8.2f} {s['throughput']:>8.1f}")
            failed += s["failed"]
    for rate, by_endpoint in stats.items():
        for engine in REAL_WEBHOOKS:
            ours, theirs = by_endpoint[f"labkit {engine}"], by_endpoint[engine]
            ratio = ours["p99"] / theirs["p99"]
            worst = max(worst, ratio)
            print(f"{rate:>5} labkit / {engine}: p50 {ours['p50'] / theirs['p50']:.2f}×, p99 {ratio:.2f}×")
            notes.append(f"{engine} {rate}/s p99 {ours['p99']:.1f} vs {theirs['p99']:.1f} ms")
    return Result(NAME, worst, "×", GOAL, worst <= 1.0 and failed == 0,
                  "; ".join(notes) + (f"; {failed:g} reviews failed" if failed else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", type=float, nargs="+", default=[25, 200], help="reviews per second, each endpoint")
    ap.add_argument("--window", type=float, default=4.0, help="seconds per endpoint per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=16, help="client threads, one connection each")
    ap.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # measure() runs this in the namespace
    args = ap.parse_args()
    if args.inside is None:
        print_table([measure(tuple(args.rates), args.window, args.rounds, args.workers)])
    elif not loopback_only():
        raise SystemExit("not in a loopback-only network namespace (tools/netns-run could not make one)")
    else:
        args.inside.write_text(json.dumps(inside(args.rates, args.window, args.rounds, args.workers)))


if __name__ == "__main__":
    main()
