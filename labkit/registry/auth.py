"""Optional HTTP basic auth for the embedded registry, from an htpasswd file of bcrypt entries
(what ``htpasswd -B`` writes and distribution's ``auth.htpasswd`` reads) or one user/password.

It answers as distribution 2.8 does: any failure, a malformed stored hash included, is 401, and
only a password's first 72 bytes count (bcrypt's key ends there; Go's compare does the same).

bcrypt is deliberately slow (~0.3 s at cost 12), and clients send credentials on every request,
so a successful check is remembered as an HMAC of user and password under a per-process key (in
memory only): a hit costs one hash, on the event loop. Checks that do need bcrypt run at most
``_BCRYPT_SLOTS`` at a time on worker threads, and past ``_BCRYPT_BACKLOG`` waiting a request is
answered 401 at once: a wrong-password flood costs those few threads and never queues ahead of
clients already verified.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from pathlib import Path

import bcrypt

from labkit.errors import LabkitError, UsageError

REALM = "labkit"

BCRYPT_MAX_PASSWORD = 72
_BCRYPT_SLOTS = 2  # the lab machine has two cores; the rest of the registry keeps its threads
_BCRYPT_BACKLOG = 8  # checks running or waiting; a new client waits at most ~4 bcrypt rounds


class BasicAuth:
    def __init__(self, entries: dict[str, bytes]) -> None:
        if not entries:
            raise LabkitError("no users for registry authentication", hint="give at least one user")
        self._entries = entries
        self._key = secrets.token_bytes(32)
        # One remembered fingerprint per user (its latest verified password), so bounded by users.
        self._verified: dict[str, bytes] = {}
        self._slots = asyncio.Semaphore(_BCRYPT_SLOTS)
        self._pending = 0

    @classmethod
    def from_htpasswd(cls, path: Path) -> BasicAuth:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise LabkitError(f"cannot read htpasswd file {path}: {exc.strerror}") from None
        entries: dict[str, bytes] = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not hashed.startswith(("$2y$", "$2a$", "$2b$")):
                raise LabkitError(
                    f"htpasswd file {path}, line {lineno}: not a user:bcrypt-hash entry",
                    hint="create entries with `htpasswd -Bbn USER PASSWORD` (bcrypt, as distribution requires)",
                )
            entries[user] = hashed.encode()
        return cls(entries)

    @classmethod
    def single_user(cls, username: str, password: str) -> BasicAuth:
        if not username or ":" in username:
            raise UsageError(f"invalid registry username {username!r}", hint="a username has no ':'")
        if len(password.encode()) > BCRYPT_MAX_PASSWORD:
            # Go's bcrypt.GenerateFromPassword refuses it in these words; hashing a prefix would
            # make the rest of the password silently meaningless.
            raise UsageError("bcrypt: password length exceeds 72 bytes",
                             hint=f"choose a registry password of at most {BCRYPT_MAX_PASSWORD} bytes")
        return cls({username: bcrypt.hashpw(password.encode(), bcrypt.gensalt())})

    async def check(self, authorization: str | None) -> bool:
        """True when the ``Authorization`` header carries a known user's right password."""
        credentials = self._credentials(authorization)
        if credentials is None:
            return False
        user, password = credentials
        hashed = self._entries.get(user)
        if hashed is None:
            return False
        fingerprint = hmac.new(self._key, user.encode() + b"\0" + password, hashlib.sha256).digest()
        known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, fingerprint):
            return True
        if self._pending >= _BCRYPT_BACKLOG:
            return False
        self._pending += 1
        try:
            async with self._slots:
                ok = await asyncio.to_thread(_bcrypt_matches, password, hashed)
        finally:
            self._pending -= 1
        if ok:
            self._verified[user] = fingerprint
        return ok

    @staticmethod
    def _credentials(authorization: str | None) -> tuple[str, bytes] | None:
        """(user, password bytes) from a ``Basic`` header, or None when it is not one."""
        if not authorization or not authorization.lower().startswith("basic "):
            return None
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
            user, sep, password = decoded.partition(b":")
            return (user.decode(), password) if sep else None
        except (binascii.Error, UnicodeDecodeError):
            return None


def _bcrypt_matches(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password[:BCRYPT_MAX_PASSWORD], hashed)
    except ValueError:  # a malformed stored hash: that user cannot log in, as in distribution
        return False
