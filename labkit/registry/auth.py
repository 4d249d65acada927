"""Optional HTTP basic auth for the embedded registry, from an htpasswd file of bcrypt entries
(what ``htpasswd -B`` writes and distribution's ``auth.htpasswd`` reads) or one user/password.

bcrypt is deliberately slow, and clients send credentials on every request, so a successful
check is remembered as a SHA-256 of the password (in memory only): a hit costs one hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from pathlib import Path

import bcrypt

from labkit.errors import LabkitError

REALM = "labkit"


class BasicAuth:
    def __init__(self, entries: dict[str, bytes]) -> None:
        if not entries:
            raise LabkitError("no users for registry authentication", hint="give at least one user")
        self._entries = entries
        self._verified: dict[str, bytes] = {}

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
            raise LabkitError(f"invalid registry username {username!r}", hint="a username has no ':'")
        return cls({username: bcrypt.hashpw(password.encode(), bcrypt.gensalt())})

    def check(self, authorization: str | None) -> bool:
        """True when the ``Authorization`` header carries a known user's right password."""
        if not authorization or not authorization.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        hashed = self._entries.get(user)
        if not sep or hashed is None:
            return False
        fingerprint = hashlib.sha256(password.encode()).digest()
        known = self._verified.get(user)
        if known is not None and hmac.compare_digest(known, fingerprint):
            return True
        if bcrypt.checkpw(password.encode(), hashed):
            self._verified[user] = fingerprint
            return True
        return False
