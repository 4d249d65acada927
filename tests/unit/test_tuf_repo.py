"""The lab's TUF repository, judged by python-tuf's own client (ngclient, the spec's workflow):
the root verifies, the target downloads, and a repository signed again with another
``trusted_root.json`` updates a client that cached the first."""

from __future__ import annotations

import base64
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tuf.ngclient import Updater

from labkit.lab.tuf_repo import TARGET, TufRepository


@pytest.fixture
def repo(tmp_path: Path) -> TufRepository:
    return TufRepository(tmp_path / "tuf")


@pytest.fixture
def served(repo: TufRepository) -> Iterator[str]:
    repo.served.mkdir(parents=True)
    handler = functools.partial(_Quiet, directory=str(repo.served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _fetch(repo: TufRepository, mirror: str, cache: Path) -> bytes:
    cache.mkdir(exist_ok=True)
    updater = Updater(str(cache), f"{mirror}/", str(cache), f"{mirror}/targets/",
                      bootstrap=repo.root_json.read_bytes())
    updater.refresh()
    info = updater.get_targetinfo(TARGET)
    assert info is not None
    return Path(updater.download_target(info, str(cache / TARGET))).read_bytes()


def test_a_client_gets_the_trusted_root_and_its_updates(repo: TufRepository, served: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text('{"mediaType": "first"}\n')
    second.write_text('{"mediaType": "second"}\n')
    repo.write(first)
    cache = tmp_path / "client"
    assert _fetch(repo, served, cache) == first.read_bytes()
    root = repo.root_json.read_bytes()
    repo.write(second)  # a restart with other ports: same root, newer versions
    assert repo.root_json.read_bytes() == root
    assert _fetch(repo, served, cache) == second.read_bytes()
    # only what the current timestamp reaches is left
    assert len(list(repo.served.glob("*.snapshot.json"))) == 1
    assert len(list((repo.served / "targets").iterdir())) == 1
    assert base64.b64decode(repo.root_base64()) == root
    assert repo.key.stat().st_mode & 0o077 == 0
