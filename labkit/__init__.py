"""labkit: signed, sealed, admitted — a hands-on lab kit for container image trust."""

from labkit.errors import LabkitError

__all__ = ["LabkitError"]
__version__ = "0.1.0"
