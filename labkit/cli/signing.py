"""``labkit sign``, ``verify``, ``triangulate`` and ``tree``: cosign's verbs, flags and wording.

The library is imported inside each handler: a verb then loads only what it uses, which keeps
the whole-process time of ``labkit verify`` close to cosign's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.cli._checks import print_checks
from labkit.cli._flags import bool_flag, registry_flags
from labkit.errors import UsageError, VerificationError

if TYPE_CHECKING:
    from labkit.oci.client import RegistryClient

TLOG_SKIP_WARNING = (
    "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and "
    "auditability verification for the signature."
)
NO_TLOG_NOTE = (
    "Note: cosign uploads every signature to the public Rekor transparency log unless told\n"
    "    --tlog-upload=false (and asks first when the repository looks private). labkit has no\n"
    "    transparency log: the signature is stored only in the registry, as with\n"
    "    --tlog-upload=false, so verifiers need --insecure-ignore-tlog.\n"
)


def parse_annotations(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"invalid annotation {pair!r}", hint="write annotations as key=value")
        out[key] = value
    return out


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sign = subparsers.add_parser(
        "sign",
        help="sign a container image by digest (cosign sign)",
        description="Sign an image and push the signature as cosign's sha256-<digest>.sig artifact.",
    )
    sign.add_argument("image", help="image reference; sign by digest (REF@sha256:…)")
    sign.add_argument("--key", help="path to the cosign private key; without it, sign keyless")
    sign.add_argument("-a", "--annotations", action="append", metavar="KEY=VALUE",
                      help="extra key=value pairs to sign (repeatable)")
    sign.add_argument("-r", "--recursive", action="store_true",
                      help="for an index, also sign every manifest it references")
    bool_flag(sign, "tlog-upload", "accepted for cosign parity; labkit never uploads", default=True)
    bool_flag(sign, "upload", "push the signature to the registry", default=True)
    bool_flag(sign, "new-bundle-format", "sign as cosign v3 does by default: a Sigstore bundle attached "
              "as an OCI referrer, which readers of .sig images cannot see", default=False)
    bool_flag(sign, "use-signing-config", "accepted for cosign v3 parity; labkit has no signing config",
              default=False)
    sign.add_argument("-y", "--yes", action="store_true", help="skip confirmation prompts")
    keyless_sign_flags(sign)
    sign.add_argument("--output-signature", type=Path, help="also write the base64 signature here")
    sign.add_argument("--output-payload", type=Path, help="also write the signed payload here")
    registry_flags(sign)
    sign.set_defaults(func=_sign)

    verify = subparsers.add_parser(
        "verify",
        help="verify an image's signatures against a public key (cosign verify)",
        description="Check every signature on an image the way `cosign verify --key` does.",
    )
    verify.add_argument("images", nargs="+", metavar="image")
    verify.add_argument("--key", help="path to the public key (or cosign private key's .pub); without it, "
                        "verify keyless by certificate identity")
    verify.add_argument("-a", "--annotations", action="append", metavar="KEY=VALUE",
                        help="require these annotations in the signed payload")
    bool_flag(verify, "insecure-ignore-tlog",
              "do not require a transparency-log entry (labkit signatures have none)", default=False)
    verify.add_argument("-o", "--output", choices=("json", "text"), default="json")
    keyless_verify_flags(verify)
    verify.add_argument("--signature-digest-algorithm", default="sha256",
                        choices=("sha224", "sha256", "sha384", "sha512"))
    registry_flags(verify)
    verify.set_defaults(func=_verify)

    tri = subparsers.add_parser("triangulate", help="print where cosign stores an image's attachments")
    tri.add_argument("image")
    tri.add_argument("--type", default="signature",
                     choices=("signature", "attestation", "sbom", "digest"))
    registry_flags(tri)
    tri.set_defaults(func=_triangulate)

    tr = subparsers.add_parser("tree", help="show an image's signatures, attestations and SBOMs")
    tr.add_argument("image")
    registry_flags(tr)
    tr.set_defaults(func=_tree)


def keyless_sign_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity-token", metavar="TOKEN",
                        help="OIDC identity token for Fulcio (default: $SIGSTORE_ID_TOKEN); "
                        "in the lab: \"$(labkit lab token EMAIL)\"")
    parser.add_argument("--fulcio-url", help="Fulcio's address (in the lab: $LABKIT_FULCIO_URL)")
    parser.add_argument("--rekor-url", help="Rekor's address (in the lab: $LABKIT_REKOR_URL)")
    parser.add_argument("--oidc-issuer", help="accepted for cosign parity: the token already names its issuer")
    parser.add_argument("--trusted-root", help="Sigstore trusted_root.json (default: the SIGSTORE_* files)")
    parser.add_argument("--signing-config", help="Sigstore signing_config.json: Fulcio and Rekor URLs")


def keyless_verify_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--certificate-identity", help="the signer's identity (a SAN of the certificate)")
    parser.add_argument("--certificate-identity-regexp", help="a regular expression the identity must match")
    parser.add_argument("--certificate-oidc-issuer", help="the OIDC issuer Fulcio wrote into the certificate")
    parser.add_argument("--certificate-oidc-issuer-regexp", help="a regular expression the issuer must match")
    parser.add_argument("--trusted-root", help="Sigstore trusted_root.json (default: the SIGSTORE_* files)")
    bool_flag(parser, "insecure-ignore-sct", "do not require the certificate's embedded SCT", default=False)
    bool_flag(parser, "new-bundle-format", "look for cosign v3 bundles first (the default); =false: .sig only",
              default=True)


def _client(args: argparse.Namespace, *, timeout: float = 30.0) -> RegistryClient:
    from labkit.oci.client import RegistryClient

    return RegistryClient(allow_insecure=args.allow_insecure_registry, timeout=timeout)


def _sign(args: argparse.Namespace) -> int:
    from labkit import keys
    from labkit.cli.passwords import read_password
    from labkit.oci.reference import Reference
    from labkit.signing.artifact import signature_repository_from_env
    from labkit.signing.sign import TAG_WARNING, sign_image

    ref = Reference.parse(args.image)
    annotations = parse_annotations(args.annotations)
    if args.new_bundle_format:
        _bundle_conflicts(args)
    if args.key is None:
        from labkit.cli.keyless import sign_keyless

        return sign_keyless(args, ref, annotations, _client(args))
    private_key = keys.load_private_key(args.key, read_password(confirm=False))
    if ref.digest is None:
        print(TAG_WARNING.format(ref=args.image), file=sys.stderr)
    if args.tlog_upload:
        print(NO_TLOG_NOTE, file=sys.stderr)
    if args.new_bundle_format:
        from labkit.signing.bundle import sign_bundle

        bundle = sign_bundle(ref, private_key, client=_client(args))
        # the referrer carries its creation time, so its digest differs each run: name the repository
        print(f"Pushing bundle to: {bundle.referrer.name}", file=sys.stderr)
        return 0
    results = sign_image(
        ref,
        private_key,
        client=_client(args),
        annotations=annotations,
        recursive=args.recursive,
        signature_repository=signature_repository_from_env(),
        upload=args.upload,
    )
    for result in results:
        if args.upload:
            print(f"Pushing signature to: {result.signature_ref.name}", file=sys.stderr)
    if args.output_signature:
        args.output_signature.write_text(results[0].signature)
    if args.output_payload:
        args.output_payload.write_bytes(results[0].payload)
    return 0


def _bundle_conflicts(args: argparse.Namespace) -> None:
    """labkit's bundle signing covers cosign v3's plain ``sign``; refuse, before any password
    prompt, the options it does not carry over."""
    given = [flag for flag, value in (("-a", args.annotations), ("--recursive", args.recursive),
                                      ("--upload=false", not args.upload),
                                      ("--output-signature", args.output_signature),
                                      ("--output-payload", args.output_payload)) if value]
    if given:
        raise UsageError(f"labkit's --new-bundle-format signing does not take {', '.join(given)}",
                         hint="sign without --new-bundle-format for a .sig signature with those options")


VERIFY_TIMEOUT = 180.0  # cosign's --timeout default (3m0s)


def _verify(args: argparse.Namespace) -> int:
    if args.key is None:
        from labkit.cli.keyless import verify_keyless

        return verify_keyless(args, parse_annotations(args.annotations), _client(args, timeout=VERIFY_TIMEOUT),
                              VERIFY_TIMEOUT)
    if not args.insecure_ignore_tlog:
        raise VerificationError(
            "labkit cannot check a transparency log: its signatures are never uploaded to Rekor",
            hint="pass --insecure-ignore-tlog to check the key signature alone, as "
            "`cosign verify --insecure-ignore-tlog` does for --tlog-upload=false signatures",
        )
    print(TLOG_SKIP_WARNING, file=sys.stderr)
    from labkit import keys
    from labkit.oci.reference import Reference
    from labkit.oci.transport import deadline
    from labkit.signing.artifact import signature_repository_from_env
    from labkit.signing.verify import verify_image

    public_key = keys.load_public_key(args.key)
    annotations = parse_annotations(args.annotations)
    # cosign bounds the command (--timeout), not each request: an answer slower than the client's
    # default 30 s still verifies, as in cosign, within the 3 minutes.
    client = _client(args, timeout=VERIFY_TIMEOUT)
    for image in args.images:
        ref = Reference.parse(image)
        with deadline(VERIFY_TIMEOUT):  # a registry cannot stretch a verification past it
            result = verify_image(
                ref,
                public_key,
                client=client,
                annotations=annotations,
                signature_repository=signature_repository_from_env(),
                digest_algorithm=args.signature_digest_algorithm,
            )
        checks = ["The specified annotations were verified."] if annotations else []
        checks += [
            "The cosign claims were validated",
            "The signatures were verified against the specified public key",
        ]
        print_checks(ref, checks)
        if args.output == "text":
            for sig in result.signatures:
                sys.stdout.write(sig.payload.decode() + "\n")
        else:
            print("\n" + result.payloads_json())
    return 0


def _triangulate(args: argparse.Namespace) -> int:
    from labkit.signing.artifact import signature_repository_from_env
    from labkit.signing.tree import triangulate

    print(
        triangulate(
            args.image,
            client=_client(args),
            kind=args.type,
            repository=signature_repository_from_env(),
        )
    )
    return 0


def _tree(args: argparse.Namespace) -> int:
    from labkit.signing.artifact import signature_repository_from_env
    from labkit.signing.tree import format_tree, tree

    nodes = tree(args.image, client=_client(args), repository=signature_repository_from_env())
    sys.stdout.write(format_tree(args.image, nodes))
    return 0
