"""labkit._internal.files.write_atomic: exact modes, durability on request, nothing left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from labkit._internal import files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    files.write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_mode_is_exact_and_none_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.write_atomic(tmp_path / "ca.pem", b"cert", mode=0o644)
        files.write_atomic(tmp_path / "plain", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "ca.pem") == 0o644  # not narrowed by the umask
    assert _mode(tmp_path / "plain") == 0o600  # 0666 less the umask, as open() makes it
    files.write_atomic(tmp_path / "ca.pem", b"key", mode=0o600)
    assert _mode(tmp_path / "ca.pem") == 0o600


def test_durable_fsyncs_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    files.write_atomic(tmp_path / "a", b"x")
    assert synced == []
    files.write_atomic(tmp_path / "a", b"y", durable=True)
    assert len(synced) == 1


def test_a_failed_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "tag"
    target.write_bytes(b"old")

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        files.write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["tag"]


def test_temporary_names_are_hidden_and_never_end_like_the_target(tmp_path: Path) -> None:
    staged = files.stage_file(tmp_path / "policy.yaml", b"x")
    assert staged.name.startswith(files.TEMP_PREFIX) and not staged.name.endswith(".yaml")
    assert list(tmp_path.glob("*.yaml")) == []
