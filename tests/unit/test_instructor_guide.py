"""The instructor guide's machine times are the notebook regression's measured figures: the
Timings table cites docs/notebook-timings.md (copied from test-artifacts/notebook-timings.md by
tools/timings_to_guide.py), cell for cell."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def timings_to_guide() -> ModuleType:
    spec = importlib.util.spec_from_file_location("timings_to_guide", ROOT / "tools" / "timings_to_guide.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_guide_cites_the_measured_timings() -> None:
    tool = timings_to_guide()
    guide = tool.GUIDE.read_text()
    timings = tool.read_timings(tool.TIMINGS.read_text())
    assert tool.rewrite(guide, timings) == guide, (
        "docs/instructor-guide.md's machine times differ from docs/notebook-timings.md: "
        "run `python tools/timings_to_guide.py`")


def test_every_notebook_has_a_measured_time() -> None:
    timings = timings_to_guide().read_timings((ROOT / "docs" / "notebook-timings.md").read_text())
    notebooks = sorted(p.name[:2] for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    missing = [n for n in notebooks if (n, "embedded") not in timings]
    assert not missing, (f"no measured time for notebook(s) {missing}: run `make test-notebooks`, then "
                         "`python tools/timings_to_guide.py --from test-artifacts/notebook-timings.md`")


def test_only_the_machine_time_cells_and_the_total_are_rewritten() -> None:
    tool = timings_to_guide()
    guide = ("# Guide\n\n## Timings\n\n"
             "| notebook | teach | machine time, embedded | what |\n|---|---|---|---|\n"
             "| 00 start | 15 min | ? | demo |\n| 01 keys | 20 min | ? | keys |\n\n"
             "Total: <!-- timings-total -->?<!-- /timings-total -->.\n\n## Next\n\n| 00 x | ? |\n")
    timings = tool.read_timings("| 00-start | embedded | 2.71 |\n| 00-start | native | 9.0 |\n"
                                "| all | embedded | 2.7 |\n")
    assert tool.rewrite(guide, timings) == (
        "# Guide\n\n## Timings\n\n"
        "| notebook | teach | machine time, embedded | what |\n|---|---|---|---|\n"
        "| 00 start | 15 min | 2.7 s | demo |\n| 01 keys | 20 min | — | keys |\n\n"
        "Total: <!-- timings-total -->2.7 s embedded<!-- /timings-total -->.\n\n## Next\n\n| 00 x | ? |\n")
