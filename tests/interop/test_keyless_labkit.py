"""labkit signs and verifies images keyless, held to the real cosign both ways, on the lab's Sigstore.

Each direction: what labkit signs (cosign v2's legacy ``.sig`` layer, or cosign v3's bundle),
cosign v2.6.1 and v3.1.3 verify by identity; what cosign signs, ``labkit verify`` accepts. Each
failure is made once and judged by both tools in the same test, and labkit's error must be
cosign's, word for word: another identity, a lookalike issuer, a certificate that expired before
its Rekor entry, an expired certificate without a Rekor entry, a certificate without an SCT
(refused by default, accepted with ``--insecure-ignore-sct``), a tampered or missing Rekor
bundle, and another signature's Rekor bundle. The odd certificates are minted with the lab's own
CA key, so they chain to the lab's root exactly as Fulcio's do; their signatures are logged in the
lab's Rekor by labkit.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from labkit.lab.sigstore import LocalSigstore
from labkit.lab.state import LabHome
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.signing.artifact import BUNDLE_ANNOTATION, SignatureImage, SignatureLayer, attachment_ref
from labkit.signing.keyless import SigningCertificate, sign_image_keyless
from tests.conftest import COSIGN_V2_PIN, COSIGN_V3, reference_tool
from tests.interop.cosign import Cosign
from tests.interop.test_sign_cosign import push_image
from tests.peers import RunningRegistry

pytestmark = pytest.mark.interop

ALICE = "alice@example.com"
LABKIT = str(Path(sys.executable).parent / "labkit")


# --- helpers --------------------------------------------------------------------------------------


def lab_of(home: Path) -> LocalSigstore:
    found = LocalSigstore.find(LabHome(home))
    assert found is not None
    return found


def labkit(lab: LocalSigstore, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(cwd), **lab.env(),
           # a dead proxy: labkit must reach nothing beyond the machine (loopback is never proxied)
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    return subprocess.run([LABKIT, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120)


def labkit_error(proc: subprocess.CompletedProcess[str]) -> str:
    """labkit's message: the ``Error:`` line and the lines that continue it, up to the hint."""
    lines = proc.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    body = [lines[start].removeprefix("Error: ")]
    for line in lines[start + 1:]:
        if line.startswith("Hint: "):
            break
        body.append(line)
    return "\n".join(body)


def cosign_error(proc: subprocess.CompletedProcess[str]) -> str:
    """cosign's message: after ``Error: ``, up to Go's ``error during command execution`` log line."""
    lines = proc.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    body = [lines[start].removeprefix("Error: ")]
    for line in lines[start + 1:]:
        if "error during command execution" in line:
            break
        body.append(line)
    return "\n".join(body)


def identity_flags(lab: LocalSigstore, identity: str = ALICE, issuer: str | None = None) -> list[str]:
    return ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer or lab.urls.oidc_issuer]


def stderr_checks(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("Verification for", "The following", "  - "))]


@pytest.fixture
def image(labkit_registry: RunningRegistry, request: pytest.FixtureRequest) -> Reference:
    with RegistryClient() as client:
        return push_image(client, Reference.parse(f"{labkit_registry.host}/keyless-labkit/app:v1"),
                          request.node.nodeid.encode())


@pytest.fixture
def cosigns(tmp_path: Path) -> tuple[Cosign, Cosign]:
    return Cosign(reference_tool(COSIGN_V2_PIN), tmp_path), Cosign(reference_tool(COSIGN_V3), tmp_path)


def mint(lab: LocalSigstore, *, not_before: dt.datetime, not_after: dt.datetime,
         email: str = ALICE) -> SigningCertificate:
    """A certificate as Fulcio issues one (email SAN, issuer extensions, codeSigning), but from the
    test: signed by the lab's CA key, with the validity asked for and no SCT."""
    ca_key = serialization.load_pem_private_key(lab.trust.fulcio_key.read_bytes(),
                                                lab.trust.fulcio_password.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(lab.trust.fulcio_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = lab.urls.oidc_issuer.encode()
    utf8 = b"\x0c" + bytes([len(issuer)]) + issuer
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=True)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer),
                           critical=False)
            .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), utf8),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return SigningCertificate(key, cert, (ca,))


def sign_with(lab: LocalSigstore, image: Reference, signing: SigningCertificate, *, tlog: bool = True) -> None:
    with RegistryClient() as client:
        sign_image_keyless(image, signing, client=client, rekor_url=lab.urls.rekor if tlog else None)


def rewrite_layer(image: Reference, change: Callable[[dict[str, str]], None]) -> None:
    """Change the annotations of the image's (only) signature layer and push the .sig image back."""
    assert image.digest is not None
    with RegistryClient() as client:
        target = attachment_ref(image, image.digest)
        sig = SignatureImage.fetch(client, target, with_config=True)
        assert sig is not None and len(sig.layers) == 1
        annotations = dict(sig.layers[0].annotations)
        change(annotations)
        fresh = SignatureImage()
        fresh.append(SignatureLayer(sig.layers[0].payload, annotations))
        fresh.push(client, target)


def both_refuse(lab: LocalSigstore, cosign: Cosign, image: Reference, *extra: str,
                cosign_extra: tuple[str, ...] = ()) -> tuple[str, str]:
    """cosign (with the lab's SIGSTORE_* files) and labkit both refuse; their messages."""
    theirs = cosign.run("verify", *identity_flags(lab), *extra, *cosign_extra, str(image), env_extra=lab.env())
    ours = labkit(lab, "verify", *identity_flags(lab), *extra, str(image), cwd=cosign.cwd)
    assert theirs.returncode != 0, theirs.stderr
    assert ours.returncode == theirs.returncode, (ours.stderr, theirs.stderr)
    return labkit_error(ours), cosign_error(theirs)


# --- labkit signs, cosign verifies ----------------------------------------------------------------


def test_labkit_signs_legacy_keyless_and_both_cosigns_verify(local_sigstore: Path, image: Reference,
                                                             cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, v3) = lab_of(local_sigstore), cosigns
    signed = labkit(lab, "sign", "-y", "--fulcio-url", lab.urls.fulcio, "--rekor-url", lab.urls.rekor,
                    "--identity-token", lab.token(ALICE), str(image), cwd=v2.cwd)
    assert signed.returncode == 0, signed.stderr
    assert "tlog entry created with index: " in signed.stderr
    assert "eyJ" not in signed.stderr + signed.stdout  # the token is never printed

    with RegistryClient() as client:
        assert image.digest is not None
        manifest = client.get_manifest(attachment_ref(image, image.digest)).parsed()
    layer = manifest.layers[0]  # type: ignore[union-attr]
    assert sorted(layer.annotations or {}) == ["dev.cosignproject.cosign/signature", "dev.sigstore.cosign/bundle",
                                               "dev.sigstore.cosign/certificate", "dev.sigstore.cosign/chain"]

    by_v2 = v2.run("verify", *identity_flags(lab), str(image), env_extra=lab.env())
    assert by_v2.returncode == 0, by_v2.stderr
    by_v3 = v3.run("verify", *identity_flags(lab), "--trusted-root", str(lab.trust.trusted_root), str(image),
                   env_extra=lab.env())
    assert by_v3.returncode == 0, by_v3.stderr
    ours = labkit(lab, "verify", *identity_flags(lab), str(image), cwd=v2.cwd)
    assert ours.returncode == 0, ours.stderr
    # the same checks and the same JSON, byte for byte
    assert stderr_checks(ours.stderr) == stderr_checks(by_v2.stderr)
    assert ours.stdout == by_v2.stdout
    claims = json.loads(ours.stdout)[0]
    assert claims["optional"]["Subject"] == ALICE and claims["optional"]["Issuer"] == lab.urls.oidc_issuer
    # and the same refusal, in the same words, for another identity
    bob = identity_flags(lab, "bob@example.com")
    refused = [v2.run("verify", *bob, str(image), env_extra=lab.env()),
               v3.run("verify", *bob, "--trusted-root", str(lab.trust.trusted_root), str(image), env_extra=lab.env())]
    ours_refused = labkit(lab, "verify", *bob, str(image), cwd=v2.cwd)
    assert [p.returncode for p in refused] == [12, 12] and ours_refused.returncode == 12
    assert cosign_error(refused[0]) == cosign_error(refused[1]) == labkit_error(ours_refused)


def test_labkit_signs_a_v3_bundle_and_cosign_verifies_it(local_sigstore: Path, image: Reference,
                                                         cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, v3) = lab_of(local_sigstore), cosigns
    trust = lab.env()
    signed = labkit(lab, "sign", "-y", "--new-bundle-format", "--signing-config", trust["LABKIT_SIGNING_CONFIG"],
                    "--trusted-root", trust["LABKIT_TRUSTED_ROOT"], "--identity-token", lab.token(ALICE), str(image),
                    cwd=v3.cwd)
    assert signed.returncode == 0, signed.stderr
    root = ["--trusted-root", trust["LABKIT_TRUSTED_ROOT"]]
    by_v3 = v3.run("verify", *identity_flags(lab), *root, str(image), env_extra=lab.env())
    assert by_v3.returncode == 0, by_v3.stderr
    by_v2 = v2.run("verify", "--new-bundle-format", *identity_flags(lab), *root, str(image), env_extra=lab.env())
    assert by_v2.returncode == 0, by_v2.stderr
    ours = labkit(lab, "verify", *identity_flags(lab), *root, str(image), cwd=v3.cwd)
    assert ours.returncode == 0, ours.stderr
    assert stderr_checks(ours.stderr) == stderr_checks(by_v3.stderr)
    assert json.loads(ours.stdout) == json.loads(by_v3.stdout)
    other = v3.run("verify", *identity_flags(lab, "bob@example.com"), *root, str(image), env_extra=lab.env())
    assert other.returncode != 0


# --- cosign signs, labkit verifies ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["v2", "v3-legacy"])
def test_labkit_verifies_cosigns_legacy_keyless_signatures(local_sigstore: Path, image: Reference,
                                                           cosigns: tuple[Cosign, Cosign], which: str) -> None:
    lab, (v2, v3) = lab_of(local_sigstore), cosigns
    cosign = v2 if which == "v2" else v3
    legacy = ["--use-signing-config=false", "--new-bundle-format=false"] if cosign.is_v3 else []
    signed = cosign.run("sign", "-y", *legacy, "--fulcio-url", lab.urls.fulcio, "--rekor-url", lab.urls.rekor,
                        "--identity-token", lab.token(ALICE), str(image), env_extra=lab.env())
    assert signed.returncode == 0, signed.stderr
    by_cosign = v2.run("verify", *identity_flags(lab), str(image), env_extra=lab.env())
    assert by_cosign.returncode == 0, by_cosign.stderr
    from_env = labkit(lab, "verify", *identity_flags(lab), str(image), cwd=cosign.cwd)
    assert from_env.returncode == 0, from_env.stderr
    assert from_env.stdout == by_cosign.stdout
    from_root = labkit(lab, "verify", *identity_flags(lab), "--trusted-root", str(lab.trust.trusted_root),
                       str(image), cwd=cosign.cwd)
    assert from_root.returncode == 0, from_root.stderr
    regexp = labkit(lab, "verify", "--certificate-identity-regexp", "@example[.]com$",
                    "--certificate-oidc-issuer-regexp", "^http://127[.]0[.]0[.]1:", str(image), cwd=cosign.cwd)
    assert regexp.returncode == 0, regexp.stderr


def test_labkit_verifies_cosign_v3s_bundle(local_sigstore: Path, image: Reference,
                                           cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (_, v3) = lab_of(local_sigstore), cosigns
    trust = lab.env()
    root = ["--trusted-root", trust["LABKIT_TRUSTED_ROOT"]]
    signed = v3.run("sign", "-y", "--signing-config", trust["LABKIT_SIGNING_CONFIG"], *root,
                    "--identity-token", lab.token(ALICE), str(image), env_extra=lab.env())
    assert signed.returncode == 0, signed.stderr
    by_v3 = v3.run("verify", *identity_flags(lab), *root, str(image), env_extra=lab.env())
    ours = labkit(lab, "verify", *identity_flags(lab), *root, str(image), cwd=v3.cwd)
    assert ours.returncode == 0, ours.stderr
    assert json.loads(ours.stdout) == json.loads(by_v3.stdout)
    # the SIGSTORE_* files are trust enough for a bundle too
    assert labkit(lab, "verify", *identity_flags(lab), str(image), cwd=v3.cwd).returncode == 0
    for flags in (identity_flags(lab, "bob@example.com"), identity_flags(lab, ALICE, lab.urls.oidc_issuer + "/")):
        theirs = v3.run("verify", *flags, *root, str(image), env_extra=lab.env())
        ours = labkit(lab, "verify", *flags, *root, str(image), cwd=v3.cwd)
        assert theirs.returncode != 0 and ours.returncode != 0, (theirs.stderr, ours.stderr)


# --- failures, in cosign's words ------------------------------------------------------------------


@pytest.fixture
def cosign_signed(local_sigstore: Path, image: Reference, cosigns: tuple[Cosign, Cosign]) -> Reference:
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    signed = v2.run("sign", "-y", "--fulcio-url", lab.urls.fulcio, "--rekor-url", lab.urls.rekor,
                    "--identity-token", lab.token(ALICE), str(image), env_extra=lab.env())
    assert signed.returncode == 0, signed.stderr
    return image


def test_another_identity_and_a_lookalike_issuer(local_sigstore: Path, cosign_signed: Reference,
                                                 cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    for flags in (identity_flags(lab, "bob@example.com"), identity_flags(lab, ALICE, lab.urls.oidc_issuer + "/"),
                  ["--certificate-identity-regexp", "^bob@", "--certificate-oidc-issuer", lab.urls.oidc_issuer]):
        theirs = v2.run("verify", *flags, str(cosign_signed), env_extra=lab.env())
        ours = labkit(lab, "verify", *flags, str(cosign_signed), cwd=v2.cwd)
        assert theirs.returncode == ours.returncode == 12, (theirs.stderr, ours.stderr)
        assert labkit_error(ours) == cosign_error(theirs)
        assert "none of the expected identities matched" in labkit_error(ours)


def test_a_tampered_integrated_time_breaks_the_set(local_sigstore: Path, cosign_signed: Reference,
                                                   cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, _) = lab_of(local_sigstore), cosigns

    def later(annotations: dict[str, str]) -> None:
        bundle = json.loads(annotations[BUNDLE_ANNOTATION])
        bundle["Payload"]["integratedTime"] += 3600  # an hour later: after the certificate expired
        annotations[BUNDLE_ANNOTATION] = json.dumps(bundle)

    rewrite_layer(cosign_signed, later)
    ours, theirs = both_refuse(lab, v2, cosign_signed)
    assert ours == theirs == "no matching signatures: error verifying bundle: unable to verify SET"
    # given a trusted root, cosign v2.6.1 checks the SET through sigstore-go, and says so
    ours, theirs = both_refuse(lab, v2, cosign_signed, "--trusted-root", str(lab.trust.trusted_root))
    assert ours == theirs == ("no matching signatures: error verifying bundle: verifying bundle with trusted root: "
                              "unable to verify SET")


def test_another_signatures_rekor_bundle(local_sigstore: Path, cosign_signed: Reference,
                                         labkit_registry: RunningRegistry, cosigns: tuple[Cosign, Cosign]) -> None:
    """A valid SET, but for another signature: v2.6.1 with SIGSTORE_* files and labkit both compare
    the entry's body with the signature (GHSA-whqx-f9j3-ch6m is the trusted-root path of v2.6.1)."""
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    with RegistryClient() as client:
        other = push_image(client, Reference.parse(f"{labkit_registry.host}/keyless-labkit/other:v1"), b"other")
    signed = v2.run("sign", "-y", "--fulcio-url", lab.urls.fulcio, "--rekor-url", lab.urls.rekor,
                    "--identity-token", lab.token(ALICE), str(other), env_extra=lab.env())
    assert signed.returncode == 0, signed.stderr
    with RegistryClient() as client:
        assert other.digest is not None
        donor = SignatureImage.fetch(client, attachment_ref(other, other.digest))
    assert donor is not None
    donated = donor.layers[0].annotations[BUNDLE_ANNOTATION]
    rewrite_layer(cosign_signed, lambda a: a.update({BUNDLE_ANNOTATION: donated}))
    ours, theirs = both_refuse(lab, v2, cosign_signed)
    assert ours == theirs
    assert "signature in bundle does not match signature being verified" in ours


def test_a_missing_rekor_bundle(local_sigstore: Path, cosign_signed: Reference,
                                cosigns: tuple[Cosign, Cosign]) -> None:
    """Without its bundle cosign would look the entry up online; labkit never does, as cosign
    ``--offline``. With ``--insecure-ignore-tlog`` both accept the signature (the certificate is
    still within its ten minutes)."""
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    rewrite_layer(cosign_signed, lambda a: a.__delitem__(BUNDLE_ANNOTATION))
    ours, theirs = both_refuse(lab, v2, cosign_signed, cosign_extra=("--offline",))
    assert ours == theirs == "no matching signatures: offline verification failed"
    ignored = labkit(lab, "verify", *identity_flags(lab), "--insecure-ignore-tlog", str(cosign_signed), cwd=v2.cwd)
    by_cosign = v2.run("verify", *identity_flags(lab), "--insecure-ignore-tlog", str(cosign_signed),
                       env_extra=lab.env())
    assert ignored.returncode == by_cosign.returncode == 0, (ignored.stderr, by_cosign.stderr)
    assert stderr_checks(ignored.stderr) == stderr_checks(by_cosign.stderr)
    assert ignored.stdout == by_cosign.stdout


def test_a_certificate_that_expired_before_its_rekor_entry(local_sigstore: Path, image: Reference,
                                                           cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, v3) = lab_of(local_sigstore), cosigns
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    # within the lab CA's validity (it begins five minutes before the lab started), over before now
    sign_with(lab, image, mint(lab, not_before=now - dt.timedelta(minutes=4), not_after=now - dt.timedelta(minutes=2)))
    ours, theirs = both_refuse(lab, v2, image, "--insecure-ignore-sct")
    assert ours == theirs
    assert "certificate expired before signatures were entered in log" in ours
    by_v3 = v3.run("verify", *identity_flags(lab), "--insecure-ignore-sct", "--trusted-root",
                   str(lab.trust.trusted_root), str(image), env_extra=lab.env())
    assert by_v3.returncode != 0


def test_an_expired_certificate_without_a_rekor_entry(local_sigstore: Path, image: Reference,
                                                      cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sign_with(lab, image, mint(lab, not_before=now - dt.timedelta(minutes=4), not_after=now - dt.timedelta(minutes=2)),
              tlog=False)
    ours, theirs = both_refuse(lab, v2, image, "--insecure-ignore-sct", "--insecure-ignore-tlog")
    assert ours == theirs == "no matching signatures: expected a signed timestamp to verify an expired certificate"


def test_a_certificate_from_before_the_ca(local_sigstore: Path, image: Reference,
                                         cosigns: tuple[Cosign, Cosign]) -> None:
    """A certificate older than the lab's CA: Go's x509 refuses the chain at the certificate's
    notBefore, naming the root's validity; labkit says the same."""
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sign_with(lab, image, mint(lab, not_before=now - dt.timedelta(days=30), not_after=now + dt.timedelta(minutes=5)))
    ours, theirs = both_refuse(lab, v2, image, "--insecure-ignore-sct")
    assert ours == theirs
    assert "x509: certificate has expired or is not yet valid" in ours


def test_a_certificate_without_an_sct(local_sigstore: Path, image: Reference,
                                      cosigns: tuple[Cosign, Cosign]) -> None:
    lab, (v2, _) = lab_of(local_sigstore), cosigns
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    sign_with(lab, image, mint(lab, not_before=now - dt.timedelta(minutes=1), not_after=now + dt.timedelta(minutes=9)))
    ours, theirs = both_refuse(lab, v2, image)
    assert ours == theirs == ("no matching signatures: certificate does not include required embedded SCT and no "
                              "detached SCT was set")
    flags = [*identity_flags(lab), "--insecure-ignore-sct", str(image)]
    by_cosign = v2.run("verify", *flags, env_extra=lab.env())
    ignored = labkit(lab, "verify", *flags, cwd=v2.cwd)
    assert by_cosign.returncode == ignored.returncode == 0, (by_cosign.stderr, ignored.stderr)
    assert ignored.stdout == by_cosign.stdout


def test_labkit_signs_an_index_recursively_with_one_certificate(local_sigstore: Path, labkit_registry: RunningRegistry,
                                                                cosigns: tuple[Cosign, Cosign]) -> None:
    """``--recursive``: the index and each child get their own ``.sig`` layer and Rekor entry,
    all under the one certificate Fulcio issued for the command; cosign v2.6.1 verifies each."""
    from labkit.oci.model import OCI_INDEX, Descriptor, Index, Platform

    lab, (v2, _) = lab_of(local_sigstore), cosigns
    with RegistryClient() as client:
        repo = Reference.parse(f"{labkit_registry.host}/keyless-labkit/multi:v1")
        children = [push_image(client, repo.with_tag(arch), b"keyless " + arch.encode()) for arch in ("amd64", "arm64")]
        descriptors = []
        for child, arch in zip(children, ("amd64", "arm64"), strict=True):
            fetched = client.get_manifest(child)
            descriptors.append(Descriptor(fetched.media_type, fetched.digest, len(fetched.data),
                                          platform=Platform("linux", arch)))
        digest = client.put_manifest(repo, Index(manifests=tuple(descriptors), media_type=OCI_INDEX).to_json(),
                                     OCI_INDEX)
    signed = labkit(lab, "sign", "-y", "--recursive", "--fulcio-url", lab.urls.fulcio, "--rekor-url", lab.urls.rekor,
                    "--identity-token", lab.token(ALICE), str(repo.with_digest(digest)), cwd=v2.cwd)
    assert signed.returncode == 0, signed.stderr
    assert signed.stderr.count("tlog entry created with index: ") == 3
    certificates = set()
    with RegistryClient() as client:
        for ref in (repo.with_digest(digest), *children):
            assert ref.digest is not None
            sig = SignatureImage.fetch(client, attachment_ref(ref, ref.digest))
            assert sig is not None
            certificates.add(sig.layers[0].annotations["dev.sigstore.cosign/certificate"])
            verified = v2.run("verify", *identity_flags(lab), str(ref), env_extra=lab.env())
            assert verified.returncode == 0, verified.stderr
    assert len(certificates) == 1
