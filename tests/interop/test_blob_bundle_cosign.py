"""``labkit sign-blob --bundle`` / ``verify-blob --bundle`` against real cosign v3.1.3, both ways.

Managed keys: labkit's bundle verifies in cosign (``--insecure-ignore-tlog``, the bundle has no
tlog entry), cosign's (``sign-blob --bundle --use-signing-config=false --tlog-upload=false``)
verifies in labkit, and a tampered artifact, another key or a missing tlog flag fail in both with
the same words. Keyless: bundles from the public-good instance (the sigstore-conformance cases,
tests/fixtures/sigstore-conformance/SOURCE.md) verified offline by both tools against the same
trusted root, with right and wrong identities.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from labkit import keys
from labkit.cli import main as labkit_main
from tests.conftest import COSIGN_V3, reference_tool
from tests.interop.cosign import PASSWORD, Cosign

pytestmark = pytest.mark.interop

BLOB = b"an artifact for a bundle\n"
CASES = Path(__file__).resolve().parents[1] / "fixtures" / "sigstore-conformance"
PRODUCTION_ROOT = CASES / "production-trusted_root.json"
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"
COSIGN_SIGN_FLAGS = ("--use-signing-config=false", "--tlog-upload=false")  # what v3.1.3 requires for no tlog


@pytest.fixture
def cosign(tmp_path: Path) -> Cosign:
    return Cosign(reference_tool(COSIGN_V3), tmp_path)


@pytest.fixture
def labkit(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COSIGN_PASSWORD", PASSWORD)

    def run(*argv: str) -> tuple[int, str, str]:
        code = labkit_main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err
    return run


def error(stderr: str) -> str:
    """The ``Error: `` line's text, from either tool."""
    return next(line.removeprefix("Error: ") for line in stderr.splitlines() if line.startswith("Error: "))


def same_words(ours: str, theirs: str) -> bool:
    """labkit says cosign's words: its message alone, or (where cosign puts the next step in the same
    sentence) its message and hint, which labkit keeps apart."""
    hint = next((line.removeprefix("Hint: ") for line in ours.splitlines() if line.startswith("Hint: ")), "")
    return error(theirs) in (error(ours), f"{error(ours)} {hint}")


def both_verify(cosign: Cosign, labkit, *argv: str) -> tuple[subprocess.CompletedProcess[str], tuple[int, str, str]]:
    return cosign.run("verify-blob", *argv), labkit("verify-blob", *argv)


def assert_same_failure(theirs: subprocess.CompletedProcess[str], ours: tuple[int, str, str]) -> None:
    code, _, err = ours
    assert theirs.returncode == 1 and code == 1, (theirs.stderr, err)
    assert same_words(err, theirs.stderr), (err, theirs.stderr)


@pytest.fixture
def key_pair(tmp_path: Path) -> keys.KeyPairPaths:
    (tmp_path / "blob").write_bytes(BLOB)
    (tmp_path / "tampered").write_bytes(BLOB + b"!")
    keys.generate_key_pair(tmp_path / "other", PASSWORD.encode())
    return keys.generate_key_pair(tmp_path / "cosign", PASSWORD.encode())


def test_cosign_verifies_labkits_bundle(cosign: Cosign, labkit, key_pair, tmp_path: Path) -> None:
    code, out, err = labkit("sign-blob", "--key", "cosign.key", "--bundle", "labkit.bundle", "blob")
    assert code == 0, err
    assert out == "" and "Wrote bundle to file labkit.bundle" in err
    assert (tmp_path / "labkit.bundle").stat().st_mode & 0o777 == 0o600
    theirs = cosign.run("verify-blob", "--key", "cosign.pub", "--bundle", "labkit.bundle",
                        "--insecure-ignore-tlog", "blob")
    assert theirs.returncode == 0, theirs.stderr
    assert "Verified OK" in theirs.stderr
    for argv in (("--key", "cosign.pub", "--bundle", "labkit.bundle", "--insecure-ignore-tlog", "tampered"),
                 ("--key", "other.pub", "--bundle", "labkit.bundle", "--insecure-ignore-tlog", "blob"),
                 ("--key", "cosign.pub", "--bundle", "labkit.bundle", "--trusted-root", str(PRODUCTION_ROOT), "blob")):
        assert_same_failure(*both_verify(cosign, labkit, *argv))


def test_labkit_verifies_cosigns_bundle(cosign: Cosign, labkit, key_pair, tmp_path: Path) -> None:
    proc = cosign.run("sign-blob", "--key", "cosign.key", "--bundle", "cosign.bundle", *COSIGN_SIGN_FLAGS, "blob")
    assert proc.returncode == 0, proc.stderr
    bundle = json.loads((tmp_path / "cosign.bundle").read_bytes())
    assert "publicKey" in bundle["verificationMaterial"] and "tlogEntries" not in bundle["verificationMaterial"]
    code, _, err = labkit("verify-blob", "--key", "cosign.pub", "--bundle", "cosign.bundle",
                          "--insecure-ignore-tlog", "blob")
    assert code == 0, err
    assert "Verified OK" in err
    for argv in (("--key", "cosign.pub", "--bundle", "cosign.bundle", "--insecure-ignore-tlog", "tampered"),
                 ("--key", "other.pub", "--bundle", "cosign.bundle", "--insecure-ignore-tlog", "blob"),
                 ("--key", "cosign.pub", "--bundle", "cosign.bundle", "--trusted-root", str(PRODUCTION_ROOT), "blob")):
        assert_same_failure(*both_verify(cosign, labkit, *argv))


def test_the_bundles_match_field_for_field(cosign: Cosign, labkit, key_pair, tmp_path: Path) -> None:
    """ECDSA signatures differ run to run; everything else in the two bundles is equal."""
    assert cosign.run("sign-blob", "--key", "cosign.key", "--bundle", "c.json", *COSIGN_SIGN_FLAGS,
                      "blob").returncode == 0
    assert labkit("sign-blob", "--key", "cosign.key", "--bundle", "l.json", "blob")[0] == 0
    theirs, ours = (json.loads((tmp_path / name).read_bytes()) for name in ("c.json", "l.json"))
    for bundle in (theirs, ours):
        base64.b64decode(bundle["messageSignature"].pop("signature"), validate=True)
    assert ours == theirs


def test_both_refuse_a_tampered_tlog_entry(cosign: Cosign, labkit, tmp_path: Path) -> None:
    """The conformance suite's managed-key bundle (a Rekor v1 entry) with its SET or body altered."""
    case = CASES / "managed-key-and-trusted-root"
    argv = ("--key", str(case / "key.pub"), "--trusted-root", str(case / "trusted_root.json"))
    (tmp_path / "a.txt").write_bytes((CASES / "a.txt").read_bytes())
    good = json.loads((case / "bundle.sigstore.json").read_bytes())
    entry = good["verificationMaterial"]["tlogEntries"][0]
    theirs, ours = both_verify(cosign, labkit, *argv, "--bundle", str(case / "bundle.sigstore.json"), "a.txt")
    assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    body["spec"]["data"]["hash"]["value"] = "0" * 64
    altered = {
        "set": {**entry, "inclusionPromise": {"signedEntryTimestamp": base64.b64encode(b"\x30\x00").decode()}},
        "body": {**entry, "canonicalizedBody": base64.b64encode(json.dumps(body).encode()).decode()},
        "index": {**entry, "logIndex": str(int(entry["logIndex"]) + 1)},
    }
    # an altered body changes the Merkle leaf, so the inclusion proof is what fails first
    expected = {"set": "failed to verify log inclusion: SET",
                "body": "failed to verify log inclusion: inclusion proof contains invalid root hash",
                "index": "failed to verify log inclusion: "}
    for name, tampered in altered.items():
        bundle = {**good, "verificationMaterial": {**good["verificationMaterial"], "tlogEntries": [tampered]}}
        (tmp_path / f"{name}.json").write_text(json.dumps(bundle))
        theirs, ours = both_verify(cosign, labkit, *argv, "--bundle", f"{name}.json", "a.txt")
        assert theirs.returncode == 1 and ours[0] == 1, (name, theirs.stderr, ours[2])
        assert error(ours[2]).startswith(expected[name]), ours[2]


@pytest.mark.parametrize("case", ["happy-path-v0.1", "happy-path-v0.3", "happy-path-intoto-in-dsse-v3"])
def test_keyless_identities(cosign: Cosign, labkit, case: str, tmp_path: Path) -> None:
    bundle = str(CASES / case / "bundle.sigstore.json")
    (tmp_path / "a.txt").write_bytes((CASES / "a.txt").read_bytes())
    (tmp_path / "tampered").write_bytes(b"not a.txt\n")
    common = ("--bundle", bundle, "--trusted-root", str(PRODUCTION_ROOT))
    for flags in (("--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER),
                  ("--certificate-identity-regexp", "sigstore-conformance", "--certificate-oidc-issuer-regexp",
                   "githubusercontent")):
        theirs, ours = both_verify(cosign, labkit, *common, *flags, "a.txt")
        assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
    failures = [
        ("--certificate-identity", "someone@example.com", "--certificate-oidc-issuer", ISSUER, "a.txt"),
        ("--certificate-identity", IDENTITY, "--certificate-oidc-issuer", "https://accounts.google.com", "a.txt"),
        ("--certificate-identity-regexp", "^nope", "--certificate-oidc-issuer", ISSUER, "a.txt"),
        ("--certificate-identity", IDENTITY, "--certificate-oidc-issuer-regexp", "^x", "a.txt"),
        ("--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "tampered"),
        ("--certificate-oidc-issuer", ISSUER, "a.txt"),
        ("--certificate-identity", IDENTITY, "a.txt"),
        ("--certificate-identity", "x@y", "--certificate-oidc-issuer", "https://x", "a.txt"),
        ("--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--certificate-oidc-issuer-regexp",
         "zzz", "a.txt"),
        ("--certificate-identity", IDENTITY, "--certificate-identity-regexp", "sigstore", "--certificate-oidc-issuer",
         ISSUER, "a.txt"),
        ("--certificate-identity-regexp", "(?=x)", "--certificate-oidc-issuer", ISSUER, "a.txt"),
        ("--certificate-identity", IDENTITY, "--certificate-oidc-issuer-regexp", "(", "a.txt"),
    ]
    for argv in failures:
        theirs, ours = both_verify(cosign, labkit, *common, *argv)
        assert theirs.returncode == 1 and ours[0] != 0, (argv, theirs.stderr, ours[2])
        assert same_words(ours[2], theirs.stderr), (argv, ours[2], theirs.stderr)


def test_a_key_cannot_verify_a_keyless_bundle(cosign: Cosign, labkit, key_pair) -> None:
    argv = ("--key", "cosign.pub", "--bundle", str(CASES / "happy-path-v0.3" / "bundle.sigstore.json"),
            "--trusted-root", str(PRODUCTION_ROOT), "blob")
    assert_same_failure(*both_verify(cosign, labkit, *argv))


def test_key_signed_dsse_bundles(cosign: Cosign, labkit, tmp_path: Path) -> None:
    """A DSSE bundle built in the test from the DSSE spec: both accept it, both refuse another subject."""
    import hashlib

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.unit.test_blob_bundle import _dsse_bundle

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "blob").write_bytes(BLOB)
    (tmp_path / "good.json").write_bytes(_dsse_bundle(key, hashlib.sha256(BLOB).hexdigest()))
    (tmp_path / "other.json").write_bytes(_dsse_bundle(key, "0" * 64))
    theirs, ours = both_verify(cosign, labkit, "--key", "k.pub", "--bundle", "good.json", "--insecure-ignore-tlog",
                               "blob")
    assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
    assert_same_failure(*both_verify(cosign, labkit, "--key", "k.pub", "--bundle", "other.json",
                                     "--insecure-ignore-tlog", "blob"))


def _import_key(tmp_path: Path, cosign: Cosign, name: str, private_key) -> None:
    from cryptography.hazmat.primitives import serialization

    (tmp_path / f"{name}.pem").write_bytes(private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    proc = cosign.run("import-key-pair", "--key", f"{name}.pem", "--output-key-prefix", name)
    assert proc.returncode == 0, proc.stderr


def test_p384_bundles_need_the_digest_flag_in_both(cosign: Cosign, labkit, tmp_path: Path) -> None:
    """cosign v3.1.3 signs a P-384 bundle with SHA-384 but verifies it as SHA-256 unless told."""
    from cryptography.hazmat.primitives.asymmetric import ec

    _import_key(tmp_path, cosign, "p384", ec.generate_private_key(ec.SECP384R1()))
    (tmp_path / "blob").write_bytes(BLOB)
    signed = cosign.run("sign-blob", "--key", "p384.key", "--bundle", "c.json", *COSIGN_SIGN_FLAGS, "blob")
    assert signed.returncode == 0, signed.stderr
    assert labkit("sign-blob", "--key", "p384.key", "--bundle", "l.json", "blob")[0] == 0
    for bundle in ("c.json", "l.json"):
        argv = ("--key", "p384.pub", "--bundle", bundle, "--insecure-ignore-tlog")
        assert_same_failure(*both_verify(cosign, labkit, *argv, "blob"))
        theirs, ours = both_verify(cosign, labkit, *argv, "--signature-digest-algorithm", "sha384", "blob")
        assert theirs.returncode == 0 and ours[0] == 0, (bundle, theirs.stderr, ours[2])


def test_rsa_and_ed25519_bundles(cosign: Cosign, labkit, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    _import_key(tmp_path, cosign, "rsa", rsa.generate_private_key(65537, 2048))
    _import_key(tmp_path, cosign, "ed", ed25519.Ed25519PrivateKey.generate())
    (tmp_path / "blob").write_bytes(BLOB)
    for name in ("rsa", "ed"):
        assert labkit("sign-blob", "--key", f"{name}.key", "--bundle", f"l-{name}.json", "blob")[0] == 0
        theirs = cosign.run("verify-blob", "--key", f"{name}.pub", "--bundle", f"l-{name}.json",
                            "--insecure-ignore-tlog", "blob")
        assert theirs.returncode == 0, (name, theirs.stderr)
        assert cosign.run("sign-blob", "--key", f"{name}.key", "--bundle", f"c-{name}.json", *COSIGN_SIGN_FLAGS,
                          "blob").returncode == 0
        theirs, ours = both_verify(cosign, labkit, "--key", f"{name}.pub", "--bundle", f"c-{name}.json",
                                   "--insecure-ignore-tlog", "blob")
        if name == "rsa":
            assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
        else:  # cosign v3.1.3 leaves an Ed25519 bundle's messageDigest empty and then refuses its own bundle
            assert_same_failure(theirs, ours)


@pytest.mark.parametrize("case", [
    "invalid-ct-key_fail", "wrong-material_fail", "rekor2-timestamp-payload-mismatch_fail",
    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail", "managed-key-happy-path",
])
def test_conformance_failures_in_cosigns_words(cosign: Cosign, labkit, case: str) -> None:
    """Where cosign and sigstore-python fail a conformance case for the same reason, labkit says what
    cosign says (cosign's line may go on with detail labkit does not have)."""
    path = CASES / case
    root = path / "trusted_root.json" if (path / "trusted_root.json").is_file() else PRODUCTION_ROOT
    argv = ["--bundle", str(path / "bundle.sigstore.json"), "--trusted-root", str(root)]
    argv += (["--key", str(path / "key.pub")] if (path / "key.pub").is_file()
             else ["--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER])
    artifact = path / "artifact" if (path / "artifact").is_file() else CASES / "a.txt"
    theirs, ours = both_verify(cosign, labkit, *argv, str(artifact))
    if case.endswith("_fail"):
        assert theirs.returncode == 1 and ours[0] == 1, (theirs.stderr, ours[2])
        assert error(theirs.stderr).startswith(error(ours[2])), (theirs.stderr, ours[2])
    else:
        assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])


def test_keyless_bundles_from_the_labs_sigstore(local_sigstore: Path, labkit, tmp_path: Path) -> None:
    """cosign v3.1.3 signs a blob keyless against the lab's own Sigstore (its first entries have log
    index 0, which protobuf's JSON leaves out); labkit and cosign verify the bundle offline against
    the lab's trusted_root.json, and refuse another identity in the same words."""
    from tests.interop.test_keyless_cosign import ALICE, RecordingProxy, env_for, sigstore

    lab, cosign = sigstore(local_sigstore), Cosign(reference_tool(COSIGN_V3), tmp_path)
    recorder = RecordingProxy()
    try:
        env, trust = env_for(lab, recorder), lab.env()
        (tmp_path / "blob").write_bytes(BLOB)
        for name in ("first", "second"):
            signed = cosign.run("sign-blob", "-y", "--signing-config", trust["LABKIT_SIGNING_CONFIG"],
                                "--trusted-root", trust["LABKIT_TRUSTED_ROOT"], "--identity-token", lab.token(ALICE),
                                "--bundle", f"{name}.json", "blob", env_extra=env)
            assert signed.returncode == 0, signed.stderr
            common = ("--bundle", f"{name}.json", "--trusted-root", trust["LABKIT_TRUSTED_ROOT"])
            for identity, ok in ((ALICE, True), ("bob@example.com", False)):
                argv = (*common, "--certificate-identity", identity, "--certificate-oidc-issuer",
                        lab.urls.oidc_issuer, "blob")
                theirs = cosign.run("verify-blob", *argv, env_extra=env)
                ours = labkit("verify-blob", *argv)
                if ok:
                    assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
                else:
                    assert theirs.returncode == 1 and ours[0] == 1, (theirs.stderr, ours[2])
                    assert same_words(ours[2], theirs.stderr), (theirs.stderr, ours[2])
    finally:
        recorder.close()
    assert recorder.seen == [], f"cosign tried to reach beyond the machine: {recorder.seen}"


def test_use_signed_timestamps(cosign: Cosign, labkit, tmp_path: Path) -> None:
    """The conformance suite's managed-key bundle carries one RFC 3161 timestamp: both tools accept it
    with --use-signed-timestamps, and refuse the bundle with that timestamp corrupted or removed
    (which both accept without the flag: cosign checks a key bundle's timestamps only when asked)."""
    case = CASES / "managed-key-happy-path"
    good = json.loads((case / "bundle.sigstore.json").read_bytes())
    stamps = good["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    raw = bytearray(base64.b64decode(stamps[0]["signedTimestamp"]))
    raw[-10] ^= 0xFF  # inside the TSA's signature
    corrupted = json.loads(json.dumps(good))
    corrupted["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"][0]["signedTimestamp"] = \
        base64.b64encode(bytes(raw)).decode()
    removed = json.loads(json.dumps(good))
    del removed["verificationMaterial"]["timestampVerificationData"]
    for name, bundle in (("good", good), ("corrupted", corrupted), ("removed", removed)):
        (tmp_path / f"{name}.json").write_text(json.dumps(bundle))
    argv = ("--key", str(case / "key.pub"), "--trusted-root", str(PRODUCTION_ROOT))
    artifact = str(CASES / "a.txt")
    for name in ("good", "corrupted", "removed"):
        theirs, ours = both_verify(cosign, labkit, *argv, "--bundle", f"{name}.json", artifact)
        assert theirs.returncode == 0 and ours[0] == 0, (name, theirs.stderr, ours[2])
        theirs, ours = both_verify(cosign, labkit, *argv, "--bundle", f"{name}.json", "--use-signed-timestamps",
                                   artifact)
        if name == "good":
            assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
        else:
            assert theirs.returncode == 1 and ours[0] == 1, (name, theirs.stderr, ours[2])
            assert error(theirs.stderr).startswith(error(ours[2])), (theirs.stderr, ours[2])


def test_use_signed_timestamps_keyless(cosign: Cosign, labkit) -> None:
    """A Rekor v1 bundle has no TSA timestamp, a Rekor v2 one has one: only the second passes."""
    identity = ("--certificate-identity", IDENTITY, "--certificate-oidc-issuer", ISSUER, "--use-signed-timestamps")
    v1 = ("--bundle", str(CASES / "happy-path-v0.3" / "bundle.sigstore.json"), "--trusted-root", str(PRODUCTION_ROOT))
    v2 = ("--bundle", str(CASES / "rekor2-happy-path" / "bundle.sigstore.json"),
          "--trusted-root", str(CASES / "rekor2-happy-path" / "trusted_root.json"))
    theirs, ours = both_verify(cosign, labkit, *v1, *identity, str(CASES / "a.txt"))
    assert theirs.returncode == 1 and ours[0] == 1, (theirs.stderr, ours[2])
    assert error(theirs.stderr).startswith(error(ours[2])), (theirs.stderr, ours[2])
    theirs, ours = both_verify(cosign, labkit, *v2, *identity, str(CASES / "a.txt"))
    assert theirs.returncode == 0 and ours[0] == 0, (theirs.stderr, ours[2])
