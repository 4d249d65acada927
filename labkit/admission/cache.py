"""A verification cache: (image reference, keys, annotations, signature repository,
credentials, signature hash) → verified result, for a TTL.

Kyverno caches successful verifications per image string (``useCache``, 60 min by default);
policy-controller caches nothing, so every admission re-verifies. labkit keeps successes only:
a failure is re-checked on the next review, so signing an image and retrying works at once.
A reference by digest makes the key "digest + key"; a tag reference is cached as the tag,
as Kyverno does, which is why the default TTL is short.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

from labkit.oci.auth import Credentials
from labkit.policy.credentials import RegistryAccess
from labkit.signing.verify import VerificationResult

DEFAULT_TTL = 60.0
_MAX_ENTRIES = 4096


def _key_id(key: Any) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass
class CachingVerifier:
    """``labkit.policy.Verifier`` over a :class:`RegistryAccess` (one client per credentials)."""

    access: RegistryAccess
    ttl: float = DEFAULT_TTL
    hits: int = 0
    misses: int = 0
    _entries: dict[tuple[Any, ...], tuple[float, VerificationResult]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
        repository: str | None = None, credentials: Credentials | None = None,
        digest_algorithm: str = "sha256",
    ) -> VerificationResult:
        # the signature hash is part of the question: a key verified under sha256 says nothing
        # about the same signatures under sha384 (Kyverno's signatureAlgorithm)
        cache_key = (ref, tuple(sorted(_key_id(k) for k in keys)),
                     tuple(sorted((annotations or {}).items())), repository, credentials,
                     digest_algorithm)
        now = time.monotonic()
        if self.ttl > 0:
            with self._lock:
                entry = self._entries.get(cache_key)
                if entry is not None and entry[0] > now:
                    self.hits += 1
                    return entry[1]
                self.misses += 1
        result: VerificationResult = self.access(ref, keys, annotations=annotations,
                                                 repository=repository, credentials=credentials,
                                                 digest_algorithm=digest_algorithm)
        if self.ttl > 0:
            with self._lock:
                if len(self._entries) >= _MAX_ENTRIES:
                    self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
                    if len(self._entries) >= _MAX_ENTRIES:
                        self._entries.clear()
                self._entries[cache_key] = (now + self.ttl, result)
        return result

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
