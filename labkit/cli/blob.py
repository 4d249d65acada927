"""``labkit sign-blob`` and ``verify-blob``: cosign's key-based blob verbs, without a transparency log."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from labkit.cli._flags import bool_flag
from labkit.errors import KeyFileError, UsageError

_NO_TLOG = (
    "labkit never uploads to a transparency log (Rekor): signatures are verified against the key "
    "alone, as cosign does with --tlog-upload=false / --insecure-ignore-tlog."
)
_IGNORE_TLOG_WARNING = (
    "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and "
    "auditability verification for the blob."
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sign = subparsers.add_parser(
        "sign-blob",
        help="sign a file with a key; prints the base64 signature",
        description="Sign BLOB (or - for stdin) with a cosign/labkit key. " + _NO_TLOG,
    )
    sign.add_argument("--key", required=True, help="private key file")
    sign.add_argument("--output-signature", metavar="FILE",
                      help="write the base64 signature to FILE instead of stdout")
    bool_flag(sign, "tlog-upload", "accepted for cosign compatibility (=false); labkit never uploads")
    sign.add_argument("-y", "--yes", action="store_true", help="accepted for cosign compatibility")
    sign.add_argument("blob", metavar="BLOB")
    sign.set_defaults(func=_sign)

    verify = subparsers.add_parser(
        "verify-blob",
        help="verify a blob signature against a public key",
        description="Verify SIGNATURE over BLOB with a public key. " + _NO_TLOG
        + " Pass --insecure-ignore-tlog, as cosign requires for such signatures.",
    )
    verify.add_argument("--key", required=True, help="public key file (.pub)")
    verify.add_argument("--signature", required=True,
                        help="signature file, or the base64 signature itself")
    bool_flag(verify, "insecure-ignore-tlog", "verify without a transparency log (required)")
    verify.add_argument("--signature-digest-algorithm", default="sha256",
                        help="digest the signature was made over (ECDSA/RSA; default sha256)")
    verify.add_argument("blob", metavar="BLOB")
    verify.set_defaults(func=_verify)


def _read_blob(ref: str) -> bytes:
    if ref == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(ref).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read blob {ref}: {exc.strerror}", hint="check the path") from None


def _sign(args: argparse.Namespace) -> int:
    from labkit import keys
    from labkit.cli.passwords import read_password
    from labkit.signing.blob import sign_blob

    if args.tlog_upload is None:
        print(f"Note: {_NO_TLOG}", file=sys.stderr)
    private_key = keys.load_private_key(args.key, read_password(confirm=False))
    print(f"Using payload from: {args.blob}", file=sys.stderr)
    signature = sign_blob(private_key, _read_blob(args.blob))
    if args.output_signature:
        fd = os.open(args.output_signature, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signature)  # cosign writes no trailing newline
        print(f"Wrote signature to file {args.output_signature}", file=sys.stderr)
    else:
        print(signature)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from labkit import keys
    from labkit.signing.blob import read_signature, verify_blob

    if not args.insecure_ignore_tlog:
        raise UsageError(
            "labkit has no transparency log to check the signature against",
            hint="pass --insecure-ignore-tlog to verify against the key alone",
        )
    print(_IGNORE_TLOG_WARNING, file=sys.stderr)
    public_key = keys.load_public_key(args.key)
    verify_blob(
        public_key,
        _read_blob(args.blob),
        read_signature(args.signature),
        digest_algorithm=args.signature_digest_algorithm,
    )
    print("Verified OK", file=sys.stderr)
    return 0
