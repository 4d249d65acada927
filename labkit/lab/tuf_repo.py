"""The lab's TUF repository: one target, the lab's ``trusted_root.json``, for the engines that
take their Sigstore trust only through TUF.

Kyverno's ImageValidatingPolicy initialises a TUF client for every keyless attestor, even one
with an inline ``trustedRoot`` (kyverno v1.19.1 pkg/image/verifiers/ivpol/cosign/opts.go,
``initTUFAndFetch``), and reads ``trusted_root.json`` through sigstore-go's client, which needs an
HTTP mirror. With no Rekor, CT or Fulcio targets of their own, it falls back to the keys in
``trusted_root.json`` (same file), so that one target is all the repository holds.

Layout (TUF spec, consistent snapshots, as go-tuf v0.7 and v2 fetch it): ``1.root.json`` (and
``root.json``), ``timestamp.json``, ``N.snapshot.json``, ``N.targets.json``,
``targets/<sha256>.trusted_root.json``. One Ed25519 key signs every role; it and the root stay
across restarts (``keys/``), while targets, snapshot and timestamp are signed again at each
``write`` with a version from the clock, so a client's cache never sees a rollback.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

# both libraries' documented import paths re-export these without __all__
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    TOP_LEVEL_ROLE_NAMES,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from labkit._internal.files import write_atomic

TARGET = "trusted_root.json"
ROOT_VALIDITY = dt.timedelta(days=3650)  # as the lab's CA
# expired metadata fails verification (keyless-offline.md, Risks): a year, renewed at every start
METADATA_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class TufRepository:
    """A TUF repository on disk (``$LABKIT_HOME/sigstore/tuf``): ``repository/`` is what is served."""

    root: Path

    @property
    def served(self) -> Path:
        return self.root / "repository"

    @property
    def key(self) -> Path:  # Ed25519, PKCS#8, 0600
        return self.root / "keys" / "tuf.key"

    @property
    def root_json(self) -> Path:
        """The trust anchor a client starts from (Kyverno's ``tuf.root``)."""
        return self.served / "1.root.json"

    def root_base64(self) -> str:
        """``1.root.json`` as Kyverno's attestor takes it inline (``tuf.root.data``)."""
        return base64.b64encode(self.root_json.read_bytes()).decode()

    def write(self, trusted_root: Path) -> None:
        """Sign ``trusted_root`` into the repository: the root once, the other roles every time."""
        signer = self._signer()
        self.served.mkdir(parents=True, exist_ok=True)
        (self.served / "targets").mkdir(exist_ok=True)
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        if not self.root_json.exists():
            root = Root(version=1, expires=now + ROOT_VALIDITY, consistent_snapshot=True)
            for role in TOP_LEVEL_ROLE_NAMES:
                root.add_key(signer.public_key, role)
            self._save(Metadata(root), signer, self.root_json)
            self._save(Metadata(root), signer, self.served / "root.json")
        version = max(int(time.time()), self._current_version() + 1)
        data = trusted_root.read_bytes()
        target = TargetFile.from_data(TARGET, data, ["sha256"])
        write_atomic(self.served / "targets" / f"{target.hashes['sha256']}.{TARGET}", data)
        expires = now + METADATA_VALIDITY
        self._save(Metadata(Targets(version=version, expires=expires, targets={TARGET: target})), signer,
                   self.served / f"{version}.targets.json")
        self._save(Metadata(Snapshot(version=version, expires=expires, meta={"targets.json": MetaFile(version)})),
                   signer, self.served / f"{version}.snapshot.json")
        self._save(Metadata(Timestamp(version=version, expires=expires, snapshot_meta=MetaFile(version))), signer,
                   self.served / "timestamp.json")
        # what the new timestamp no longer reaches
        keep = {f"{version}.targets.json", f"{version}.snapshot.json", f"{target.hashes['sha256']}.{TARGET}"}
        for stale in [*self.served.glob("*.targets.json"), *self.served.glob("*.snapshot.json"),
                      *(self.served / "targets").iterdir()]:
            if stale.name not in keep:
                stale.unlink()

    def _current_version(self) -> int:
        path = self.served / "timestamp.json"
        if not path.exists():
            return 0
        return Metadata[Timestamp].from_file(str(path)).signed.version

    def _signer(self) -> CryptoSigner:
        if not self.key.exists():
            self.key.parent.mkdir(parents=True, exist_ok=True)
            self.key.parent.chmod(0o700)
            write_atomic(self.key, ed25519.Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
                mode=0o600)
        private = serialization.load_pem_private_key(self.key.read_bytes(), None)
        assert isinstance(private, ed25519.Ed25519PrivateKey)  # written above
        return CryptoSigner(private)

    @staticmethod
    def _save(metadata: Metadata, signer: CryptoSigner, path: Path) -> None:  # type: ignore[type-arg]
        metadata.sign(signer)
        write_atomic(path, metadata.to_bytes(JSONSerializer(compact=False)))
