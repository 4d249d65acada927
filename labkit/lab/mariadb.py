"""The local Sigstore's database: a MariaDB server of the lab's own (Trillian's storage, Rekor's index).

Debian's ``mariadb-server`` (``make system-deps``), run with ``--no-defaults`` (no system
configuration is read), its data under ``$LABKIT_HOME/sigstore/mariadb`` and reached only through
a Unix socket (``--skip-networking``): no TCP port, nothing listening beyond this user's files.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
from pathlib import Path

from labkit.errors import LabError

SERVER = "mariadbd"
INSTALL = "mariadb-install-db"
CLIENT = "mariadb"
DATABASE = "trillian"
SCHEMA_MARK = ".labkit-schema"  # written once Trillian's schema is loaded
SBIN = ("/usr/sbin", "/usr/local/sbin")  # mariadbd is in sbin, which a user's PATH may lack


def find(program: str) -> str:
    path = shutil.which(program) or shutil.which(program, path=os.pathsep.join(SBIN))
    if path is None:
        raise LabError(f"the local Sigstore needs MariaDB ({program} is not installed)",
                       hint="install it: `make system-deps` (as root), or `apt-get install mariadb-server`")
    return path


def _as_user() -> list[str]:
    # mariadbd refuses to run as root unless told to; as anyone else the option is not needed
    return [f"--user={getpass.getuser()}"] if os.geteuid() == 0 else []


def ensure_datadir(datadir: Path, log: Path, timeout: float) -> None:
    """Create the system tables once (``mariadb-install-db``); an existing data directory is kept."""
    if (datadir / "mysql").is_dir():
        return
    datadir.mkdir(parents=True, exist_ok=True)
    argv = [find(INSTALL), "--no-defaults", *_as_user(), "--auth-root-authentication-method=normal",
            f"--datadir={datadir}", "--skip-test-db"]
    _run(argv, log, timeout, "could not create the local Sigstore's database")


def server_argv(datadir: Path, sock: Path) -> list[str]:
    return [find(SERVER), "--no-defaults", *_as_user(), f"--datadir={datadir}", f"--socket={sock}",
            "--skip-networking", f"--pid-file={datadir / 'mariadbd.pid'}", "--innodb-buffer-pool-size=32M"]


def answers(sock: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(sock))
        except OSError:
            return False
    return True


def ensure_schema(datadir: Path, sock: Path, schema: Path, log: Path, timeout: float) -> None:
    """Create Trillian's database and tables once."""
    mark = datadir / SCHEMA_MARK
    if mark.exists():
        return
    client = [find(CLIENT), "--no-defaults", f"--socket={sock}", "--user=root"]
    _run([*client, "-e", f"CREATE DATABASE IF NOT EXISTS {DATABASE}"], log, timeout,
         "could not create Trillian's database")
    _run([*client, DATABASE], log, timeout, "could not load Trillian's schema", stdin=schema.read_bytes())
    mark.touch()


def dsn(sock: Path) -> str:
    """The Go MySQL driver's address of the database, over the socket."""
    return f"root@unix({sock})/{DATABASE}"


def _run(argv: list[str], log: Path, timeout: float, what: str, stdin: bytes | None = None) -> None:
    with open(log, "ab") as out:
        try:
            done = subprocess.run(argv, input=stdin, stdout=out, stderr=subprocess.STDOUT, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise LabError(f"{what}: {Path(argv[0]).name} took over {timeout:g}s", hint=f"see {log}") from None
    if done.returncode != 0:
        raise LabError(f"{what} ({Path(argv[0]).name} exited with status {done.returncode})", hint=f"see {log}")
