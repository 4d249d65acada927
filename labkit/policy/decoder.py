"""Stages 1 and 2 of admitting a policy (:mod:`labkit.policy.load`): strict decoding of its YAML
against the schema dataclasses (``strict decoding error: unknown field …``) and the CRD schema's
types and required fields. Also used for an ImageValidatingPolicy's nested specs
(:mod:`labkit.policy.ivp_compile`)."""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any, Union


def _json_name(f: dataclasses.Field[Any]) -> str:
    if "json" in f.metadata:
        return str(f.metadata["json"])
    head, *rest = f.name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_SCALARS = {str: "string", bool: "boolean", int: "integer"}
_JSON_KINDS = {bool: "bool", int: "number", float: "number", str: "string", list: "array", dict: "object",
               type(None): "null"}


@dataclasses.dataclass(frozen=True)
class WrongType:
    """One value of the wrong type, as Go's ``encoding/json`` would report it: where it sits in
    the document (``order``: key and item indices, for document order), the JSON kind it has, the
    struct whose field it fills (``owner``), the JSON field names from the root (``field``, no
    indices) and the type it should have had (``expected``)."""

    order: tuple[int, ...]
    got: str
    owner: type | None
    field: str
    expected: Any


class Decoder:
    """Strict decoding of a policy document into its model dataclass, as ``kubectl apply``'s
    server-side field validation ``Strict`` and the CRD's OpenAPI schema do it: ``unknown``
    collects unknown fields, ``invalid`` wrong types and missing required fields."""

    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.invalid: list[str] = []
        self.type_errors: list[WrongType] = []
        self._where: tuple[tuple[int, ...], type | None, str] = ((), None, "")

    def decode(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return value
        if origin in (Union, types.UnionType):
            if value is None:
                return None
            (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
            return self.decode(inner, value, path)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return self._object(tp, value, path)
        if origin is list:
            if not isinstance(value, list):
                return self._wrong(path, value, "array", [], tp)
            (item,) = typing.get_args(tp)
            order, owner, name = self._where
            items = []
            for i, v in enumerate(value):
                self._where = ((*order, i), owner, name)
                items.append(self.decode(item, v, f"{path}[{i}]"))
            self._where = (order, owner, name)
            return items
        if origin is dict:
            if not isinstance(value, dict):
                return self._wrong(path, value, "object", {}, tp)
            _, item = typing.get_args(tp)
            return {str(k): self.decode(item, v, f"{path}.{k}") for k, v in value.items()}
        expected = _SCALARS[tp]
        # bool is an int in Python; YAML 'true' must not pass as an integer and vice versa.
        if type(value) is not tp and not (tp is str and value is None):
            return self._wrong(path, value, expected, tp(), tp)
        return value if value is not None else tp()

    def _wrong(self, path: str, value: Any, expected: str, empty: Any, tp: Any) -> Any:
        order, owner, name = self._where
        self.type_errors.append(WrongType(order, _JSON_KINDS.get(type(value), "object"), owner, name, tp))
        got = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
               dict: "object", type(None): "null"}.get(type(value), "object")
        self.invalid.append(
            f'{path}: Invalid value: "{got}": {path} in body must be of type {expected}: "{got}"'
        )
        return empty

    def _object(self, cls: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            return self._wrong(path, value, "object", None, cls)
        hints, fields = _schema(cls)
        for name in value:
            if name not in fields:
                self.unknown.append(f"{path}.{name}" if path else str(name))
        kwargs: dict[str, Any] = {}
        order, _, field_path = where = self._where
        keys = list(value)
        for name, f in fields.items():
            sub = f"{path}.{name}" if path else name
            if name in value:
                self._where = ((*order, keys.index(name)), cls, f"{field_path}.{name}" if field_path else name)
                kwargs[f.name] = self.decode(hints[f.name], value[name], sub)
                self._where = where
            elif f.metadata.get("required"):
                self.invalid.append(f"{sub}: Required value")
                kwargs[f.name] = _empty(hints[f.name])
        return cls(**kwargs)


@functools.cache
def _schema(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A model's resolved type hints and its fields by JSON name (resolving hints is slow)."""
    return typing.get_type_hints(cls), {_json_name(f): f for f in dataclasses.fields(cls)}


def _empty(tp: Any) -> Any:
    return tp() if tp in _SCALARS else None
