"""``labkit lab up|status|env|token|apply|label|reset|down``: one lab per LABKIT_HOME, of any backend."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from labkit.errors import UsageError
from labkit.lab.factory import BACKENDS

if TYPE_CHECKING:
    from labkit.lab import Lab


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser("lab", help="start, use and stop a lab (embedded, native, kind or existing)")
    verbs = lab.add_subparsers(dest="lab_verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="start the lab in $LABKIT_HOME (or report the one running)",
                          description="Start a lab: 'embedded' runs labkit's registry and admission webhook "
                          "on loopback (nothing else needed); 'native' runs the real kube-apiserver, etcd, Kyverno and "
                          "policy-controller as local processes (built by `make tools`); 'kind' creates a kind "
                          "cluster with a local registry, Kyverno and policy-controller (needs docker, kind, "
                          "helm, kubectl); 'existing' joins a cluster that already runs both engines (a "
                          "trainer's shared cluster: `labkit lab install-engines`), with namespaces and images "
                          "of your own.")
    up.add_argument("--backend", choices=BACKENDS, default="embedded")
    up.add_argument("--port", action="append", default=[], metavar="NAME=PORT",
                    help="listen on PORT for the lab's NAME (registry, private-registry, webhook, …; repeatable); "
                         "kept in $LABKIT_HOME/ports.json for later starts, as every port is (also: LABKIT_PORTS="
                         "NAME=PORT,…)")
    up.add_argument("--fresh-ports", action="store_true",
                    help="forget the kept ports and pick new free ones (policies naming the old registry "
                         "address must then be re-applied)")
    up.add_argument("--sigstore", action="store_true",
                    help="also start the lab's own Sigstore on loopback (OIDC issuer, Fulcio, Rekor, CT log; built "
                         "by `make tools`) for keyless signing offline: see `labkit lab token` and `labkit lab env`")
    up.add_argument("--registry-port", type=int, metavar="N",
                    help="kind lab: a registry of the lab's own (labkit-registry) on localhost:N and its private "
                         "one on N+1, instead of kind's recipe registry (kind-registry, localhost:5001)")
    shared = up.add_argument_group("an existing cluster (--backend existing), e.g. a trainer's shared one")
    shared.add_argument("--kubeconfig", metavar="FILE", help="the cluster's kubeconfig (default: $KUBECONFIG)")
    shared.add_argument("--context", help="the kubeconfig context to use (default: its current one)")
    shared.add_argument("--registry", metavar="HOST:PORT", help="the registry the cluster pulls from; your "
                        "images go under HOST:PORT/LEARNER/")
    shared.add_argument("--registry-pod-host", metavar="HOST:PORT",
                        help="the same registry as pods and policies name it, when that differs")
    shared.add_argument("--no-pull-base", dest="pull_base", action="store_false", default=None,
                        help="builds keep to the app layer: the room cannot reach the sample's FROM registry")
    shared.add_argument("--learner", metavar="NAME", help="your name on the cluster: namespaces labkit-NAME…, "
                        "images under REGISTRY/NAME/ (default: your login name)")
    up.set_defaults(func=_up)
    engines = verbs.add_parser("install-engines", help="print (or --apply) the Helm commands that install Kyverno "
                               "and policy-controller from labkit's pinned charts on a shared cluster",
                               description="For a trainer preparing a cluster for `labkit lab up --backend "
                               "existing`: the charts and versions the kind lab installs. Without --apply, prints the "
                               "helm commands; with it, runs them (needs helm and kubectl) and waits until both "
                               "engines answer.")
    engines.add_argument("--apply", action="store_true", help="run the commands against the cluster")
    engines.add_argument("--kubeconfig", metavar="FILE", help="the cluster's kubeconfig (default: $KUBECONFIG)")
    engines.add_argument("--context", help="the kubeconfig context (default: its current one)")
    engines.add_argument("--insecure-registry", action="store_true",
                         help="the room's registry serves plain HTTP: let Kyverno's registry client use it")
    engines.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                         help="how long each chart may take to become available (default 600)")
    engines.set_defaults(func=_install_engines)
    verbs.add_parser("status", help="backend, registry host:port, webhook URL, health").set_defaults(func=_status)
    token = verbs.add_parser("token", help="print an OIDC ID token for a workshop identity from the lab's Sigstore",
                             description="The lab's OIDC issuer signs a token for EMAIL (audience sigstore), as a "
                             "real identity provider would after a login: pass it to `cosign sign --identity-token`. "
                             "Needs `labkit lab up --sigstore`.")
    token.add_argument("email", metavar="EMAIL", help="the identity, e.g. alice@example.com")
    token.set_defaults(func=_token)
    verbs.add_parser("env", help="export lines for a shell: PATH, LABKIT_HOME, KUBECONFIG, the lab's addresses",
                     description='eval "$(labkit lab env)" gives a shell the lab\'s environment: labkit and the '
                     "real tools on PATH, KUBECONFIG where the backend has an API server, the registry's "
                     "address as LABKIT_REGISTRY.").set_defaults(func=_env)
    apply = verbs.add_parser("apply", help="apply policies, Secrets, Namespaces and workloads from a file",
                             description="Policies, Secrets and Namespaces are stored; workloads go through "
                             "admission and print what kubectl would. Exit status 1 when one is denied.")
    apply.add_argument("-f", "--filename", required=True, help="YAML file (several documents allowed)")
    apply.set_defaults(func=_apply)
    delete = verbs.add_parser("delete", help="delete the policies named in a file (as kubectl delete -f)")
    delete.add_argument("-f", "--filename", required=True, help="YAML file (several documents allowed)")
    delete.set_defaults(func=_delete)
    label = verbs.add_parser("label", help="label a namespace: k=v sets, k- removes (as kubectl label)")
    label.add_argument("namespace")
    label.add_argument("labels", nargs="+", metavar="k=v")
    label.set_defaults(func=_label)
    verbs.add_parser("reset", help="remove lab namespaces, policies, secrets and signatures").set_defaults(func=_reset)
    verbs.add_parser("down", help="stop the lab's processes (images, policies and ports stay in $LABKIT_HOME)"
                     ).set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    from labkit.lab import Lab
    from labkit.lab.ports import parse_ports

    options: dict[str, Any] = {}
    if args.port:
        options["ports"] = parse_ports(args.port, "--port")
    if args.fresh_ports:
        options["fresh_ports"] = True
    if args.registry_port is not None:
        options["registry_port"] = args.registry_port
    existing = {"kubeconfig": args.kubeconfig, "context": args.context, "registry": args.registry,
                "registry_pod_host": args.registry_pod_host, "learner": args.learner, "pull_base": args.pull_base}
    given = [f"--{'no-pull-base' if name == 'pull_base' else name.replace('_', '-')}"
             for name, value in existing.items() if value is not None]
    if given and args.backend != "existing":
        raise UsageError(f"{', '.join(given)} are for --backend existing")
    options |= {name: value for name, value in existing.items() if value is not None}
    lab = Lab.start(backend=args.backend, sigstore=args.sigstore, **options)
    _print_status(lab.status())
    _print_sigstore(lab)
    _print_ports(lab)
    _warn_stale(lab)
    return 0


def _install_engines(args: argparse.Namespace) -> int:
    from labkit.lab import engines

    if not args.apply:
        sys.stdout.write(engines.install_script(timeout=args.timeout, insecure_registry=args.insecure_registry,
                                                context=args.context))
        return 0
    from pathlib import Path

    from labkit.lab.existing import find_kubectl, kubeconfig_path
    from labkit.lab.kubectl import run_kubectl
    from labkit.lab.state import LabHome

    kubeconfig, kubectl = kubeconfig_path(args.kubeconfig), find_kubectl()
    options = ["--context", args.context] if args.context else []
    workdir = LabHome.resolve(None).root / "engines"
    workdir.mkdir(parents=True, exist_ok=True)

    def on_cluster(*kubectl_args: str, stdin: str | None = None, timeout: float = 300.0) -> Any:
        return run_kubectl(kubectl, kubeconfig, [*options, *kubectl_args], stdin=stdin, timeout=timeout)

    engines.install(on_cluster, workdir, Path(kubeconfig), timeout=args.timeout,
                    insecure_registry=args.insecure_registry, context=args.context)
    print("Kyverno and policy-controller are installed and answer: learners can now "
          "`labkit lab up --backend existing`")
    return 0


def _status(args: argparse.Namespace) -> int:
    from labkit.lab import Lab

    lab = Lab.connect()
    _print_status(lab.status())
    _print_sigstore(lab)
    _print_ports(lab)
    _warn_stale(lab)
    return 0


def _env(args: argparse.Namespace) -> int:
    from labkit.lab import Lab
    from labkit.lab.environment import export_lines

    sys.stdout.write(export_lines(Lab.connect().env()))
    return 0


def _token(args: argparse.Namespace) -> int:
    from labkit.lab import Lab

    print(Lab.connect().sigstore.token(args.email))
    return 0


def _print_sigstore(lab: Lab) -> None:
    from labkit.lab.sigstore import LocalSigstore

    sigstore = LocalSigstore.find(lab.home)
    if sigstore is None:
        return
    for name, line in sigstore.status().items():
        print(f"sigstore: {name}: {line}")
    beyond = sigstore.beyond_loopback()
    if beyond:
        print(f"note:     the lab's Sigstore listens beyond loopback (no narrower option): {', '.join(beyond)}")
    print(f"trust:    {sigstore.trust.trusted_root} (eval \"$(labkit lab env)\" for cosign)")


def _print_ports(lab: Lab) -> None:
    from labkit.lab.ports import kept_ports, ports_file

    kept = kept_ports(lab.home)
    if kept:
        print(f"ports:    {' '.join(f'{n}={p}' for n, p in sorted(kept.items()))} (kept in {ports_file(lab.home)})")


def _warn_stale(lab: Lab) -> None:
    """A policy naming a registry the lab does not serve denies nothing: say so, with the fix."""
    stale = lab.stale_policies()
    for entry in stale:
        print(f"Warning: {entry}: it matches none of this lab's images, so what it used to deny is admitted",
              file=sys.stderr)
    if stale:
        print(f"Hint: re-apply the policy from its notebook (it names lab.registry.pod_host, now "
              f"{lab.registry.pod_host}), or remove every policy with `labkit lab reset`", file=sys.stderr)


def _print_status(status: dict[str, Any]) -> None:
    print(f"backend:  {status['backend']}")
    print(f"home:     {status['home']}")
    print(f"registry: {status['registry']}")
    print(f"webhook:  {status['webhook']}")
    if "learner" in status:  # a share of an existing cluster
        print(f"learner:  {status['learner']} (namespaces {', '.join(status['namespaces']) or 'none yet'}; "
              f"context {status['context']})")
    for name, health in status["health"].items():
        text = health if isinstance(health, str) else health.get("status", json.dumps(health))
        print(f"health:   {name}: {text}")
    for name, process in status.get("processes", {}).items():
        print(f"process:  {name} (pid {process['pid']}) listens on {', '.join(process['listens']) or 'nothing'}")
    if status.get("beyond_loopback"):
        print(f"note:     listening beyond loopback (these components offer no narrower option): "
              f"{', '.join(status['beyond_loopback'])}")


def _apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labkit.lab import Lab

    denied = False
    for result in Lab.connect().apply(Path(args.filename)):
        for warning in result.warnings:
            print(f"Warning: {warning}", file=sys.stderr)
        print(result.message, file=sys.stdout if result.admitted else sys.stderr)
        denied |= not result.admitted
    return 1 if denied else 0


def _delete(args: argparse.Namespace) -> int:
    from pathlib import Path

    from labkit.lab import Lab

    failed = False
    for result in Lab.connect().delete(Path(args.filename)):
        print(result.message, file=sys.stdout if result.admitted else sys.stderr)
        failed |= not result.admitted
    return 1 if failed else 0


def _label(args: argparse.Namespace) -> int:
    from labkit.lab import Lab

    labels: dict[str, str | None] = {}
    for item in args.labels:
        if item.endswith("-") and "=" not in item:
            labels[item[:-1]] = None
        elif "=" in item:
            key, _, value = item.partition("=")
            labels[key] = value
        else:
            raise UsageError(f"label {item!r} is neither k=v nor k-", hint="e.g. policy.sigstore.dev/include=true")
    Lab.connect().label_namespace(args.namespace, labels)
    print(f"namespace/{args.namespace} labeled")
    return 0


def _reset(args: argparse.Namespace) -> int:
    from labkit.lab import Lab

    Lab.connect().reset()
    print("lab reset: namespaces, policies, secrets and signatures removed")
    return 0


def _down(args: argparse.Namespace) -> int:
    from labkit.lab import Lab

    Lab.connect().stop()
    print("lab stopped")
    return 0
