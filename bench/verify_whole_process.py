"""Whole-process time of `labkit verify` against `cosign verify --insecure-ignore-tlog`.

Same signed image, same registry (Debian's distribution on loopback), runs interleaved so machine
noise hits both tools alike; prints the median of N runs of each and the ratio labkit/cosign.

    .venv/bin/python bench/verify_whole_process.py [--runs 10] [--cosign cosign-v2.6.1]
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
from labkit.signing.sign import sign_image
from tests.peers import run_distribution

PASSWORD = b"bench"


def measure(runs: int = 10, cosign_name: str = "cosign-v2.6.1") -> Result:
    cosign = cosign_binary(cosign_name)
    with tempfile.TemporaryDirectory() as tmp, run_distribution(Path(tmp) / "registry") as registry:
        work = Path(tmp)
        paths = keys.generate_key_pair(work / "bench", PASSWORD)
        with RegistryClient() as client:
            image = push_small_image(client, f"{registry.host}/bench/app:v1", b"bench layer")
            sign_image(image, keys.load_private_key(paths.private_key, PASSWORD), client=client)
        env = tool_env(work)
        tagged = str(image.with_tag("v1"))
        ours, theirs = compare_processes([
            lambda: [LABKIT, "verify", "--key", paths.public_key, "--insecure-ignore-tlog", tagged],
            lambda: [cosign, "verify", "--key", paths.public_key, "--insecure-ignore-tlog", tagged],
        ], env, runs)
    return whole_process_result("verify", ours, theirs, runs, cosign_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cosign", default="cosign-v2.6.1")
    args = parser.parse_args()
    print_table([measure(args.runs, args.cosign)])


if __name__ == "__main__":
    main()
