"""The trust material keyless signing and verification need: Fulcio CAs, Rekor and CT log keys.

cosign takes it from a Sigstore ``trusted_root.json`` (``--trusted-root``) or, in v2, from three
PEM files named by ``SIGSTORE_ROOT_FILE``, ``SIGSTORE_REKOR_PUBLIC_KEY`` and
``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``. Both become one sigstore-python ``TrustedRoot`` here (the PEM
files as a trusted root of their own, each log named by the SHA-256 of its key, as Rekor and CT
logs name themselves), so signing and verifying read one shape. labkit never falls back to the
public instance's TUF repository: without trust material it refuses and says where to get some.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from labkit.errors import UsageError, VerificationError

ROOT_FILE_ENV = "SIGSTORE_ROOT_FILE"
REKOR_KEY_ENV = "SIGSTORE_REKOR_PUBLIC_KEY"
CT_KEY_ENV = "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE"
TRUST_ENV = (ROOT_FILE_ENV, REKOR_KEY_ENV, CT_KEY_ENV)
_EPOCH = "1970-01-01T00:00:00Z"  # PEM files carry no validity: trusted from the beginning
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
TRUST_HINT = ("pass --trusted-root trusted_root.json, or set SIGSTORE_ROOT_FILE, SIGSTORE_REKOR_PUBLIC_KEY and "
              "SIGSTORE_CT_LOG_PUBLIC_KEY_FILE; in the lab: eval \"$(labkit lab env)\"")


@dataclass(frozen=True)
class KeylessTrust:
    """One Sigstore instance's keys and CAs. ``from_trusted_root`` says which cosign code path the
    wording follows: sigstore-go's (a trusted root) or cosign v2's own (the PEM files)."""

    root: Any  # sigstore.models.TrustedRoot
    source: str  # the file(s) it came from, for messages
    from_trusted_root: bool

    @classmethod
    def load(cls, path: str | Path) -> KeylessTrust:
        """A Sigstore ``trusted_root.json`` (what ``cosign trusted-root create`` writes)."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsageError(f"loading trusted root: open {path}: {exc.strerror}", hint="check the path") from None
        return cls(_parse_root(text, str(path)), str(path), True)

    @classmethod
    def from_pem_files(cls, root_file: str | Path, rekor_key: str | Path | None,
                       ct_key: str | Path | None) -> KeylessTrust:
        """cosign v2's variables: the Fulcio root (and intermediates) PEM, the Rekor and CT log keys."""
        names = ", ".join(str(p) for p in (root_file, rekor_key, ct_key) if p)
        return cls.from_pem(_read(root_file), _read(rekor_key) if rekor_key else None,
                            _read(ct_key) if ct_key else None, source=names)

    @classmethod
    def from_pem(cls, certificates: bytes, rekor_key: bytes | None, ct_key: bytes | None, *,
                 source: str = "the given PEM material") -> KeylessTrust:
        """The same from PEM bytes, as policies carry them inline (Kyverno's ``roots``, ``rekor.pubkey``
        and ``ctlog.pubkey``; policy-controller's TrustRoot); read with cosign v2's wording."""
        try:
            chain = x509.load_pem_x509_certificates(certificates)
        except ValueError as exc:
            raise UsageError(f"no PEM certificate in {source}: {exc}", hint=TRUST_HINT) from None
        document: dict[str, Any] = {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log_instance(_public_key(rekor_key))] if rekor_key else [],
            "certificateAuthorities": [certificate_authority([cert]) for cert in chain],
            "ctlogs": [log_instance(_public_key(ct_key))] if ct_key else [],
            "timestampAuthorities": [],
        }
        return cls(_parse_root(json.dumps(document), source), source, False)

    @classmethod
    def resolve(cls, trusted_root: str | Path | None, env: Mapping[str, str]) -> KeylessTrust:
        """cosign's order: ``--trusted-root`` first, then the ``SIGSTORE_*`` files; ``env`` is
        passed in (the CLI gives ``os.environ``) so library callers choose their own."""
        if trusted_root:
            return cls.load(trusted_root)
        if env.get(ROOT_FILE_ENV):
            return cls.from_pem_files(env[ROOT_FILE_ENV], env.get(REKOR_KEY_ENV) or None,
                                      env.get(CT_KEY_ENV) or None)
        raise UsageError("labkit has no trust material for keyless signatures (it never asks the public "
                         "Sigstore's TUF repository)", hint=TRUST_HINT)

    # --- what verification reads --------------------------------------------------------

    def ca_certificates(self) -> list[x509.Certificate]:
        """Every certificate of every Fulcio CA chain (roots and intermediates)."""
        return list(self.root.get_fulcio_certs())

    def rekor_keyring(self) -> Any:
        from sigstore._internal.trust import KeyringPurpose

        return self.root.rekor_keyring(KeyringPurpose.VERIFY)

    def ct_keyring(self) -> Any:
        from sigstore._internal.trust import KeyringPurpose

        return self.root.ct_keyring(KeyringPurpose.VERIFY)


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", hint=TRUST_HINT) from None


def _parse_root(text: str, source: str) -> Any:
    from pydantic import ValidationError
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TrustedRoot
    from sigstore_models.trustroot.v1 import TrustedRoot as TrustedRootModel

    try:
        return TrustedRoot(TrustedRootModel.from_json(text))
    except (ValidationError, SigstoreError, ValueError) as exc:
        first = " ".join(str(exc).split())[:300]
        raise VerificationError(f"loading trusted root: {source}: {first}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _public_key(pem: bytes) -> PublicKeyTypes:
    try:
        return load_pem_public_key(pem)
    except ValueError as exc:
        raise UsageError(f"not a PEM public key: {exc}", hint=TRUST_HINT) from None


def log_instance(key: PublicKeyTypes, *, url: str = "", start: str = _EPOCH) -> dict[str, Any]:
    """A trusted root's transparency log (``tlogs``/``ctlogs`` entry): its key, and its log ID, the
    SHA-256 of the key's DER (Rekor v1 and RFC 6962 CT logs both name themselves so)."""
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": _b64(der), "keyDetails": _key_details(key), "validFor": {"start": start}},
            "logId": {"keyId": _b64(hashlib.sha256(der).digest())}}


def _key_details(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return {"secp384r1": "PKIX_ECDSA_P384_SHA_384", "secp521r1": "PKIX_ECDSA_P521_SHA_512"}.get(
            key.curve.name, "PKIX_ECDSA_P256_SHA_256")
    if isinstance(key, rsa.RSAPublicKey):
        return "PKIX_RSA_PKCS1V15_2048_SHA256"
    return "PKIX_ED25519"


def certificate_authority(chain: Sequence[x509.Certificate], *, url: str = "", organization: str = "",
                          common_name: str = "", start: str = _EPOCH) -> dict[str, Any]:
    """A trusted root's Fulcio CA (``certificateAuthorities`` entry): its chain, leaf-most first."""
    return {"subject": {"organization": organization, "commonName": common_name}, "uri": url,
            "certChain": {"certificates": [{"rawBytes": _b64(c.public_bytes(Encoding.DER))} for c in chain]},
            "validFor": {"start": start}}


def signing_config_urls(path: str | Path) -> tuple[str, str]:
    """Fulcio's and Rekor's URLs from a Sigstore ``signing_config.json`` (v0.2): the first CA and
    the first Rekor v1 log it lists."""
    try:
        doc = json.loads(Path(path).read_text())
        fulcio = next(str(s["url"]) for s in doc["caUrls"])
        rekor = next(str(s["url"]) for s in doc["rekorTlogUrls"] if s.get("majorApiVersion", 1) == 1)
    except OSError as exc:
        raise UsageError(f"loading signing config: open {path}: {exc.strerror}", hint="check the path") from None
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise UsageError(f"loading signing config {path}: no Fulcio or Rekor v1 service ({exc})",
                         hint="pass --fulcio-url and --rekor-url instead") from None
    return fulcio, rekor
