"""The local Sigstore's keys and trust documents, made once per lab home and kept across ``down``/``up``.

A Fulcio root CA (a file CA: encrypted PKCS#8 key, ``CA:TRUE`` with the codeSigning usage Fulcio
checks), a CT log key and a Rekor key (both P-256, SEC1, as TesseraCT and Rekor read them), and
from their public halves the documents clients read: a Sigstore ``trusted_root.json`` (what cosign
``--trusted-root``, sigstore-python and the engines trust), a ``signing_config.json`` v0.2 (the
services' URLs, for cosign v3 and sigstore-python) and the two joined as a ClientTrustConfig.
Their formats are the protobuf-specs' JSON (``dev.sigstore.trustroot.v1``); docs/keyless.md shows them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit._internal.files import write_atomic
from labkit.signing.keyless_trust import TRUSTED_ROOT_MEDIA_TYPE, certificate_authority, log_instance

SIGNING_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.signingconfig.v0.2+json"
CLIENT_TRUST_CONFIG_MEDIA_TYPE = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json"
CA_VALIDITY = dt.timedelta(days=3650)  # a lab's CA outlives any workshop; it never leaves the machine
ORGANIZATION = "labkit local Sigstore"
CA_NAME = "labkit Fulcio root"
OPERATOR = "labkit.local"


def _private(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class TrustFiles:
    """Where one lab's Sigstore keys and trust documents live (``$LABKIT_HOME/sigstore/trust``)."""

    root: Path

    @property
    def fulcio_cert(self) -> Path:
        return self.root / "fulcio-root.pem"

    @property
    def fulcio_key(self) -> Path:  # encrypted PKCS#8, 0600
        return self.root / "fulcio-root.key"

    @property
    def fulcio_password(self) -> Path:  # 0600; Fulcio reads it from its config file, never argv
        return self.root / "fulcio-root.password"

    @property
    def ct_key(self) -> Path:
        return self.root / "ctlog.key"

    @property
    def ct_pub(self) -> Path:
        return self.root / "ctlog.pub"

    @property
    def rekor_key(self) -> Path:
        return self.root / "rekor.key"

    @property
    def rekor_pub(self) -> Path:
        return self.root / "rekor.pub"

    @property
    def trusted_root(self) -> Path:
        return self.root / "trusted_root.json"

    @property
    def signing_config(self) -> Path:
        return self.root / "signing_config.json"

    @property
    def client_trust_config(self) -> Path:
        return self.root / "trust_config.json"

    def ensure_keys(self) -> None:
        """Make the keys and the CA that are missing; existing ones are kept (signatures made
        before a restart stay verifiable)."""
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        if not self.fulcio_cert.exists() or not self.fulcio_key.exists():
            password = secrets.token_urlsafe(24)
            key = _ec_key()
            _private(self.fulcio_password, password.encode())
            _private(self.fulcio_key, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password.encode())))
            write_atomic(self.fulcio_cert, fulcio_root_certificate(key).public_bytes(serialization.Encoding.PEM))
        for private, public in ((self.ct_key, self.ct_pub), (self.rekor_key, self.rekor_pub)):
            if not private.exists():
                key = _ec_key()
                _private(private, key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                                    serialization.NoEncryption()))
            loaded = serialization.load_pem_private_key(private.read_bytes(), None)
            assert isinstance(loaded, ec.EllipticCurvePrivateKey)  # written above as P-256
            write_atomic(public, _pem(loaded.public_key()))

    def write_documents(self, urls: SigstoreURLs) -> None:
        """Write ``trusted_root.json``, ``signing_config.json`` and ``trust_config.json`` for ``urls``."""
        root = trusted_root(self, urls)
        config = signing_config(urls)
        write_atomic(self.trusted_root, (json.dumps(root, indent=2) + "\n").encode())
        write_atomic(self.signing_config, (json.dumps(config, indent=2) + "\n").encode())
        both = {"mediaType": CLIENT_TRUST_CONFIG_MEDIA_TYPE, "trustedRoot": root, "signingConfig": config}
        write_atomic(self.client_trust_config, (json.dumps(both, indent=2) + "\n").encode())

    def public_key(self, path: Path) -> ec.EllipticCurvePublicKey:
        key = serialization.load_pem_public_key(path.read_bytes())
        assert isinstance(key, ec.EllipticCurvePublicKey)  # written by ensure_keys
        return key

    def not_before(self) -> dt.datetime:
        """When the trust began: the CA's notBefore (a log's key is valid from the same moment)."""
        return x509.load_pem_x509_certificate(self.fulcio_cert.read_bytes()).not_valid_before_utc


@dataclass(frozen=True)
class SigstoreURLs:
    """The services' base URLs, all on loopback."""

    oidc_issuer: str
    fulcio: str
    rekor: str
    ctlog: str


def fulcio_root_certificate(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    """A self-signed root Fulcio accepts as a file CA: ``CA:TRUE``, certificate signing, and the
    codeSigning extended usage (Fulcio refuses a root without it)."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                      x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=5)  # clock skew
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def trusted_root(files: TrustFiles, urls: SigstoreURLs) -> dict[str, Any]:
    """The lab's ``trusted_root.json``: its Fulcio CA, its Rekor and its CT log, trusted from the
    CA's notBefore on."""
    start = files.not_before().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ca = x509.load_pem_x509_certificate(files.fulcio_cert.read_bytes())
    return {
        "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
        "tlogs": [log_instance(files.public_key(files.rekor_pub), url=urls.rekor, start=start)],
        "certificateAuthorities": [certificate_authority([ca], url=urls.fulcio, organization=ORGANIZATION,
                                                         common_name=CA_NAME, start=start)],
        "ctlogs": [log_instance(files.public_key(files.ct_pub), url=urls.ctlog, start=start)],
        "timestampAuthorities": [],
    }


def signing_config(urls: SigstoreURLs) -> dict[str, Any]:
    """The lab's ``signing_config.json`` (v0.2): where to get a certificate, a token and a log entry."""
    start = {"start": "2020-01-01T00:00:00Z"}  # any time before now: the services have no history
    return {
        "mediaType": SIGNING_CONFIG_MEDIA_TYPE,
        "caUrls": [{"url": urls.fulcio, "majorApiVersion": 1, "validFor": start, "operator": OPERATOR}],
        "oidcUrls": [{"url": urls.oidc_issuer, "majorApiVersion": 1, "validFor": start, "operator": OPERATOR}],
        "rekorTlogUrls": [{"url": urls.rekor, "majorApiVersion": 1, "validFor": start, "operator": OPERATOR}],
        "tsaUrls": [],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaConfig": {"selector": "ANY"},
    }
