"""Reading a key's password as cosign does: ``COSIGN_PASSWORD``, else a TTY prompt, else stdin.

The keys library takes password bytes only; asking for them is the command line's business.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import BinaryIO, TextIO

from labkit.errors import PasswordError
from labkit.keys import PASSWORD_ENV

DEFAULT_PROMPT = "Enter password for private key: "


def read_password(
    *,
    confirm: bool,
    prompt: str = DEFAULT_PROMPT,
    environ: dict[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stderr: TextIO | None = None,
    getpass: Callable[[str, TextIO], str] | None = None,
) -> bytes:
    """cosign's order: ``COSIGN_PASSWORD`` if set (even empty), else a TTY prompt, else all of stdin.

    The stdin bytes are taken verbatim, trailing newline included, as cosign's ``io.ReadAll``.
    """
    env = os.environ if environ is None else environ
    if PASSWORD_ENV in env:
        # The variable's bytes as the OS holds them (cosign takes any bytes, 0xff included):
        # os.environ keeps undecodable bytes as surrogates, which os.fsencode turns back.
        return os.fsencode(env[PASSWORD_ENV])
    stdin = stdin if stdin is not None else sys.stdin.buffer
    stderr = stderr if stderr is not None else sys.stderr
    if not stdin.isatty():
        return stdin.read()
    if getpass is None:
        import getpass as _getpass

        getpass = _getpass.getpass
    first = getpass(prompt, stderr)
    if not confirm:
        return first.encode()
    # cosign's second prompt: "Enter password for private key again: "
    again_prompt = prompt[:-2] + " again: " if prompt.endswith(": ") else prompt
    again = getpass(again_prompt, stderr)
    if first != again:
        raise PasswordError("passwords do not match", hint="type the same password twice")
    return first.encode()
