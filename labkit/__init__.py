"""labkit: signed, sealed, admitted — a hands-on lab kit for container image trust.

The public API, from key to admission decision (``docs/architecture.md`` has the modules)::

    import labkit

    pair = labkit.generate_key_pair("cosign", b"password")      # cosign.key (0600), cosign.pub
    key = labkit.load_private_key(pair.private_key, b"password")
    with labkit.RegistryClient() as client:                     # as pkg/v1/remote behaves
        labkit.sign_image(ref, key, client=client)              # cosign sign --key, by digest
        labkit.verify_image(ref, labkit.load_public_key(pair.public_key), client=client)
    lab = labkit.Lab.start()                                    # a registry and admission control
    print(lab.create(labkit.lab.pod("app", ref)).message)       # as kubectl prints it

Each name is imported on first use: every ``labkit`` CLI verb imports this package, and loading
all of it would cost every verb the start-up of the lab, the policy engines and the CEL runtime.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.keys import generate_key_pair, import_key_pair, load_private_key, load_public_key
    from labkit.lab import Lab
    from labkit.oci.build import build_image
    from labkit.oci.client import RegistryClient
    from labkit.oci.reference import Reference
    from labkit.policy import Decision, evaluate, load_policies
    from labkit.signing.sign import sign_image
    from labkit.signing.verify import verify_image

__version__ = "0.1.0"

_PUBLIC = {
    "Decision": "labkit.policy",
    "Lab": "labkit.lab",
    "Reference": "labkit.oci.reference",
    "RegistryClient": "labkit.oci.client",
    "build_image": "labkit.oci.build",
    "evaluate": "labkit.policy",
    "generate_key_pair": "labkit.keys",
    "import_key_pair": "labkit.keys",
    "load_policies": "labkit.policy",
    "load_private_key": "labkit.keys",
    "load_public_key": "labkit.keys",
    "sign_image": "labkit.signing.sign",
    "verify_image": "labkit.signing.verify",
}

# written out (not ``[*_PUBLIC]``) so linters and type checkers see the public names
__all__ = ["Decision", "Lab", "LabkitError", "Reference", "RegistryClient", "__version__", "build_image", "evaluate",
           "generate_key_pair", "import_key_pair", "load_policies", "load_private_key", "load_public_key",
           "sign_image", "verify_image"]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
