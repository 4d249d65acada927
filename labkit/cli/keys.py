"""``labkit generate-key-pair``, ``import-key-pair`` and ``public-key``: cosign's verbs and wording."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.errors import KeyExistsError, KeyFileError

if TYPE_CHECKING:
    from labkit import keys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gen = subparsers.add_parser(
        "generate-key-pair",
        help="generate an ECDSA P-256 key pair (cosign.key, cosign.pub)",
        description="Generate a cosign-compatible key pair. The private key is encrypted with the "
        "password from COSIGN_PASSWORD (empty is allowed), else a prompt, else stdin.",
    )
    gen.add_argument("--output-key-prefix", default="cosign", metavar="PREFIX",
                     help="write PREFIX.key and PREFIX.pub (default: cosign)")
    gen.add_argument("-f", "--force", action="store_true",
                     help="overwrite an existing PREFIX.key without asking")
    gen.set_defaults(func=_generate)

    imp = subparsers.add_parser(
        "import-key-pair",
        help="import an unencrypted PEM private key as a cosign key pair",
        description="Import the first PEM block of KEY (EC PRIVATE KEY, RSA PRIVATE KEY or PRIVATE "
        "KEY; RSA 2048/3072/4096, ECDSA P-256/P-384/P-521, Ed25519) as PREFIX.key/PREFIX.pub.",
    )
    imp.add_argument("-k", "--key", required=True, help="the PEM private key to import")
    imp.add_argument("-o", "--output-key-prefix", default="import-cosign", metavar="PREFIX",
                     help="write PREFIX.key and PREFIX.pub (default: import-cosign)")
    imp.add_argument("-y", "--yes", action="store_true",
                     help="overwrite an existing PREFIX.key without asking")
    imp.set_defaults(func=_import)

    pub = subparsers.add_parser(
        "public-key",
        help="print the public key of a private key file",
        description="Print the PEM public key of a cosign/labkit private key.",
    )
    pub.add_argument("--key", required=True, help="the private key file")
    pub.add_argument("--outfile", help="write the public key to this file instead of stdout")
    pub.set_defaults(func=_public_key)


def confirm_overwrite(path: Path, *, assume_yes: bool, flag: str) -> bool:
    """cosign's overwrite dialogue; True means go ahead (also when nothing is there).

    Like cosign, only a file there counts: a directory is refused when the pair is written.
    """
    if not path.exists() or path.is_dir():
        return False
    print(f"WARNING: File {path} already exists. Overwrite?", file=sys.stderr)
    if assume_yes:
        return True
    print("Are you sure you would like to continue? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip("\r\n")
    if answer.lower() == "y":
        return True
    # What a learner needs before saying yes: a new key orphans everything the old one signed.
    kept = (f"{path} was left untouched. A new key would leave every signature made with this one "
            f"unverifiable with the new public key, and policies holding the old public key would deny "
            f"what you sign next; to replace it on purpose, pass {flag}")
    if answer.lower() in ("", "n"):
        raise KeyExistsError("user declined the prompt", hint=kept)
    raise KeyExistsError(f'invalid input "{answer}" (allowed values y, n)', hint=kept)


def _report(paths: keys.KeyPairPaths) -> int:
    print(f"Private key written to {paths.private_key}", file=sys.stderr)
    print(f"Public key written to {paths.public_key}", file=sys.stderr)
    return 0


def _generate(args: argparse.Namespace) -> int:
    from labkit import keys  # imported per verb: cryptography is slow to load
    from labkit.cli.passwords import read_password

    force = confirm_overwrite(Path(args.output_key_prefix + ".key"), assume_yes=args.force, flag="--force")
    password = read_password(confirm=True)
    return _report(keys.generate_key_pair(args.output_key_prefix, password, force=force))


def _import(args: argparse.Namespace) -> int:
    from labkit import keys  # imported per verb: cryptography is slow to load
    from labkit.cli.passwords import read_password

    # Refuse a bad input before asking anything, as cosign does.
    key = keys.load_importable_key(args.key)
    force = confirm_overwrite(Path(args.output_key_prefix + ".key"), assume_yes=args.yes, flag="--yes")
    password = read_password(confirm=True)
    return _report(keys.write_key_pair(args.output_key_prefix, key, password, force=force))


def _public_key(args: argparse.Namespace) -> int:
    from labkit import keys  # imported per verb: cryptography is slow to load
    from labkit.cli.passwords import read_password

    key = keys.load_private_key(args.key, read_password(confirm=False))
    pem = keys.public_key_pem(key)
    if args.outfile:
        try:
            Path(args.outfile).write_text(pem)
        except OSError as exc:
            # Go's wording, as cosign prints it: "open out.pub: is a directory"
            reason = (exc.strerror or str(exc)).lower()
            raise KeyFileError(f"open {args.outfile}: {reason}", hint="choose another --outfile") from None
        print(f"Public key written to {args.outfile}", file=sys.stderr)
    else:
        sys.stdout.write(pem)
    return 0
