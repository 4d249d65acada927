"""The errors Go standard-library decoders give, for engines that decode user input with them:
``net/url.Parse`` (knative's ``apis.URL`` fields), ``encoding/base64.StdEncoding`` (JSON ``[]byte``
fields), ``encoding/json``'s syntax check and the first steps of ``crypto/x509.ParseCertificate``.
Each function returns None where Go succeeds, else Go's error text, following the Go 1.26 sources
(``net/url/url.go``, ``encoding/base64/base64.go``, ``encoding/json/scanner.go``,
``crypto/x509/parser.go``).
"""

from __future__ import annotations

import base64
import ipaddress
import re

from cryptography import x509

from labkit._internal.gofmt import go_quote

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                        "-._~!$&'()*+,;=:[]<>\"")
_USERINFO_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            "-._:~!$&'()*+,;=%@")
_HEX = frozenset("0123456789abcdefABCDEF")
_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


class _URLError(Exception):
    pass


def _quote_bytes(piece: bytes) -> str:
    """``strconv.Quote`` of bytes that may end inside a UTF-8 sequence (as Go slices them)."""
    text = piece.decode(errors="surrogateescape")
    return '"' + "".join(f"\\x{ord(ch) - 0xDC00:02x}" if "\udc80" <= ch <= "\udcff" else go_quote(ch)[1:-1]
                         for ch in text) + '"'


def _unescape(text: str, *, host: bool = False) -> None:
    s, i = text.encode(), 0
    while i < len(s):
        c = chr(s[i])
        if c == "%":
            if i + 2 >= len(s) or chr(s[i + 1]) not in _HEX or chr(s[i + 2]) not in _HEX:
                raise _URLError("invalid URL escape " + _quote_bytes(s[i:i + 3]))
            if host and int(chr(s[i + 1]), 16) < 8 and s[i:i + 3] != b"%25":
                raise _URLError("invalid URL escape " + _quote_bytes(s[i:i + 3]))
            i += 3
            continue
        if host and s[i] < 0x80 and c not in _HOST_CHARS:
            raise _URLError("invalid character " + go_quote(c) + " in host name")
        i += 1


def _valid_port(port: str) -> bool:
    return port == "" or (port[0] == ":" and all("0" <= c <= "9" for c in port[1:]))


def _parse_host(scheme: str, host: str) -> None:
    bracket = host.rfind("[")
    if bracket > 0:
        raise _URLError("invalid IP-literal")
    if bracket == 0:
        close = host.rfind("]")
        if close < 0:
            raise _URLError("missing ']' in host")
        port = host[close + 1:]
        if not _valid_port(port):
            raise _URLError(f"invalid port {go_quote(port)} after host")
        name = host[1:close]
        zone = name.find("%25")
        _unescape(name if zone < 0 else name[:zone], host=True)
        address = name if zone < 0 else name[:zone]
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:
            raise _URLError(f"invalid host: ParseAddr({go_quote(address)}): unable to parse IP") from None
        if parsed.version == 4:
            raise _URLError("invalid IP-literal")
        return
    first = host.find(":")
    if first >= 0:
        last = host.rfind(":")
        colon = first if scheme in ("http", "https") else last  # Go 1.26: strict colons for http(s)
        port = host[colon:]
        if not _valid_port(port):
            raise _URLError(f"invalid port {go_quote(port)} after host")
    _unescape(host, host=True)


def _scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise _URLError("missing protocol scheme")
            return raw[:i].lower(), raw[i + 1:]
        return "", raw
    return "", raw


def _parse(raw: str, *, via_request: bool = False) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _URLError("net/url: invalid control character in URL")
    if raw == "" and via_request:
        raise _URLError("empty url")
    if raw == "*":
        return
    scheme, rest = _scheme(raw)
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        if scheme:
            return  # opaque
        if via_request:
            raise _URLError("invalid URI for request")
        if ":" in rest.partition("/")[0]:
            raise _URLError("first path segment in URL cannot contain colon")
    if (scheme or (not via_request and not rest.startswith("///"))) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        at = authority.rfind("@")
        _parse_host(scheme, authority[at + 1:])
        if at >= 0:
            userinfo = authority[:at]
            if any(c not in _USERINFO_CHARS for c in userinfo):
                raise _URLError("net/url: invalid userinfo")
            for part in userinfo.split(":", 1):
                _unescape(part)
    _unescape(rest)


def url_parse_error(raw: str) -> str | None:
    """``url.Parse(raw)``'s error text (``parse "<url>": <reason>``), or None."""
    head, hash_, fragment = raw.partition("#")
    try:
        _parse(head)
    except _URLError as exc:
        return f"parse {go_quote(head)}: {exc}"
    if hash_:
        try:
            _unescape(fragment)
        except _URLError as exc:
            return f"parse {go_quote(raw)}: {exc}"
    return None


def request_uri_error(raw: str) -> str | None:
    """``url.ParseRequestURI(raw)``'s error text, or None: an absolute URI or an absolute path."""
    try:
        _parse(raw, via_request=True)
    except _URLError as exc:
        return f"parse {go_quote(raw)}: {exc}"
    return None


def url_parts(raw: str) -> tuple[str, str]:
    """The scheme (lower case) and host (with port) ``url.Parse`` finds in a URL it accepts."""
    scheme, rest = _scheme(raw.partition("#")[0])
    rest = rest.partition("?")[0]
    if not rest.startswith("//") or (not scheme and rest.startswith("///")):
        return scheme, ""
    authority = rest[2:].partition("/")[0]
    return scheme, authority[authority.rfind("@") + 1:]


def split_host_port_error(hostport: str) -> str | None:
    """``net.SplitHostPort(hostport)``'s error text (``address …: …``), or None."""
    def error(why: str) -> str:
        return f"address {hostport}: {why}" if hostport else why

    last = hostport.rfind(":")
    if last < 0:
        return error("missing port in address")
    j = k = 0
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return error("missing ']' in address")
        if end + 1 == len(hostport):
            return error("missing port in address")
        if end + 1 != last:
            return error("too many colons in address" if hostport[end + 1] == ":" else "missing port in address")
        j, k = 1, end + 1
    elif ":" in hostport[:last]:
        return error("too many colons in address")
    if "[" in hostport[j:]:
        return error("unexpected '[' in address")
    if "]" in hostport[k:]:
        return error("unexpected ']' in address")
    return None


def base64_error(text: str) -> str | None:
    """``base64.StdEncoding.Decode``'s error (``illegal base64 data at input byte N``), or None.
    Go skips ``\\r`` and ``\\n``, requires padding, and counts bytes of the UTF-8 input."""
    src = text.encode()
    si = 0
    while True:
        j = 0
        while j < 4:
            if si == len(src):
                if j == 0:
                    return None
                return _corrupt(si - j)
            ch = chr(src[si])
            si += 1
            if ch in _B64:
                j += 1
                continue
            if ch in "\r\n":
                continue
            if ch != "=" or j < 2:
                return _corrupt(si - 1)
            if j == 2:
                while si < len(src) and src[si] in b"\r\n":
                    si += 1
                if si == len(src):
                    return _corrupt(len(src))
                if src[si] != ord("="):
                    return _corrupt(si - 1)
                si += 1
            while si < len(src) and src[si] in b"\r\n":
                si += 1
            return _corrupt(si) if si < len(src) else None


def _corrupt(offset: int) -> str:
    return f"illegal base64 data at input byte {offset}"


# --- encoding/json: the syntax check Unmarshal runs first ---------------------------------------


class _JSONError(Exception):
    pass


def _json_char(c: int) -> str:
    """scanner.go ``quoteChar``: the byte as a rune, quoted."""
    if c == ord("'"):
        return "'\\''"
    if c == ord('"'):
        return "'\"'"
    return "'" + go_quote(chr(c))[1:-1] + "'"


_SPACE_TAKING = {"looking for beginning of value", "looking for beginning of object key string", "after object key",
                 "after object key:value pair", "after array element", "after top-level value", "in string literal"}


class _JSONScanner:
    def __init__(self, data: bytes) -> None:
        self.data, self.i = data, 0

    def fail(self, context: str) -> _JSONError:
        if self.i < len(self.data):
            return _JSONError(f"invalid character {_json_char(self.data[self.i])} {context}")
        # at the end Go's scanner is fed a space: states that take one end "unexpectedly"
        if context in _SPACE_TAKING:
            return _JSONError("unexpected end of JSON input")
        return _JSONError(f"invalid character ' ' {context}")

    def peek(self) -> int:
        return self.data[self.i] if self.i < len(self.data) else -1

    def space(self) -> None:
        while self.peek() in (0x20, 0x09, 0x0A, 0x0D):
            self.i += 1

    def document(self) -> None:
        self.value()
        self.space()
        if self.i < len(self.data):
            raise self.fail("after top-level value")

    def value(self) -> None:
        self.space()
        c = self.peek()
        if c == ord("{"):
            self.i += 1
            self.space()
            if self.peek() == ord("}"):
                self.i += 1
                return
            while True:
                if self.peek() != ord('"'):
                    raise self.fail("looking for beginning of object key string")
                self.string()
                self.space()
                if self.peek() != ord(":"):
                    raise self.fail("after object key")
                self.i += 1
                self.value()
                self.space()
                if self.peek() == ord(","):
                    self.i += 1
                    self.space()
                    continue
                if self.peek() == ord("}"):
                    self.i += 1
                    return
                raise self.fail("after object key:value pair")
        if c == ord("["):
            self.i += 1
            self.space()
            if self.peek() == ord("]"):
                self.i += 1
                return
            while True:
                self.value()
                self.space()
                if self.peek() == ord(","):
                    self.i += 1
                    continue
                if self.peek() == ord("]"):
                    self.i += 1
                    return
                raise self.fail("after array element")
        if c == ord('"'):
            self.string()
        elif c == ord("-") or ord("0") <= c <= ord("9"):
            self.number()
        elif c in (ord("t"), ord("f"), ord("n")):
            word = {ord("t"): "true", ord("f"): "false", ord("n"): "null"}[c]
            self.i += 1
            for expected in word[1:]:
                if self.peek() != ord(expected):
                    raise self.fail(f"in literal {word} (expecting '{expected}')")
                self.i += 1
        else:
            raise self.fail("looking for beginning of value")

    def string(self) -> None:
        self.i += 1
        while True:
            c = self.peek()
            if c == ord('"'):
                self.i += 1
                return
            if c == ord("\\"):
                self.i += 1
                e = self.peek()
                if e == ord("u"):
                    self.i += 1
                    for _ in range(4):
                        if self.peek() < 0 or chr(self.peek()) not in _HEX:
                            raise self.fail("in \\u hexadecimal character escape")
                        self.i += 1
                    continue
                if e < 0 or chr(e) not in '"\\/bfnrt':
                    raise self.fail("in string escape code")
            elif 0 <= c < 0x20 or c < 0:
                raise self.fail("in string literal")
            self.i += 1

    def digits(self) -> None:
        while ord("0") <= self.peek() <= ord("9"):
            self.i += 1

    def number(self) -> None:
        if self.peek() == ord("-"):
            self.i += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("in numeric literal")
        if self.peek() == ord("0"):
            self.i += 1
        else:
            self.digits()
        if self.peek() == ord("."):
            self.i += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("after decimal point in numeric literal")
            self.digits()
        if self.peek() in (ord("e"), ord("E")):
            self.i += 1
            if self.peek() in (ord("+"), ord("-")):
                self.i += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise self.fail("in exponent of numeric literal")
            self.digits()


def json_syntax_error(data: bytes) -> str | None:
    """``json.Unmarshal``'s syntax error for ``data`` (``invalid character 'x' …``, ``unexpected
    end of JSON input``), or None when it is well-formed JSON."""
    try:
        _JSONScanner(data).document()
    except _JSONError as exc:
        return str(exc)
    return None


# --- crypto/x509 and encoding/pem ---------------------------------------------------------------

_PEM_BLOCK = re.compile(rb"-----BEGIN ([^\n]*?)-----[^\n]*\n(.*?)-----END \1-----[^\n]*(?:\n|$)", re.S)


def pem_certificates(data: bytes) -> list[x509.Certificate]:
    """sigstore's ``cryptoutils.UnmarshalCertificatesFromPEM``: PEM blocks, each a certificate,
    nothing else after them; ValueError with Go's text otherwise."""
    rest, certs = data.strip(), []
    while rest:
        block = _PEM_BLOCK.search(rest)
        if block is None:
            raise ValueError("error during PEM decoding")
        der = base64.b64decode(b"".join(block.group(2).split()))
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            raise ValueError(_x509_error(der)) from None
        rest = rest[block.end():]
    return certs


def _der(data: bytes, tag: int) -> tuple[bytes, bytes] | None:
    """One DER element of ``tag`` at the start of ``data``: (its content, what follows)."""
    if len(data) < 2 or data[0] != tag:
        return None
    length, head = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(data) < 2 + count:
            return None
        length, head = int.from_bytes(data[2:2 + count], "big"), 2 + count
    if len(data) < head + length:
        return None
    return data[head:head + length], data[head + length:]


def _x509_error(der: bytes) -> str:
    """x509.ParseCertificate's error for DER that is no certificate, as far as its first steps
    tell (outer and TBS sequences, version, serial number); "malformed certificate" beyond."""
    outer = _der(der, 0x30)
    if outer is None:
        return "x509: malformed certificate"
    tbs = _der(outer[0], 0x30)
    if tbs is None:
        return "x509: malformed tbs certificate"
    body = tbs[0]
    if body[:1] == b"\xa0":
        version = _der(body, 0xA0)
        number = _der(version[0], 0x02) if version else None
        if version is None or number is None:
            return "x509: malformed version"
        body = version[1]
    if _der(body, 0x02) is None:
        return "x509: malformed serial number"
    return "x509: malformed certificate"
