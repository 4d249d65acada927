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
    """A notebook's checkpoint (``kind="Checkpoint"``) or an exercise's check (``"Exercise"``).

    ``stale`` are the lab's policies that name a registry it no longer serves (:func:`stale_items`):
    they fail every check of that lab, whatever its topic, until the learner re-applies them."""

    topic: str
    items: tuple[Item, ...]
    kind: str = "Checkpoint"
    stale: tuple[Item, ...] = ()

    @property
    def passed(self) -> bool:
        return all(item.ok for item in self.items) and not self.stale

    @property
    def missing(self) -> tuple[Item, ...]:
        return tuple(item for item in self.items if not item.ok) + self.stale

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        total = len(self.items) + len(self.stale)
        head = (f"{self.kind} {self.topic}: all {total} checks pass" if self.passed else
                f"{self.kind} {self.topic}: {len(self.missing)} of {total} checks to fix")
        return "\n".join([head, *(f"  {item}".replace("\n", "\n  ") for item in (*self.items, *self.stale))])

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(str(self))  # type: ignore[attr-defined]


def checkpoint(topic: str, kind: str = "Checkpoint") -> Callable[[Callable[..., Iterator[Item]]],
                                                                 Callable[..., Checkpoint]]:
    """Collect a generator's items into a Checkpoint; a generator stops at the first item later
    ones depend on (no key, nothing to verify), so the learner sees one clear next step."""

    def wrap(fn: Callable[..., Iterator[Item]]) -> Callable[..., Checkpoint]:
        @functools.wraps(fn)
        def run(*args: object, **kwargs: object) -> Checkpoint:
            from labkit.lab import Lab

            labs = [a for a in (*args, *kwargs.values()) if isinstance(a, Lab)]
            return Checkpoint(topic, tuple(fn(*args, **kwargs)), kind, stale_items(labs[0]) if labs else ())

        return run

    return wrap


def stale_items(lab: Lab) -> tuple[Item, ...]:
    """A failing item per stored policy that names a registry the lab does not serve (its port
    changed): such a policy matches nothing the learner pushes, so what it denied is admitted."""
    return tuple(Item(False, f"{stale.policy} guards the lab's registry",
                      f"{stale}: apply it again as its notebook writes it (the lab's registry is "
                      f"{lab.registry.pod_host} now), or remove it with `labkit lab reset`")
                 for stale in lab.stale_policies())


def admission_item(lab: Lab, what: str, image: str, *, admitted: bool, namespace: str = "default",
                   denied_by: str = "", pinned: bool = False, warned: bool = False, fix: str) -> Item:
    """Ask admission (a server dry run: nothing is kept) about a one-container pod."""
    from labkit.lab import pod

    result = lab.create(pod("checkpoint", image, namespace), dry_run=True)
    ok = result.admitted is admitted and (not denied_by or denied_by in (result.denied_by or ""))
    ok = ok and (not pinned or all("@sha256:" in i for i in result.images)) and (not warned or bool(result.warnings))
    said = result.message.splitlines()[-1] if result.message else ""
    return Item(ok, what, f"{fix} (admission said: {said})")
