"""Running a real cosign binary as a test oracle: offline, its state in the test's directory.

Used by every interop suite through the ``cosign`` fixture (parametrised over cosign v2.6.1,
the newest v2.6.x and v3).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.lab.sigstore import LocalSigstore
from tests.conftest import ALL_COSIGNS, COSIGN_V2_PIN, COSIGN_V3, reference_tool

PASSWORD = "interop pw"


@dataclass
class Cosign:
    path: Path
    cwd: Path

    @property
    def is_v3(self) -> bool:
        return self.path.name.startswith("cosign-v3")

    @property
    def legacy_sign_flags(self) -> list[str]:
        # v3 signs into a bundle with a signing config by default, and refuses --tlog-upload=false
        # with them ("must specify --bundle …"); both switches restore v2's legacy .sig format.
        flags = ["--tlog-upload=false"]
        if self.is_v3:
            flags += ["--use-signing-config=false", "--new-bundle-format=false"]
        return flags

    def run(
        self, *args: str, password: str = PASSWORD, env_extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.cwd),
            "TUF_ROOT": str(self.cwd / ".sigstore"),
            "COSIGN_PASSWORD": password,
            # cosign looks for a TUF root online; a dead loopback proxy keeps it on this machine
            # (Go never proxies loopback addresses, so the lab's registries stay reachable).
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "",
            **(env_extra or {}),
        }
        return subprocess.run(
            [str(self.path), *args],
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def error(self, proc: subprocess.CompletedProcess[str]) -> str:
        """cosign's message: the text after ``Error: `` on stderr."""
        lines = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        return lines[0].removeprefix("Error: ") if lines else proc.stderr

    def sign(self, key: Path, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("sign", "--key", str(key), "-y", *self.legacy_sign_flags, *extra, ref)

    def verify(self, pub: Path, ref: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("verify", "--key", str(pub), "--insecure-ignore-tlog", *extra, ref)


@pytest.fixture(params=ALL_COSIGNS)
def cosign(request: pytest.FixtureRequest, tmp_path: Path) -> Cosign:
    return Cosign(reference_tool(request.param), tmp_path)


KEYLESS_FORMATS = ("cosign-v2-legacy", "cosign-v3-default", "cosign-v3-legacy-flags")


def sign_keyless(sigstore: LocalSigstore, workdir: Path, how: str, ref: str,
                 identity: str = "alice@example.com") -> None:
    """Sign ``ref`` keyless as ``identity`` against the lab's Sigstore, in one of the
    :data:`KEYLESS_FORMATS`: cosign v2.6.1's legacy ``.sig``, cosign v3.1.3's default bundle (from
    the lab's signing config), or cosign v3.1.3 with the two switches that keep the legacy format."""
    env = {**sigstore.env(), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    token = sigstore.token(identity)
    if how == "cosign-v3-default":
        trust = sigstore.trust
        cosign = Cosign(reference_tool(COSIGN_V3), workdir)
        args = ["--signing-config", str(trust.signing_config), "--trusted-root", str(trust.trusted_root)]
    else:
        cosign = Cosign(reference_tool(COSIGN_V3 if how == "cosign-v3-legacy-flags" else COSIGN_V2_PIN), workdir)
        legacy = ["--new-bundle-format=false", "--use-signing-config=false"] if cosign.is_v3 else []
        args = [*legacy, "--fulcio-url", sigstore.urls.fulcio, "--rekor-url", sigstore.urls.rekor]
    done = cosign.run("sign", "-y", *args, "--identity-token", token, ref, env_extra=env)
    assert done.returncode == 0, f"{how} {ref}: {done.stderr}"
