"""Registry authentication: credentials, docker ``config.json``, and the challenge/response flows.

Behaviour follows go-containerregistry (``pkg/authn/keychain.go``, ``pkg/v1/remote/transport``
``ping.go``/``basic.go``/``bearer.go``) so labkit authenticates wherever cosign and crane do:

* credentials come from an explicit :class:`Credentials`, else from the docker config file
  (``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``), looked up first by
  ``registry/repository`` and then by registry, Docker Hub under ``https://index.docker.io/v1/``;
* a ``Basic`` challenge is answered with the credentials on every request;
* a ``Bearer`` challenge is answered by asking the token ``realm`` (GET, with ``service`` and one
  ``scope`` parameter per scope, basic-authenticated when there are credentials) and sending the
  returned ``token``/``access_token``. Tokens are cached per scope set.

Passwords and tokens never appear in messages, reprs or logs.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from labkit.errors import AuthenticationError
from labkit.oci.transport import TransportError, with_params

if TYPE_CHECKING:
    from labkit.oci.transport import Response, Transport

DOCKER_HUB = "index.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"

PULL = "pull"
PUSH = "push,pull"  # ggcr's PushScope: a few registries read only the first action
DELETE = "push,pull,delete"  # ggcr's DeleteScope


def repository_scope(repository: str, actions: str) -> str:
    return f"repository:{repository}:{actions}"


def _grants(scopes: tuple[str, ...]) -> set[tuple[str, str, str]]:
    """``repository:app:push,pull`` → {(repository, app, push), (repository, app, pull)}."""
    out: set[tuple[str, str, str]] = set()
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        out.update((kind, name, action) for action in actions.split(","))
    return out


@dataclass(frozen=True)
class Credentials:
    """A username and password (or token used as password). The password is left out of repr."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


# --- docker config.json ---------------------------------------------------------------------


def docker_config_path() -> Path:
    """``$DOCKER_CONFIG/config.json`` when DOCKER_CONFIG is set, else ``~/.docker/config.json``."""
    directory = os.environ.get("DOCKER_CONFIG")
    return Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"


def auth_key_hostname(key: str) -> str:
    """docker/cli ``ConvertToHostname``: an ``auths`` key ``https://host:port/v1/`` → ``host:port``."""
    if "://" in key:
        key = key.split("://", 1)[1]
    return key.split("/", 1)[0]


def auth_entry_credentials(entry: Mapping[str, object]) -> Credentials | None:
    """The credentials of one ``auths`` entry (docker's config.json, a ``.dockerconfigjson``
    Secret): its ``auth`` (base64 ``user:password``), else ``username`` and ``password``.
    Raises ValueError when ``auth`` is not base64 of ``user:password``."""
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        username, sep, password = decoded.partition(":")
        if not sep:
            raise ValueError("'auth' is not base64 of 'username:password'")
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret)
    return None


def credentials_from_docker_config(
    registry: str, repository: str | None = None, *, path: Path | None = None
) -> Credentials | None:
    """The credentials docker (and ggcr's default keychain) would use for ``registry/repository``.

    Credential helpers (``credsStore``/``credHelpers``) are not run: labkit reads the file only.
    """
    path = path or docker_config_path()
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AuthenticationError(
            f"cannot read docker config {path}: {exc}", hint="fix or remove that file"
        ) from None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = [f"{registry}/{repository}"] if repository else []
    wanted.append(registry)
    for target in wanted:
        key = DOCKER_HUB_AUTH_KEY if target == DOCKER_HUB else target
        # docker/cli's file store: exact key first, then any key whose hostname equals it.
        candidates = [key] + [k for k in auths if k != key and auth_key_hostname(k) == key]
        for candidate in candidates:
            entry = auths.get(candidate)
            if isinstance(entry, dict):
                try:
                    creds = auth_entry_credentials(entry)
                except ValueError:
                    raise AuthenticationError(
                        f"the 'auth' value for {candidate!r} in {path} is not base64 of 'username:password'",
                        hint="run `docker login` again or fix that entry",
                    ) from None
                if creds:
                    return creds
    return None


# --- WWW-Authenticate ------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-cased: "basic" or "bearer"
    params: dict[str, str]


_CHALLENGE_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into challenges (RFC 7235, as distribution sends it)."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        scheme, _, rest = rest.partition(" ")
        params: dict[str, str] = {}
        while True:
            m = _CHALLENGE_RE.match(rest)
            # A bare token not followed by '=' starts the next challenge.
            if not m:
                break
            quoted, bare = m.group(2), m.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
            params[m.group(1).lower()] = value
            rest = rest[m.end() :]
        out.append(Challenge(scheme.strip(",").lower(), params))
        rest = rest.strip().lstrip(",").strip()
    return out


def pick_challenge(challenges: list[Challenge]) -> Challenge | None:
    """ggcr ``pickFromMultipleChallenges``: the first basic or bearer challenge, else the first."""
    for c in challenges:
        if c.scheme in ("basic", "bearer"):
            return c
    return challenges[0] if challenges else None


# --- answering challenges --------------------------------------------------------------------


def _check_realm(realm: str, registry: str, plain_http: bool) -> None:
    """ggcr ``validateRealmURL``: https only (http when the registry itself is plain HTTP), and no
    token server on a private or loopback IP unless it is the registry's own host:port."""
    parts = urlsplit(realm)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not plain_http):
        raise AuthenticationError(
            f"registry {registry} sent a token realm {realm!r} with a scheme labkit refuses",
            hint="the token server must use https (http only for a plain-HTTP loopback registry)",
        )
    if parts.netloc == registry:
        return
    try:
        ip = ipaddress.ip_address(parts.hostname or "")
    except ValueError:
        return
    if ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_unspecified:
        raise AuthenticationError(
            f"registry {registry} sent a token realm {realm!r} on a private address other than its own",
            hint="serve the token endpoint from the registry's own host:port",
        )


class RegistryAuth:
    """Authorization for one registry: remembers the challenge and caches bearer tokens."""

    def __init__(self, registry: str, credentials: Credentials | None, http: Transport) -> None:
        self.registry = registry
        self._explicit = credentials
        self._from_config: dict[str, Credentials | None] = {}
        self._http = http
        self._challenge: Challenge | None = None
        self._plain_http = False
        self._tokens: dict[tuple[str, ...], str] = {}

    def credentials_for(self, scopes: tuple[str, ...]) -> Credentials | None:
        """Explicit credentials, else docker config's for the first scope's repository (ggcr's
        keychain looks up ``registry/repository`` before ``registry``)."""
        if self._explicit:
            return self._explicit
        repository = scopes[0].split(":")[1] if scopes else ""
        if repository not in self._from_config:
            self._from_config[repository] = credentials_from_docker_config(self.registry, repository or None)
        return self._from_config[repository]

    def set_challenge(self, challenge: Challenge | None, *, plain_http: bool) -> None:
        self._challenge = challenge
        self._plain_http = plain_http

    def header(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization value to send for a request needing ``scopes``, fetching a token once."""
        c = self._challenge
        if c is None:
            return None
        if c.scheme == "basic":
            creds = self.credentials_for(scopes)
            return creds.basic_header() if creds else None
        if c.scheme == "bearer":
            token = self._tokens.get(scopes) or self._covering_token(scopes)
            if token is None:
                token = self._tokens[scopes] = self._fetch_token(c, scopes)
            return f"Bearer {token}"
        return None

    def _covering_token(self, scopes: tuple[str, ...]) -> str | None:
        """A cached token granting at least ``scopes`` (a push,pull token serves a pull)."""
        wanted = _grants(scopes)
        for held, token in self._tokens.items():
            if wanted <= _grants(held):
                return token
        return None

    def answer(self, response: Response, scopes: tuple[str, ...]) -> tuple[str, ...] | None:
        """After a 401: adopt its challenge and return the scopes to retry with once, or None when a
        retry cannot help (no usable challenge, or basic credentials were already sent)."""
        challenge = pick_challenge(parse_challenges(response.headers.get("www-authenticate", "")))
        if challenge is None or challenge.scheme not in ("basic", "bearer"):
            return None
        if challenge.scheme == "basic":
            if self.credentials_for(scopes) is None or (self._challenge and self._challenge.scheme == "basic"):
                return None
        else:
            # ggcr adds a scope the registry names in its challenge (e.g. a mount source).
            extra = challenge.params.get("scope")
            if extra and extra not in scopes:
                scopes = (*scopes, extra)
            self._tokens.pop(scopes, None)
        self._challenge = challenge
        return scopes

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthenticationError(
                f"registry {self.registry} sent a Bearer challenge without a realm",
                hint="the registry's auth configuration is broken; ask its operator",
            )
        _check_realm(realm, self.registry, self._plain_http)
        params = [("scope", s) for s in scopes]
        if challenge.params.get("service"):
            params.insert(0, ("service", challenge.params["service"]))
        creds = self.credentials_for(scopes)
        headers = {"Authorization": creds.basic_header()} if creds else {}
        try:
            resp = self._http.request("GET", with_params(realm, params), headers=headers)
        except TransportError as exc:
            raise AuthenticationError(
                f"cannot reach the token server {realm} of registry {self.registry}: {exc}",
                hint="check that the token service is running",
            ) from None
        if resp.status_code in (401, 403):
            who = f"user {creds.username!r}" if creds else "anonymous access"
            raise AuthenticationError(
                f"token server {realm} refused {who} for {' '.join(scopes)} on {self.registry}",
                hint="check the username and password (labkit reads docker's config.json too)",
                status=resp.status_code,
            )
        try:
            body = resp.json()
            token = body.get("token") or body.get("access_token")
        except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested too deep
            token = None
        if resp.status_code != 200 or not isinstance(token, str) or not token:
            raise AuthenticationError(
                f"token server {realm} of registry {self.registry} answered {resp.status_code} "
                "without a token",
                hint="the registry's token service is misconfigured",
                status=resp.status_code,
            )
        return token
