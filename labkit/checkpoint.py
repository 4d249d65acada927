"""What a check reports: :class:`Item` lines collected into a :class:`Checkpoint`.

``labkit.check`` holds the notebooks' checkpoints and ``labkit.exercises`` the exercises' checks;
both are generators of items wrapped by :func:`checkpoint`, and both ask admission the same way
(:func:`admission_item`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labkit.lab import Lab


@dataclass(frozen=True)
class Item:
    """One thing a check looked at; ``fix`` is the next step when it is not in place."""

    ok: bool
    what: str
    fix: str | None = None

    def __str__(self) -> str:
        return f"✓ {self.what}" if self.ok else f"✗ {self.what}\n    → {self.fix}"


@dataclass(frozen=True)
class Checkpoint:
    """A notebook's checkpoint (``kind="Checkpoint"``) or an exercise's check (``"Exercise"``)."""

    topic: str
    items: tuple[Item, ...]
    kind: str = "Checkpoint"

    @property
    def passed(self) -> bool:
        return all(item.ok for item in self.items)

    @property
    def missing(self) -> tuple[Item, ...]:
        return tuple(item for item in self.items if not item.ok)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = (f"{self.kind} {self.topic}: all {len(self.items)} checks pass" if self.passed else
                f"{self.kind} {self.topic}: {len(self.missing)} of {len(self.items)} checks to fix")
        return "\n".join([head, *(f"  {item}".replace("\n", "\n  ") for item in self.items)])

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))  # type: ignore[attr-defined]


def checkpoint(topic: str, kind: str = "Checkpoint") -> Callable[[Callable[..., Iterator[Item]]],
                                                                 Callable[..., Checkpoint]]:
    """Collect a generator's items into a Checkpoint; a generator stops at the first item later
    ones depend on (no key, nothing to verify), so the learner sees one clear next step."""

    def wrap(fn: Callable[..., Iterator[Item]]) -> Callable[..., Checkpoint]:
        @functools.wraps(fn)
        def run(*args: object, **kwargs: object) -> Checkpoint:
            return Checkpoint(topic, tuple(fn(*args, **kwargs)), kind)

        return run

    return wrap


def admission_item(lab: Lab, what: str, image: str, *, admitted: bool, namespace: str = "default",
                   denied_by: str = "", pinned: bool = False, warned: bool = False, fix: str) -> Item:
    """Ask admission (a server dry run: nothing is kept) about a one-container pod."""
    from labkit.lab import pod

    result = lab.create(pod("checkpoint", image, namespace), dry_run=True)
    ok = result.admitted is admitted and (not denied_by or denied_by in (result.denied_by or ""))
    ok = ok and (not pinned or all("@sha256:" in i for i in result.images)) and (not warned or bool(result.warnings))
    said = result.message.splitlines()[-1] if result.message else ""
    return Item(ok, what, f"{fix} (admission said: {said})")
