"""What the distribution spec allows as a repository name, a tag and a digest.

Every name and reference is checked here before it becomes part of a path on disk: the name
grammar admits no ``.``/``..`` component and no leading ``_``, so a valid name can never leave the
storage root nor collide with the storage's own ``_manifests``/``_layers`` directories.
"""

from __future__ import annotations

import re

from labkit.errors import RegistryAPIError

# distribution-spec "Pulling manifests": <name> and <reference> grammars.
NAME_RE = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
TAG_RE = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# The algorithms the registry can hash; the spec's general grammar admits others, which the
# registry then refuses as unsupported (DIGEST_INVALID), as distribution does.
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")
# distribution's reference.NameTotalLengthMax.
NAME_MAX = 255


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or not NAME_RE.fullmatch(name):
        raise RegistryAPIError(
            "NAME_INVALID",
            "invalid repository name",
            status=400,
            detail={"name": name[:300], "hint": "lowercase path components [a-z0-9] joined by . _ __ or -"},
        )
    return name


def check_digest(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest):
        raise RegistryAPIError(
            "DIGEST_INVALID",
            "provided digest is not a sha256 or sha512 digest",
            status=400,
            detail={"digest": digest[:300]},
        )
    return digest


def is_digest(reference: str) -> bool:
    """A reference with ``:`` can only be a digest (tags cannot contain ``:``)."""
    return ":" in reference


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise RegistryAPIError(
            "TAG_INVALID", "invalid tag", status=400, detail={"tag": tag[:300]}
        )
    return tag


def check_reference(reference: str) -> str:
    """A manifest reference is a digest or a tag; say which grammar it failed."""
    return check_digest(reference) if is_digest(reference) else check_tag(reference)
