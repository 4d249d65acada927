"""Push then pull a 64 MiB, 8-layer image through labkit's client, against labkit's registry and
against distribution (Debian's docker-registry), in one run; print MiB/s and the ratio.

    .venv/bin/python bench/registry_throughput.py [--rounds 5] [--layers 8] [--mib 64]

Each round pushes to a fresh repository (so every blob is really uploaded) and pulls it back;
the best round per registry is reported, the usual way to damp noise on a shared machine.
Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest

MIB = 1024 * 1024


def make_image(total_mib: int, layers: int) -> Image:
    size = total_mib * MIB // layers
    blobs = [os.urandom(size) for _ in range(layers)]
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    manifest = Manifest(
        config=Descriptor.of(OCI_CONFIG, config),
        layers=tuple(Descriptor.of(OCI_LAYER, b) for b in blobs),
    )
    return Image(manifest=manifest, config=config, layers=blobs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(proc: subprocess.Popen, host: str, what: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            httpx.get(f"http://{host}/v2/", timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.terminate()
                sys.exit(f"{what} did not start")
            time.sleep(0.05)


def start_labkit(workdir: Path) -> tuple[subprocess.Popen, str]:
    """``labkit registry serve`` in its own process, as learners run it (and as distribution runs)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "labkit", "registry", "serve", "--port", str(port), "--root", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_up(proc, f"127.0.0.1:{port}", "labkit registry serve")
    return proc, f"127.0.0.1:{port}"


def start_distribution(workdir: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        sys.exit("distribution (docker-registry) is not installed: run `make system-deps` as root")
    port = free_port()
    workdir.mkdir()
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_up(proc, f"127.0.0.1:{port}", "distribution")
    return proc, f"127.0.0.1:{port}"


def measure(host: str, image: Image, rounds: int) -> tuple[float, float]:
    """Best push and best pull time in seconds over ``rounds`` fresh repositories."""
    pushes, pulls = [], []
    with RegistryClient() as client:
        for i in range(rounds):
            ref = f"{host}/bench/round{i}-{os.urandom(3).hex()}:latest"
            start = time.perf_counter()
            client.push_image(ref, image)
            pushes.append(time.perf_counter() - start)
            start = time.perf_counter()
            pulled = client.pull_image(ref)
            pulls.append(time.perf_counter() - start)
            assert isinstance(pulled, Image) and pulled.layers == image.layers
    return min(pushes), min(pulls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()

    image = make_image(args.mib, args.layers)
    total = sum(len(b) for b in image.blobs().values()) / MIB
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp:
        servers = {"labkit": start_labkit(Path(tmp) / "labkit"),
                   "distribution": start_distribution(Path(tmp) / "distribution")}
        try:
            results = {name: measure(host, image, args.rounds) for name, (_, host) in servers.items()}
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=10)

    print(f"image: {total:.1f} MiB in {args.layers} layers; best of {args.rounds} rounds; client: labkit RegistryClient")
    print(f"{'registry':<14}{'push MiB/s':>12}{'pull MiB/s':>12}{'push+pull MiB/s':>17}")
    rates = {}
    for name, (push, pull) in results.items():
        rates[name] = (total / push, total / pull, 2 * total / (push + pull))
        print(f"{name:<14}{rates[name][0]:>12.1f}{rates[name][1]:>12.1f}{rates[name][2]:>17.1f}")
    ratio = [a / b for a, b in zip(rates["labkit"], rates["distribution"])]
    print(f"{'labkit/dist':<14}{ratio[0]:>11.2f}x{ratio[1]:>11.2f}x{ratio[2]:>16.2f}x   (goal >= 0.70x)")


if __name__ == "__main__":
    main()
