"""Whole-process time of `labkit sign` against `cosign sign --tlog-upload=false`.

Both sign with the same cosign-encrypted key (password from COSIGN_PASSWORD) against Debian's
distribution on loopback. Every run signs a fresh, unsigned image, so each run really builds and
pushes a signature (re-signing would stop at the duplicate check). Runs interleaved; prints the
median of N runs of each and the ratio labkit/cosign.

    .venv/bin/python bench/sign_whole_process.py [--runs 10] [--cosign cosign-v2.6.1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import (
    LABKIT,
    Result,
    compare_processes,
    cosign_binary,
    print_table,
    push_small_image,
    tool_env,
    whole_process_result,
)

from labkit import keys
from labkit.oci.client import RegistryClient
from tests.peers import run_distribution

PASSWORD = "bench"


def measure(runs: int = 10, cosign_name: str = "cosign-v2.6.1") -> Result:
    cosign = cosign_binary(cosign_name)
    with tempfile.TemporaryDirectory() as tmp, run_distribution(Path(tmp) / "registry") as registry:
        work = Path(tmp)
        paths = keys.generate_key_pair(work / "bench", PASSWORD.encode())
        with RegistryClient() as client:
            images = {tool: iter([str(push_small_image(client, f"{registry.host}/bench/{tool}:{i}",
                                                         f"{tool} {i}".encode()))
                                  for i in range(runs + 1)])
                      for tool in ("labkit", "cosign")}
        env = tool_env(work, COSIGN_PASSWORD=PASSWORD)
        flags = ["--key", str(paths.private_key), "--tlog-upload=false", "-y"]
        ours, theirs = compare_processes([
            lambda: [LABKIT, "sign", *flags, next(images["labkit"])],
            lambda: [cosign, "sign", *flags, next(images["cosign"])],
        ], env, runs)
    return whole_process_result("sign", ours, theirs, runs, cosign_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cosign", default="cosign-v2.6.1")
    args = parser.parse_args()
    print_table([measure(args.runs, args.cosign)])


if __name__ == "__main__":
    main()
