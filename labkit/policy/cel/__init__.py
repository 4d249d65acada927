"""The CEL environment of Kyverno's ImageValidatingPolicy, on Google's C++ CEL runtime.

Why ``cel-expr-python``: it is the only Python CEL with a type checker, so a policy that
names an undeclared function or mixes types fails at load with cel-go's own text
(``ERROR: <input>:1:50: undeclared reference to 'x' (in container '')`` plus the caret
lines), exactly what Kyverno prints; it supports member overloads (``image(s).registry()``)
and evaluates a typical IVP expression in about 10 µs.

Declarations follow ``pkg/image/verification/evaluator/compiler.go`` (variables) and
``pkg/cel/libs/imageverify/lib.go`` (functions). The image library (kyverno/sdk
``cel/libs/image``) parses with go-containerregistry rules, here ``labkit.oci.reference``.
An image value is carried as ``map<string, string>`` because the binding cannot return
opaque objects; only the methods below are declared on it.

Implementations that need the request (signature checks) read it from ``CURRENT``, a
context variable the evaluator sets around each evaluation.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable
from typing import Any

from cel_expr_python import cel  # type: ignore[import-untyped]
from cel_expr_python.ext import ext_optional, ext_strings  # type: ignore[import-untyped]

from labkit._internal.gofmt import go_quote
from labkit.errors import LabkitError
from labkit.oci.reference import Reference

__all__ = ["CURRENT", "CelError", "Program", "compile_expression", "field_invalid"]

T = cel.Type
_IMAGE = T.Map(T.STRING, T.STRING)
_STATUS = re.compile(r"^[A-Z_]+: ")

# Set by the evaluator: an object with verify_signatures(image, attestors) -> int.
CURRENT: contextvars.ContextVar[Any] = contextvars.ContextVar("labkit_ivp_runtime")


class CelError(Exception):
    """A CEL expression failed to compile or evaluate; ``str()`` is cel-go's text."""


def _parse(text: str) -> Reference:
    try:
        return Reference.parse(text)
    except LabkitError as exc:
        raise ValueError(f"invalid image reference: {text}: {exc.message}") from None


def _image(text: str) -> dict[str, str]:
    _parse(text)
    return {"ref": text}


def _is_image(text: str) -> bool:
    try:
        Reference.parse(text)
    except LabkitError:
        return False
    return True


def _method(get: Callable[[Reference], Any]) -> Callable[[dict[str, str]], Any]:
    return lambda value: get(_parse(value["ref"]))


def _runtime(name: str) -> Any:
    runtime = CURRENT.get(None)
    if runtime is None:
        raise ValueError(f"{name} is only available while an admission request is evaluated")
    return runtime


def _verify_signatures(image: str, attestors: list[Any]) -> int:
    return int(_runtime("verifyImageSignatures").verify_signatures(image, attestors))


def _unsupported(name: str) -> Callable[..., Any]:
    def refuse(*_: Any) -> Any:
        raise ValueError(f"labkit does not evaluate {name} (attestations and image data are "
                         "not implemented); the policy cannot pass under labkit")
    return refuse


def _overload(fn: str, oid: str, params: list[Any], ret: Any, impl: Callable[..., Any],
              member: bool = False) -> Any:
    return cel.FunctionDecl(fn, [cel.Overload(oid, return_type=ret, parameters=params,
                                              is_member=member, impl=impl)])


_FUNCTIONS = [
    _overload("verifyImageSignatures", "verify_image_signature_string_stringarray",
              [T.STRING, T.List(T.DYN)], T.INT, _verify_signatures),
    _overload("verifyAttestationSignatures", "verify_image_attestations_string_string_stringarray",
              [T.STRING, T.STRING, T.List(T.DYN)], T.INT, _unsupported("verifyAttestationSignatures")),
    _overload("extractPayload", "payload_string_string", [T.STRING, T.STRING], T.DYN,
              _unsupported("extractPayload")),
    _overload("getImageData", "get_image_data_string", [T.STRING], T.DYN,
              _unsupported("getImageData")),
    _overload("image", "image_string", [T.STRING], _IMAGE, _image),
    _overload("parseImageReference", "parse_image_reference_string", [T.STRING], _IMAGE, _image),
    _overload("isImage", "is_image_string", [T.STRING], T.BOOL, _is_image),
    _overload("containsDigest", "image_contains_digest", [_IMAGE], T.BOOL,
              _method(lambda r: r.digest is not None), member=True),
    _overload("registry", "image_registry", [_IMAGE], T.STRING,
              _method(lambda r: r.registry), member=True),
    _overload("repository", "image_repository", [_IMAGE], T.STRING,
              _method(lambda r: r.repository), member=True),
    _overload("identifier", "image_identifier", [_IMAGE], T.STRING,
              _method(lambda r: r.identifier), member=True),
    _overload("tag", "image_tag", [_IMAGE], T.STRING, _method(lambda r: r.tag or ""), member=True),
    _overload("digest", "image_digest", [_IMAGE], T.STRING,
              _method(lambda r: r.digest or ""), member=True),
]

# Kubernetes evaluation mode (the default): object, oldObject, request, namespaceObject,
# variables; plus the IVP variables images, attestors, attestations.
_POLICY_VARIABLES = {
    "object": T.DYN,
    "oldObject": T.DYN,
    "request": T.DYN,
    "namespaceObject": T.DYN,
    "variables": T.Map(T.STRING, T.DYN),
    "images": T.Map(T.STRING, T.List(T.STRING)),
    "attestors": T.Map(T.STRING, T.DYN),
    "attestations": T.Map(T.STRING, T.STRING),
}


def _env(variables: dict[str, Any]) -> Any:
    return cel.NewEnv(variables=variables, functions=_FUNCTIONS,
                      extensions=[ext_optional.ExtOptional(), ext_strings.ExtStrings()])


_ENVS = {"policy": _env(_POLICY_VARIABLES), "image": _env({"ref": T.STRING})}
_EXACT = {"bool": T.BOOL, "string": T.STRING}


def _clean(text: str) -> str:
    """The binding wraps cel-go's message in absl status text; strip it back off."""
    text = _STATUS.sub("", str(text), count=1)
    return re.sub(r" \[[A-Z_]+\]$", "", text)


class Program:
    """One compiled expression."""

    def __init__(self, source: str, compiled: Any) -> None:
        self.source, self._compiled = source, compiled

    def output_is(self, name: str) -> bool:
        """Whether the checked output type is exactly ``name`` ("bool", "string"), as cel-go's
        ``IsExactType`` asks. A ``dyn`` output passes: labkit types ``request``,
        ``namespaceObject`` and ``variables`` as ``dyn`` where Kyverno knows their types, so
        it cannot tell a dyn that Kyverno would refuse from one it would type exactly."""
        output = self._compiled.return_type()
        return output in (_EXACT[name], T.DYN)

    def eval(self, data: dict[str, Any]) -> Any:
        """The plain Python result; raises CelError with the evaluation error."""
        try:
            value = self._compiled.eval(data=data)
        except RuntimeError as exc:
            raise CelError(_clean(str(exc))) from None
        if value.type() == T.ERROR:
            raise CelError(_clean(value.value()))
        return value.plain_value()


def compile_expression(source: str, env: str = "policy") -> Program:
    """Type-check ``source`` in the policy environment (or ``image`` for
    ``matchImageReferences`` expressions, which see only ``ref``)."""
    try:
        return Program(source, _ENVS[env].compile(source))
    except RuntimeError as exc:
        raise CelError(_clean(str(exc))) from None


def field_invalid(path: str, value: str, detail: str) -> str:
    """k8s ``field.Invalid(path, value, detail).Error()`` for a string value (Go ``%q``)."""
    return f"{path}: Invalid value: {go_quote(value)}: {detail}"
