"""One error hierarchy for labkit.

Every error says what failed, on which input (``message``, also ``str(error)``), and, kept apart,
what the user can do next (``hint``). :meth:`LabkitError.diagnostics` renders both: the CLI prints
``Error: <message>`` and ``Hint: <hint>`` on stderr and exits with ``exit_code``; Jupyter shows the
same two lines instead of a traceback. Where cosign has the same failure, the message and exit code
are cosign's (``cmd/cosign/errors/exit_codes.go``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class LabkitError(Exception):
    """Base class. ``hint`` is the next step for the user, kept apart so APIs can show it."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def details(self) -> list[str]:
        """Lines that say more than the message (none by default)."""
        return []

    def diagnostics(self) -> str:
        """The message, its details, then the next step on a line of its own."""
        return "\n".join([self.message, *self.details(), *([f"Hint: {self.hint}"] if self.hint else [])])

    def _render_traceback_(self) -> list[str]:
        # IPython's hook: a learner sees what failed and what to do, not labkit's call stack
        # (LABKIT_DEBUG=1 adds it back for whoever is debugging labkit itself).
        lines = f"{type(self).__name__}: {self.diagnostics()}".splitlines()
        if os.environ.get("LABKIT_DEBUG"):
            import traceback  # only here: every CLI verb imports this module

            lines = [*traceback.format_exception(self)[:-1], *lines]
        return lines


class UsageError(LabkitError):
    """A command was called with arguments that cannot work together."""

    exit_code = 2


# --- keys -----------------------------------------------------------------------------------


class KeyMaterialError(LabkitError):
    """Base for key problems: key files, passwords, key types."""


class KeyFileError(KeyMaterialError):
    """A key file is missing, unreadable, truncated, or not a PEM type labkit understands."""


class PasswordError(KeyMaterialError):
    """The password does not open the encrypted key (cosign: "decrypt: encrypted: decryption failed")."""


class UnsupportedKeyError(KeyMaterialError):
    """A key type, size or curve cosign refuses."""


class KeyExistsError(KeyMaterialError):
    """Refusing to overwrite an existing key file without --force or confirmation."""


# --- OCI ------------------------------------------------------------------------------------


class InvalidReferenceError(LabkitError):
    """An image reference does not parse; the message names the offending part."""

    exit_code = 2


class BuildError(LabkitError):
    """An image could not be built from a directory."""


@dataclass(frozen=True)
class RegistryDiagnostic:
    """One entry of an OCI error body (``{"errors": [{"code", "message", "detail"}]}``)."""

    code: str
    message: str = ""
    detail: object = None


class RegistryError(LabkitError):
    """The registry answered with an error. ``code`` is the first OCI error code it sent and
    ``registry_errors`` every entry of its error body, in order; ``transport`` is the answer as
    go-containerregistry renders it (``transport.Error``), the text the Go engines quote, or ""
    when labkit has none (no HTTP answer)."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status: int | None = None,
        code: str | None = None,
        transport: str = "",
        registry_errors: tuple[RegistryDiagnostic, ...] = (),
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code
        self.transport = transport
        self.registry_errors = registry_errors

    def details(self) -> list[str]:
        # the first entry is in the message already; a registry that sent more is heard in full
        more = [f"  {e.code}: {e.message}" + (f" ({e.detail})" if e.detail else "") for e in self.registry_errors[1:]]
        return ["The registry also said:", *more] if more else []


class RegistryUnreachableError(RegistryError):
    """No connection to the registry at all (down, wrong port, DNS)."""


class AuthenticationError(RegistryError):
    """The registry refused the credentials, or demanded some and none were found."""


class NotFoundError(RegistryError):
    """The manifest, tag or blob does not exist."""


class DigestMismatchError(RegistryError):
    """Content fetched by digest does not hash to that digest: never used, always an error."""


class InsecureRegistryError(RegistryError):
    """Plain HTTP to a non-loopback registry without --allow-insecure-registry."""


class RegistryAPIError(RegistryError):
    """The embedded registry refuses a request: ``code``, ``status`` and ``detail`` go on the wire
    as an OCI error body (``{"errors":[{"code","message","detail"}]}``)."""

    def __init__(self, code: str, message: str, *, status: int, detail: object = None) -> None:
        super().__init__(message, status=status, code=code)
        self.detail = detail


# --- signing and verification ---------------------------------------------------------------


class SigningError(LabkitError):
    """Signing could not complete."""


class VerificationError(LabkitError):
    """A signature check failed."""


class NoSignaturesError(VerificationError):
    """cosign: ``no signatures found`` (exit 10)."""

    exit_code = 10


class ImageTagNotFoundError(VerificationError):
    """cosign: ``image tag not found`` (exit 11)."""

    exit_code = 11


class NoMatchingSignaturesError(VerificationError):
    """cosign: ``no matching signatures: …`` (exit 12)."""

    exit_code = 12


# --- policy, admission, lab -----------------------------------------------------------------


class PolicyError(LabkitError):
    """A policy document is invalid; the message is the real tool's where it has one."""

    exit_code = 2


class AdmissionError(LabkitError):
    """An AdmissionReview could not be processed."""


class LabError(LabkitError):
    """The lab (embedded, native or kind) could not be started, found or stopped."""


class PrerequisiteError(LabkitError):
    """A notebook needs what an earlier notebook makes (a key, an image, a signature)."""
