"""Replacing a file so that readers see the old contents or the whole new ones, never half."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

# Temporary files start with this; directory listings that readers see skip such names.
TEMP_PREFIX = ".tmp-"


def stage_file(path: Path, data: bytes, *, mode: int | None = None, durable: bool = False) -> Path:
    """Write ``data`` to a new temporary file beside ``path`` and return it, for ``os.replace``.

    ``mode`` sets exact permission bits (the umask would narrow them); None creates the file as
    ``open()`` does. ``durable`` fsyncs the data before it is renamed into place. The name is new
    (O_EXCL, random), so concurrent writers of one path never share a temporary file; it never
    ends like ``path``, so a glob for the final name's suffix skips it.
    """
    tmp = path.with_name(f"{TEMP_PREFIX}{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(path: Path, data: bytes, *, mode: int | None = None, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` in one rename (see :func:`stage_file` for the options)."""
    tmp = stage_file(path, data, mode=mode, durable=durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def names_a_file(text: str) -> bool:
    """Whether ``text`` (one line, given where a path or a document is accepted) is an existing
    file's path; a name the OS refuses (too long, say) is a document, not an error."""
    if "\n" in text:
        return False
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False
