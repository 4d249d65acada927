"""The native lab's bring-up, warm (binaries built): ``labkit lab up --backend native`` in a fresh
LABKIT_HOME, timed end to end, then ``labkit lab down``. Goal: up ≤ 60 s on 2 cores.

Each run is in a loopback-only network namespace of its own (``tools/netns-run``), as the tests
run it; the median of ``runs`` is reported, with each step's time from ``lab.json``.

    .venv/bin/python bench/native_up.py [runs]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import ROOT, Result, print_table

from labkit.lab.native import missing_binaries

GOAL_S = 60.0
NAME = "native lab up, warm"


def one_run() -> tuple[float, float, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="labkit-bench-native-") as tmp:
        lab = f'"{sys.executable}" -m labkit lab'
        script = (f'export LABKIT_HOME="{tmp}"; set -e; s=$(date +%s.%N); {lab} up --backend native >/dev/null; '
                  f'u=$(date +%s.%N); cp "{tmp}/lab.json" "{tmp}.json"; {lab} down >/dev/null; d=$(date +%s.%N); '
                  'echo "$s $u $d"')
        out = subprocess.run([str(ROOT / "tools" / "netns-run"), "sh", "-c", script], capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            raise SystemExit(f"native lab up failed: {out.stderr[-800:]}")
        start, up, down = (float(x) for x in out.stdout.split())
        steps = json.loads(json.loads(Path(f"{tmp}.json").read_text())["info"]["timings"])
        Path(f"{tmp}.json").unlink()
    return up - start, down - up, steps


def measure(runs: int = 3) -> Result:
    missing = missing_binaries()
    if missing:
        return Result(NAME, None, "s", f"≤ {GOAL_S:g} s", None, f"not built: {', '.join(missing)} (make tools)")
    ups, downs = [], []
    for _ in range(runs):
        up, down, steps = one_run()
        ups.append(up)
        downs.append(down)
        print(f"up {up:.1f} s, down {down:.1f} s; steps: " + ", ".join(f"{k} {v:g} s" for k, v in steps.items()))
        time.sleep(1)
    median = statistics.median(ups)
    return Result(NAME, median, "s", f"≤ {GOAL_S:g} s", median <= GOAL_S,
                  f"median of {runs}; down {statistics.median(downs):.1f} s")


if __name__ == "__main__":
    print_table([measure(int(sys.argv[1]) if len(sys.argv) > 1 else 3)])
