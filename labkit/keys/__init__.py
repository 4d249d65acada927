"""Cosign-compatible key pairs: generation, import, encrypted key files, public keys, raw signatures.

A labkit key file *is* a cosign key file: PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` whose body is the
JSON envelope of go-securesystemslib ``encrypted`` (scrypt KDF + NaCl secretbox) around PKCS#8 DER.
Signing follows sigstore's ``LoadDefaultSignerVerifier`` as cosign configures it: the hash follows
the key (P-256→SHA-256, P-384→SHA-384, P-521→SHA-512, RSA→PKCS#1 v1.5 SHA-256) and Ed25519 keys
sign Ed25519ph. Nothing here touches the network, and nothing here asks for a password: callers
pass the password bytes (the CLI reads them as cosign does, see ``labkit.cli.passwords``).

Modules: ``formats`` (PEM, public keys), ``encryption`` (the encrypted key file), ``generation``
(new pairs, pair files), ``importing`` (``import-key-pair``), ``signatures`` (sign, verify).
"""

from labkit.keys.encryption import (
    PASSWORD_ENV,
    decrypt_private_key,
    encrypt_private_key,
    load_private_key,
)
from labkit.keys.formats import (
    COSIGN_PRIVATE_KEY_PEM_TYPE,
    SIGSTORE_PRIVATE_KEY_PEM_TYPE,
    PemBlock,
    PrivateKey,
    PublicKey,
    load_public_key,
    pem_decode_first,
    pem_encode,
    public_key_pem,
)
from labkit.keys.generation import KeyPairPaths, generate_key_pair, write_key_pair
from labkit.keys.importing import import_key_pair, load_importable_key, parse_importable_key
from labkit.keys.signatures import sign_message, verify_message

__all__ = [
    "COSIGN_PRIVATE_KEY_PEM_TYPE",
    "PASSWORD_ENV",
    "SIGSTORE_PRIVATE_KEY_PEM_TYPE",
    "KeyPairPaths",
    "PemBlock",
    "PrivateKey",
    "PublicKey",
    "decrypt_private_key",
    "encrypt_private_key",
    "generate_key_pair",
    "import_key_pair",
    "load_importable_key",
    "load_private_key",
    "load_public_key",
    "parse_importable_key",
    "pem_decode_first",
    "pem_encode",
    "public_key_pem",
    "sign_message",
    "verify_message",
    "write_key_pair",
]
