"""``triangulate`` and ``tree``: where an image's attachments live, and what is there.

Output matches cosign's ``triangulate`` and ``tree`` (``cmd/cosign/cli/{triangulate,tree}.go``),
except that cosign prints tree categories in Go map order (random); labkit prints attestations,
signatures, then SBOMs, always.
"""

from __future__ import annotations

from dataclasses import dataclass

from labkit.errors import UsageError
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.signing.artifact import SUFFIXES, attachment_ref, fetch_manifest

_HEADERS = {
    "att": "💾 Attestations for an image tag",
    "sig": "🔐 Signatures for an image tag",
    "sbom": "📦 SBOMs for an image tag",
}


def triangulate(
    ref: Reference | str,
    *,
    client: RegistryClient,
    kind: str = "signature",
    repository: str | None = None,
) -> str:
    """The reference cosign would read ``kind`` from; computed, not checked for existence."""
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    digest = image.digest or client.resolve(image)
    if kind == "digest":
        return str(image.with_digest(digest))
    if kind not in SUFFIXES:
        raise UsageError(
            f"unknown --type {kind!r}", hint=f"use one of: {', '.join([*SUFFIXES, 'digest'])}"
        )
    return str(attachment_ref(image, digest, SUFFIXES[kind], repository=repository))


@dataclass(frozen=True)
class TreeNode:
    tag: Reference
    kind: str  # "att", "sig" or "sbom"
    layer_digests: tuple[str, ...]


def tree(
    ref: Reference | str, *, client: RegistryClient, repository: str | None = None
) -> list[TreeNode]:
    """The legacy attachments (``.att``, ``.sig``, ``.sbom``) present for ``ref``'s digest."""
    image = Reference.parse(ref) if isinstance(ref, str) else ref
    digest = image.digest or client.resolve(image)
    nodes = []
    for suffix in _HEADERS:
        tag = attachment_ref(image, digest, suffix, repository=repository)
        manifest = fetch_manifest(client, tag)
        if manifest and manifest.layers:
            nodes.append(TreeNode(tag, suffix, tuple(layer.digest for layer in manifest.layers)))
    return nodes


def format_tree(typed_ref: str, nodes: list[TreeNode]) -> str:
    lines = [f"📦 Supply Chain Security Related artifacts for an image: {typed_ref}"]
    if not nodes:
        # cosign ends this message without a newline.
        return (
            lines[0]
            + f"\nNo Supply Chain Security Related Artifacts found for image {typed_ref},\n"
            + " start creating one with simply running$ cosign sign <img>"
        )
    for node in nodes:
        lines.append(f"└── {_HEADERS[node.kind]}: {node.tag}")
        for i, digest in enumerate(node.layer_digests):
            branch = "└──" if i == len(node.layer_digests) - 1 else "├──"
            lines.append(f"   {branch} 🍒 {digest}")
    return "\n".join(lines) + "\n"
