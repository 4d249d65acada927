"""The simple-signing payload cosign signs for a container image.

Byte-for-byte what sigstore's ``payload.Cosign`` marshals (``pkg/signature/payload``): compact JSON,
keys in struct order, ``optional`` null without annotations, no trailing newline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from labkit.errors import VerificationError
from labkit.oci.model import canonical_json

SIMPLE_SIGNING_TYPE = "cosign container image signature"

_T = TypeVar("_T", dict[str, Any], str)


@dataclass(frozen=True)
class SimpleSigningPayload:
    docker_reference: str  # registry/repository, no tag or digest; verification ignores it
    digest: str
    optional: dict[str, Any] | None = None
    type: str = SIMPLE_SIGNING_TYPE  # verification ignores it too

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The document in Go's struct order; ``optional`` a map, which Go marshals sorted."""
        return {
            "critical": {
                "identity": {"docker-reference": self.docker_reference},
                "image": {"docker-manifest-digest": self.digest},
                "type": self.type,
            },
            "optional": dict(sorted(self.optional.items())) if self.optional is not None else None,
        }

    @classmethod
    def from_json(cls, data: bytes) -> SimpleSigningPayload:
        """As cosign reads a payload (Go ``json.Unmarshal`` into sigstore's ``SimpleContainerImage``):
        an absent or null member is empty, a member of another JSON type is an error."""
        try:
            doc = json.loads(data)
        except RecursionError:
            # Go allows 10000 levels, Python's decoder about 1000: between the two, labkit
            # refuses a payload that cosign would read.
            raise VerificationError("signature payload nests JSON too deeply for labkit") from None
        except ValueError as exc:  # JSONDecodeError, or an integer beyond 4300 digits
            raise VerificationError(f"signature payload is not valid JSON: {exc}") from None
        if doc is None:
            doc = {}
        elif not isinstance(doc, dict):
            raise VerificationError("signature payload is not a JSON object")
        critical = _member(doc, "critical", dict, "")
        identity = _member(critical, "identity", dict, "critical.")
        image = _member(critical, "image", dict, "critical.")
        optional = doc.get("optional")
        if optional is not None and not isinstance(optional, dict):
            raise VerificationError("signature payload: optional is not an object")
        return cls(
            docker_reference=_member(identity, "docker-reference", str, "critical.identity."),
            digest=_member(image, "docker-manifest-digest", str, "critical.image."),
            optional=optional,
            type=_member(critical, "type", str, "critical."),
        )


_JSON_TYPES = {dict: "an object", str: "a string"}


def _member(obj: dict[str, Any], name: str, kind: type[_T], path: str) -> _T:
    """``obj[name]`` if it is a ``kind``; the empty ``kind`` if absent or null (Go's zero value)."""
    value = obj.get(name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise VerificationError(f"signature payload: {path}{name} is not {_JSON_TYPES[kind]}")
    return value
