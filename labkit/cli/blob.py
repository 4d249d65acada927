"""``labkit sign-blob`` and ``verify-blob``: cosign's key-based blob verbs, without a transparency log;
with ``--bundle``, cosign v3's Sigstore bundles (keyless or key, verified offline)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.cli._flags import bool_flag
from labkit.errors import KeyFileError, UsageError

if TYPE_CHECKING:
    from labkit.keys import PrivateKey

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
    sign.add_argument("--bundle", metavar="FILE",
                      help="write a Sigstore bundle (v0.3: signature, key hint, no tlog entry) to FILE")
    bool_flag(sign, "new-bundle-format", "accepted for cosign compatibility: --bundle writes the new format")
    bool_flag(sign, "use-signing-config", "accepted for cosign compatibility (=false); labkit has no signing config")
    bool_flag(sign, "tlog-upload", "accepted for cosign compatibility (=false); labkit never uploads")
    sign.add_argument("-y", "--yes", action="store_true", help="accepted for cosign compatibility")
    sign.add_argument("blob", metavar="BLOB")
    sign.set_defaults(func=_sign)

    verify = subparsers.add_parser(
        "verify-blob",
        help="verify a blob signature against a public key",
        description="Verify SIGNATURE over BLOB with a public key. " + _NO_TLOG
        + " Pass --insecure-ignore-tlog, as cosign requires for such signatures. With --bundle, verify a "
        "Sigstore bundle instead, offline: keyless (--certificate-identity[-regexp] and "
        "--certificate-oidc-issuer[-regexp]) or with --key, its tlog entries against --trusted-root.",
    )
    verify.add_argument("--key", help="public key file (.pub)")
    verify.add_argument("--signature", help="signature file, or the base64 signature itself")
    verify.add_argument("--bundle", metavar="FILE",
                        help="a Sigstore bundle (v0.1-v0.3, keyless or key) instead of --signature")
    verify.add_argument("--trusted-root", metavar="FILE",
                        help="Sigstore trusted_root.json the bundle's certificate and tlog entries are checked against")
    verify.add_argument("--certificate-identity", metavar="SAN", help="keyless: the signer's exact identity")
    verify.add_argument("--certificate-identity-regexp", metavar="RE", help="keyless: a regexp the identity matches")
    verify.add_argument("--certificate-oidc-issuer", metavar="URL", help="keyless: the exact OIDC issuer")
    verify.add_argument("--certificate-oidc-issuer-regexp", metavar="RE", help="keyless: a regexp the issuer matches")
    bool_flag(verify, "new-bundle-format", "accepted for cosign compatibility")
    bool_flag(verify, "offline", "accepted for cosign compatibility: labkit always verifies offline")
    bool_flag(verify, "use-signed-timestamps",
              "--bundle: require an RFC 3161 timestamp from a TSA of the trusted root")
    bool_flag(verify, "insecure-ignore-tlog",
              "verify without a transparency log (required without --bundle; with it, for key bundles without one)")
    verify.add_argument("--signature-digest-algorithm", default="sha256",
                        help="digest the signature was made over (ECDSA/RSA; default sha256)")
    verify.add_argument("blob", metavar="BLOB")
    verify.set_defaults(func=_verify, parser=verify)


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
    if args.bundle:
        return _sign_bundle(args, private_key, _read_blob(args.blob))
    signature = sign_blob(private_key, _read_blob(args.blob))
    if args.output_signature:
        fd = os.open(args.output_signature, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signature)  # cosign writes no trailing newline
        print(f"Wrote signature to file {args.output_signature}", file=sys.stderr)
    else:
        print(signature)
    return 0


def _sign_bundle(args: argparse.Namespace, private_key: PrivateKey, blob: bytes) -> int:
    from labkit.signing.blob_bundle import sign_blob_bundle

    print("Signing artifact...", file=sys.stderr)
    bundle = sign_blob_bundle(private_key, blob)
    _write_private(args.bundle, bundle)  # cosign writes the bundle 0600, without a newline
    print(f"Wrote bundle to file {args.bundle}", file=sys.stderr)
    if args.output_signature:
        from labkit.signing.blob_bundle import bundle_signature

        _write_private(args.output_signature, bundle_signature(bundle))
        print(f"Wrote signature to file {args.output_signature}", file=sys.stderr)
    return 0


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _verify(args: argparse.Namespace) -> int:
    from labkit import keys
    from labkit.signing.blob import read_signature, verify_blob

    if args.bundle:
        return _verify_bundle(args)
    missing = [flag for flag, value in (("--key", args.key), ("--signature", args.signature)) if value is None]
    if missing:  # what argparse said when both were required, before --bundle existed
        args.parser.error(f"the following arguments are required: {', '.join(missing)}")
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


def _verify_bundle(args: argparse.Namespace) -> int:
    from labkit import keys
    from labkit.signing.blob_bundle import CertificateIdentity, read_bundle, verify_blob_bundle

    if args.signature:
        raise UsageError("--signature and --bundle cannot be used together",
                         hint="the bundle carries the signature: drop --signature")
    flags = (args.certificate_identity, args.certificate_identity_regexp, args.certificate_oidc_issuer,
             args.certificate_oidc_issuer_regexp)
    identity = CertificateIdentity(*flags) if any(flag is not None for flag in flags) else None
    if args.insecure_ignore_tlog:
        print(_IGNORE_TLOG_WARNING, file=sys.stderr)
    bundle = read_bundle(args.bundle)
    public_key = keys.load_public_key(args.key) if args.key else None
    verify_blob_bundle(
        bundle,
        _read_blob(args.blob),
        public_key=public_key,
        identity=identity,
        trusted_root=Path(args.trusted_root) if args.trusted_root else None,
        ignore_tlog=bool(args.insecure_ignore_tlog),
        digest_algorithm=args.signature_digest_algorithm,
        use_signed_timestamps=bool(args.use_signed_timestamps),
    )
    print("Verified OK", file=sys.stderr)
    return 0
