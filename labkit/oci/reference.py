"""Image references, parsed exactly as go-containerregistry's ``pkg/name`` parses them.

cosign and crane are built on ggcr, so the registry, repository and ``docker-reference`` a
labkit signature carries must be ggcr's. The rules that matter (``pkg/name`` at v0.22.1):

* the first path component is a registry only if it is ``localhost`` or contains ``.`` or ``:``;
  otherwise the whole name is a Docker Hub repository;
* ``docker.io`` is rewritten to ``index.docker.io``, and single-component Docker Hub names get
  ``library/`` (at print time, as ``RepositoryStr()`` does);
* ``name:tag@digest`` parses as a digest reference and the tag is dropped;
* repositories are lowercase ``[a-z0-9_-./]``, 1–255 characters; tags ``[A-Za-z0-9_.-]``,
  1–128 characters; digests are ``sha256:`` plus 64 lowercase hex characters.

Older ggcr differs, and cosign pins older ggcr: cosign v2.6.1 reads ``localhost/x`` as Docker
Hub's ``index.docker.io/localhost/x`` (v3.1.3 reads it as registry ``localhost``), and both
reject one-character repositories such as ``127.0.0.1:5001/a``, which crane v0.22.1 accepts.
Lab images should therefore use ``host:port/`` and repository names of two or more characters.

Kyverno normalises differently (distribution's grammar, ``docker.io``, no ``library/``);
``kyverno_normalize`` gives its string so policy code can match patterns as Kyverno does.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from labkit._internal.gofmt import printable
from labkit.errors import InvalidReferenceError

DEFAULT_REGISTRY = "index.docker.io"
DEFAULT_TAG = "latest"
_DOCKER_HUB_ALIAS = "docker.io"
_DEFAULT_NAMESPACE = "library"

_REPOSITORY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-./"
_TAG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_HINT = "write an image reference as [registry/]repository[:tag][@sha256:<64 hex>], e.g. ghcr.io/org/app:v1"

# Characters Go's net/url accepts unescaped in a host (``shouldEscape`` with ``encodeHost``).
_HOST_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~!$&'()*+,;=:[]<>\""
)

# ggcr ``Registry.Scheme()``: these registries are spoken to over plain HTTP (after HTTPS fails).
_RE_LOCAL = re.compile(r".*\.localhost(?::\d{1,5})?$")
_RE_LOOPBACK = re.compile(r"^127\.0\.0\.1(?::\d{1,5})?$")
_RE_IPV6_LOOPBACK = re.compile(r"^(::1|\[::1\](?::\d{1,5})?)$")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


class _BadName(Exception):
    """Internal: one ggcr ``ErrBadName`` message, turned into InvalidReferenceError at the API edge."""


def _check_element(kind: str, element: str, allowed: str, min_len: int, max_len: int) -> None:
    if not min_len <= len(element) <= max_len:
        raise _BadName(f"{kind} must be between {min_len} and {max_len} characters in length: {element}")
    if any(c not in allowed for c in element):
        raise _BadName(f"{kind} can only contain the characters `{allowed}`: {element}")


def _is_valid_authority(name: str) -> bool:
    """Go's ``url.Parse("//" + name).Host == name``, the check ggcr's ``checkRegistry`` makes."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return False  # url.Parse: "invalid control character in URL"
    if any(c < "\x80" and c not in _HOST_CHARS for c in name):
        return False  # '/', '?', '#', '@' would end or split the host; '%' would be unescaped
    if name.startswith("["):
        end = name.rfind("]")
        if end < 0:
            return False
        try:
            ipaddress.IPv6Address(name[1:end])
        except ValueError:
            return False  # Go rejects bracketed hosts that are not IPv6 literals
        port = name[end + 1 :]
    else:
        colon = name.rfind(":")
        port = name[colon:] if colon >= 0 else ""
    return port == "" or (port[0] == ":" and port[1:].isdigit()) or port == ":"


def _new_registry(name: str, *, strict: bool, default_registry: str) -> str:
    if strict and not name:
        raise _BadName("strict validation requires the registry to be explicitly defined")
    if not _is_valid_authority(name):
        raise _BadName(f"registries must be valid RFC 3986 URI authorities: {name}")
    name = name or default_registry
    return DEFAULT_REGISTRY if name == _DOCKER_HUB_ALIAS else name


def _new_repository(name: str, *, strict: bool, default_registry: str) -> tuple[str, str]:
    if not name:
        raise _BadName("a repository name must be specified")
    registry, repo = "", name
    first, sep, rest = name.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first):
        registry, repo = first, rest
    _check_element("repository", repo, _REPOSITORY_CHARS, 1, 255)
    registry = _new_registry(registry, strict=strict, default_registry=default_registry)
    if "/" not in repo and registry == DEFAULT_REGISTRY:
        if strict:
            raise _BadName("strict validation requires the full repository path (missing 'library')")
        repo = f"{_DEFAULT_NAMESPACE}/{repo}"
    return registry, repo


def _new_tag(name: str, *, strict: bool, default_registry: str) -> tuple[str, str, str]:
    base, tag = name, ""
    head, sep, last = name.rpartition(":")
    # A last ':'-part holding a '/' is a registry port, not a tag ("localhost:5000/app").
    if sep and "/" not in last:
        base, tag = head, last
        if not tag:
            raise _BadName(f"{name} must specify a tag name after the colon")
    if tag or strict:
        _check_element("tag", tag, _TAG_CHARS, 1, 128)
    registry, repo = _new_repository(base, strict=strict, default_registry=default_registry)
    return registry, repo, tag or DEFAULT_TAG


def _check_digest(digest: str) -> None:
    """ggcr accepts only sha256 here; go-digest then checks length before format."""
    if not digest.startswith("sha256:"):
        raise _BadName(f"unsupported digest algorithm: {digest}")
    hex_part = digest[len("sha256:") :]
    if len(hex_part) != 64:
        raise _BadName(f"invalid checksum digest length: {digest}")
    if not re.fullmatch(r"[a-f0-9]{64}", hex_part):
        raise _BadName(f"invalid checksum digest format: {digest}")


def _new_digest(name: str, *, strict: bool, default_registry: str) -> tuple[str, str, str]:
    parts = name.split("@")
    if len(parts) != 2:
        raise _BadName(
            "a digest must contain exactly one '@' separator (e.g. registry/repository@digest) "
            f"saw: {name}"
        )
    base, digest = parts
    _check_digest(digest)
    # ggcr parses "repo:tag" first and, when that works, re-parses its full repository name.
    try:
        registry, repo, _ = _new_tag(base, strict=strict, default_registry=default_registry)
        base = f"{registry}/{repo}"
    except _BadName:
        pass
    registry, repo = _new_repository(base, strict=strict, default_registry=default_registry)
    return registry, repo, digest


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: exactly one of ``tag``/``digest`` is set."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(
        cls, text: str, *, strict: bool = False, default_registry: str = DEFAULT_REGISTRY
    ) -> Reference:
        """ggcr ``name.ParseReference``: try a tag reference, then a digest reference.

        ggcr reports only "could not parse reference"; labkit names the part that failed, taken
        from the digest parse when the text has an '@' and from the tag parse otherwise.
        """
        try:
            registry, repo, tag = _new_tag(text, strict=strict, default_registry=default_registry)
            return cls(registry, repo, tag, None)
        except _BadName as tag_error:
            try:
                registry, repo, digest = _new_digest(
                    text, strict=strict, default_registry=default_registry
                )
                return cls(registry, repo, None, digest)
            except _BadName as digest_error:
                cause = digest_error if "@" in text else tag_error
                raise InvalidReferenceError(  # ggcr quotes nothing: a hostile name stays on one line
                    f"could not parse reference {text!r}: {printable(str(cause))}", hint=_HINT
                ) from None

    @property
    def name(self) -> str:
        """ggcr ``Repository.Name()``: what cosign writes as ``docker-reference``."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        return self.digest or self.tag or DEFAULT_TAG

    def __str__(self) -> str:
        """ggcr ``Reference.Name()``: ``registry/repo:tag`` or ``registry/repo@sha256:…``."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.identifier}"

    def with_digest(self, digest: str) -> Reference:
        """The same repository by digest; the tag is dropped, as ``Repository.Digest()`` does."""
        try:
            _check_digest(digest)
        except _BadName as exc:
            raise InvalidReferenceError(f"invalid digest for {self.name}: {printable(str(exc))}", hint=_HINT) from None
        return replace(self, tag=None, digest=digest)

    def with_tag(self, tag: str) -> Reference:
        try:
            _check_element("tag", tag, _TAG_CHARS, 1, 128)
        except _BadName as exc:
            raise InvalidReferenceError(f"invalid tag for {self.name}: {printable(str(exc))}", hint=_HINT) from None
        return replace(self, tag=tag, digest=None)

    @property
    def registry_is_loopback(self) -> bool:
        """True for ``localhost``, ``*.localhost``, 127.0.0.1 and ::1, with or without a port."""
        host = self.registry
        return (
            host == "localhost"
            or host.startswith("localhost:")
            or bool(_RE_LOCAL.match(host) or _RE_LOOPBACK.match(host) or _RE_IPV6_LOOPBACK.match(host))
        )

    @property
    def is_insecure_by_default(self) -> bool:
        """ggcr ``Registry.Scheme() == "http"``: registries ggcr also tries over plain HTTP.

        Note bare ``localhost`` (no port) is *not* among them in ggcr; RFC 1918 addresses are.
        """
        host = self.registry
        if host.startswith("localhost:") or _RE_LOCAL.match(host) or _RE_LOOPBACK.match(host):
            return True
        if _RE_IPV6_LOOPBACK.match(host):
            return True
        try:
            ip = ipaddress.ip_address(host.split(":")[0])
        except ValueError:
            return False
        return any(ip in net for net in _RFC1918)

    @property
    def api_host(self) -> str:
        """The host the distribution API is reached at. ggcr uses the registry name unchanged,
        ``index.docker.io`` included (Docker Hub serves the API there as well)."""
        return self.registry


# --- Kyverno's normalisation (distribution/reference grammar) -------------------------------

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*)|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_DISTRIBUTION_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
_NAME_TOTAL_LENGTH_MAX = 255


def kyverno_normalize(text: str, *, default_registry: str = "docker.io") -> str:
    """Kyverno's image string (``pkg/utils/image/infos.go``): ``docker.io/nginx:latest`` for
    ``nginx``, ``registry/path@digest`` when there is a digest (the tag is dropped)."""
    first, sep, _ = text.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        text = f"{default_registry}/{text}"
    match = _DISTRIBUTION_REFERENCE.match(text)
    if match is None:
        reason = (
            "repository name must be lowercase"
            if _DISTRIBUTION_REFERENCE.match(text.lower())
            else "invalid reference format"
        )
        raise InvalidReferenceError(f"bad image {text!r}: {reason}", hint=_HINT)
    name, tag, digest = match.groups()
    if len(name) > _NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(
            f"bad image {text!r}: repository name must not be more than {_NAME_TOTAL_LENGTH_MAX} characters",
            hint=_HINT,
        )
    if digest:
        algorithm, _, hex_part = digest.partition(":")
        if _DIGEST_HEX_LENGTHS.get(algorithm) != len(hex_part) or hex_part != hex_part.lower():
            raise InvalidReferenceError(f"bad image {text!r}: invalid digest {digest}", hint=_HINT)
        return f"{name}@{digest}"
    return f"{name}:{tag or DEFAULT_TAG}"


def registry_name_error(name: str, *, strict: bool = False) -> str | None:
    """ggcr ``name.NewRegistry(name[, name.StrictValidation])``'s error text, or None if it parses."""
    try:
        _new_registry(name, strict=strict, default_registry=DEFAULT_REGISTRY)
    except _BadName as exc:
        return str(exc)
    return None


def repository_name_error(name: str, *, strict: bool = False) -> str | None:
    """ggcr ``name.NewRepository(name[, name.StrictValidation])``'s error text, or None."""
    try:
        _new_repository(name, strict=strict, default_registry=DEFAULT_REGISTRY)
    except _BadName as exc:
        return str(exc)
    return None
