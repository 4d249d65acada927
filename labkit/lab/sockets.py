"""A process's TCP sockets, read from Linux ``/proc`` (its socket inodes matched against
``/proc/net/tcp`` and ``tcp6``): ``lab status`` names every port listening beyond loopback, the
tests check that no lab process is connected beyond it, and a port the lab wants that another
process holds is named with that process (:func:`holder`)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

_LISTEN, _ESTABLISHED = "0A", "01"


def listening(pid: int) -> list[str]:
    """``HOST:PORT`` of each TCP socket ``pid`` listens on (empty where /proc cannot tell)."""
    return _sockets(pid, _LISTEN, local=True)


def connected_to(pid: int) -> list[str]:
    """``HOST:PORT`` of each peer ``pid`` has an established TCP connection with."""
    return _sockets(pid, _ESTABLISHED, local=False)


def _sockets(pid: int, state: str, *, local: bool) -> list[str]:
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    return sorted({_address(fields[1 if local else 2], family) for fields, family in _tcp_rows()
                   if fields[3] == state and fields[9] in inodes})


def _tcp_rows() -> Iterator[tuple[list[str], socket.AddressFamily]]:
    """Each socket row of the kernel's TCP tables (IPv4, then IPv6), split into fields."""
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            yield line.split(), family


def _address(hex_addr: str, family: int) -> str:
    host_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(host_hex)
    # /proc prints the address as native-endian 32-bit words
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    host = socket.inet_ntop(family, words)
    if family == socket.AF_INET6:
        host = "*" if host == "::" else f"[{host}]"
    elif host == "0.0.0.0":
        host = "*"
    return f"{host}:{int(port_hex, 16)}"


def holder(port: int) -> str | None:
    """Which process listens on TCP ``port`` (any address), as ``pid N (command line)``; None when
    neither ``/proc`` nor ``ss -ltnp`` can tell (e.g. another user's process)."""
    inodes = {f"socket:[{fields[9]}]" for fields, _ in _tcp_rows()
              if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port}
    for pid in _pids() if inodes else []:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return _describe(pid)
            except OSError:
                continue
    return _ss_holder(port)


def _pids() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir("/proc") if name.isdigit())
    except OSError:
        return []


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        command = " ".join(" ".join(a.decode(errors="replace") for a in argv).split())[:200]  # one line
    except OSError:
        command = ""
    return f"pid {pid} ({command})" if command else f"pid {pid}"


_SS_USER = re.compile(r'users:\(\("([^"]*)",pid=(\d+)')


def _ss_holder(port: int) -> str | None:
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        out = subprocess.run([ss, "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _SS_USER.search(out)
    return f"pid {match[2]} ({match[1]})" if match else None
