"""TLS material for the webhook: a labkit CA and a serving certificate it signs.

The API server only calls webhooks over HTTPS and checks the serving certificate against the
``caBundle`` of the webhook configuration, so the lab makes its own small CA once and keeps it
under ``$LABKIT_HOME/admission/``. Restarts reuse it (the caBundle a learner pasted stays
valid); the serving certificate is re-issued only when it no longer covers the names asked for
or is about to expire.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labkit._internal.files import write_atomic
from labkit.errors import LabError

DEFAULT_DNS_NAME = "labkit-admission.labkit.svc"
_LOOPBACK_NAMES = ("localhost",)
_LOOPBACK_IPS = ("127.0.0.1",)
_CA_DAYS = 3650
_CERT_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=30)


def default_home() -> Path:
    """``$LABKIT_HOME/admission``, ``LABKIT_HOME`` defaulting to ``~/.labkit``."""
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit") / "admission"


@dataclass(frozen=True)
class TLSMaterial:
    """Paths of the CA and serving pair, and the CA in the forms a configuration needs."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.read_text(encoding="ascii")

    @property
    def ca_bundle(self) -> str:
        """base64 of the CA PEM: the ``caBundle`` field of a webhook configuration."""
        return base64.b64encode(self.ca_cert.read_bytes()).decode()


def ensure_tls(directory: Path | str | None = None, dns_names: Sequence[str] = (DEFAULT_DNS_NAME,)) -> TLSMaterial:
    """Create the CA and serving certificate under ``directory`` if needed; reuse them otherwise."""
    root = Path(directory) if directory is not None else default_home()
    material = TLSMaterial(root, root / "ca.pem", root / "ca-key.pem", root / "tls.crt", root / "tls.key")
    try:
        root.mkdir(parents=True, exist_ok=True)
        if material.ca_cert.is_file() and material.ca_key.is_file():
            ca_key = serialization.load_pem_private_key(material.ca_key.read_bytes(), password=None)
            ca_cert = x509.load_pem_x509_certificate(material.ca_cert.read_bytes())
        else:
            ca_key, ca_cert = _new_ca()
            write_atomic(material.ca_key, _key_pem(ca_key), mode=0o600)
            write_atomic(material.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        names = [*_LOOPBACK_NAMES, *(n for n in dns_names if n not in _LOOPBACK_NAMES)]
        if not _serving_cert_fits(material, ca_cert, names):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _new_serving_cert(key, ca_key, ca_cert, names)  # type: ignore[arg-type]
            write_atomic(material.key, _key_pem(key), mode=0o600)
            write_atomic(material.cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as exc:
        raise LabError(
            f"cannot prepare the webhook's TLS material in {root}: {exc.strerror}",
            hint="check that the directory is writable, or point LABKIT_HOME elsewhere",
        ) from exc
    except ValueError as exc:
        raise LabError(
            f"the webhook's TLS material in {root} is unreadable: {exc}",
            hint=f"delete {root} to have a new CA made (then update the caBundle you applied)",
        ) from exc
    return material


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labkit"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "labkit admission CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(_now() + datetime.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_serving_cert(
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    dns_names: Sequence[str],
) -> x509.Certificate:
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in _LOOPBACK_IPS]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[-1])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5))
        .not_valid_after(min(_now() + datetime.timedelta(days=_CERT_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_cert_sign=False,
                                     crl_sign=False, content_commitment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _serving_cert_fits(material: TLSMaterial, ca_cert: x509.Certificate, dns_names: Sequence[str]) -> bool:
    """The existing serving certificate is from this CA, names what we serve, and is not expiring."""
    if not (material.cert.is_file() and material.key.is_file()):
        return False
    cert = x509.load_pem_x509_certificate(material.cert.read_bytes())
    if cert.issuer != ca_cert.subject or cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have = set(san.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    return set(dns_names) <= have and set(_LOOPBACK_IPS) <= ips
