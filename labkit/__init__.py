"""labkit: signed, sealed, admitted — a hands-on lab kit for container image trust."""

from labkit.errors import LabkitError
from labkit.lab import Lab

__all__ = ["Lab", "LabkitError"]
__version__ = "0.1.0"
