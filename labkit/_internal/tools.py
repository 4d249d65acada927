"""Where the tools built from the Go module proxy live (``tools/reference-tools.sh`` builds them).

They are cached outside the repository: ``$LABKIT_TOOLS_DIR``, else ``$XDG_CACHE_HOME/labkit/tools``,
else ``~/.cache/labkit/tools``. The native lab runs its control plane and engines from there.
"""

from __future__ import annotations

import os
from pathlib import Path


def tools_dir() -> Path:
    configured = os.environ.get("LABKIT_TOOLS_DIR")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit" / "tools"
