"""New key pairs and key pair files: ``PREFIX.key`` (encrypted, 0600) and ``PREFIX.pub`` (0644)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from labkit._internal.files import stage_file
from labkit.errors import KeyExistsError, KeyFileError
from labkit.keys.encryption import encrypt_private_key
from labkit.keys.formats import PrivateKey, public_key_pem


@dataclass(frozen=True)
class KeyPairPaths:
    """Where a key pair was written: ``PREFIX.key`` (0600) and ``PREFIX.pub`` (0644)."""

    private_key: Path
    public_key: Path


def write_key_pair(
    prefix: str | Path, key: PrivateKey, password: bytes, *, force: bool = False
) -> KeyPairPaths:
    """Write ``PREFIX.key`` (encrypted, 0600) and ``PREFIX.pub`` (0644); refuse to replace a key."""
    prefix = str(prefix)
    paths = KeyPairPaths(Path(prefix + ".key"), Path(prefix + ".pub"))
    # Refuse before writing anything: cosign would write the .key and then fail on the .pub.
    for path in (paths.private_key, paths.public_key):
        if path.is_dir():
            raise KeyFileError(
                f"open {path}: is a directory",
                hint="choose another --output-key-prefix, or move the directory away",
            )
    # cosign only guards the .key file; the .pub follows it.
    if paths.private_key.exists() and not force:
        raise KeyExistsError(
            f"refusing to overwrite existing key file {paths.private_key}",
            hint="pass --force (API: force=True) or choose another --output-key-prefix",
        )
    private_pem = encrypt_private_key(key, password)
    public_pem = public_key_pem(key).encode()
    # Write both to temporary files first so a failure leaves any existing pair untouched.
    private_tmp = _stage(paths.private_key, private_pem, 0o600)
    try:
        public_tmp = _stage(paths.public_key, public_pem, 0o644)
    except BaseException:
        private_tmp.unlink(missing_ok=True)  # leave no stray copy of the private key
        raise
    try:
        os.replace(private_tmp, paths.private_key)
        os.replace(public_tmp, paths.public_key)
    except OSError as exc:  # the targets changed since the checks above
        private_tmp.unlink(missing_ok=True)
        public_tmp.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write the key pair {prefix}.key/.pub: {exc.strerror}") from None
    return paths


def _stage(final: Path, data: bytes, mode: int) -> Path:
    try:
        return stage_file(final, data, mode=mode)
    except FileNotFoundError:
        raise KeyFileError(f"cannot write {final}: directory {final.parent} does not exist") from None
    except PermissionError:
        raise KeyFileError(f"cannot write {final}: permission denied") from None
    except OSError as exc:  # a full disk, a read-only file system, a name too long…
        raise KeyFileError(f"cannot write {final}: {exc.strerror or exc}") from None


def generate_key_pair(
    prefix: str | Path = "cosign", password: bytes = b"", *, force: bool = False
) -> KeyPairPaths:
    """A new ECDSA P-256 pair, as ``cosign generate-key-pair`` makes (empty passwords are legal)."""
    return write_key_pair(prefix, ec.generate_private_key(ec.SECP256R1()), password, force=force)
