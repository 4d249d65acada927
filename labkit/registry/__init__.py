"""The embedded OCI registry: OCI Distribution Spec v1.1 on loopback, content-addressed on disk.

    handle = labkit.registry.serve(root="/tmp/reg", port=0)
    print(handle.host)      # 127.0.0.1:PORT, for image references
    handle.stop()
"""

from labkit.registry.app import RegistryApp
from labkit.registry.server import RegistryHandle, default_root, serve
from labkit.registry.storage import Storage

__all__ = ["RegistryApp", "RegistryHandle", "Storage", "default_root", "serve"]
