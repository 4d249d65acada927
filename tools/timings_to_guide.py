"""The instructor guide's machine times, from the notebook regression's measured figures.

    python tools/timings_to_guide.py --from test-artifacts/notebook-timings.md   # after make test-notebooks
    python tools/timings_to_guide.py                                              # docs/notebook-timings.md as is

``tests/notebooks`` writes ``test-artifacts/notebook-timings.md`` (each notebook's execution and
diff, in seconds, per backend). ``--from`` copies it to ``docs/notebook-timings.md`` (committed,
with the date it was measured); then the machine-time columns of the Timings table in
``docs/instructor-guide.md`` and its total are rewritten from that file. Nothing else in the guide
is touched. ``tests/unit/test_instructor_guide.py`` fails when the guide and the file disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ROOT / "docs" / "notebook-timings.md"
GUIDE = ROOT / "docs" / "instructor-guide.md"
BACKENDS = ("embedded", "native")
COLUMNS = {"embedded": "machine time, embedded", "native": "machine time, native"}
TOTAL = re.compile(r"(<!-- timings-total -->).*?(<!-- /timings-total -->)", re.S)


def read_timings(text: str) -> dict[tuple[str, str], float]:
    """``(notebook number or "all", backend) → seconds`` from the regression's table."""
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1] in BACKENDS and re.fullmatch(r"\d+(\.\d+)?", cells[2]):
            name = cells[0] if cells[0] == "all" else cells[0][:2]
            found[(name, cells[1])] = float(cells[2])
    return found


def seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


def rewrite(guide: str, timings: dict[tuple[str, str], float]) -> str:
    """The guide with its Timings table's machine-time cells and total taken from ``timings``."""
    head, sep, rest = guide.partition("## Timings\n")
    if not sep:
        raise ValueError("the guide has no '## Timings' section")
    section, nxt, tail = rest.partition("\n## ")
    lines = section.split("\n")
    header = next((i for i, line in enumerate(lines) if line.startswith("| notebook |")), None)
    if header is None:
        raise ValueError("the Timings section has no table starting '| notebook |'")
    titles = [c.strip() for c in lines[header].strip().strip("|").split("|")]
    where = {b: titles.index(c) for b, c in COLUMNS.items() if c in titles}
    if not where:
        raise ValueError(f"the Timings table has none of the columns {list(COLUMNS.values())}")
    for i in range(header + 2, len(lines)):
        if not lines[i].startswith("|"):
            break
        cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
        number = cells[0][:2]
        for backend, column in where.items():
            cells[column] = seconds(timings.get((number, backend)))
        lines[i] = "| " + " | ".join(cells) + " |"
    section = "\n".join(lines)
    total = ", ".join(f"{seconds(timings.get(('all', b)))} {b}" for b in BACKENDS if ("all", b) in timings)
    section, found = TOTAL.subn(lambda m: f"{m.group(1)}{total}{m.group(2)}", section)
    if not found:
        raise ValueError("the Timings section has no <!-- timings-total --> … <!-- /timings-total --> marker")
    return head + sep + section + nxt + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path,
                        help="the regression's artifact to copy to docs/notebook-timings.md first")
    args = parser.parse_args(argv)
    if args.source is not None:
        measured = datetime.fromtimestamp(args.source.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")
        TIMINGS.write_text(
            f"<!-- copied by tools/timings_to_guide.py from {args.source.name}, written by tests/notebooks on "
            f"{measured}: one run of each notebook, seconds of execution and output diff -->\n"
            + args.source.read_text())
    timings = read_timings(TIMINGS.read_text())
    if not timings:
        print(f"{TIMINGS}: no timings found", file=sys.stderr)
        return 1
    GUIDE.write_text(rewrite(GUIDE.read_text(), timings))
    print(f"{GUIDE.relative_to(ROOT)}: machine times from {TIMINGS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
