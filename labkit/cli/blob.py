"""Placeholder until this area lands."""


def register(subparsers) -> None:
    return None
