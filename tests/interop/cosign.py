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

from tests.conftest import ALL_COSIGNS, reference_tool

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
