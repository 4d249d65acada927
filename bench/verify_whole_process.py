"""Whole-process time of `labkit verify` against `cosign verify --insecure-ignore-tlog`.

Same signed image, same registry (Debian's distribution on loopback), runs interleaved so machine
noise hits both tools alike; prints the median of N runs of each and the ratio labkit/cosign.

    .venv/bin/python bench/verify_whole_process.py [--runs 10] [--cosign cosign-v2.6.1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labkit import keys  # noqa: E402
from labkit.oci.client import RegistryClient  # noqa: E402
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest  # noqa: E402
from labkit.oci.reference import Reference  # noqa: E402
from labkit.signing.sign import sign_image  # noqa: E402
from tests.conftest import TOOLS_DIR  # noqa: E402
from tests.peers import run_distribution  # noqa: E402

PASSWORD = b"bench"


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cosign", default="cosign-v2.6.1")
    args = parser.parse_args()
    cosign = TOOLS_DIR / args.cosign
    if not cosign.exists():
        raise SystemExit(f"needs {cosign}: run `make tools`")

    with tempfile.TemporaryDirectory() as tmp, run_distribution(Path(tmp) / "registry") as registry:
        work = Path(tmp)
        host = registry.host
        paths = keys.generate_key_pair(work / "bench", PASSWORD)
        client = RegistryClient()
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        layer = b"bench layer"
        image = Image(
            Manifest(Descriptor.of(OCI_CONFIG, config), (Descriptor.of(OCI_LAYER, layer),)),
            config,
            [layer],
        )
        ref = Reference.parse(f"{host}/bench/app:v1")
        digest = client.push_image(ref, image)
        sign_image(ref.with_digest(digest), keys.load_private_key(paths.private_key, PASSWORD), client=client)

        # cosign looks for a TUF root online: a dead loopback proxy keeps it on this machine.
        env = dict(os.environ, HOME=str(work), TUF_ROOT=str(work / "tuf"),
                   HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
        # Measure what users run: with bytecode caches, after one warm-up run of each tool.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        labkit_cmd = [str(Path(sys.executable).parent / "labkit"), "verify", "--key",
                      str(paths.public_key), "--insecure-ignore-tlog", str(ref)]
        cosign_cmd = [str(cosign), "verify", "--key", str(paths.public_key),
                      "--insecure-ignore-tlog", str(ref)]
        timed(labkit_cmd, env)
        timed(cosign_cmd, env)
        ours, theirs = [], []
        for _ in range(args.runs):
            ours.append(timed(labkit_cmd, env))
            theirs.append(timed(cosign_cmd, env))

    lab, cos = statistics.median(ours), statistics.median(theirs)
    print(f"labkit verify   median of {args.runs}: {lab * 1000:7.1f} ms")
    print(f"{args.cosign} verify median of {args.runs}: {cos * 1000:7.1f} ms")
    print(f"ratio labkit/cosign: {lab / cos:.2f}")


if __name__ == "__main__":
    main()
