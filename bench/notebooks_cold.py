"""Whole notebook suite, cold: one run of ``pytest tests/notebooks`` in a fresh LABKIT_HOME and
HOME (no lab state, no registry running), timed end to end. Goal: ≤ 90 s.

One run, not a median: a cold start can only happen once per fresh state, and the suite is long.
Skipped (value null) while ``tests/notebooks`` does not exist.

    .venv/bin/python bench/notebooks_cold.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the repository on sys.path)
from _common import ROOT, Result, print_table, tool_env

GOAL_S = 90.0
NAME = "whole notebook suite, cold"
TIMEOUT_S = 600  # a hung kernel must not hang `make bench`


def measure() -> Result:
    suite = ROOT / "tests" / "notebooks"
    if not suite.is_dir():
        print(f"{suite.relative_to(ROOT)} does not exist yet: not measured")
        return Result(NAME, None, "s", f"≤ {GOAL_S:g} s", None, "tests/notebooks not written yet")
    with tempfile.TemporaryDirectory(prefix="labkit-bench-nb-") as tmp:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider"],
                              cwd=ROOT, env=tool_env(Path(tmp), LAB_BACKEND="embedded"), capture_output=True, text=True,
                              timeout=TIMEOUT_S)
        elapsed = time.perf_counter() - start
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    print(f"pytest tests/notebooks: {elapsed:.1f} s, exit {proc.returncode}: {summary}")
    if proc.returncode != 0:
        return Result(NAME, elapsed, "s", f"≤ {GOAL_S:g} s", False, f"suite failed: {summary}")
    return Result(NAME, elapsed, "s", f"≤ {GOAL_S:g} s", elapsed <= GOAL_S, summary)


if __name__ == "__main__":
    print_table([measure()])
