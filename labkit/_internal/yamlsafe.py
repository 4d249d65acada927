"""The one loader for user YAML (policies, ``lab.apply`` objects, ``policy test --resource``).

It refuses what Kubernetes' YAML decoder (sigs.k8s.io/yaml over go-yaml v2) refuses before any
object is built, with go-yaml's words after kubectl's ``error converting YAML to JSON:``:

* bytes that are not UTF-8 (go-yaml's reader: ``invalid leading UTF-8 octet`` …);
* excessive alias expansion (a "billion laughs"): go-yaml counts every node it decodes, and every
  node decoded inside an alias, and stops once more than 100 of over 1,000 come from aliases at a
  ratio above ``allowedAliasRatio`` (99% up to 400,000 nodes, 10% from 4,000,000, linear between);
* an anchor whose value contains its own alias (PyYAML would build a cycle).

The count walks the composed node graph alias by alias without building anything, and stops at
the first node over the limit, so a bomb costs a few thousand steps, not its expansion.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

# libyaml's loader when PyYAML was built with it: the pure-Python one spent two thirds of the
# time of loading 500 policies (bench/growth.py).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_CONVERTING = "error converting YAML to JSON: yaml: "
# Python's UnicodeDecodeError reasons, as go-yaml's reader (readerc.go) words them
_UTF8_PROBLEMS = {
    "invalid start byte": "invalid leading UTF-8 octet",
    "invalid continuation byte": "invalid trailing UTF-8 octet",
    "unexpected end of data": "incomplete UTF-8 octet sequence",
}
_MERGE_TAG = "tag:yaml.org,2002:merge"

# go-yaml decode.go: the alias ratio scales from 99% at 400,000 decodes to 10% at 4,000,000
_RATIO_LOW, _RATIO_HIGH = 400_000, 4_000_000


class YAMLInputError(ValueError):
    """The input is refused; ``str()`` is the reason, to follow the input's name; ``hint`` the
    next step."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.hint = hint


_ALIASES_HINT = "write the repeated parts out: Kubernetes refuses this much YAML alias expansion"


def _allowed_alias_ratio(decodes: int) -> float:
    if decodes <= _RATIO_LOW:
        return 0.99
    if decodes >= _RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decodes - _RATIO_LOW) / (_RATIO_HIGH - _RATIO_LOW)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        # go-yaml decodes a merge key's value but not the "<<" key itself
        return [n for k, v in node.value for n in ((v,) if k.tag == _MERGE_TAG else (k, v))]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _alias_edges(root: yaml.Node) -> set[tuple[int, int]]:
    """(parent id, child index) of each child written as an alias: PyYAML's graph shares the
    anchored node, so a node met again in document order is an alias there."""
    seen, edges = {id(root)}, set()
    stack = [root]
    while stack:
        node = stack.pop()
        kids = _children(node)
        for i, child in enumerate(kids):
            if id(child) in seen:
                edges.add((id(node), i))
        fresh = [c for c in kids if id(c) not in seen]
        seen.update(id(c) for c in fresh)
        stack.extend(reversed(fresh))
    return edges


def check_aliasing(root: yaml.Node) -> None:
    """go-yaml's decoder count for one document; raises YAMLInputError where go-yaml fails."""
    edges = _alias_edges(root)
    decodes, aliased = 1, 0  # the document node
    expanding: list[int] = []  # the anchored values being expanded, innermost last

    def count(depth: int) -> None:
        nonlocal decodes, aliased
        decodes += 1
        aliased += depth > 0
        if aliased > 100 and decodes > 1000 and aliased / decodes > _allowed_alias_ratio(decodes):
            raise YAMLInputError(_CONVERTING + "document contains excessive aliasing", _ALIASES_HINT)

    # (node, alias depth, reached through an alias); None ends the innermost expansion
    stack: list[tuple[yaml.Node, int, bool] | None] = [(root, 0, False)]
    while stack:
        item = stack.pop()
        if item is None:
            expanding.pop()
            continue
        node, depth, via_alias = item
        if via_alias:
            count(depth)  # the alias node itself
            if id(node) in expanding:
                raise YAMLInputError(_CONVERTING + "anchor value contains itself", _ALIASES_HINT)
            expanding.append(id(node))
            stack.append(None)
            depth += 1
        count(depth)
        kids = _children(node)
        stack.extend((kid, depth, (id(node), i) in edges) for i, kid in reversed(list(enumerate(kids))))


def _documents(text: str) -> Iterator[Any]:
    loader = _LOADER(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                check_aliasing(node)
            yield loader.construct_document(node)
    finally:
        loader.dispose()


def load_all(data: str | bytes) -> list[Any]:
    """Every document in ``data`` (None for an empty one); YAMLInputError for what Kubernetes
    refuses and for YAML that does not parse, on one line as kubectl words it (``error converting
    YAML to JSON: yaml: line N: <problem>``; line numbers are PyYAML's, not always go-yaml's)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = _UTF8_PROBLEMS.get(exc.reason, "invalid Unicode character")
            raise YAMLInputError(_CONVERTING + problem, "save the file as UTF-8 text") from None
    try:
        return list(_documents(data))
    except yaml.MarkedYAMLError as exc:
        where = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise YAMLInputError(f"{_CONVERTING}{where}{exc.problem or exc.context}", "fix the YAML syntax") from None
    except yaml.YAMLError as exc:  # the reader's errors (control characters) have no mark
        raise YAMLInputError(_CONVERTING + str(exc).splitlines()[0], "fix the YAML syntax") from None


METADATA_HINT = "metadata must be a mapping with a string name, e.g. metadata: {name: my-policy}"
# encoding/json's names for what it found (UnmarshalTypeError.Value)
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "bool", list: "array", dict: "object"}
# ObjectMeta's fields apply reads first (metadataOnlyObject), by Go type
_META_FIELDS = {"name": "string", "namespace": "string", "generateName": "string",
                "labels": "map[string]string", "annotations": "map[string]string"}


def object_meta_error(doc: dict[str, Any]) -> str:
    """encoding/json's error for a ``metadata`` kubectl cannot decode, or "" (null is allowed)."""
    meta = doc.get("metadata")
    if meta is None:
        return ""
    if not isinstance(meta, dict):
        return (f"json: cannot unmarshal {_JSON_TYPES.get(type(meta), 'string')} into Go struct field "
                "metadataOnlyObject.metadata of type v1.ObjectMeta")
    for name, go_type in _META_FIELDS.items():
        value = meta.get(name)
        found = _JSON_TYPES.get(type(value), "string")  # YAML dates and the like become strings
        if value is not None and found != ("object" if go_type.startswith("map") else "string"):
            return (f"json: cannot unmarshal {found} into Go struct field ObjectMeta.metadata.{name} "
                    f"of type {go_type}")
    return ""
