"""In-process `verify_image`, warm (the library call a notebook or webhook makes), with the
verification cache off and on, beside one whole `cosign verify` process.

One signed image on each registry (labkit's and Debian's distribution, on loopback); one
RegistryClient kept open (its connection and token reused, as in a long-lived process). After a
warm-up, each mode runs --calls times on the digest reference (what admission sees once Kyverno
has pinned the image) and on the tag reference; medians are reported. With the cache, a call by
digest costs one HEAD of the ``.sig`` tag; by tag, one more HEAD to resolve the tag (it may have
moved, so it is never cached). The figure checked against the goal is by digest on distribution.

    .venv/bin/python bench/verify_in_process.py [--calls 200] [--cosign cosign-v2.6.1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import Result, cosign_binary, interleaved_medians, print_table, push_small_image, timed, tool_env

from labkit import keys
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from labkit.signing.verify import VerificationCache, verify_image
from tests.peers import run_distribution, run_labkit_registry

PASSWORD = b"bench"
GOAL_MS = 2.0


def median_ms(call: Callable[[], object], calls: int) -> float:
    for _ in range(5):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def measure(calls: int = 200, cosign_name: str = "cosign-v2.6.1") -> Result:
    cosign = cosign_binary(cosign_name)
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, RegistryClient() as client:
        work = Path(tmp)
        paths = keys.generate_key_pair(work / "bench", PASSWORD)
        public = keys.load_public_key(paths.public_key)
        for start in (run_labkit_registry, run_distribution):
            with start(work / start.__name__) as registry:
                image = push_small_image(client, f"{registry.host}/bench/app:v1", b"bench layer")
                sign_image(image, keys.load_private_key(paths.private_key, PASSWORD), client=client)
                for label, ref in (("digest", image), ("tag", image.with_tag("v1"))):
                    cache = VerificationCache()
                    rows[registry.name, label] = (
                        median_ms(lambda: verify_image(ref, public, client=client), calls),
                        median_ms(lambda: verify_image(ref, public, client=client, cache=cache), calls))
                if registry.name == "distribution":
                    (process,) = interleaved_medians([lambda: timed(
                        [cosign, "verify", "--key", paths.public_key, "--insecure-ignore-tlog", str(image)],
                        tool_env(work))], 5)
    print(f"verify_image warm, median of {calls} calls; {cosign_name} verify: one process, median of 5")
    print(f"{'registry':<14}{'reference':<10}{'cache off ms':>14}{'cache on ms':>13}")
    for (reg, label), (off, on) in rows.items():
        print(f"{reg:<14}{label:<10}{off:>14.2f}{on:>13.2f}")
    print(f"{'distribution':<14}{'cosign':<10}{process * 1000:>14.1f}   (one whole process)")
    off, on = rows["distribution", "digest"]
    tag_off, tag_on = rows["distribution", "tag"]
    return Result("in-process verify, warm, cache on (by digest, distribution)", on, "ms", f"≤ {GOAL_MS:g} ms",
                  on <= GOAL_MS, f"cache off {off:.2f} ms; by tag off/on {tag_off:.2f}/{tag_on:.2f} ms; "
                  f"one cosign process {process * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cosign", default="cosign-v2.6.1")
    args = parser.parse_args()
    print_table([measure(args.calls, args.cosign)])


if __name__ == "__main__":
    main()
