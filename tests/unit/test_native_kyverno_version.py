"""Which Kyverno a native lab runs: the default, or v1.17.0 when chosen (docs/native-backend.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.errors import LabError
from labkit.lab.native import BINARIES, KYVERNO, binaries, kyverno_version, missing_binaries


def test_default_and_chosen_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABKIT_NATIVE_KYVERNO", raising=False)
    assert kyverno_version() == KYVERNO and binaries() == BINARIES
    monkeypatch.setenv("LABKIT_NATIVE_KYVERNO", "1.17.0")
    assert kyverno_version() == "v1.17.0"
    assert kyverno_version("v1.19.1") == "v1.19.1"  # the parameter wins
    assert sorted(n for n in binaries("v1.17.0") if "kyverno" in n) == [
        "kyverno-admission-controller-v1.17.0", "kyverno-reports-controller-v1.17.0"]
    with pytest.raises(LabError, match=r"not v1\.16\.0"):
        kyverno_version("v1.16.0")


def test_missing_names_the_chosen_version(tmp_path: Path) -> None:
    missing = missing_binaries(tmp_path, kyverno="v1.17.0")
    assert "kyverno-v1.17.0-config" in missing and "kyverno-admission-controller-v1.17.0" in missing
    assert not any("v1.19.1" in name for name in missing)
