"""``labkit registry serve``: the embedded OCI registry in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from labkit.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    reg = subparsers.add_parser("registry", help="run the embedded OCI registry")
    verbs = reg.add_subparsers(dest="registry_verb", required=True, metavar="VERB")
    serve = verbs.add_parser(
        "serve",
        help="serve an OCI Distribution v1.1 registry on loopback",
        description="Serve an OCI Distribution Spec v1.1 registry (content-addressed, on disk under "
        "--root, so a restart loses nothing). Push to it as 127.0.0.1:PORT/REPO:TAG. Ctrl-C stops it.",
    )
    serve.add_argument("--port", type=int,
                       help="TCP port, 0 for any free one (default: 5001, kind's local-registry port)")
    serve.add_argument("--root", help="storage directory (default: $LABKIT_HOME/registry, ~/.labkit/registry)")
    serve.add_argument("--address", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--allow-non-loopback", action="store_true",
                       help="allow a non-loopback --address (plain HTTP on your network: think twice)")
    auth = serve.add_mutually_exclusive_group()
    auth.add_argument("--htpasswd", metavar="FILE", help="require basic auth against this bcrypt htpasswd file")
    auth.add_argument("--username", help="require basic auth for this user; the password is read from stdin")
    serve.add_argument("--password-stdin", action="store_true", help="read --username's password from stdin")
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from labkit import registry  # imported per verb: uvicorn is slow to load

    password = None
    if args.username is not None:
        if not args.password_stdin:
            raise UsageError("--username needs --password-stdin",
                             hint="echo \"$PASS\" | labkit registry serve --username U --password-stdin")
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password_stdin:
        raise UsageError("--password-stdin needs --username")
    if args.allow_non_loopback and not registry.server.is_loopback(args.address):
        print(f"WARNING: serving plain HTTP on {args.address}: anyone who can reach it can push and pull"
              + ("" if args.htpasswd or args.username else ", without credentials"), file=sys.stderr)
    handle = registry.serve(
        root=args.root,
        port=registry.server.DEFAULT_PORT if args.port is None else args.port,
        address=args.address,
        htpasswd=args.htpasswd,
        username=args.username,
        password=password,
        allow_non_loopback=args.allow_non_loopback,
    )
    print(f"labkit registry serving {handle.url} from {handle.root} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    # SIGTERM (kill, systemd, a test harness) stops it as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        handle.wait()
    return 0
