"""``python -m tests.lab.private_credentials BACKEND KYVERNO HOME``: notebook 05's private-registry
credentials step on a lab of its own, run by tests/lab/test_private_credentials.py inside a network
namespace of its own (loopback only; a native lab's policy-controller holds fixed ports).

``KYVERNO`` is the version the lab's Kyverno is: on ``native`` the real one it runs
(``Lab.start(kyverno=…)``), on ``embedded`` the one labkit's engine follows
(``LABKIT_KYVERNO_VERSION``, set here before the lab's webhook starts). Prints one JSON object:
``{"missing": [admitted, message], "present": [admitted, message], "registry": host}``.

1. The sample is pushed to the lab's password-protected registry and signed by digest
   (``workshop.push_private_sample``), and the ImageValidatingPolicy
   ``imagevalidatingpolicy-private`` is applied with ``credentials.secrets: [regcred]``.
2. ``missing``: a pod of that image with no Secret ``regcred`` anywhere.
3. ``present``: the Secret ``regcred`` created in the ``kyverno`` namespace (the documented fix),
   then another pod of the same image.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from labkit import keys, workshop
from labkit.keys import PASSWORD_ENV
from labkit.lab import Lab

CREDENTIALS = "  credentials:\n    secrets: [regcred]"


def pod(name: str, image: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "app", "image": image}]}}


def main(backend: str, kyverno: str, home: Path) -> dict[str, Any]:
    if backend == "embedded":
        os.environ["LABKIT_KYVERNO_VERSION"] = kyverno
        lab = Lab.start("embedded", home)
    else:
        lab = Lab.start("native", home, kyverno=kyverno)
    try:
        workshop.use_password(home)
        keys.generate_key_pair(workshop.workdir(home) / "cosign", os.environ[PASSWORD_ENV].encode())
        image = workshop.push_private_sample(lab, home)
        private = lab.private_registry
        policy = workshop.write_policy("imagevalidatingpolicy-private", workshop.workdir(home) / "ivp-private.yaml",
                                       public_key=workshop.public_key(home), registry=private.pod_host,
                                       credentials=CREDENTIALS)
        applied = lab.apply(policy)
        assert [r.message for r in applied] == ["imagevalidatingpolicy.policies.kyverno.io/private-signed created"], \
            applied
        missing = lab.create(pod("private-missing", image))
        secret = lab.apply(private.pull_secret("regcred", "kyverno"))
        assert [r.message for r in secret] == ["secret/regcred created"], secret
        present = lab.create(pod("private-present", image))
        return {"registry": private.pod_host, "image": image,
                "missing": [missing.admitted, missing.message], "present": [present.admitted, present.message]}
    finally:
        lab.stop()


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))))
