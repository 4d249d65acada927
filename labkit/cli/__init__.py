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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="Sign, verify and admit container images: a hands-on image-trust lab.",
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in _VERB_MODULES:
        importlib.import_module(f"labkit.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LabkitError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Error: interrupted", file=sys.stderr)
        return 130
