"""The engines' side of a signature check: what they call to verify a signature or look a tag up
(:class:`Verifier`, :class:`Resolver`, bundled with the pull Secrets as :class:`Registry`), the
keys a policy gives as PEM, and the call to the injected verifier. Shared by the three engines
(:mod:`labkit.policy.kyverno`, :mod:`labkit.policy.ivp`, :mod:`labkit.policy.policy_controller`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.serialization import load_pem_public_key

from labkit.errors import LabkitError
from labkit.oci.auth import Credentials
from labkit.policy.credentials import SecretStore

if TYPE_CHECKING:
    from labkit.signing.keyless_trust import KeylessTrust
    from labkit.signing.keyless_verify import KeylessPolicy, KeylessVerification


class Verified(Protocol):
    """What a verifier returns: the engines read only the verified image's digest."""

    @property
    def digest(self) -> str: ...


class Verifier(Protocol):
    """``labkit.signing.verify.verify_image`` with its registry client bound: returns the
    verified result or raises NoSignaturesError / NoMatchingSignaturesError / RegistryError.
    ``repository`` holds the signatures (cosign's COSIGN_REPOSITORY); ``credentials`` are the
    ones the engine's pull secrets give for the image's registry. ``digest_algorithm`` (the
    policy's signature hash) is passed only when it is not sha256, so a verifier that always
    checks SHA-256 need not accept it. ``bundles`` (ImageValidatingPolicy only) asks for cosign v3
    bundles to be looked for first; it too is passed only to a verifier that accepts it."""

    def __call__(
        self, ref: str, keys: Sequence[Any], *, annotations: Mapping[str, str] | None = None,
        repository: str | None = None, credentials: Credentials | None = None,
    ) -> Verified: ...


class KeylessVerifier(Protocol):
    """The keyless half of a verifier, a method beside its ``__call__``:
    ``labkit.signing.keyless_verify.verify_image_keyless`` with the registry client bound. The
    engines give the trust material and what the certificate must show; cosign's errors as
    ``verify_image_keyless`` raises them. A verifier without it (a test double) cannot check
    keyless signatures (:func:`call_keyless`)."""

    def verify_keyless(
        self, ref: str, trust: KeylessTrust, policy: KeylessPolicy, *, repository: str | None = None,
        credentials: Credentials | None = None, bundles: bool = False,
    ) -> KeylessVerification: ...


class Resolver(Protocol):
    """The digest a tag points at in the registry (raises LabkitError when it cannot say)."""

    def __call__(self, ref: str, *, credentials: Credentials | None = None) -> str: ...


@dataclass(frozen=True)
class Registry:
    """What the engines read beyond the object: signatures, tag digests (no lookup without a
    ``resolver``) and the pull Secrets."""

    verifier: Verifier
    resolver: Resolver | None
    secrets: SecretStore | None


def keys_from_pem(text: str) -> list[Any]:
    """Each PEM block becomes its own key (Kyverno splits ``publicKeys`` the same way)."""
    blocks, current = [], []
    for line in text.strip().splitlines():
        current.append(line.strip())
        if line.strip().startswith("-----END"):
            blocks.append("\n".join(current) + "\n")
            current = []
    return [load_pem_public_key(b.encode()) for b in blocks]


def registry_text(exc: LabkitError) -> str:
    """A registry failure as the Go engines quote it: go-containerregistry's ``transport.Error``
    (``GET <url>: MANIFEST_UNKNOWN: …; map[…]``) when labkit has the answer, else labkit's."""
    return getattr(exc, "transport", "") or exc.message


class UnsupportedAlgorithm(LabkitError):
    """The injected verifier cannot check a hash other than SHA-256."""


class UnsupportedKeyless(LabkitError):
    """The injected verifier has no ``verify_keyless``."""


def call_keyless(verifier: Any, ref: str, trust: KeylessTrust, policy: KeylessPolicy,
                 **options: Any) -> KeylessVerification:
    """``verifier.verify_keyless(ref, trust, policy, **options)``; refused for a verifier without it."""
    method = getattr(verifier, "verify_keyless", None)
    if method is None:
        raise UnsupportedKeyless(f"labkit's verifier ({type(verifier).__name__}) cannot check keyless signatures",
                                 hint="use labkit.policy.credentials.RegistryAccess, or give the double a "
                                      "verify_keyless method")
    result: KeylessVerification = method(ref, trust, policy, **options)
    return result


def _accepts(verifier: Any, name: str) -> bool:
    try:
        params = inspect.signature(verifier).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def call_verifier(verifier: Any, ref: str, keys: Sequence[Any], digest_algorithm: str, *,
                  bundles: bool = False, **options: Any) -> Any:
    """``verifier(ref, keys, **options)``, adding ``digest_algorithm`` when it is not sha256 and
    ``bundles`` when asked for.

    A verifier without ``digest_algorithm`` would silently check SHA-256, so it is refused
    instead; one without ``bundles`` (a test double) reads ``.sig`` images only.
    """
    if digest_algorithm != "sha256":
        if not _accepts(verifier, "digest_algorithm"):
            raise UnsupportedAlgorithm(
                f"labkit's verifier ({type(verifier).__name__}) cannot check {digest_algorithm} "
                "signatures", hint="it must accept a digest_algorithm keyword")
        options["digest_algorithm"] = digest_algorithm
    if bundles and _accepts(verifier, "bundles"):
        options["bundles"] = True
    return verifier(ref, keys, **options)
