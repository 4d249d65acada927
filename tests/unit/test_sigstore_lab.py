"""The local Sigstore's failure paths: each a clear error with the next step, nothing started or lost.

Its working paths are proven against the real cosign in tests/interop/test_keyless_cosign.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labkit.errors import LabError, UsageError
from labkit.lab import mariadb, oidc
from labkit.lab.sigstore import LocalSigstore, socket_dir
from labkit.lab.state import LabHome


def test_a_token_is_only_for_an_email_identity() -> None:
    with pytest.raises(UsageError, match="'alice' is not an email address") as caught:
        oidc.token("http://127.0.0.1:9", "alice")
    assert caught.value.hint == "a workshop identity looks like alice@example.com"


def test_a_token_from_an_issuer_that_is_down_says_how_to_start_it() -> None:
    with pytest.raises(LabError, match="did not answer") as caught:
        oidc.token("http://127.0.0.1:9", "alice@example.com", timeout=2.0)
    assert "labkit lab up --sigstore" in (caught.value.hint or "")


def test_a_corrupt_state_file_is_named_with_the_way_out(tmp_path: Path) -> None:
    home = LabHome(tmp_path)
    state = tmp_path / "sigstore" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"services": {"fulcio": {"pid": "x"}}}))
    with pytest.raises(LabError, match="is not the local Sigstore's state") as caught:
        LocalSigstore.find(home)
    assert "labkit lab up --sigstore" in (caught.value.hint or "")
    assert LocalSigstore.find(LabHome(tmp_path / "elsewhere")) is None


def test_missing_services_name_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_TOOLS_DIR", str(tmp_path / "no-tools"))
    with pytest.raises(LabError, match="the local Sigstore needs fulcio-v1.8.8, rekor-server-v1.5.4") as caught:
        LocalSigstore.up(LabHome(tmp_path / "home"))
    assert "make tools" in (caught.value.hint or "")
    assert not (tmp_path / "home" / "sigstore").exists()  # nothing made before the check


def test_missing_mariadb_gives_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(mariadb, "SBIN", ("/nonexistent",))
    with pytest.raises(LabError, match=r"needs MariaDB \(mariadbd is not installed\)") as caught:
        mariadb.find(mariadb.SERVER)
    assert "apt-get install mariadb-server" in (caught.value.hint or "")


def test_sockets_move_out_of_a_home_whose_path_is_too_long(tmp_path: Path) -> None:
    short = socket_dir(LabHome(tmp_path))
    assert short == tmp_path / "sigstore" / "run"
    deep = LabHome(tmp_path / ("d" * 90))
    moved = socket_dir(deep)
    assert moved != deep.root / "sigstore" / "run"
    assert len(str(moved / "fulcio-legacy.sock")) < 108  # sun_path's size
    assert moved.stat().st_mode & 0o777 == 0o700
    assert socket_dir(deep) == moved  # the same directory for the same home


def test_a_lab_without_sigstore_says_how_to_start_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.cli import main

    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert main(["lab", "up"]) == 0
    try:
        capsys.readouterr()
        assert main(["lab", "token", "alice@example.com"]) != 0
        err = capsys.readouterr().err
        assert "has no local Sigstore running" in err
        assert "labkit lab up --sigstore" in err
        assert main(["lab", "env"]) == 0
        assert "LABKIT_FULCIO_URL" not in capsys.readouterr().out
    finally:
        main(["lab", "down"])


def test_a_keyless_policy_naming_the_labs_sigstore_is_not_stale() -> None:
    """Fulcio's, Rekor's and the TUF mirror's loopback URLs in a keyless policy are the lab's own
    services, not a registry that moved; a registry the lab no longer serves still is stale."""
    from labkit.lab.stale import stale_policies

    policy = {"kind": "ClusterPolicy", "metadata": {"name": "keyless"}, "spec": {"rules": [{"verifyImages": [{
        "imageReferences": ["127.0.0.1:5999/*"],
        "attestors": [{"entries": [{"keyless": {"rekor": {"url": "http://127.0.0.1:7001"}}}]}]}]}]}}
    stale = stale_policies([policy], ["127.0.0.1:5001"], services=["http://127.0.0.1:7001"])
    assert [s.host for s in stale] == ["127.0.0.1:5999"]
    assert "7001" not in str(stale[0])  # the services are not offered as registries
