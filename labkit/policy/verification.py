"""The engines' side of a signature check: the keys a policy gives as PEM, and the call to the
injected verifier (:class:`labkit.policy.decision.Verifier`). Shared by the Kyverno and
policy-controller engines (:mod:`labkit.policy.decision`) and ImageValidatingPolicies
(:mod:`labkit.policy.ivp`)."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from labkit.errors import LabkitError


def keys_from_pem(text: str) -> list[Any]:
    """Each PEM block becomes its own key (Kyverno splits ``publicKeys`` the same way)."""
    blocks, current = [], []
    for line in text.strip().splitlines():
        current.append(line.strip())
        if line.strip().startswith("-----END"):
            blocks.append("\n".join(current) + "\n")
            current = []
    return [load_pem_public_key(b.encode()) for b in blocks]


class UnsupportedAlgorithm(LabkitError):
    """The injected verifier cannot check a hash other than SHA-256."""


def call_verifier(verifier: Any, ref: str, keys: Sequence[Any], digest_algorithm: str,
                  **options: Any) -> Any:
    """``verifier(ref, keys, **options)``, adding ``digest_algorithm`` when it is not sha256.

    A verifier without that parameter would silently check SHA-256, so it is refused instead.
    """
    if digest_algorithm != "sha256":
        try:
            params = inspect.signature(verifier).parameters.values()
        except (TypeError, ValueError):
            params = []  # type: ignore[assignment]
        if not any(p.name == "digest_algorithm" or p.kind is p.VAR_KEYWORD for p in params):
            raise UnsupportedAlgorithm(
                f"labkit's verifier ({type(verifier).__name__}) cannot check {digest_algorithm} "
                "signatures", hint="it must accept a digest_algorithm keyword")
        options["digest_algorithm"] = digest_algorithm
    return verifier(ref, keys, **options)
