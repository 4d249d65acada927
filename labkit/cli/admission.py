"""``labkit admission serve`` and ``labkit admission config``: the HTTPS admission webhook."""

from __future__ import annotations

import argparse
import sys

from labkit.cli._flags import no_match_flag, registry_flags


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    adm = subparsers.add_parser("admission", help="run the HTTPS admission webhook (Kyverno, policy-controller)")
    verbs = adm.add_subparsers(dest="admission_verb", required=True, metavar="VERB")

    serve = verbs.add_parser(
        "serve",
        help="serve AdmissionReview v1 over HTTPS",
        description="Serve POST /mutate/kyverno, /validate/kyverno, /mutate/policy-controller, "
        "/validate/policy-controller, GET /healthz and GET /reports over HTTPS. The CA and serving "
        "certificate are made on first start under $LABKIT_HOME/admission/ and reused. Policy files "
        "in --policies are re-read when they change; namespace labels come from "
        "--state/namespaces.json ({\"ns\": {\"label\": \"value\"}}).",
    )
    serve.add_argument("--policies", required=True, metavar="DIR", help="directory of policy files")
    serve.add_argument("--port", type=int, default=8443, help="port (default 8443; 0 picks a free one)")
    serve.add_argument("--address", default="127.0.0.1", help="loopback address to listen on")
    serve.add_argument("--state", metavar="DIR", help="directory holding namespaces.json")
    serve.add_argument("--dns-name", help="extra DNS name in the serving certificate "
                       "(default labkit-admission.labkit.svc)")
    no_match_flag(serve)
    serve.add_argument("--cache-ttl", type=float, default=60.0,
                       help="seconds a verified signature is reused (0: off; default 60)")
    registry_flags(serve)
    serve.set_defaults(func=_serve)

    config = verbs.add_parser(
        "config",
        help="print Validating/MutatingWebhookConfiguration YAML for this webhook",
        description="Print a MutatingWebhookConfiguration and a ValidatingWebhookConfiguration with "
        "the labkit CA as caBundle, one webhook per engine endpoint.",
    )
    config.add_argument("--url", help="base URL the API server reaches the webhook at "
                        "(default https://DNS-NAME:8443)")
    config.add_argument("--dns-name", help="DNS name in the serving certificate "
                        "(default labkit-admission.labkit.svc)")
    config.add_argument("--failure-policy", choices=("Fail", "Ignore"), default="Fail")
    config.set_defaults(func=_config)


def _serve(args: argparse.Namespace) -> int:
    from labkit.admission import serve
    from labkit.admission.tls import DEFAULT_DNS_NAME

    handle = serve(args.policies, port=args.port, address=args.address, state=args.state,
                   dns_name=args.dns_name or DEFAULT_DNS_NAME, no_match_policy=args.no_match_policy,
                   cache_ttl=args.cache_ttl, allow_insecure_registry=args.allow_insecure_registry)
    print(f"labkit admission webhook on {handle.url}")
    print(f"CA certificate: {handle.tls.ca_cert}")
    print(f"caBundle: {handle.tls.ca_bundle}")
    print("endpoints: POST /mutate/kyverno /validate/kyverno /mutate/policy-controller "
          "/validate/policy-controller; GET /healthz /reports")
    print("`labkit admission config` prints webhook configurations for a cluster", flush=True)
    handle.wait()
    return 0


def _config(args: argparse.Namespace) -> int:
    from labkit.admission import ensure_tls, webhook_configuration_yaml
    from labkit.admission.tls import DEFAULT_DNS_NAME

    dns_name = args.dns_name or DEFAULT_DNS_NAME
    tls = ensure_tls(dns_names=[dns_name])
    url = args.url or f"https://{dns_name}:8443"
    sys.stdout.write(webhook_configuration_yaml(url, tls.ca_bundle, failure_policy=args.failure_policy))
    return 0
