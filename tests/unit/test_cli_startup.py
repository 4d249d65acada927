"""`labkit sign` and `labkit verify` load only what they use (issue: whole-process time at cosign's).

Each verb runs in a fresh interpreter against labkit's registry on loopback; afterwards the
process lists which of the heavy or unrelated modules it imported. Plain HTTP to a loopback
registry needs neither httpx nor ssl; neither verb needs YAML, the web server or the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import keys
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest

NOT_LOADED = ("httpx", "httpcore", "h11", "ssl", "http.client", "email", "urllib.request", "yaml", "uvicorn",
              "decimal", "labkit.lab", "labkit.policy", "labkit.admission", "labkit.registry")

RUN_AND_LIST = """
import json, sys
from labkit.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if m in NOT_LOADED)}))
""".replace("NOT_LOADED", repr(NOT_LOADED))


def run_verb(argv: list[str], tmp_path: Path) -> dict[str, object]:
    env = dict(os.environ, HOME=str(tmp_path), LABKIT_HOME=str(tmp_path / "labkit"), COSIGN_PASSWORD="pw")
    proc = subprocess.run([sys.executable, "-c", RUN_AND_LIST, *argv], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return answer


@pytest.fixture
def image(labkit_registry) -> str:
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = b"startup layer"
    pushed = Image(Manifest(Descriptor.of(OCI_CONFIG, config), (Descriptor.of(OCI_LAYER, layer),)), config, [layer])
    with RegistryClient() as client:
        digest = client.push_image(f"{labkit_registry.host}/startup/app:v1", pushed)
    return f"{labkit_registry.host}/startup/app@{digest}"


def test_sign_and_verify_load_neither_httpx_nor_ssl_nor_unrelated_parts(image: str, tmp_path: Path) -> None:
    pair = keys.generate_key_pair(tmp_path / "cosign", b"pw")
    signed = run_verb(["sign", "--key", str(pair.private_key), "--tlog-upload=false", "-y", image], tmp_path)
    assert signed == {"code": 0, "loaded": []}
    verified = run_verb(["verify", "--key", str(pair.public_key), "--insecure-ignore-tlog", image], tmp_path)
    assert verified == {"code": 0, "loaded": []}
