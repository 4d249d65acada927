"""Removing cosign's attachments (signatures, attestations, SBOMs) from a lab registry: ``lab.reset()``."""

from __future__ import annotations

import httpx

from labkit.oci.auth import Credentials
from labkit.oci.client import RegistryClient
from labkit.signing.artifact import is_attachment_tag


def delete_cosign_artifacts(host: str, credentials: Credentials | None = None, *, prefix: str = "") -> int:
    """Delete every ``sha256-….sig/.att/.sbom`` tag in the registry at ``host`` (in repositories
    whose name starts with ``prefix``, when given); how many went."""
    deleted = 0
    auth = (credentials.username, credentials.password) if credentials else None
    with RegistryClient(credentials=credentials) as client:
        # the lab's registries are on this machine: no proxy, as Go tools never proxy loopback
        catalog = httpx.get(f"http://{host}/v2/_catalog", params={"n": 10000}, auth=auth, timeout=10, trust_env=False)
        repos = catalog.json().get("repositories") or []
        for repo in (r for r in repos if r.startswith(prefix)):
            for tag in client.list_tags(f"{host}/{repo}"):
                if is_attachment_tag(tag):
                    client.delete_manifest(f"{host}/{repo}:{tag}")
                    deleted += 1
    return deleted
