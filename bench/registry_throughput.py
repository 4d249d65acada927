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
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import Result, print_table

from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest
from tests.peers import run_distribution, run_labkit_registry

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


def measure_one(host: str, image: Image, rounds: int) -> tuple[float, float]:
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


def measure(rounds: int = 5, layers: int = 8, mib: int = 64) -> Result:
    image = make_image(mib, layers)
    total = sum(len(b) for b in image.blobs().values()) / MIB
    with tempfile.TemporaryDirectory(prefix="labkit-bench-") as tmp, ExitStack() as stack:
        servers = [
            stack.enter_context(run_labkit_registry(Path(tmp) / "labkit")),
            stack.enter_context(run_distribution(Path(tmp) / "distribution")),
        ]
        results = {reg.name: measure_one(reg.host, image, rounds) for reg in servers}

    print(f"image: {total:.1f} MiB in {layers} layers; best of {rounds} rounds; client: labkit RegistryClient")
    print(f"{'registry':<14}{'push MiB/s':>12}{'pull MiB/s':>12}{'push+pull MiB/s':>17}")
    rates = {}
    for name, (push, pull) in results.items():
        rates[name] = (total / push, total / pull, 2 * total / (push + pull))
        print(f"{name:<14}{rates[name][0]:>12.1f}{rates[name][1]:>12.1f}{rates[name][2]:>17.1f}")
    ratio = [a / b for a, b in zip(rates["labkit"], rates["distribution"])]
    print(f"{'labkit/dist':<14}{ratio[0]:>11.2f}x{ratio[1]:>11.2f}x{ratio[2]:>16.2f}x   (goal >= 0.70x)")
    return Result(f"registry push+pull {mib} MiB, labkit / distribution", ratio[2], "×", "≥ 0.70", ratio[2] >= 0.70,
                  f"{rates['labkit'][2]:.0f} vs {rates['distribution'][2]:.0f} MiB/s, best of {rounds}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    print_table([measure(args.rounds, args.layers, args.mib)])


if __name__ == "__main__":
    main()
