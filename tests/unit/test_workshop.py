"""labkit.workshop: what notebook cells show. Oracles: labkit's CLI (the same verb run directly),
cosign's key-file format (the fields keys.encrypt_private_key writes) and a signed image in
labkit's registry."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from labkit import keys, workshop
from labkit.oci.client import RegistryClient
from labkit.signing.sign import sign_image
from tests.lab.scenario import one_layer_image


def test_run_shows_the_command_its_real_tool_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", "pw")
    result = workshop.run("labkit generate-key-pair --output-key-prefix demo")
    assert result.ok and result.equivalent == "cosign generate-key-pair --output-key-prefix demo"
    shown = capsys.readouterr().out
    assert shown.splitlines()[:3] == ["$ labkit generate-key-pair --output-key-prefix demo",
                                      "  (real tool: cosign generate-key-pair --output-key-prefix demo)",
                                      "Private key written to demo.key"]
    wrong = workshop.run(f"labkit verify --key demo.pub --insecure-ignore-tlog 127.0.0.1:1/ws/app@sha256:{'0' * 64}",
                         show=False)
    assert wrong.exit_code == 1 and wrong.stderr.startswith("WARNING: Skipping tlog verification")
    assert wrong.transcript().endswith("[exit code 1]")
    usage = workshop.run("labkit verify", show=False)  # argparse: no image, no --key
    assert usage.exit_code == 2
    assert workshop.run("labkit digest x.io/a/b:c", show=False).equivalent == "crane digest x.io/a/b:c"
    assert workshop.run("labkit lab status", show=False).equivalent is None
    with pytest.raises(ValueError):
        workshop.run("cosign sign x")


def test_use_password_keeps_an_explicit_one_and_makes_a_private_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "mine")
    workshop.use_password(tmp_path)
    assert os.environ["COSIGN_PASSWORD"] == "mine" and not (tmp_path / "workshop" / "password").exists()
    monkeypatch.delenv("COSIGN_PASSWORD")
    workshop.use_password(tmp_path)
    made = tmp_path / "workshop" / "password"
    assert made.stat().st_mode & 0o777 == 0o600 and (tmp_path / "workshop").stat().st_mode & 0o777 == 0o700
    assert os.environ["COSIGN_PASSWORD"] == made.read_text().strip() and len(os.environ["COSIGN_PASSWORD"]) >= 20


def test_describe_key_file_shows_structure_never_secrets(tmp_path: Path) -> None:
    paths = keys.generate_key_pair(tmp_path / "k", b"pw")
    pem = paths.private_key.read_text()
    text = workshop.describe_key_file(paths.private_key)
    envelope = json.loads(keys.pem_decode_first(pem.encode()).body)
    assert "ENCRYPTED SIGSTORE PRIVATE KEY" in text and "scrypt (N=65536, r=8, p=1)" in text
    assert "nacl/secretbox" in text and "mode 0600" in text
    for secret in (envelope["ciphertext"], envelope["kdf"]["salt"], envelope["cipher"]["nonce"]):
        assert secret not in text
    assert all(line not in text for line in pem.splitlines()[1:-1])


def test_describe_signature_artifact_shows_payload_and_annotation(labkit_registry, tmp_path: Path) -> None:
    paths = keys.generate_key_pair(tmp_path / "k", b"")
    with RegistryClient() as client:
        digest = client.push_image(f"{labkit_registry.host}/ws/app:v1", one_layer_image(b"workshop\n"))
        [result] = sign_image(f"{labkit_registry.host}/ws/app@{digest}", keys.load_private_key(paths.private_key, b""),
                              client=client, annotations={"env": "test"})
    text = workshop.describe_signature_artifact(f"{labkit_registry.host}/ws/app:v1")
    assert f"ws/app:{digest.replace(':', '-')}.sig" in text
    assert f"dev.cosignproject.cosign/signature: {result.signature}" in text
    assert f'"docker-manifest-digest": "{digest}"' in text and '"env": "test"' in text
    with pytest.raises(Exception, match="no signatures found"):
        workshop.describe_signature_artifact(f"{labkit_registry.host}/ws/app@sha256:{'0' * 64}")


@pytest.mark.parametrize("template, values", [
    ("imagevalidatingpolicy", {}),
    ("imagevalidatingpolicy-private", {"credentials": "  credentials:\n    secrets: [regcred]"}),
    ("clusterpolicy", {"action": "Enforce", "mutate_digest": "true"}),
    ("clusterimagepolicy", {"mode": "enforce"}),
])
def test_policy_templates_fill_into_policies_the_engines_accept(template: str, values: dict[str, str],
                                                                tmp_path: Path) -> None:
    from labkit.policy.load import load_policies
    from labkit.signing.verify import key_fingerprint

    keys.generate_key_pair(tmp_path / "cosign", b"")
    path = workshop.write_policy(template, tmp_path / "p.yaml", public_key=tmp_path / "cosign.pub",
                                 registry="127.0.0.1:5001", **values)
    [policy] = load_policies(path)  # strict: unknown fields and the engines' own checks
    assert "${" not in path.read_text() and "127.0.0.1:5001/" in path.read_text()
    block = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", path.read_text(), re.DOTALL)
    embedded = keys.load_public_key("\n".join(line.strip() for line in block.group(0).splitlines()).encode())
    assert key_fingerprint(embedded) == key_fingerprint(keys.load_public_key(tmp_path / "cosign.pub"))
    with pytest.raises(ValueError, match="no value for REGISTRY"):
        workshop.write_policy(template, tmp_path / "q.yaml", public_key=tmp_path / "cosign.pub", **values)


def test_loopback_registries_ignore_proxy_settings(labkit_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """A learner behind a corporate proxy (HTTP_PROXY set, NO_PROXY not covering loopback) still
    reaches the lab registry: Go's http.ProxyFromEnvironment, and so cosign and crane, never proxy
    loopback (labkit's client takes no proxy from the environment at all)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    with RegistryClient() as client:
        digest = client.push_image(f"{labkit_registry.host}/ws/proxy:v1", one_layer_image(b"proxy\n"))
        assert client.resolve(f"{labkit_registry.host}/ws/proxy:v1") == digest


def test_paths_are_shown_relative_to_the_lab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABKIT_HOME", str(tmp_path))
    assert workshop.shown(tmp_path / "workshop" / "cosign.key") == "$LABKIT_HOME/workshop/cosign.key"
    assert workshop.shown(Path("/etc/hosts")) == "/etc/hosts"
    monkeypatch.delenv("LABKIT_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert workshop.shown(tmp_path / ".labkit" / "workshop" / "x") == "~/.labkit/workshop/x"
