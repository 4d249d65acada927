"""Write a notebook from a percent-format script (the form notebooks are drafted in).

    python tools/notebook_from_py.py draft.py notebooks/03-sign.ipynb                 # the learner's
    python tools/notebook_from_py.py --solutions draft.py solutions/03-sign.ipynb     # the trainer's

Cells start at ``# %%`` (code), ``# %% [markdown]`` (markdown, each line's leading ``# `` removed)
or ``# %% solution`` (an exercise's solution). Solution cells go only into the trainer's notebook
(``--solutions``, tagged ``solution``); the learner's has the exercise and its check without them.
The notebook is written without outputs; ``make notebooks`` executes it and stores them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

_MARKER = re.compile(r"^# %%(?: \[(markdown)\]| (solution))?\s*$")


def cells_from(text: str, solutions: bool = False) -> list[nbformat.NotebookNode]:
    cells: list[nbformat.NotebookNode] = []
    kind, lines = None, []

    def flush() -> None:
        source = "\n".join(lines).strip("\n")
        if kind is None or not source or (kind == "solution" and not solutions):
            return
        if kind == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(re.sub(r"(?m)^# ?", "", source)))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "solution":
                cell.metadata.update({"tags": ["solution"]})
            cells.append(cell)

    for line in text.splitlines():
        match = _MARKER.match(line)
        if match:
            flush()
            kind, lines = match.group(1) or match.group(2) or "code", []
        else:
            lines.append(line)
    flush()
    return cells


def main(source: str, target: str, solutions: bool = False) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells_from(Path(source).read_text(), solutions)
    nb.metadata.update({"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                        "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i:02d}"  # stable ids keep diffs of committed notebooks small
    nbformat.write(nb, target)


if __name__ == "__main__":
    args = sys.argv[1:]
    with_solutions = "--solutions" in args
    main(*[a for a in args if a != "--solutions"][:2], solutions=with_solutions)
