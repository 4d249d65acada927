"""The simple-signing payload cosign signs for a container image.

Byte-for-byte what sigstore's ``payload.Cosign`` marshals (``pkg/signature/payload``): compact JSON,
keys in struct order, ``optional`` null without annotations, no trailing newline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from labkit.errors import VerificationError
from labkit.oci.model import canonical_json

SIMPLE_SIGNING_TYPE = "cosign container image signature"


@dataclass(frozen=True)
class SimpleSigningPayload:
    docker_reference: str  # registry/repository, no tag or digest; verification ignores it
    digest: str
    optional: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "critical": {
                    "identity": {"docker-reference": self.docker_reference},
                    "image": {"docker-manifest-digest": self.digest},
                    "type": SIMPLE_SIGNING_TYPE,
                },
                # Go marshals a map with sorted keys.
                "optional": dict(sorted(self.optional.items())) if self.optional else None,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> SimpleSigningPayload:
        try:
            doc = json.loads(data)
            critical = doc["critical"]
            return cls(
                docker_reference=critical["identity"]["docker-reference"],
                digest=critical["image"]["docker-manifest-digest"],
                optional=doc.get("optional"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(f"signature payload is not a simple-signing document: {exc!r}") from exc
