"""The external tools the cluster backends drive (docker, kind, helm), run through ``sh``: one
bounded call each, its failure a :class:`~labkit.errors.LabError` naming the command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Mapping

from labkit.errors import LabError

COMMAND_TIMEOUT = 300.0


def run(*args: str, stdin: str | None = None, ok: Collection[int] = (0,), env: Mapping[str, str] | None = None,
        timeout: float = COMMAND_TIMEOUT, hint: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with ``env`` added to this process's environment; a LabError (with ``hint``)
    when it is not on PATH, outlives ``timeout`` or exits with a status not in ``ok``."""
    import sh

    try:
        done = sh.Command(args[0])(*args[1:], _in=stdin, _ok_code=list(ok), _timeout=timeout, _return_cmd=True,
                                   _env={**os.environ, **(env or {})})
    except sh.CommandNotFound:
        raise LabError(f"{args[0]} is not on PATH", hint=f"install {args[0]}; {hint or ''}".rstrip("; ")) from None
    except sh.TimeoutException:
        raise LabError(f"`{' '.join(args[:4])} …` did not finish within {timeout:g}s", hint=hint) from None
    except sh.ErrorReturnCode as exc:
        raise LabError(f"`{' '.join(args)}` failed (exit {exc.exit_code}): "
                       f"{exc.stderr.decode(errors='replace').strip()[-2000:]}", hint=hint) from None
    return subprocess.CompletedProcess(list(args), done.exit_code, done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))
