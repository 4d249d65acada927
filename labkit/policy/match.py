"""How each admission engine names an image and matches it against a policy pattern.

The two engines disagree on both halves, and the disagreements are what learners trip over:

* Kyverno (``pkg/utils/image/infos.go``) prefixes ``docker.io`` but never ``library/``, drops the
  tag when there is a digest, and matches with go-wildcard v1.0.3, whose ``*`` crosses ``/``,
  ``:`` and ``@``.
* policy-controller (``pkg/apis/glob/glob.go``) matches go-containerregistry's ``ref.Name()``
  (``index.docker.io/library/…``, tag dropped under a digest), and its ``*`` stops at ``/``
  while ``**`` crosses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from labkit.errors import InvalidReferenceError

KYVERNO_DEFAULT_REGISTRY = "docker.io"
GGCR_DEFAULT_REGISTRY = "index.docker.io"

# distribution/reference grammar (reference/regexp.go), as Kyverno parses references.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?)"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_DISTRIBUTION_REFERENCE = re.compile(
    rf"^(?P<domain>{_DOMAIN})/(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)


@dataclass(frozen=True)
class KyvernoImage:
    """Kyverno's ``ImageInfo``: the parts, and the two string forms it matches and patches with."""

    registry: str
    path: str
    tag: str
    digest: str

    def __str__(self) -> str:
        # ImageInfo.String(): a digest replaces the tag entirely.
        base = f"{self.registry}/{self.path}"
        return f"{base}@{self.digest}" if self.digest else f"{base}:{self.tag}"

    @property
    def reference_with_tag(self) -> str:
        return f"{self.registry}/{self.path}:{self.tag}"


def _needs_default_registry(image: str) -> bool:
    # addDefaultRegistry: the first component names a registry only if it has '.' or ':', is
    # "localhost", or is not all lowercase.
    first, slash, _ = image.partition("/")
    if not slash:
        return True
    return not any(c in first for c in ".:") and first != "localhost" and first.lower() == first


def kyverno_image(image: str, default_registry: str = KYVERNO_DEFAULT_REGISTRY) -> KyvernoImage:
    """Parse ``image`` as Kyverno's ``GetImageInfo`` does (default registry mutation on)."""
    full = f"{default_registry}/{image}" if _needs_default_registry(image) else image
    m = _DISTRIBUTION_REFERENCE.match(full)
    if m is None or len(f"{m['domain']}/{m['path']}") > 255:
        raise InvalidReferenceError(
            f"bad image: {full}, defaultRegistry: {default_registry}: invalid reference format",
            hint="write the image as [registry/]repository[:tag][@sha256:<64 hex>] in lowercase",
        )
    tag, digest = m["tag"] or "", m["digest"] or ""
    if not tag and not digest:
        tag = "latest"
    return KyvernoImage(registry=m["domain"], path=m["path"], tag=tag, digest=digest)


def kyverno_normalize(image: str) -> str:
    """The string Kyverno matches ``imageReferences`` against: ``nginx`` → ``docker.io/nginx:latest``."""
    return str(kyverno_image(image))


def wildcard_match(pattern: str, name: str) -> bool:
    """go-wildcard v1.0.3 ``Match``: ``*`` any run (incl. ``/``), ``?`` one character,
    anchored, case-sensitive; the empty pattern matches only the empty string."""
    if pattern == "":
        return name == ""
    # Greedy two-pointer match with backtracking to the last '*': same language as the
    # recursive upstream matcher, without its exponential worst case.
    p = n = 0
    star_p, star_n = -1, 0
    while n < len(name):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == name[n]):
            p += 1
            n += 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p, star_n = p, n
            p += 1
        elif star_p >= 0:
            star_n += 1
            p, n = star_p + 1, star_n
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


# --- policy-controller: go-containerregistry names and its glob ---------------------------

_GGCR_REPOSITORY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-./")
_GGCR_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_GGCR_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST_PORT = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?$")


def _bad_name(image: str, why: str) -> InvalidReferenceError:
    return InvalidReferenceError(
        f"could not parse reference: {image} ({why})",
        hint="write the image as [registry/]repository[:tag|@sha256:<64 hex>]",
    )


def _ggcr_repository(name: str, original: str) -> str:
    first, slash, rest = name.partition("/")
    if slash and (first == "localhost" or any(c in first for c in ".:")):
        registry, repo = first, rest
    else:
        registry, repo = GGCR_DEFAULT_REGISTRY, name
    if not 1 <= len(repo) <= 255 or not set(repo) <= _GGCR_REPOSITORY_CHARS:
        raise _bad_name(original, f"repository {repo!r} must be 1-255 of [a-z0-9_-./]")
    if registry == "docker.io":
        registry = GGCR_DEFAULT_REGISTRY
    if not _HOST_PORT.match(registry):
        raise _bad_name(original, f"registry {registry!r} is not a host[:port]")
    if registry == GGCR_DEFAULT_REGISTRY and "/" not in repo:
        repo = f"library/{repo}"
    return f"{registry}/{repo}"


def _ggcr_split_tag(name: str) -> tuple[str, str] | None:
    base, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:
        return (base, tag) if _GGCR_TAG.match(tag) else None
    return name, "latest"


def ggcr_name(image: str) -> str:
    """go-containerregistry ``name.ParseReference(image).Name()``: what policy-controller globs see.

    ``nginx`` → ``index.docker.io/library/nginx:latest``; ``r/x:t@sha256:…`` → ``r/x@sha256:…``.
    """
    if "@" not in image:
        split = _ggcr_split_tag(image)
        if split is None:
            raise _bad_name(image, "tag must be 1-128 of [A-Za-z0-9_.-]")
        base, tag = split
        return f"{_ggcr_repository(base, image)}:{tag}"
    parts = image.split("@")
    if len(parts) != 2 or not _GGCR_DIGEST.match(parts[1]):
        raise _bad_name(image, "a digest reference is repository@sha256:<64 lowercase hex>")
    base = parts[0]
    split = _ggcr_split_tag(base)
    if split is not None and ":" in base.rpartition("/")[2]:
        base = split[0]  # NewDigest drops a tag that precedes the digest
    return f"{_ggcr_repository(base, image)}@{parts[1]}"


def ggcr_is_digest(image: str) -> bool:
    """Whether go-containerregistry parses ``image`` as a digest reference (the webhook's demand)."""
    try:
        return "@" in ggcr_name(image)
    except InvalidReferenceError:
        return False


_VALID_GLOB = re.compile(r"^[a-zA-Z0-9\-_:/*.@]+$")


class GlobError(ValueError):
    """policy-controller rejects the glob; ``str()`` is its ``invalid glob "<glob>"`` text."""


def compile_glob(glob: str) -> re.Pattern[str]:
    """policy-controller ``glob.Compile``: ``*`` stays within one path component, ``**`` crosses
    ``/``; the bare globs ``*`` and ``*/*`` mean Docker Hub."""
    if glob == "*/*":
        glob = "index.docker.io/*/*"
    elif glob == "*":
        glob = "index.docker.io/library/*"
    if not _VALID_GLOB.match(glob):
        raise GlobError(f'invalid glob "{glob}"')
    parts = (re.escape(piece).replace(r"\*", "[^/]*") for piece in glob.split("**"))
    return re.compile("^" + ".*".join(parts) + "$")


def glob_match(glob: str, image: str) -> bool:
    """Whether a ClusterImagePolicy ``images[].glob`` covers ``image`` (as the webhook matches it)."""
    return compile_glob(glob).match(ggcr_name(image)) is not None
