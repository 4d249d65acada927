"""The ``labkit`` command. Verbs mirror cosign's where cosign has them; each area of the
library registers its own verbs from a small module here, and holds no logic the API lacks."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from labkit.errors import LabkitError

# Each module defines ``register(subparsers)`` and sets ``func`` on its parsers.
_VERB_MODULES = ("keys", "blob", "images", "signing", "registry", "policy", "admission", "lab")
# Which module registers each verb, so one command builds only its own parser: building all of
# them costs ~50 ms, a quarter of `labkit verify` (tests/unit/test_cli.py keeps this in step).
VERBS = {"generate-key-pair": "keys", "import-key-pair": "keys", "public-key": "keys",
         "sign-blob": "blob", "verify-blob": "blob", "build": "images", "digest": "images",
         "sign": "signing", "verify": "signing", "triangulate": "signing", "tree": "signing",
         "registry": "registry", "policy": "policy", "admission": "admission", "lab": "lab"}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (``verb``) just the module that defines that verb."""
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="Sign, verify and admit container images: a hands-on image-trust lab.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in (VERBS[verb],) if verb in VERBS else _VERB_MODULES:
        importlib.import_module(f"labkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LabkitError as exc:
        print(f"Error: {exc.diagnostics()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
