"""sigstore-conformance's bundle-verification cases through ``labkit verify-blob --bundle``.

Each directory under tests/fixtures/sigstore-conformance/ is one upstream case (SOURCE.md names the
commit): a bundle, maybe an artifact, key, identity, issuer or trusted root. The expectation is the
suite's, read from the directory name (``_fail`` means verification must fail); labkit produced
none of it. Cases labkit cannot judge are skipped with the reason listed in SOURCE.md.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

import labkit.cli

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "sigstore-conformance"
# the suite's defaults (test/assets/bundle-verify/README.md)
DEFAULT_IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
                    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
# without a trusted_root.json a case means the public-good instance: its root, as of SOURCE.md
PRODUCTION_ROOT = CASES / "production-trusted_root.json"

SKIPPED = {
    "intoto-with-custom-trust-root": "intoto 0.0.2 tlog entries: sigstore-python 4.5.1 verifies only "
                                     "hashedrekord and dsse entries",
    "intoto-expired-certificate_fail": "intoto 0.0.2 tlog entries (refused as unsupported, not for the case's reason)",
    "intoto-log-entry-mismatch_fail": "intoto 0.0.2 tlog entries (refused as unsupported, not for the case's reason)",
    "intoto-set-outside-signing-cert-validity_fail": "intoto 0.0.2 tlog entries (refused as unsupported, "
                                                     "not for the case's reason)",
    "intoto-tsa-timestamp-outside-cert-validity_fail": "intoto 0.0.2 tlog entries (refused as unsupported, "
                                                       "not for the case's reason)",
    "trust-root-tsa-validity-end-inclusive": "sigstore-python 4.5.1 treats a TSA's validity end as exclusive "
                                             "(verifier.py: gen_time < validity_period_end)",
}


def _cases() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


def _text(case: Path, name: str, default: str) -> str:
    path = case / name
    return path.read_text().strip() if path.is_file() else default


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_case(case: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    if case.name in SKIPPED:
        pytest.skip(SKIPPED[case.name])
    artifact = case / "artifact" if (case / "artifact").is_file() else CASES / "a.txt"
    root = case / "trusted_root.json" if (case / "trusted_root.json").is_file() else PRODUCTION_ROOT
    argv = ["verify-blob", "--bundle", str(case / "bundle.sigstore.json"), "--trusted-root", str(root)]
    if (case / "key.pub").is_file():
        argv += ["--key", str(case / "key.pub")]
    else:
        argv += ["--certificate-identity", _text(case, "identity", DEFAULT_IDENTITY),
                 "--certificate-oidc-issuer", _text(case, "issuer", DEFAULT_ISSUER)]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code = labkit.cli.main([*argv, str(artifact)])
    _, err = capsys.readouterr()
    if case.name.endswith("_fail"):
        assert code != 0, f"{case.name} verified, but the suite expects a failure ({_text(case, 'README', '')})"
        assert code == 1, f"refused as a usage error (exit {code}), not as a failed verification: {err}"
        assert "Error: " in err and "Traceback" not in err, err
    else:
        assert code == 0, err
        assert "Verified OK" in err


def test_every_skip_names_a_copied_case_and_is_in_source_md() -> None:
    names = {p.name for p in _cases()}
    source = (CASES / "SOURCE.md").read_text()
    assert set(SKIPPED) <= names
    assert all(f"`{name}`" in source for name in SKIPPED)
    assert len(names) == 70
