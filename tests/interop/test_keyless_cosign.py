"""Keyless signing against the lab's own Sigstore, with the real cosign as the client and judge.

``labkit lab up --sigstore`` promises that the real tools work against the lab "exactly as they
would against the public instance": cosign v2.6.1 (the tutorial's pin) signs an image keyless
with a token from ``labkit lab token`` and the variables of ``labkit lab env``; cosign verifies it
by identity and refuses another identity or issuer in its own words; cosign v3.1.3 does the same
in its default bundle format from the lab's ``signing_config.json`` and ``trusted_root.json``;
sigstore-python, an independent verifier, accepts the lab's trust root. No request leaves the
machine: every cosign call runs with a recording proxy that must see no connection.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.lab.sigstore import LocalSigstore
from labkit.lab.state import LabHome
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.signing.blob_bundle import with_proto_defaults
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3, RunningRegistry, reference_tool
from tests.interop.cosign import Cosign
from tests.interop.test_sign_cosign import push_image

pytestmark = pytest.mark.interop

ALICE = "alice@example.com"


class RecordingProxy:
    """A proxy that answers nothing and remembers who asked: cosign sends every non-loopback
    request to it (HTTPS_PROXY), so an empty ``seen`` proves nothing public was contacted."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.seen: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.seen.append(conn.recv(200))
                except OSError:
                    self.seen.append(b"?")

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    recorder = RecordingProxy()
    yield recorder
    recorder.close()
    assert recorder.seen == [], f"cosign tried to reach beyond the machine: {recorder.seen}"


def sigstore(home: Path) -> LocalSigstore:
    found = LocalSigstore.find(LabHome(home))
    assert found is not None
    return found


def env_for(lab: LocalSigstore, proxy: RecordingProxy) -> dict[str, str]:
    dead = f"http://127.0.0.1:{proxy.port}"
    return {**lab.env(), "HTTPS_PROXY": dead, "HTTP_PROXY": dead}


@pytest.fixture
def image(labkit_registry: RunningRegistry, request: pytest.FixtureRequest) -> Reference:
    with RegistryClient() as client:
        return push_image(client, Reference.parse(f"{labkit_registry.host}/keyless/app:v1"),
                          request.node.nodeid.encode())


def _legacy_keyless(cosign: Cosign, lab: LocalSigstore, env: dict[str, str], ref: str,
                    identity: str = ALICE) -> subprocess.CompletedProcess[str]:
    flags = ["--use-signing-config=false", "--new-bundle-format=false"] if cosign.is_v3 else []
    return cosign.run("sign", "-y", *flags, "--fulcio-url", lab.urls.fulcio, "--rekor-url", lab.urls.rekor,
                      "--identity-token", lab.token(identity), ref, env_extra=env)


def _verify(cosign: Cosign, lab: LocalSigstore, env: dict[str, str], ref: str, identity: str = ALICE,
            issuer: str | None = None, *extra: str) -> subprocess.CompletedProcess[str]:
    return cosign.run("verify", "--certificate-identity", identity,
                      "--certificate-oidc-issuer", issuer or lab.urls.oidc_issuer, *extra, ref, env_extra=env)


def test_cosign_v2_signs_keyless_and_verifies_by_identity(local_sigstore: Path, image: Reference,
                                                          tmp_path: Path, proxy: RecordingProxy) -> None:
    lab, cosign = sigstore(local_sigstore), Cosign(reference_tool(COSIGN_V2_PIN), tmp_path)
    env = env_for(lab, proxy)
    signed = _legacy_keyless(cosign, lab, env, str(image))
    assert signed.returncode == 0, signed.stderr
    assert "Successfully verified SCT" in signed.stderr  # Fulcio logged the certificate in the lab's CT log
    assert "tlog entry created with index" in signed.stderr

    verified = _verify(cosign, lab, env, str(image))
    assert verified.returncode == 0, verified.stderr
    claims = json.loads(verified.stdout)[0]
    assert claims["optional"]["Subject"] == ALICE
    assert claims["optional"]["Issuer"] == lab.urls.oidc_issuer
    assert "The code-signing certificate was verified using trusted certificate authority certificates" \
        in verified.stderr
    assert "Existence of the claims in the transparency log was verified offline" in verified.stderr

    other = _verify(cosign, lab, env, str(image), "bob@example.com")
    assert other.returncode != 0
    assert cosign.error(other).startswith("no matching signatures: none of the expected identities matched")
    lookalike = _verify(cosign, lab, env, str(image), ALICE, lab.urls.oidc_issuer + "/")
    assert lookalike.returncode != 0
    assert "none of the expected identities matched" in cosign.error(lookalike)


def test_cosign_v3_signs_a_bundle_from_the_labs_signing_config(local_sigstore: Path, image: Reference,
                                                              tmp_path: Path, proxy: RecordingProxy) -> None:
    lab, cosign = sigstore(local_sigstore), Cosign(reference_tool(COSIGN_V3), tmp_path)
    env = env_for(lab, proxy)
    trust = lab.env()
    signed = cosign.run("sign", "-y", "--signing-config", trust["LABKIT_SIGNING_CONFIG"],
                        "--trusted-root", trust["LABKIT_TRUSTED_ROOT"], "--identity-token", lab.token(ALICE),
                        str(image), env_extra=env)
    assert signed.returncode == 0, signed.stderr
    verified = _verify(cosign, lab, env, str(image), ALICE, None, "--trusted-root", trust["LABKIT_TRUSTED_ROOT"])
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)[0]["critical"]["image"]["docker-manifest-digest"] == image.digest


def test_sigstore_python_accepts_the_labs_trust_root(local_sigstore: Path, tmp_path: Path,
                                                     proxy: RecordingProxy) -> None:
    """An independent verifier: sigstore-python checks cosign v3's blob bundle (certificate chain
    to the lab's CA, SCT from its CT log, inclusion in its Rekor) against ``trusted_root.json``."""
    from sigstore.models import Bundle, ClientTrustConfig
    from sigstore.verify import Verifier, policy

    lab, cosign = sigstore(local_sigstore), Cosign(reference_tool(COSIGN_V3), tmp_path)
    env, trust = env_for(lab, proxy), lab.env()
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"keyless, offline\n")
    signed = cosign.run("sign-blob", "-y", "--signing-config", trust["LABKIT_SIGNING_CONFIG"],
                        "--trusted-root", trust["LABKIT_TRUSTED_ROOT"], "--identity-token", lab.token(ALICE),
                        "--bundle", "blob.sigstore.json", str(blob), env_extra=env)
    assert signed.returncode == 0, signed.stderr
    config = ClientTrustConfig.from_json(lab.trust.client_trust_config.read_text())
    verifier = Verifier(trusted_root=config.trusted_root)
    # a fresh log's first entry has index 0, which protobuf's JSON leaves out and sigstore-python
    # then refuses: labkit's reader puts the zero values back (signing/blob_bundle)
    bundle = Bundle.from_json(with_proto_defaults((tmp_path / "blob.sigstore.json").read_bytes()))
    verifier.verify_artifact(blob.read_bytes(), bundle, policy.Identity(identity=ALICE, issuer=lab.urls.oidc_issuer))
    with pytest.raises(Exception, match="Certificate's SANs do not match"):
        verifier.verify_artifact(blob.read_bytes(), bundle,
                                 policy.Identity(identity="bob@example.com", issuer=lab.urls.oidc_issuer))


def test_signatures_survive_a_restart(local_sigstore: Path, image: Reference, tmp_path: Path,
                                      proxy: RecordingProxy) -> None:
    """``lab down``/``up`` keeps the CA, the log keys and Rekor's tree: what was signed before
    still verifies, and the log goes on from where it was."""
    lab, cosign = sigstore(local_sigstore), Cosign(reference_tool(COSIGN_V2_PIN), tmp_path)
    signed = _legacy_keyless(cosign, lab, env_for(lab, proxy), str(image))
    assert signed.returncode == 0, signed.stderr
    root_before = lab.trust.trusted_root.read_bytes()
    lab.down()
    assert LocalSigstore.find(LabHome(local_sigstore)) is None
    restarted = LocalSigstore.up(LabHome(local_sigstore))
    assert restarted.trust.trusted_root.read_bytes() == root_before
    env = env_for(restarted, proxy)
    verified = _verify(cosign, restarted, env, str(image))
    assert verified.returncode == 0, verified.stderr
    again = _legacy_keyless(cosign, restarted, env, str(image))
    assert again.returncode == 0, again.stderr
    before = int(signed.stderr.split("tlog entry created with index: ")[1].split()[0])
    after = int(again.stderr.split("tlog entry created with index: ")[1].split()[0])
    assert after > before


def test_without_the_labs_environment_cosign_reaches_for_the_public_sigstore(
        local_sigstore: Path, image: Reference, tmp_path: Path) -> None:
    """The trap ``labkit lab env`` closes, and the proof the recording proxy above can fail: with no
    ``SIGSTORE_*`` variables, cosign fetches the public instance's TUF root to verify."""
    lab, cosign = sigstore(local_sigstore), Cosign(reference_tool(COSIGN_V2_PIN), tmp_path)
    recorder = RecordingProxy()
    try:
        dead = f"http://127.0.0.1:{recorder.port}"
        verified = _verify(cosign, lab, {"HTTPS_PROXY": dead, "HTTP_PROXY": dead}, str(image))
    finally:
        recorder.close()
    assert verified.returncode != 0
    assert any(b"tuf-repo-cdn.sigstore.dev" in seen for seen in recorder.seen), recorder.seen


def test_the_issues_terminal_session(local_sigstore: Path, image: Reference, tmp_path: Path,
                                     proxy: RecordingProxy) -> None:
    """What a learner types: ``eval "$(labkit lab env)"``, a token from ``labkit lab token``, then
    cosign with the lab's URLs and trust root, exactly as against the public instance."""
    import os
    import shlex
    import sys

    bin_dir = Path(sys.executable).parent
    script = f"""set -e
eval "$({bin_dir}/labkit lab env)"
export HTTPS_PROXY=http://127.0.0.1:{proxy.port} HTTP_PROXY=http://127.0.0.1:{proxy.port} HOME={tmp_path}
cosign-v2.6.1 sign -y --identity-token "$(labkit lab token alice@example.com)" \\
  --fulcio-url "$LABKIT_FULCIO_URL" --rekor-url "$LABKIT_REKOR_URL" {shlex.quote(str(image))}
cosign-v2.6.1 verify --certificate-identity alice@example.com \\
  --certificate-oidc-issuer "$LABKIT_OIDC_ISSUER" {shlex.quote(str(image))} > /dev/null
cosign-v3.1.3 verify --certificate-identity alice@example.com \\
  --certificate-oidc-issuer "$LABKIT_OIDC_ISSUER" --trusted-root "$LABKIT_TRUSTED_ROOT" \\
  {shlex.quote(str(image))} > /dev/null
echo both verified
"""
    reference_tool(COSIGN_V2_PIN), reference_tool(COSIGN_V3)  # skip or fail as the other oracles do
    env = {"PATH": os.environ.get("PATH", ""), "LABKIT_HOME": str(local_sigstore)}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("both verified")
    assert "eyJ" not in done.stderr + done.stdout  # the token is passed, never printed
