"""What the bench scripts share: the result row, timing a process, a signed image on a registry,
and an environment that keeps cosign offline."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from labkit.oci.client import RegistryClient  # noqa: E402
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest  # noqa: E402
from labkit.oci.reference import Reference  # noqa: E402
from tests.conftest import TOOLS_DIR  # noqa: E402

LABKIT = Path(sys.executable).parent / "labkit"


@dataclass(frozen=True)
class Result:
    """One row of the issue's table, as ``bench/results.json`` holds it."""

    name: str
    value: float | None
    unit: str
    goal: str
    met: bool | None  # None: not measured on this run (the note says why)
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        row = asdict(self)
        del row["note"]
        return row


def print_table(results: Sequence[Result]) -> None:
    print("\n| measure | value | goal | met |\n|---|---|---|---|")
    for r in results:
        value = "—" if r.value is None else f"{r.value:.3g} {r.unit}"
        met = {True: "yes", False: "NO", None: "—"}[r.met]
        note = f" ({r.note})" if r.note else ""
        print(f"| {r.name}{note} | {value} | {r.goal} | {met} |")


def write_results(results: Sequence[Result], path: Path) -> None:
    path.write_text(json.dumps([r.as_json() for r in results], indent=2, ensure_ascii=False) + "\n")


def cosign_binary(name: str) -> Path:
    path = TOOLS_DIR / name
    if not path.exists():
        raise SystemExit(f"needs {path}: run `make tools`")
    return path


def tool_env(home: Path, **extra: str) -> dict[str, str]:
    """Both tools' state under ``home``; cosign looks for a TUF root online, and a dead loopback
    proxy keeps it on this machine. Bytecode caches stay on: measure what users run."""
    env = dict(os.environ, HOME=str(home), LABKIT_HOME=str(home / "labkit"), TUF_ROOT=str(home / "tuf"),
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="", **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# Linux keeps a process's peak RSS across execve, so a child of this (large) interpreter would
# report at least this interpreter's size. A small `python -S` launcher spawns the command and
# reports its wall time and peak RSS (KiB) on stdout; the launcher's own ~9 MiB is the floor.
_LAUNCHER = """
import os, signal, sys, time
start = time.perf_counter()
pid = os.posix_spawnp(sys.argv[1], sys.argv[1:], os.environ,
                      file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
signal.signal(signal.SIGALRM, lambda *_: os.kill(pid, signal.SIGKILL))
signal.alarm(110)
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_process(argv: Sequence[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall time (s) and peak resident memory (KiB) of one process, which must succeed within 120 s."""
    proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, *map(str, argv)], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    seconds, rss, code = proc.stdout.split() if proc.returncode == 0 else (b"0", b"0", b"-1")
    if int(code) != 0:
        raise SystemExit(f"{' '.join(map(str, argv[:2]))} failed: {proc.stderr.decode()[-500:]}")
    return float(seconds), int(rss)


def timed(argv: Sequence[str], env: dict[str, str]) -> float:
    return run_process(argv, env)[0]


def interleaved_medians(commands: Sequence[Callable[[], float]], runs: int) -> list[float]:
    """Median of ``runs`` timings of each command, run in turn so noise hits all alike (after
    one warm-up each)."""
    for command in commands:
        command()
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for i, command in enumerate(commands):
            samples[i].append(command())
    return [statistics.median(s) for s in samples]


@dataclass(frozen=True)
class ProcessRuns:
    seconds: float  # median wall time
    max_rss_kib: int  # the largest peak resident memory of any run


def compare_processes(commands: Sequence[Callable[[], Sequence[str]]], env: dict[str, str],
                      runs: int) -> list[ProcessRuns]:
    """Each command line (made afresh for every run) run ``runs`` times, interleaved after one
    warm-up each: median time and peak memory."""
    peaks = [0] * len(commands)

    def runner(i: int) -> Callable[[], float]:
        def run() -> float:
            seconds, rss = run_process(commands[i](), env)
            peaks[i] = max(peaks[i], rss)
            return seconds
        return run

    medians = interleaved_medians([runner(i) for i in range(len(commands))], runs)
    return [ProcessRuns(m, p) for m, p in zip(medians, peaks, strict=True)]


def push_small_image(client: RegistryClient, ref: Reference | str, content: bytes) -> Reference:
    """A one-layer image holding ``content``; returns ``ref`` pinned to its digest."""
    r = Reference.parse(ref) if isinstance(ref, str) else ref
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}).encode()
    image = Image(Manifest(Descriptor.of(OCI_CONFIG, config), (Descriptor.of(OCI_LAYER, content),)),
                  config, [content])
    return r.with_digest(client.push_image(r, image))


def whole_process_result(verb: str, ours: ProcessRuns, theirs: ProcessRuns, runs: int, cosign_name: str) -> Result:
    """Print both tools' figures and return the time-ratio row for `labkit VERB` against `cosign
    VERB`; met when the ratio is ≤ 1.0 and labkit's peak memory is below cosign's."""
    for name, p in (("labkit", ours), (cosign_name, theirs)):
        print(f"{name} {verb} median of {runs}: {p.seconds * 1000:7.1f} ms, peak RSS {p.max_rss_kib / 1024:5.1f} MiB")
    ratio = ours.seconds / theirs.seconds
    return Result(f"`labkit {verb}` whole process / `cosign {verb}`", ratio, "×", "≤ 1.0, RSS below cosign's",
                  ratio <= 1.0 and ours.max_rss_kib < theirs.max_rss_kib,
                  f"{ours.seconds * 1000:.0f} vs {theirs.seconds * 1000:.0f} ms, median of {runs}; peak RSS "
                  f"{ours.max_rss_kib / 1024:.0f} vs {theirs.max_rss_kib / 1024:.0f} MiB")
