"""Issue 14 §4: the seed's own credentials trap on the Kyverno release that had it, on the real engine.

Kyverno 1.14.0–1.17.0 built the ImageValidatingPolicy engine with ``Secrets("")``
(``cmd/kyverno/main.go:765`` at v1.17.0): ``credentials.secrets: [regcred]`` is looked up with no
namespace, never found, skipped silently, and the signature pull goes out anonymously (#15120,
fixed in v1.17.1 by #15136). So on 1.17.0 a pod is denied ``UNAUTHORIZED`` although the Secret
exists in the ``kyverno`` namespace, where 1.19 admits it; with no Secret at all both deny.

Each lab is one of its own (its own ``LABKIT_HOME``, in a loopback-only network namespace of its
own, as ``tests/lab/private_credentials.py`` says): the real Kyverno v1.17.0 and v1.19.1 on the
native backend, and labkit's engine told either version (``LABKIT_KYVERNO_VERSION``) on the
embedded one, which must answer as the real one did, message for message. Notebook 05 step 4 runs
the same fix on the session's native lab (1.19) in tests/notebooks/test_notebooks.py.

Kyverno v1.17.0 is not in ``make tools``: ``tools/reference-tools.sh kyverno-v1.17.0`` builds it
(docs/native-backend.md); without it this test skips.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from labkit.lab.native import missing_binaries
from tests.conftest import loopback_only

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = "v1.17.0", "v1.19.1"

pytestmark = [
    pytest.mark.skipif(not loopback_only(), reason="the native lab runs only inside a loopback-only network "
                                                   "namespace: run it under tools/netns-run (as `make test` does)"),
    pytest.mark.skipif(bool(missing_binaries(kyverno=OLD)),
                       reason=f"Kyverno {OLD} is built only on request (not by `make tools`): "
                              f"tools/reference-tools.sh kyverno-{OLD} builds "
                              f"{', '.join(missing_binaries(kyverno=OLD))}"),
    pytest.mark.skipif(bool(missing_binaries()), reason="the native lab's binaries are not built: `make tools`"),
]


def run(backend: str, kyverno: str, home: Path) -> dict[str, Any]:
    out = subprocess.run([str(ROOT / "tools" / "netns-run"), sys.executable, "-m", "tests.lab.private_credentials",
                          backend, kyverno, str(home)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, f"{backend} {kyverno}: {out.stderr[-3000:]}"
    seen: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return seen


def unported(seen: dict[str, Any], case: str) -> tuple[bool, str]:
    """The case's decision and message, the lab's private-registry port masked (each lab has its own)."""
    admitted, message = seen[case]
    return admitted, re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", message)


@pytest.mark.timeout(1800)
def test_ivp_secret_lookup_bug_real_kyverno_1_17_0_and_labkit_agree(tmp_path: Path) -> None:
    real = {v: run("native", v, tmp_path / f"native-{v}") for v in (OLD, NEW)}
    emulated = {v: run("embedded", v, tmp_path / f"embedded-{v}") for v in (OLD, NEW)}
    print(json.dumps({"real": real, "emulated": emulated}, indent=1))  # the messages, for the record (-s)
    anonymous = (r'Error from server: admission webhook "ivpol\.validate\.kyverno\.svc-fail" denied the request: '
                 r"Policy private-signed error: failed to evaluate policy: .*UNAUTHORIZED")
    # the Secret exists in the kyverno namespace: 1.17.0 still pulls anonymously, 1.19 reads it
    old_present, new_present = unported(real[OLD], "present"), unported(real[NEW], "present")
    assert not old_present[0] and re.match(anonymous, old_present[1]), old_present
    assert new_present == (True, "pod/private-present created"), new_present
    # no Secret at all: both pull anonymously, with the same answer
    old_missing, new_missing = unported(real[OLD], "missing"), unported(real[NEW], "missing")
    assert not old_missing[0] and re.match(anonymous, old_missing[1]), old_missing
    assert new_missing == old_missing
    assert old_present == old_missing  # on 1.17.0 the Secret changes nothing
    # labkit's engine, told the version, answers as the real one did: decision and message
    for version in (OLD, NEW):
        for case in ("missing", "present"):
            assert unported(emulated[version], case) == unported(real[version], case), (version, case)
