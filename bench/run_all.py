"""`make bench`: every benchmark in one run, one row per row of issue 7's table; writes
bench/results.json and prints the table. A script that fails gives its row ``met: false`` with
the reason, and the run exits non-zero after the others have run.

    .venv/bin/python bench/run_all.py [--quick]

``--quick`` shortens every script (fewer runs, shorter load) to check the suite works; its
figures are noisier and not the ones to report.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import traceback
from collections.abc import Callable

import admission_latency
import admission_latency_native
import growth
import native_up
import notebooks_cold
import registry_throughput
import sign_whole_process
import verify_in_process
import verify_whole_process
from _common import ROOT, Result, print_table, write_results


def suite(quick: bool) -> list[tuple[str, str, Callable[[], Result]]]:
    """(row name, goal, measurement) in the issue's order; the name and goal label a failed row."""
    runs = 4 if quick else 10
    return [
        ("`labkit verify` whole process / `cosign verify`", "≤ 1.0",
         lambda: verify_whole_process.measure(runs)),
        ("`labkit sign` whole process / `cosign sign`", "≤ 1.0", lambda: sign_whole_process.measure(runs)),
        ("in-process verify, warm", "≤ 2 ms", lambda: verify_in_process.measure(50 if quick else 200)),
        ("registry push+pull 64 MiB", "≥ 0.70", lambda: registry_throughput.measure(2 if quick else 5)),
        ("admission webhook p99, cached", "≤ 10 ms",
         lambda: admission_latency.measure(seconds=1.0 if quick else 5.0)),
        ("admission p99 on the native lab, labkit / real engine", "≤ 1.0",
         lambda: admission_latency_native.measure(window=1.0 if quick else 4.0, rounds=2 if quick else 5)),
        ("whole notebook suite, cold", "≤ 90 s", notebooks_cold.measure),
        ("growth", "linear; ≤ 1 s", lambda: growth.measure(2 if quick else 5)),
        ("native lab up, warm", "≤ 60 s", lambda: native_up.measure(1 if quick else 3)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results: list[Result] = []
    failed = False
    for name, goal, measure in suite(args.quick):
        print(f"\n== {name}", flush=True)
        try:
            results.append(measure())
        except (Exception, SystemExit) as exc:  # one broken script must not hide the others' figures
            traceback.print_exc()
            failed = True
            results.append(Result(name, None, "", goal, False, f"did not run: {exc}"))
    write_results(results, ROOT / "bench" / "results.json")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
          f"{' (--quick)' if args.quick else ''}; wrote bench/results.json")
    print_table(results)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
