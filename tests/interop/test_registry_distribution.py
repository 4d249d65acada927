"""The embedded registry answers what distribution 2.8 answers to the same hostile requests.

Oracle: Debian's docker-registry (distribution 2.8, ``tests/peers.py``) run with the same
htpasswd file or sent the same manifest; statuses, error codes and (for auth) bodies are compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest

from labkit.registry import serve
from tests.peers import PeerMissing, run_distribution

PASSWORD = "p" * 72  # bcrypt's whole key: distribution compares the first 72 bytes only


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    path.write_text(
        f"learner:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        "broken:$2y$05$notahash\n"  # a malformed hash: that user can never log in
    )
    return path


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, htpasswd: Path) -> Iterator[tuple[str, str]]:
    """(labkit's URL, distribution's URL), both behind ``htpasswd`` with realm ``labkit``."""
    auth = f"auth: {{htpasswd: {{realm: labkit, path: {htpasswd}}}}}\n"
    labkit = serve(root=tmp_path_factory.mktemp("labkit"), port=0, htpasswd=htpasswd)
    try:
        with run_distribution(tmp_path_factory.mktemp("distribution"), extra_config=auth) as real:
            yield labkit.url, real.url
    except PeerMissing as exc:
        pytest.skip(str(exc))
    finally:
        labkit.stop()


@pytest.mark.parametrize("user, password", [
    ("learner", PASSWORD),
    ("learner", PASSWORD + "-ignored"),  # past 72 bytes: accepted, as bcrypt keys stop there
    ("learner", "q" * 100),  # over 72 bytes and wrong
    ("learner", "x" * 5000),
    ("broken", "anything"),
    ("nobody", "p" * 80),
], ids=["72-bytes", "77-bytes", "100-bytes-wrong", "5000-bytes", "malformed-hash", "unknown-user"])
def test_basic_auth_answers_as_distribution_does(both: tuple[str, str], user: str, password: str) -> None:
    """Issue 13 item 7: long passwords and malformed hashes were HTTP 500; distribution says 401."""
    labkit_url, real_url = both
    mine = httpx.get(f"{labkit_url}/v2/", auth=(user, password), timeout=10)
    theirs = httpx.get(f"{real_url}/v2/", auth=(user, password), timeout=10)
    assert mine.status_code == theirs.status_code
    assert mine.json() == theirs.json()
    assert mine.headers.get("WWW-Authenticate") == theirs.headers.get("WWW-Authenticate")
