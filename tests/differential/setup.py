"""Keys (shared by both labs) and each lab's images, pushed and signed as the matrix needs.

Image content is fixed, so every image has the same digest in both labs' registries and
messages compare after only the registry host is replaced. Signatures are made by labkit's
signer, as ``cosign sign --tlog-upload=false`` would (checked against cosign in tests/interop).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from labkit import keys
from labkit.lab import Lab
from labkit.oci.client import RegistryClient
from labkit.oci.model import OCI_CONFIG, OCI_LAYER, Descriptor, Image, Manifest, sha256_digest
from labkit.oci.reference import Reference
from labkit.signing.artifact import SignatureImage, attachment_ref
from labkit.signing.bundle import sign_bundle
from labkit.signing.sign import sign_image
from tests.differential.matrix import IMAGES, Workload
from tests.differential.policies import ANNOTATION, SIGSTORE_REPO, Keys

TAG = "v1"
NAMESPACE_LABELS = {"diff-plain": {}, "diff-include": {"policy.sigstore.dev/include": "true"}}
FORGED_ANNOTATION = "kyverno.io/verify-images-scoped"


@dataclass(frozen=True)
class KeyRing:
    a: keys.PrivateKey
    b: keys.PrivateKey
    c: keys.PrivateKey  # P-384

    def public(self) -> Keys:
        return Keys(*(keys.public_key_pem(k).strip() for k in (self.a, self.b, self.c)))


def make_keys(directory: Path) -> KeyRing:
    """Two P-256 pairs as ``cosign generate-key-pair`` makes them, and a P-384 pair written in
    the same encrypted format (labkit generates P-256 only; cosign imports P-384 keys)."""
    keys.generate_key_pair(directory / "a", b"")
    keys.generate_key_pair(directory / "b", b"")
    keys.write_key_pair(directory / "c", ec.generate_private_key(ec.SECP384R1()), b"")
    return KeyRing(*(keys.load_private_key(directory / f"{n}.key", b"") for n in "abc"))


def _image(content: bytes) -> Image:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(content)]}}).encode()
    return Image(manifest=Manifest(config=Descriptor.of(OCI_CONFIG, config), layers=(Descriptor.of(OCI_LAYER, content),)),
                 config=config, layers=[content])


# Never pushed: a digest nothing has.
MISSING_DIGEST = "sha256:" + hashlib.sha256(b"labkit differential: missing\n").hexdigest()


def push_images(lab: Lab, ring: KeyRing) -> dict[str, str]:
    """Push and sign every image state into ``lab``'s registry; return state → digest."""
    host = lab.registry.host
    digests: dict[str, str] = {"missing": MISSING_DIGEST}
    with RegistryClient() as client:
        for state in IMAGES:
            if state not in ("missing", "dotted"):
                digests[state] = client.push_image(Reference.parse(f"{host}/diff/{state}:{TAG}"),
                                                   _image(f"labkit differential: {state}\n".encode()))

        def sign(state: str, key: keys.PrivateKey, **options: Any) -> None:
            sign_image(f"{host}/diff/{state}@{digests[state]}", key, client=client, **options)

        sign("signed-a", ring.a)
        sign("signed-b", ring.b)
        sign("signed-ab", ring.a)
        sign("signed-ab", ring.b)
        sign("signed-p384", ring.c)
        sign("annotated-a", ring.a, annotations=ANNOTATION)
        sign("sig-elsewhere", ring.a, signature_repository=f"{host}/{SIGSTORE_REPO}")
        sign_bundle(f"{host}/diff/bundle-a@{digests['bundle-a']}", ring.a, client=client)
        digests["dotted"] = digests["unsigned"]
        # A signature replayed from signed-a: valid for key a, but its payload names signed-a's digest.
        source = attachment_ref(Reference.parse(f"{host}/diff/signed-a"), digests["signed-a"])
        replay = SignatureImage.fetch(client, source, with_config=True)
        assert replay is not None, source
        replay.push(client, attachment_ref(Reference.parse(f"{host}/diff/replayed"), digests["replayed"]))
    return digests


def image_ref(registry: str, digests: dict[str, str], w: Workload) -> str:
    base = f"{registry}/diff/../diff/unsigned" if w.image == "dotted" else f"{registry}/diff/{w.image}"
    return f"{base}@{digests[w.image]}" if w.ref == "digest" else f"{base}:{TAG}"


def manifest(name: str, namespace: str, w: Workload, image: str, forged_for: str = "") -> dict[str, Any]:
    """The object as ``kubectl create -f`` / ``replace -f`` sends it."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if w.labels:
        meta["labels"] = dict(w.labels)
    if w.forged:
        # Kyverno's scoped record, written by the user: "pass" for this policy's rule and image.
        meta["annotations"] = {FORGED_ANNOTATION: json.dumps(
            {"version": 1, "policies": {f"/{forged_for}": {"verify-signature": {image: "pass"}}}},
            separators=(",", ":"))}
    containers = [{"name": "app", "image": image}]
    if w.image == "dotted":  # the same image by its plain name: Kyverno ClusterPolicy checks neither
        containers.append({"name": "sidecar", "image": image.replace("/diff/../diff/", "/diff/")})
    if w.kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": containers}}
    selector = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": w.replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": {"containers": containers}}}}


def prepare_namespaces(lab: Lab) -> None:
    for namespace, labels in NAMESPACE_LABELS.items():
        lab.label_namespace(namespace, labels)
