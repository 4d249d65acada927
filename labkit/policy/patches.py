"""RFC 6902 JSON patches as the mutating webhooks emit them, and the JSON pointers they address."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any


def pointer(*parts: str) -> str:
    """The JSON pointer of ``parts`` (``~`` and ``/`` escaped): ``/metadata/annotations/a~1b``."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def pointer_parts(path: str) -> list[str]:
    """The unescaped reference tokens of a JSON pointer."""
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def apply_patches(resource: Mapping[str, Any], patches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """RFC 6902 ``add``/``replace`` on a copy: the only operations the webhooks emit."""
    out = copy.deepcopy(dict(resource))
    for patch in patches:
        *parents, last = pointer_parts(patch["path"])
        target: Any = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = copy.deepcopy(patch["value"])
        else:
            target[last] = copy.deepcopy(patch["value"])
    return out
