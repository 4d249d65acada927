"""`make lab`'s start-up as a learner's terminal runs it: tools/lab.sh in a pseudo-terminal, with
JupyterLab started from the shared arguments (tools/jupyterlab-args).

Oracles: the terminal driver (one Ctrl-C written to the pseudo-terminal is one SIGINT to its
foreground process group, as in a real terminal), /proc (no process started for the lab's home
survives), JupyterLab's own REST and terminal APIs (what its file browser and terminal see).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import select
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
LAB_SH = ROOT / "tools" / "lab.sh"
VENV_BIN = ROOT / ".venv" / "bin"
STOPS_WITHIN = 45  # s: a hang guard (lab.sh gives JupyterLab 20 s, then kills it), not a timing claim

if not (VENV_BIN / "jupyter").exists() or not (VENV_BIN / "labkit").exists():
    pytest.skip("make lab's venv (.venv with the lab extra) is not set up", allow_module_level=True)


@dataclass
class Terminal:
    """A pseudo-terminal's master side (``fd``: what the keyboard types), and everything the
    script printed (read from ``out`` as it comes)."""

    fd: int
    out: int
    output: bytearray = field(default_factory=bytearray)

    def drain(self, stop: threading.Event) -> None:
        while not stop.is_set():
            ready, _, _ = select.select([self.out], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.out, 65536)
                except OSError:  # the last process holding the other side has gone
                    return
                if not chunk:
                    return
                self.output += chunk

    def text(self) -> str:
        return self.output.decode(errors="replace")


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is stdin (the pty's slave),
    and Ctrl-C's default disposition, as a login shell gives it (a runner that started pytest in
    the background would otherwise pass on SIGINT ignored, which bash cannot trap)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def processes_for(home: Path) -> set[int]:
    """Every process whose environment names this lab's home: the lab's services, JupyterLab,
    its kernels and terminals all inherit LABKIT_HOME from lab.sh."""
    marker = f"LABKIT_HOME={home}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
                    if state != "Z":  # a zombie has ended; its parent has not reaped it yet
                        found.add(int(entry.name))
    return found


@pytest.fixture(scope="module")
def make_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[bytes], Terminal, str, Path]]:
    """tools/lab.sh on the embedded lab, a temporary LABKIT_HOME and a free port, in a
    pseudo-terminal; yields it once JupyterLab has printed its URL. Started once for the module:
    the last test stops it with Ctrl-C."""
    tmp_path = tmp_path_factory.mktemp("make-lab")
    home, port = tmp_path / "labkit-home", free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("COSIGN_PASSWORD", "COSIGN_REPOSITORY", "KUBECONFIG")}
    env.update(LABKIT_HOME=str(home), LAB_BACKEND="embedded", LAB_JUPYTER_PORT=str(port),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"), PATH="/usr/local/bin:/usr/bin:/bin")
    # The pseudo-terminal is the controlling terminal (Ctrl-C); the output goes to a pipe, as with
    # `make lab | tee lab.log`, where JupyterLab's terminals would otherwise be login shells.
    master, slave = os.openpty()
    output, into = os.pipe()
    proc = subprocess.Popen(["bash", str(LAB_SH)], stdin=slave, stdout=into, stderr=into, env=env,
                            preexec_fn=_controlling_terminal)
    os.close(slave)
    os.close(into)
    terminal, stop = Terminal(master, output), threading.Event()
    reader = threading.Thread(target=terminal.drain, args=(stop,), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not (url := re.search(rf"http://127\.0\.0\.1:{port}/lab\S*\?token=\w+", terminal.text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("lab.sh printed no JupyterLab URL:\n" + terminal.text()[-3000:])
            time.sleep(0.2)
        yield proc, terminal, url.group(0), home
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=STOPS_WITHIN)
        for pid in processes_for(home):  # whatever a failed test left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stop.set()
        reader.join(timeout=5)
        os.close(master)
        os.close(output)


def terminal_says(base: str, token: str, command: str) -> str:
    """Run ``command`` in a new JupyterLab terminal (its REST and websocket APIs, as the browser
    uses them) and return what the terminal printed."""
    from websockets.sync.client import connect

    name = httpx.post(f"{base}/api/terminals", params={"token": token}, timeout=10).json()["name"]
    try:
        seen = ""
        with connect(f"ws://{base.removeprefix('http://')}/terminals/websocket/{name}?token={token}") as ws:
            ws.send(json.dumps(["stdin", f"{command}; echo END-$((6*7))\r"]))
            deadline = time.monotonic() + 20
            while "END-42" not in seen and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    kind, *rest = json.loads(ws.recv(timeout=1))
                    if kind == "stdout":
                        seen += rest[0]
        return seen
    finally:
        httpx.delete(f"{base}/api/terminals/{name}", params={"token": token}, timeout=10)


def test_the_file_browser_shows_the_notebooks_and_the_workshop_directory_only(
        make_lab: tuple[subprocess.Popen[bytes], Terminal, str, Path]) -> None:
    proc, _, url, home = make_lab
    assert proc.poll() is None, "lab.sh has stopped: run this test before the Ctrl-C test"
    base, token = url.split("/lab")[0], url.rpartition("token=")[2]

    def contents(path: str) -> httpx.Response:
        return httpx.get(f"{base}/api/contents/{path}", params={"token": token}, timeout=10)

    root = {entry["name"]: entry["type"] for entry in contents("").json()["content"]}
    notebooks = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert notebooks and notebooks <= root.keys()
    assert root["workshop"] == "directory"
    assert set(root) - notebooks - {"workshop"} == set(), root  # not the drafts, nothing else

    # The learner's YAML, edited in JupyterLab, is the file in $LABKIT_HOME/workshop that
    # `labkit lab apply -f` reads (~/.labkit is a hidden directory: served all the same).
    (home / "workshop" / "ivp.yaml").write_text("kind: ImageValidatingPolicy\n")
    assert contents("workshop/ivp.yaml").json()["type"] == "file"
    saved = httpx.put(f"{base}/api/contents/workshop/ivp.yaml", params={"token": token}, timeout=10,
                      json={"type": "file", "format": "text", "content": "kind: edited\n"})
    assert saved.status_code == 200, saved.text
    assert (home / "workshop" / "ivp.yaml").read_text() == "kind: edited\n"
    assert (home / "workshop").stat().st_mode & 0o077 == 0  # the keys' directory stays the learner's

    # Nothing else of the repository: not the drafts (they hold the exercises' solutions), not what
    # is beside notebooks/ (solutions/, `make solutions`' notebooks).
    for path in ("src", "src%2F02-build-and-push.py", "solutions", "..%2Flab.json"):
        assert contents(path).status_code == 404, path


def test_one_ctrl_c_stops_jupyterlab_and_the_lab(make_lab: tuple[subprocess.Popen[bytes], Terminal, str, Path]) -> None:
    proc, terminal, url, home = make_lab
    base, token = url.split("/lab")[0], url.rpartition("token=")[2]
    lab = {**os.environ, "LABKIT_HOME": str(home)}
    assert subprocess.run([str(VENV_BIN / "labkit"), "lab", "status"], env=lab, capture_output=True).returncode == 0
    # No "Shut down this Jupyter server (y/[n])?"; no news feed and no update check (page config).
    page = httpx.get(f"{base}/lab", params={"token": token}, timeout=10).text
    assert '"news": {"disabled": true}' in page

    # The learner's terminal has the lab's environment (`labkit lab env`): labkit from the venv on
    # PATH, the lab's home and its registry's address; it opens in JupyterLab's root, not the repo.
    said = terminal_says(base, token, 'command -v labkit; echo "home=$LABKIT_HOME registry=$LABKIT_REGISTRY in=$PWD"')
    assert f"{VENV_BIN}/labkit" in said, said
    assert f"home={home} registry=127.0.0.1:" in said, said
    assert f" in={home}/jupyterlab\r" in said, said

    started = processes_for(home)
    assert proc.pid in started and len(started) > 2  # lab.sh, JupyterLab, the lab's services
    os.write(terminal.fd, b"\x03")  # one Ctrl-C
    assert proc.wait(timeout=STOPS_WITHIN) == 0, terminal.text()[-3000:]

    deadline = time.monotonic() + 10  # JupyterLab's kernels and terminals end in their own sessions
    while (left := started & processes_for(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"still running after one Ctrl-C: {left}\n" + terminal.text()[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/api/status", timeout=2)
    status = subprocess.run([str(VENV_BIN / "labkit"), "lab", "status"], env=lab, capture_output=True, text=True)
    assert status.returncode != 0, status.stdout
    assert "lab: stopped" in terminal.text()
    assert "Shut down this Jupyter server" not in terminal.text()
