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

from labkit.oci.reference import Reference, kyverno_normalize

__all__ = ["GlobError", "compile_glob", "glob_match", "kyverno_normalize", "wildcard_match"]


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


# --- policy-controller: its glob over go-containerregistry names -------------------------

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
    return compile_glob(glob).match(str(Reference.parse(image))) is not None
