"""A client for the OCI distribution API, behaving like go-containerregistry's ``pkg/v1/remote``.

It never trusts content: every manifest and blob it returns has been re-hashed against the digest
it was asked for (or, fetched by tag, against ``Docker-Content-Digest``), and a mismatch raises
:class:`~labkit.errors.DigestMismatchError` instead of returning the bytes.

Transport rules, as cosign and crane apply them:

* registries ggcr speaks plain HTTP to (``localhost:*``, ``*.localhost``, ``127.0.0.1``, ``::1``,
  RFC 1918 addresses; see :attr:`Reference.is_insecure_by_default`) and every registry when
  ``allow_insecure`` is set are tried over HTTP and HTTPS; all others over HTTPS only, and a
  plain-HTTP answer there raises :class:`~labkit.errors.InsecureRegistryError`;
* ``allow_insecure`` (``--allow-insecure-registry``) also skips TLS certificate verification;
* the Authorization header is only ever sent to the registry's own host.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from labkit.errors import (
    AuthenticationError,
    DigestMismatchError,
    InsecureRegistryError,
    LabkitError,
    NotFoundError,
    RegistryDiagnostic,
    RegistryError,
    RegistryUnreachableError,
    UsageError,
)
from labkit.oci.auth import (
    DELETE,
    PULL,
    PUSH,
    Credentials,
    RegistryAuth,
    parse_challenges,
    pick_challenge,
    repository_scope,
)
from labkit.oci.model import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Image,
    ImageIndex,
    Index,
    Manifest,
    Platform,
    compute_digest,
    parse_manifest,
    sha256_digest,
    validate_digest,
)
from labkit.oci.reference import Reference
from labkit.oci.transport import BodyTooLargeError, Response, Transport, TransportError, with_params

if TYPE_CHECKING:
    import ssl

ALL_MANIFEST_TYPES: tuple[str, ...] = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
MANIFEST_LIMIT = 100 * 1024 * 1024  # ggcr pkg/v1/remote/fetcher.go manifestLimit

_NOT_FOUND_CODES = frozenset({"MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN", "BLOB_UPLOAD_UNKNOWN"})
_AUTH_CODES = frozenset({"UNAUTHORIZED", "DENIED"})
_EXPLICIT_PORT = re.compile(r"(?:^|[^:]):\d+$")  # "host:5000", "[::1]:5000"; not a bare "::1"

RefLike = Reference | str


@dataclass(frozen=True)
class FetchedManifest:
    """Manifest bytes exactly as served, with the digest they were verified against."""

    data: bytes
    media_type: str
    digest: str

    def parsed(self) -> Manifest | Index:
        return parse_manifest(self.data, self.media_type)

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.data))


@dataclass
class _Endpoint:
    """What the ping of one registry taught: the base URL to use and how to authenticate."""

    base: str
    auth: RegistryAuth


def _as_ref(ref: RefLike) -> Reference:
    return ref if isinstance(ref, Reference) else Reference.parse(ref)


def _content_type(resp: Response) -> str:
    return resp.headers.get("content-type", "").split(";")[0].strip()


def _verify(data: bytes, expected: str, what: str) -> str:
    """Return ``expected`` if ``data`` hashes to it, else raise: the bytes are never handed out."""
    validate_digest(expected)
    actual = compute_digest(expected.split(":", 1)[0], data)
    if actual != expected:
        raise DigestMismatchError(
            f"{what}: the content received hashes to {actual}, not to {expected}",
            hint="the registry (or something between it and you) altered the content; it was discarded",
        )
    return expected


def go_value(value: Any) -> str:
    """Go's ``fmt`` ``%v`` of a value ``encoding/json`` decoded into ``any``: maps as
    ``map[k:v ...]`` with sorted keys, arrays as ``[a b]``, numbers as float64 ``%g``
    (shortest digits; exponent form below 1e-4 or from 1e+06 on), null as ``<nil>``."""
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_value(value[k])}" for k in sorted(value, key=str)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_float(float(value))
    return str(value)


def _go_float(f: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``, which ``%v`` uses for a float64."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    from decimal import Decimal  # error rendering only: not loaded by every verify

    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp = len(digits) + int(exponent) - 1  # the decimal exponent of the first digit
    minus = "-" if sign else ""
    if exp < -4 or exp >= 6:  # shortest precision decides with 6 (strconv/ftoa.go %g)
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{minus}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{minus}0.{'0' * (-exp - 1)}{text}"
    whole = text[:exp + 1].ljust(exp + 1, "0")
    rest = text[exp + 1:]
    return f"{minus}{whole}{'.' + rest if rest else ''}"


def ggcr_transport_error(resp: Response) -> str:
    """The error go-containerregistry makes of a failed answer (``transport.CheckError`` →
    ``*transport.Error``, pkg/v1/remote/transport/error.go at v0.21.8, which Kyverno v1.19.1
    vendors): ``METHOD URL: `` then the one diagnostic as ``CODE: message[; detail]``, several
    as ``multiple errors returned: a; b``, none as ``unexpected status code N Text[: body]``."""
    request = resp.request
    prefix = f"{request.method} {request.url}: "
    body = resp.content if request.method != "HEAD" else b""
    errors: list[Any] = []
    try:
        doc = json.loads(body) if body else None
        if isinstance(doc, Mapping) and isinstance(doc.get("errors"), list):
            errors = [e for e in doc["errors"] if isinstance(e, Mapping)]
    except (ValueError, RecursionError):  # not JSON, or nested past Python's decoder: no entries
        pass
    status, status_text = resp.status_code, resp.reason_phrase

    def diagnostic(d: Mapping[str, Any]) -> str:
        text = f"{d.get('code') or ''}: {d.get('message') or ''}"
        if d.get("detail") is not None:
            text += f"; {go_value(d['detail'])}"
        return text

    if len(errors) == 1:
        return prefix + diagnostic(errors[0])
    if errors:
        return prefix + "multiple errors returned: " + "; ".join(diagnostic(d) for d in errors)
    if not body:
        if request.method == "HEAD":
            return (prefix + f"unexpected status code {status} {status_text} "
                    "(HEAD responses have no body, use GET for details)")
        return prefix + f"unexpected status code {status} {status_text}"
    return prefix + f"unexpected status code {status} {status_text}: {body.decode(errors='replace')}"


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    import ssl  # an error path: a plain-HTTP verify never loads ssl

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _next_link(resp: Response) -> str | None:
    """The ``rel="next"`` target of a Link header (distribution's tag pagination)."""
    for part in resp.headers.get("link", "").split(","):
        target, _, params = part.partition(";")
        target = target.strip()
        if target.startswith("<") and target.endswith(">") and 'rel="next"' in params.replace(" ", ""):
            return urljoin(resp.url, target[1:-1])
    return None


class RegistryClient:
    """Talks to OCI registries. One instance reuses connections and tokens across calls."""

    def __init__(
        self,
        *,
        allow_insecure: bool = False,
        credentials: Credentials | None = None,
        timeout: float = 30.0,
        transport: Transport | None = None,
    ) -> None:
        self.allow_insecure = allow_insecure
        self._credentials = credentials
        self._http = transport or Transport(verify=not allow_insecure, timeout=timeout)
        self._endpoints: dict[str, _Endpoint] = {}

    @property
    def timeout(self) -> float:
        """Seconds one request may take in all (the transport's)."""
        return self._http.timeout

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- connection, auth and errors ---------------------------------------------------------

    def _endpoint(self, ref: Reference) -> _Endpoint:
        """Ping ``/v2/`` once per registry to pick the scheme and learn the auth challenge."""
        registry = ref.registry
        if registry in self._endpoints:
            return self._endpoints[registry]
        plain_allowed = self.allow_insecure or ref.is_insecure_by_default
        schemes: tuple[str, ...] = ("https",)
        if plain_allowed:
            # ggcr tries HTTPS, then HTTP. With an explicit port, one port speaks one protocol, so
            # labkit asks plain HTTP first: some plain servers answer a TLS hello only on timeout.
            schemes = ("http", "https") if _EXPLICIT_PORT.search(registry) else ("https", "http")
        failures: list[TransportError | Response] = []
        for scheme in schemes:
            try:
                resp = self._http.request("GET", f"{scheme}://{ref.api_host}/v2/")
            except TransportError as exc:
                failures.append(exc)
                continue
            if resp.status_code in (200, 401):
                scheme = urlsplit(resp.url).scheme  # a plain-HTTP port may redirect to HTTPS
                auth = RegistryAuth(registry, self._credentials, self._http)
                challenge = pick_challenge(parse_challenges(resp.headers.get("www-authenticate", "")))
                auth.set_challenge(challenge if resp.status_code == 401 else None, plain_http=scheme == "http")
                endpoint = self._endpoints[registry] = _Endpoint(f"{scheme}://{ref.api_host}", auth)
                return endpoint
            failures.append(resp)
        raise self._ping_error(ref, plain_allowed, failures)

    def _ping_error(
        self, ref: Reference, plain_allowed: bool, failures: list[TransportError | Response]
    ) -> RegistryError:
        registry = ref.registry
        last = failures[-1]
        tls = _tls_failure(last) if isinstance(last, TransportError) else None
        import ssl  # an error path
        if isinstance(tls, ssl.SSLCertVerificationError):
            return RegistryError(
                f"registry {registry} presented a TLS certificate that is not trusted: {tls.verify_message}",
                hint="trust its CA, or pass --allow-insecure-registry to skip verification (lab use only)",
            )
        if tls is not None and not plain_allowed:
            return InsecureRegistryError(
                f"registry {registry} did not complete a TLS handshake; plain HTTP is only used for "
                "loopback registries",
                hint="if it really serves plain HTTP, pass --allow-insecure-registry",
            )
        for failure in failures:
            if isinstance(failure, Response):
                return RegistryError(
                    f"{failure.url} answered {failure.status_code}: {registry} does not look like "
                    "an OCI registry",
                    hint="check the registry host and port in the image reference",
                    status=failure.status_code,
                )
        return RegistryUnreachableError(
            f"cannot reach registry {registry}: {last}",
            hint=f"is it running? `labkit lab status` shows the lab registry; check the port in {ref}",
        )

    def _request(
        self,
        ref: Reference,
        method: str,
        url: str,
        scopes: tuple[str, ...],
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        content: bytes = b"",
        max_body: int | None = None,
        truncate: bool = False,
    ) -> Response:
        endpoint = self._endpoint(ref)
        # A path is appended as is, never resolved against the base: ggcr sends a repository's
        # "." and ".." segments to the registry, which judges the name (urljoin removed them,
        # so "team/../other" fetched, and verified, another repository).
        target = with_params(endpoint.base + url if url.startswith("/") else url, params)
        parts = urlsplit(target)
        for attempt in range(2):
            sent = dict(headers or {})
            if parts.netloc == ref.api_host:  # never hand credentials to another host
                value = endpoint.auth.header(scopes)
                if value:
                    sent["Authorization"] = value
            try:
                resp = self._http.request(method, target, headers=sent, content=content, max_body=max_body,
                                          truncate=truncate)
            except BodyTooLargeError as exc:
                raise RegistryError(
                    f"{method} {target}: {exc}",
                    hint="the registry serves more than any image needs; it was not read further",
                ) from None
            except TransportError as exc:
                hint = (f"the registry answers too slowly: a request may take {self.timeout:g}s in all, "
                        "within the command's or review's own deadline"
                        if isinstance(exc.__cause__, TimeoutError)
                        else f"is it still running? `labkit lab status` shows the lab registry ({ref})")
                raise RegistryUnreachableError(
                    f"{method} {parts.path} on registry {ref.registry} failed: {exc}", hint=hint
                ) from None
            if resp.status_code == 401 and attempt == 0:
                retry_scopes = endpoint.auth.answer(resp, scopes)
                if retry_scopes is not None:
                    scopes = retry_scopes
                    continue
            return resp
        return resp

    @staticmethod
    def _error(resp: Response, what: str) -> RegistryError:
        sent = _registry_errors(resp)
        code, message = (sent[0].code or None, sent[0].message) if sent else (None, None)
        status = resp.status_code
        detail = f"{status} {code}: {message}" if code else f"{status} {resp.reason_phrase}"
        text = f"{what}: registry answered {detail}"
        transport = ggcr_transport_error(resp)
        if status == 404 or code in _NOT_FOUND_CODES:
            return NotFoundError(text, hint="check the repository, tag or digest", status=status, code=code,
                                 transport=transport, registry_errors=sent)
        if status in (401, 403) or code in _AUTH_CODES:
            return AuthenticationError(
                text,
                hint="log in (labkit reads docker's config.json) or pass credentials with push access",
                status=status,
                code=code,
                transport=transport,
                registry_errors=sent,
            )
        return RegistryError(text, status=status, code=code, transport=transport, registry_errors=sent)

    def _expect(self, resp: Response, what: str, *ok: int) -> Response:
        if resp.status_code not in ok:
            raise self._error(resp, what)
        return resp

    # --- manifests --------------------------------------------------------------------------

    def get_manifest(self, ref: RefLike, *, accept: tuple[str, ...] = ALL_MANIFEST_TYPES) -> FetchedManifest:
        r = _as_ref(ref)
        resp = self._request(
            r, "GET", f"/v2/{r.repository}/manifests/{r.identifier}", (repository_scope(r.repository, PULL),),
            headers={"Accept": ", ".join(accept)}, max_body=MANIFEST_LIMIT,
        )
        self._expect(resp, f"fetching manifest {r}", 200)
        data = resp.content
        expected = r.digest or resp.headers.get("docker-content-digest")
        digest = _verify(data, expected, f"manifest {r}") if expected else sha256_digest(data)
        media_type = _content_type(resp)
        if media_type not in ALL_MANIFEST_TYPES:
            # Some registries send application/json; the document names its own type.
            media_type = getattr(parse_manifest(data), "media_type", media_type)
        return FetchedManifest(data=data, media_type=media_type, digest=digest)

    def head_manifest(self, ref: RefLike) -> Descriptor:
        r = _as_ref(ref)
        resp = self._request(
            r, "HEAD", f"/v2/{r.repository}/manifests/{r.identifier}", (repository_scope(r.repository, PULL),),
            headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
        )
        if resp.status_code not in (200, 404):
            # A HEAD error has no body; cosign GETs the manifest and reports the registry's
            # error (e.g. NAME_INVALID for a name it refuses), so ask once more with a GET.
            return self.get_manifest(r).descriptor
        self._expect(resp, f"looking up manifest {r}", 200)
        digest = resp.headers.get("docker-content-digest")
        size = resp.headers.get("content-length")
        if not digest or size is None:
            return self.get_manifest(r).descriptor  # a registry without HEAD details: hash the body
        if r.digest and digest != r.digest:
            raise DigestMismatchError(
                f"manifest {r}: the registry reports digest {digest} for it",
                hint="the registry is serving different content under this digest; do not use it",
            )
        return Descriptor(media_type=_content_type(resp), digest=validate_digest(digest), size=int(size))

    def resolve(self, ref: RefLike) -> str:
        """The digest a tag (or digest) reference points at, as ``crane digest`` prints it."""
        return self.head_manifest(ref).digest

    def put_manifest(self, ref: RefLike, data: bytes, media_type: str) -> str:
        """PUT manifest bytes by tag or digest; returns their digest.

        A manifest with a ``subject`` is also recorded for the referrers API: if the registry does
        not show it implements that API, the ``sha256-<hex>`` fallback index is updated as ggcr
        ``write.go`` does.
        """
        r = _as_ref(ref)
        digest = sha256_digest(data)
        if r.digest:
            _verify(data, r.digest, f"pushing manifest to {r}")
        resp = self._request(
            r, "PUT", f"/v2/{r.repository}/manifests/{r.identifier}", (repository_scope(r.repository, PUSH),),
            headers={"Content-Type": media_type}, content=data,
        )
        self._expect(resp, f"pushing manifest {digest} to {r}", 200, 201, 202)
        stored = resp.headers.get("docker-content-digest")
        if stored and stored.startswith("sha256:") and stored != digest:
            raise RegistryError(
                f"registry stored the manifest pushed to {r} as {stored}, but its bytes hash to {digest}",
                hint="the registry rewrote the manifest; signatures over the local digest will not match",
            )
        doc = json.loads(data)
        if isinstance(doc, dict) and isinstance(doc.get("subject"), dict):
            self._record_referrer(r, doc, data, digest, media_type, resp)
        return digest

    def delete_manifest(self, ref: RefLike) -> None:
        r = _as_ref(ref)
        resp = self._request(
            r, "DELETE", f"/v2/{r.repository}/manifests/{r.identifier}", (repository_scope(r.repository, DELETE),)
        )
        self._expect(resp, f"deleting manifest {r}", 200, 202)

    # --- blobs ------------------------------------------------------------------------------

    def blob_exists(self, ref: RefLike, digest: str) -> bool:
        r = _as_ref(ref)
        resp = self._request(
            r, "HEAD", f"/v2/{r.repository}/blobs/{validate_digest(digest)}", (repository_scope(r.repository, PULL),)
        )
        if resp.status_code == 404:
            return False
        self._expect(resp, f"checking blob {digest} in {r.name}", 200)
        return True

    def get_blob(self, ref: RefLike, digest: str, *, size: int | None = None) -> bytes:
        """The blob's bytes; with ``size`` (its descriptor's), no more than that many are read and
        hashed, whatever follows them: ggcr reads a layer through ``verify.ReadCloser``, an
        ``io.LimitReader`` at the descriptor's size (cosign verifies a payload with a byte more)."""
        r = _as_ref(ref)
        resp = self._request(
            r, "GET", f"/v2/{r.repository}/blobs/{validate_digest(digest)}", (repository_scope(r.repository, PULL),),
            max_body=size, truncate=size is not None,
        )
        self._expect(resp, f"fetching blob {digest} from {r.name}", 200)
        data = resp.content
        _verify(data, digest, f"blob {r.name}@{digest}")
        return data

    def push_blob(
        self,
        ref: RefLike,
        data: bytes,
        *,
        digest: str | None = None,
        chunk_size: int | None = None,
        mount_from: str | None = None,
    ) -> str:
        """Upload ``data`` unless the repository has it; returns its digest.

        ``mount_from`` names another repository on the same registry to mount the blob from
        (201, no upload); a registry that answers 202 instead gets the bytes uploaded. With
        ``chunk_size`` the bytes go up in PATCH requests of that size, else in one PUT.
        """
        r = _as_ref(ref)
        digest = _verify(data, digest, "blob to push") if digest else sha256_digest(data)
        if chunk_size is not None and chunk_size <= 0:
            raise UsageError(f"chunk size must be positive, got {chunk_size}")
        if self.blob_exists(r, digest):
            return digest
        scopes: tuple[str, ...] = (repository_scope(r.repository, PUSH),)
        params: dict[str, str] = {}
        if mount_from:
            params = {"mount": digest, "from": mount_from}
            scopes = (*scopes, repository_scope(mount_from, PULL))
        what = f"uploading blob {digest} to {r.name}"
        resp = self._request(r, "POST", f"/v2/{r.repository}/blobs/uploads/", scopes, params=params)
        self._expect(resp, what, 201, 202)
        if resp.status_code == 201:
            return digest  # mounted
        location = self._location(resp, what)
        if chunk_size:
            for start in range(0, len(data), chunk_size):
                chunk = data[start : start + chunk_size]
                resp = self._request(
                    r, "PATCH", location, scopes, content=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{start}-{start + len(chunk) - 1}",
                    },
                )
                self._expect(resp, what, 202, 204)
                location = self._location(resp, what)
            body = b""
        else:
            body = data
        resp = self._request(
            r, "PUT", with_params(location, {"digest": digest}), scopes,
            content=body, headers={"Content-Type": "application/octet-stream"},
        )
        self._expect(resp, what, 201)
        stored = resp.headers.get("docker-content-digest")
        if stored and stored != digest:
            raise RegistryError(f"{what}: the registry stored it as {stored}")
        return digest

    @staticmethod
    def _location(resp: Response, what: str) -> str:
        location = resp.headers.get("location")
        if not location:
            raise RegistryError(f"{what}: the registry sent no upload Location", status=resp.status_code)
        return urljoin(resp.url, location)

    # --- tags and referrers -----------------------------------------------------------------

    def list_tags(self, ref: RefLike, *, page_size: int | None = None) -> list[str]:
        """All tags of the repository, following ``Link: <…>; rel="next"`` pages."""
        r = _as_ref(ref)
        url: str | None = f"/v2/{r.repository}/tags/list"
        # Only the first request takes n: a Link URL carries its own query.
        params: dict[str, str] | None = {"n": str(page_size)} if page_size else None
        tags: list[str] = []
        seen: set[str] = set()
        while url and url not in seen:
            seen.add(url)
            resp = self._request(r, "GET", url, (repository_scope(r.repository, PULL),), params=params)
            self._expect(resp, f"listing tags of {r.name}", 200)
            tags.extend(resp.json().get("tags") or [])
            url, params = _next_link(resp), None
        return tags

    def referrers(self, ref: RefLike, *, artifact_type: str | None = None) -> Index:
        """Manifests whose ``subject`` is ``ref``'s digest: the referrers API, else the fallback tag."""
        r = _as_ref(ref)
        if not r.digest:
            raise UsageError(f"referrers need a digest reference, got {r}", hint="resolve the tag first")
        scopes = (repository_scope(r.repository, PULL),)
        params = {"artifactType": artifact_type} if artifact_type else {}
        resp = self._request(
            r, "GET", f"/v2/{r.repository}/referrers/{r.digest}", scopes,
            headers={"Accept": OCI_INDEX}, params=params,
        )
        if resp.status_code == 200 and _content_type(resp) == OCI_INDEX:
            index = parse_manifest(resp.content, OCI_INDEX)
        elif resp.status_code in (200, 400, 404, 406):
            try:
                index = self.get_manifest(self._fallback_tag(r), accept=(OCI_INDEX,)).parsed()
            except NotFoundError:
                return Index(manifests=())
        else:
            raise self._error(resp, f"listing referrers of {r}")
        if not isinstance(index, Index):
            raise RegistryError(f"the referrers of {r} are not an OCI index")
        if artifact_type:
            # Filter here too: the API may ignore the parameter and the fallback index has none.
            index = replace(index, manifests=tuple(d for d in index.manifests if d.artifact_type == artifact_type))
        return index

    def push_referrer(self, ref: RefLike, manifest_bytes: bytes, media_type: str) -> str:
        """PUT a manifest that has a ``subject`` by its digest into ``ref``'s repository."""
        r = _as_ref(ref)
        doc = json.loads(manifest_bytes)
        if not isinstance(doc, dict) or not isinstance(doc.get("subject"), dict):
            raise UsageError(f"a referrer manifest for {r.name} needs a subject descriptor")
        return self.put_manifest(r.with_digest(sha256_digest(manifest_bytes)), manifest_bytes, media_type)

    @staticmethod
    def _fallback_tag(r: Reference) -> Reference:
        assert r.digest is not None
        return r.with_tag(r.digest.replace(":", "-", 1))

    def _record_referrer(
        self, r: Reference, doc: dict[str, Any], data: bytes, digest: str, media_type: str, put: Response
    ) -> None:
        subject = validate_digest(doc["subject"].get("digest", ""))
        if put.headers.get("oci-subject") == subject:
            return  # the registry indexed it itself (distribution-spec v1.1)
        subject_ref = r.with_digest(subject)
        probe = self._request(
            r, "GET", f"/v2/{r.repository}/referrers/{subject}", (repository_scope(r.repository, PULL),),
            headers={"Accept": OCI_INDEX},
        )
        if probe.status_code == 200 and _content_type(probe) == OCI_INDEX:
            return
        config = doc.get("config")
        if not isinstance(config, dict):
            config = {}
        entry = Descriptor(
            media_type=doc.get("mediaType") or media_type,
            digest=digest,
            size=len(data),
            annotations=doc.get("annotations") or None,
            # Image spec: artifactType, else the config media type (ggcr v0.21.6+).
            artifact_type=doc.get("artifactType") or config.get("mediaType") or None,
        )
        tag = self._fallback_tag(subject_ref)
        try:
            current = self.get_manifest(tag, accept=(OCI_INDEX,)).parsed()
        except NotFoundError:
            current = Index(manifests=())
        if not isinstance(current, Index) or current.media_type != OCI_INDEX:
            raise RegistryError(
                f"the referrers fallback tag {tag} holds something other than an OCI index",
                hint="delete that tag or push referrers to a registry with the referrers API",
            )
        if any(d.digest == digest for d in current.manifests):
            return
        manifests = tuple(sorted((*current.manifests, entry), key=lambda d: d.digest))
        self.put_manifest(tag, replace(current, manifests=manifests).to_json(), OCI_INDEX)

    # --- whole images -----------------------------------------------------------------------

    def push_image(self, ref: RefLike, image: Image | ImageIndex, *,
                   progress: Callable[[int], None] | None = None) -> str:
        """Push blobs (skipping those present), then manifests children first; returns the digest.
        ``progress`` is called with each blob's size once it is in the registry."""
        r = _as_ref(ref)
        if isinstance(image, ImageIndex):
            for child in image.images:
                self.push_image(r.with_digest(child.digest), child, progress=progress)
        else:
            for blob_digest, blob in image.blobs().items():
                self.push_blob(r, blob, digest=blob_digest)
                if progress is not None:
                    progress(len(blob))
        media_type = image.index.media_type if isinstance(image, ImageIndex) else image.manifest.media_type
        return self.put_manifest(r, image.manifest_bytes, media_type)

    def pull_image(self, ref: RefLike, *, platform: Platform | str | None = None) -> Image | ImageIndex:
        """Fetch a manifest and everything it points to, all verified. With ``platform``, an index
        resolves to the matching image."""
        r = _as_ref(ref)
        fetched = self.get_manifest(r)
        parsed = fetched.parsed()
        if isinstance(parsed, Manifest):
            return self._pull_manifest(r, fetched.data, parsed)
        children = []
        for desc in parsed.manifests:
            child = self.get_manifest(r.with_digest(desc.digest))
            child_parsed = child.parsed()
            if not isinstance(child_parsed, Manifest):
                raise LabkitError(
                    f"{r} nests an index ({desc.digest}); labkit pulls one level of index only",
                    hint="pull that nested index by its digest",
                )
            children.append((desc, child, child_parsed))
        if platform is not None:
            want = Platform.parse(platform) if isinstance(platform, str) else platform
            for desc, child, child_parsed in children:
                p = desc.platform
                if p and p.os == want.os and p.architecture == want.architecture and (
                    want.variant is None or p.variant == want.variant
                ):
                    return self._pull_manifest(r, child.data, child_parsed)
            raise NotFoundError(
                f"{r} has no image for platform {want}",
                hint="available: " + ", ".join(str(d.platform) for d, _, _ in children if d.platform),
            )
        images = [self._pull_manifest(r, child.data, parsed_child) for _, child, parsed_child in children]
        return ImageIndex(index=parsed, images=images, raw_manifest=fetched.data)

    def _pull_manifest(self, r: Reference, data: bytes, manifest: Manifest) -> Image:
        config = self.get_blob(r, manifest.config.digest, size=manifest.config.size)
        layers = [self.get_blob(r, layer.digest, size=layer.size) for layer in manifest.layers]
        return Image(manifest=manifest, config=config, layers=layers, raw_manifest=data)


def _registry_errors(resp: Response) -> tuple[RegistryDiagnostic, ...]:
    """Every entry of an OCI error body (``{"errors": [{"code", "message", "detail"}]}``), in order;
    none when the body is not one."""
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested too deep
        return ()
    if not isinstance(errors, list):
        return ()
    return tuple(RegistryDiagnostic(str(e.get("code") or ""), str(e.get("message") or ""), e.get("detail"))
                 for e in errors if isinstance(e, dict))
