"""A verification cache: (image reference, keys, annotations, signature repository,
credentials, signature hash) → verified result, for a TTL.

Kyverno caches successful verifications per image string (``useCache``, 60 min by default);
policy-controller caches nothing, so every admission re-verifies. labkit keeps successes only:
a failure is re-checked on the next review, so signing an image and retrying works at once.
A reference by digest makes the key "digest + key"; a tag reference is cached as the tag,
as Kyverno does, which is why the default TTL is short.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from labkit._internal.cache import BoundedCache
from labkit.oci.auth import Credentials
from labkit.policy.credentials import RegistryAccess
from labkit.signing.verify import VerificationResult, key_fingerprint

DEFAULT_TTL = 60.0
_MAX_ENTRIES = 4096


class CachingVerifier:
    """``labkit.policy.Verifier`` over a :class:`RegistryAccess` (one client per credentials);
    ``ttl=0`` verifies every time."""

    def __init__(self, access: RegistryAccess, ttl: float = DEFAULT_TTL) -> None:
        self.access = access
        self.cache: BoundedCache[tuple[Any, ...], VerificationResult] | None = (
            BoundedCache(_MAX_ENTRIES, ttl) if ttl > 0 else None)

    def __call__(
        self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
        repository: str | None = None, credentials: Credentials | None = None,
        digest_algorithm: str = "sha256", bundles: bool = False,
    ) -> VerificationResult:
        # the signature hash is part of the question: a key verified under sha256 says nothing
        # about the same signatures under sha384 (Kyverno's signatureAlgorithm)
        cache_key = (ref, tuple(sorted(key_fingerprint(k) for k in keys)),
                     tuple(sorted((annotations or {}).items())), repository, credentials,
                     digest_algorithm, bundles)
        cached = self.cache.get(cache_key) if self.cache else None
        if cached is not None:
            return cached
        result: VerificationResult = self.access(ref, keys, annotations=annotations,
                                                 repository=repository, credentials=credentials,
                                                 digest_algorithm=digest_algorithm, bundles=bundles)
        if self.cache:
            self.cache.put(cache_key, result)
        return result

    def verify_keyless(self, ref: str, trust: Any, policy: Any, *, repository: str | None = None,
                       credentials: Credentials | None = None, bundles: bool = False) -> Any:
        """Keyless checks are not cached: their trust material and identities are no cache key yet."""
        return self.access.verify_keyless(ref, trust, policy, repository=repository, credentials=credentials,
                                          bundles=bundles)

    @property
    def stats(self) -> dict[str, int]:
        return {"hits": self.cache.hits, "misses": self.cache.misses} if self.cache else {"hits": 0, "misses": 0}

    def clear(self) -> None:
        if self.cache:
            self.cache.clear()
