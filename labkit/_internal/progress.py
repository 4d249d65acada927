"""Progress bars for the slow parts (pushes, kind bring-up), with tqdm when it is installed
(``tqdm.auto``: a widget in Jupyter, text in a terminal). Without tqdm, or when disabled (output
that is not a terminal, so captured transcripts stay identical to the real tools'), nothing is
drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _tqdm(**options: Any) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with the lab extra; the core works without it
        return None
    return tqdm(**options)


def interactive() -> bool:
    """Draw bars in a terminal, or in a notebook kernel (where tqdm.auto draws a widget)."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


@contextmanager
def byte_bar(total: int, description: str, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    bar = _tqdm(total=total, desc=description, unit="B", unit_scale=True, leave=False) if enabled else None
    try:
        yield (lambda n: bar.update(n)) if bar is not None else (lambda n: None)
    finally:
        if bar is not None:
            bar.close()


@contextmanager
def step_bar(steps: list[str], description: str, *, enabled: bool) -> Iterator[Callable[[str], None]]:
    """``advance(name)`` marks the step ``name`` as started; the bar counts finished steps."""
    bar = _tqdm(total=len(steps), desc=description, unit="step") if enabled else None
    started = False

    def advance(name: str) -> None:
        nonlocal started
        if bar is None:
            return
        if started:
            bar.update(1)
        started = True
        bar.set_postfix_str(name)

    try:
        yield advance
        if bar is not None and started:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
