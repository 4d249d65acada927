"""What ``cosign verify`` prints before its results, for the key and keyless paths alike."""

from __future__ import annotations

import sys


def print_checks(ref: object, checks: list[str]) -> None:
    """cosign verify's header on stderr: the reference (as it prints), then each check performed."""
    print(f"\nVerification for {ref} --", file=sys.stderr)
    print("The following checks were performed on each of these signatures:", file=sys.stderr)
    for check in checks:
        print(f"  - {check}", file=sys.stderr)
