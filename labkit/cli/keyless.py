"""``labkit sign`` and ``labkit verify`` without ``--key``: keyless, with cosign's flags and words.

Trust material and service URLs come from the flags first, then from the variables cosign reads
(``SIGSTORE_ID_TOKEN``, ``SIGSTORE_ROOT_FILE``, ``SIGSTORE_REKOR_PUBLIC_KEY``,
``SIGSTORE_CT_LOG_PUBLIC_KEY_FILE``); ``labkit lab env`` exports them for the lab's own Sigstore.
Nothing here reaches for the public Sigstore: what is missing is refused with a hint.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from labkit.cli._checks import print_checks
from labkit.errors import UsageError

if TYPE_CHECKING:
    from labkit.oci.client import RegistryClient
    from labkit.oci.reference import Reference

TLOG_SKIP_WARNING = (
    "WARNING: Skipping tlog verification is an insecure practice that lacks transparency and "
    "auditability verification for the signature."
)
LAB_HINT = 'in the lab: eval "$(labkit lab env)"'


def sign_keyless(args: argparse.Namespace, ref: Reference, annotations: dict[str, str] | None,
                 client: RegistryClient) -> int:
    from labkit.signing.artifact import signature_repository_from_env
    from labkit.signing.keyless import request_certificate, sign_bundle_keyless, sign_image_keyless
    from labkit.signing.keyless_trust import KeylessTrust, signing_config_urls
    from labkit.signing.sign import TAG_WARNING

    token = args.identity_token or os.environ.get("SIGSTORE_ID_TOKEN")
    if not token:
        raise UsageError("keyless signing needs an OIDC identity token (labkit opens no browser)",
                         hint='pass --identity-token "$(labkit lab token EMAIL)", or --key for a key pair')
    fulcio, rekor = args.fulcio_url, args.rekor_url
    if args.signing_config and not (fulcio and rekor):
        from_config = signing_config_urls(args.signing_config)
        fulcio, rekor = fulcio or from_config[0], rekor or from_config[1]
    if not fulcio or (args.tlog_upload and not rekor):
        raise UsageError("labkit needs --fulcio-url and --rekor-url (or --signing-config) for keyless signing: "
                         "it never uses the public Sigstore's",
                         hint=f'--fulcio-url "$LABKIT_FULCIO_URL" --rekor-url "$LABKIT_REKOR_URL", {LAB_HINT}')
    trust = KeylessTrust.resolve(args.trusted_root, os.environ)
    if ref.digest is None:
        print(TAG_WARNING.format(ref=args.image), file=sys.stderr)
    signing = request_certificate(fulcio, token, trust)
    print("Successfully verified SCT...", file=sys.stderr)
    if args.new_bundle_format:
        if not rekor or not args.tlog_upload:
            raise UsageError("labkit's --new-bundle-format signing always records the signature in Rekor",
                             hint="pass --rekor-url, or sign in the legacy format to skip Rekor")
        bundle = sign_bundle_keyless(ref, signing, rekor_url=rekor, client=client)
        print(f"Pushing bundle to: {bundle.referrer.name}", file=sys.stderr)
        return 0
    results = sign_image_keyless(ref, signing, client=client, rekor_url=rekor if args.tlog_upload else None,
                                 annotations=annotations, recursive=args.recursive,
                                 signature_repository=signature_repository_from_env(), upload=args.upload)
    for result, index in results:
        if index is not None:
            print(f"tlog entry created with index: {index}", file=sys.stderr)
        if args.upload:
            print(f"Pushing signature to: {result.signature_ref.name}", file=sys.stderr)
    if args.output_signature:
        args.output_signature.write_text(results[0][0].signature)
    if args.output_payload:
        args.output_payload.write_bytes(results[0][0].payload)
    return 0


def verify_keyless(args: argparse.Namespace, annotations: dict[str, str] | None, client: RegistryClient,
                   timeout: float) -> int:
    from labkit.oci.reference import Reference
    from labkit.oci.transport import deadline
    from labkit.signing.artifact import signature_repository_from_env
    from labkit.signing.blob_bundle import CertificateIdentity
    from labkit.signing.keyless_trust import KeylessTrust
    from labkit.signing.keyless_verify import KeylessPolicy, verify_image_keyless

    identity = CertificateIdentity(args.certificate_identity, args.certificate_identity_regexp,
                                   args.certificate_oidc_issuer, args.certificate_oidc_issuer_regexp)
    identity.check_flags()
    trust = KeylessTrust.resolve(args.trusted_root, os.environ)
    policy = KeylessPolicy(identity, ignore_sct=args.insecure_ignore_sct, ignore_tlog=args.insecure_ignore_tlog,
                           annotations=annotations)
    if args.insecure_ignore_tlog:
        print(TLOG_SKIP_WARNING, file=sys.stderr)
    for image in args.images:
        ref = Reference.parse(image)
        with deadline(timeout):
            result = verify_image_keyless(ref, trust, policy, client=client,
                                          signature_repository=signature_repository_from_env(),
                                          bundles=args.new_bundle_format)
        checks = ["The specified annotations were verified."] if annotations else []
        checks.append("The cosign claims were validated")
        if result.tlog_verified:
            checks.append("Existence of the claims in the transparency log was verified offline")
        checks.append("The code-signing certificate was verified using trusted certificate authority certificates")
        print_checks(ref, checks)
        if args.output == "text":
            for sig in result.signatures:
                print(f"Certificate subject: {sig.subject}", file=sys.stderr)
                if sig.issuer:
                    print(f"Certificate issuer URL: {sig.issuer}", file=sys.stderr)
                sys.stdout.write(sig.payload.decode() + "\n")
        else:
            print("\n" + result.payloads_json())
    return 0
