"""``labkit verify`` as a whole is bounded in time, as cosign's ``--timeout`` (default 3m0s) bounds it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from labkit import keys
from labkit.cli import main as labkit_main
from labkit.cli import signing
from tests.unit.test_client_hostile import hostile_registry, trickle_manifest


def test_verify_fails_by_its_deadline_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    keys.generate_key_pair(tmp_path / "k", b"")
    monkeypatch.setattr(signing, "VERIFY_TIMEOUT", 2.0)  # 3 minutes, scaled down
    with hostile_registry(trickle_manifest) as host:
        start = time.monotonic()
        code = labkit_main(["verify", "--key", str(tmp_path / "k.pub"), "--insecure-ignore-tlog",
                            f"{host}/team/app:v1"])
    assert time.monotonic() - start < 10  # 2 s, on a loaded machine; the request alone may take 30
    assert code == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: GET /v2/team/app/manifests/v1 on registry {host} failed: timed out"]
