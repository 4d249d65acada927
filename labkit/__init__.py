"""labkit: signed, sealed, admitted — a hands-on lab kit for container image trust."""

from typing import TYPE_CHECKING, Any

from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.lab import Lab

__all__ = ["Lab", "LabkitError"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # `labkit.Lab` is imported on first use: every CLI verb imports this package, and the lab's
    # dependencies (YAML, process state) cost ~30 ms of start-up that `labkit verify` never needs.
    if name == "Lab":
        from labkit.lab import Lab

        return Lab
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
