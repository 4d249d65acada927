"""Flag shapes shared by the verb modules."""

from __future__ import annotations

import argparse


def bool_flag(
    parser: argparse.ArgumentParser, name: str, help_text: str, *, default: bool | None = None
) -> None:
    """A cobra-style boolean: ``--name``, ``--name=true`` and ``--name=false``.

    argparse matches a whole argument against option strings before splitting at ``=``, so the
    two spelled-out forms can be options of their own; ``--name false`` stays two arguments, as in
    cobra.
    """
    dest = name.replace("-", "_")
    parser.add_argument(f"--{name}", f"--{name}=true", dest=dest, action="store_const",
                        const=True, default=default, help=help_text)
    parser.add_argument(f"--{name}=false", dest=dest, action="store_const", const=False,
                        help=argparse.SUPPRESS)


def registry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-insecure-registry",
        action="store_true",
        help="allow plain HTTP (and unverified TLS) to a registry that is not on loopback",
    )


def no_match_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-match-policy", default="deny", choices=("allow", "warn", "deny"),
                        help="policy-controller's answer for images no policy covers (default: deny)")
