"""How each admission engine names an image and matches it against a policy pattern.

The two engines disagree on both halves, and the disagreements are what learners trip over:

* Kyverno (``pkg/utils/image/infos.go``) prefixes ``docker.io`` but never ``library/``, drops the
  tag when there is a digest, and matches with go-wildcard v1.0.3, whose ``*`` crosses ``/``,
  ``:`` and ``@``. Only ``*`` and ``?`` are special there: ``[`` and ``{`` are plain characters.
* Kyverno's ImageValidatingPolicy compiles ``matchImageReferences[].glob`` with gobwas/glob
  v0.2.3 and no separators (``pkg/cel/compiler/compiler.go``): ``*``, ``?``, ``[…]``, ``{…}``
  and ``\\`` escapes; a malformed glob makes the policy invalid.
* policy-controller (``pkg/apis/glob/glob.go``) matches go-containerregistry's ``ref.Name()``
  (``index.docker.io/library/…``, tag dropped under a digest), and its ``*`` stops at ``/``
  while ``**`` crosses it.

Every glob is matched by simulating its automaton (:class:`Glob`): time is bounded by
pattern length × text length whatever the input, so no pattern can stall admission.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from labkit._internal.gofmt import go_quote
from labkit.oci.reference import Reference, kyverno_normalize

__all__ = ["Glob", "GlobError", "compile_glob", "compile_ivp_glob", "glob_match", "kyverno_normalize",
           "wildcard_match"]


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


# --- a matcher that cannot stall: Thompson's construction, simulated ----------------------

CharTest = Callable[[str], bool]


@dataclass(frozen=True)
class Star:
    """Zero or more characters, each passing ``test``."""

    test: CharTest


@dataclass(frozen=True)
class Alt:
    """Any one of the alternatives, each a sequence of nodes."""

    options: tuple[tuple[Node, ...], ...]


Node = str | CharTest | Star | Alt  # a literal character, one character passing a test, …


def _any(_: str) -> bool:
    return True


def _not_slash(c: str) -> bool:
    return c != "/"


class Glob:
    """A compiled pattern, matched against the whole text.

    The nodes become a Thompson NFA (instructions ``char``/``split``/``jmp``); matching
    advances the set of live states one character at a time, so a match costs at most
    ``len(program) × len(text)`` steps, with no backtracking and no recursion.
    """

    def __init__(self, source: str, nodes: Sequence[Node]) -> None:
        self.source = source
        self._prog: list[tuple[str, object, int]] = []  # (op, test or literal, jump target)
        self._emit_seq(nodes)
        self._prog.append(("match", None, 0))

    def _emit_seq(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            if isinstance(node, Star):
                loop = len(self._prog)
                self._prog.append(("split", None, 0))  # target patched below
                self._prog.append(("char", node.test, 0))
                self._prog.append(("jmp", None, loop))
                self._prog[loop] = ("split", None, len(self._prog))
            elif isinstance(node, Alt):
                self._emit_alt(node.options)
            else:
                self._prog.append(("char", node, 0))

    def _emit_alt(self, options: Sequence[Sequence[Node]]) -> None:
        ends = []
        for option in options[:-1]:
            fork = len(self._prog)
            self._prog.append(("split", None, 0))  # falls through to this option
            self._emit_seq(option)
            ends.append(len(self._prog))
            self._prog.append(("jmp", None, 0))
            self._prog[fork] = ("split", None, len(self._prog))  # else: the next option
        if options:
            self._emit_seq(options[-1])
        for end in ends:
            self._prog[end] = ("jmp", None, len(self._prog))

    def _closure(self, starts: Sequence[int]) -> set[int]:
        """The states reachable without consuming a character (``split`` follows both ways)."""
        seen: set[int] = set()
        stack = list(starts)
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op, _, target = self._prog[pc]
            if op == "split":
                stack.extend((pc + 1, target))
            elif op == "jmp":
                stack.append(target)
        return seen

    def matches(self, text: str) -> bool:
        states = self._closure([0])
        for c in text:
            step = []
            for pc in states:
                op, test, _ = self._prog[pc]
                if op == "char" and (test == c if isinstance(test, str) else test(c)):  # type: ignore[operator]
                    step.append(pc + 1)
            if not step:
                return False
            states = self._closure(step)
        return any(self._prog[pc][0] == "match" for pc in states)


# --- policy-controller: its glob over go-containerregistry names -------------------------

_VALID_GLOB = re.compile(r"^[a-zA-Z0-9\-_:/*.@]+$")


class GlobError(ValueError):
    """The engine rejects the glob; ``str()`` is the engine's own text (policy-controller:
    ``invalid glob "<glob>"`` or ``syntax error in pattern``; gobwas/glob: its parse error)."""


def compile_glob(glob: str) -> Glob:
    """policy-controller ``ValidateGlob`` then ``glob.Compile``: ``*`` stays within one path
    component, ``**`` crosses ``/``; the bare globs ``*`` and ``*/*`` mean Docker Hub."""
    # ValidateGlob calls filepath.Match(glob, "") first: its syntax error wins.
    if _filepath_syntax_error(glob):
        raise GlobError("syntax error in pattern")
    if glob == "*/*":
        glob = "index.docker.io/*/*"
    elif glob == "*":
        glob = "index.docker.io/library/*"
    if not _VALID_GLOB.match(glob):
        raise GlobError(f"invalid glob {go_quote(glob)}")  # fmt.Errorf("invalid glob %q", glob)
    nodes: list[Node] = []
    for i, piece in enumerate(glob.split("**")):  # as ReplaceAll("**", "#"): left to right
        if i:
            nodes.append(Star(_any))
        nodes.extend(Star(_not_slash) if c == "*" else c for c in piece)
    return Glob(glob, nodes)


@functools.lru_cache(maxsize=4096)  # a pure function the webhook asks again for every review
def glob_match(glob: str, image: str) -> bool:
    """Whether a ClusterImagePolicy ``images[].glob`` covers ``image`` (as the webhook matches it)."""
    return compile_glob(glob).matches(str(Reference.parse(image)))


def _filepath_syntax_error(pattern: str) -> bool:
    """Whether Go's ``filepath.Match(pattern, "")`` (Unix) returns ``ErrBadPattern``.

    With an empty name Match stops after the first chunk (the text up to the first ``*``
    outside brackets), so only that chunk's syntax is checked; a leading ``*`` with nothing
    before the next ``*`` checks nothing at all.
    """
    rest = pattern.lstrip("*")
    star = len(rest) != len(pattern)
    chunk, in_range, i = rest, False, 0
    while i < len(rest):  # scanChunk
        c = rest[i]
        if c == "\\" and i + 1 < len(rest):
            i += 1
        elif c == "[":
            in_range = True
        elif c == "]":
            in_range = False
        elif c == "*" and not in_range:
            chunk = rest[:i]
            break
        i += 1
    if star and chunk == "":
        return False
    return _chunk_syntax_error(chunk)


def _chunk_syntax_error(chunk: str) -> bool:
    """``matchChunk(chunk, "")``: walks the whole chunk, failing only on bad syntax."""
    i = 0
    while i < len(chunk):
        c = chunk[i]
        if c == "[":
            i += 1
            if i < len(chunk) and chunk[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < len(chunk) and chunk[i] == "]" and ranges > 0:
                    i += 1
                    break
                i = _get_esc(chunk, i)
                if i < 0:
                    return True
                if chunk[i] == "-":
                    i = _get_esc(chunk, i + 1)
                    if i < 0:
                        return True
                ranges += 1
        elif c == "\\":
            if i + 1 >= len(chunk):
                return True
            i += 2
        else:
            i += 1
    return False


def _get_esc(chunk: str, i: int) -> int:
    """``getEsc``: the index after one (possibly escaped) class character, or -1 when Go
    reports ``ErrBadPattern`` (nothing left, ``-``/``]`` first, or nothing after it)."""
    if i >= len(chunk) or chunk[i] in "-]":
        return -1
    if chunk[i] == "\\":
        i += 1
        if i >= len(chunk):
            return -1
    i += 1
    return i if i < len(chunk) else -1


# --- Kyverno ImageValidatingPolicy: gobwas/glob v0.2.3, no separators ------------------------

_EOF = "\0"  # the lexer reads a NUL rune as the end of input, as gobwas does


class _GobwasLexer:
    """gobwas ``syntax/lexer``: tokens are produced one item at a time; an error raised
    while lexing an item discards that item's tokens and every later call returns it."""

    def __init__(self, source: str) -> None:
        self.data, self.pos = source, 0
        self.err = ""
        self.tokens: list[tuple[str, str]] = []
        self.terms = 0
        self.last, self.last_size, self.has_rune = _EOF, 0, False

    def next(self) -> tuple[str, str]:
        # each fetch consumes input or ends it, so this loop is bounded by len(data) + 1
        while True:
            if self.err:
                return ("error", self.err)
            if self.tokens:
                return self.tokens.pop(0)
            self._fetch_item()

    def _peek(self) -> tuple[str, int]:
        return (_EOF, 0) if self.pos >= len(self.data) else (self.data[self.pos], 1)

    def _read(self) -> str:
        if self.has_rune:
            self.has_rune = False
            self.pos += self.last_size
            return self.last
        r, size = self._peek()
        self.pos += size
        self.last, self.last_size = r, size
        return r

    def _unread(self) -> None:
        if self.has_rune:
            self.err = self.err or "could not unread rune"
            return
        self.pos -= self.last_size
        self.has_rune = True

    def _fetch_item(self) -> None:
        r = self._read()
        if r == _EOF:
            self.tokens.append(("eof", ""))
        elif r == "{":
            self.terms += 1
            self.tokens.append(("terms_open", r))
        elif r == "," and self.terms:
            self.tokens.append(("separator", r))
        elif r == "}" and self.terms:
            self.tokens.append(("terms_close", r))
            self.terms -= 1
        elif r == "[":
            self.tokens.append(("range_open", r))
            self._fetch_range()
        elif r == "?":
            self.tokens.append(("single", r))
        elif r == "*":
            if self._read() == "*":
                self.tokens.append(("super", "**"))
            else:
                self._unread()
                self.tokens.append(("any", r))
        else:
            self._unread()
            self._fetch_text("?*[{}," if self.terms else "?*[{")

    def _fetch_range(self) -> None:
        want_hi = want_close = seen_not = False
        while True:
            r = self._read()
            if r == _EOF:
                self.err = "unexpected end of input"
                return
            if want_close:
                if r != "]":
                    self.err = "expected close range character"
                else:
                    self.tokens.append(("range_close", r))
                return
            if want_hi:
                self.tokens.append(("range_hi", r))
                want_close = True
                continue
            if not seen_not and r == "!":
                self.tokens.append(("not", r))
                seen_not = True
                continue
            n, size = self._peek()
            if n == "-":
                self.pos += size
                self.tokens.append(("range_lo", r))
                self.tokens.append(("range_between", n))
                want_hi = True
                continue
            self._unread()
            self._fetch_text("]")
            want_close = True

    def _fetch_text(self, breakers: str) -> None:
        data: list[str] = []
        escaped = False
        while True:
            r = self._read()
            if r == _EOF:
                break
            if not escaped:
                if r == "\\":
                    escaped = True
                    continue
                if r in breakers:
                    self._unread()
                    break
            escaped = False
            data.append(r)
        if data:
            self.tokens.append(("text", "".join(data)))


def compile_ivp_glob(glob: str) -> Glob:
    """gobwas ``glob.Compile(glob)`` with no separators; GlobError carries its parse error.

    Like gobwas, an unclosed ``{`` is accepted (the open alternatives end the pattern).
    """
    lexer = _GobwasLexer(glob)
    root: list[object] = []  # a pattern: a list of nodes, where an Alt is a list of patterns
    stack: list[list[object]] = [root]  # the open patterns, innermost last
    while True:  # every token consumes input, and input ends
        kind, raw = lexer.next()
        if kind == "eof":
            break
        if kind == "error":
            raise GlobError(raw)
        if kind == "text":
            stack[-1].extend(raw)
        elif kind in ("any", "super"):
            stack[-1].append(Star(_any))
        elif kind == "single":
            stack[-1].append(_any)
        elif kind == "range_open":
            stack[-1].append(_parse_range(lexer))
        elif kind == "terms_open":
            option: list[object] = []
            stack[-1].append(["alt", option])
            stack.append(option)
        elif kind == "separator":
            option = []
            stack[-2][-1].append(option)  # type: ignore[attr-defined]
            stack[-1] = option
        elif kind == "terms_close":
            stack.pop()
        else:
            raise GlobError(f"unexpected token: {raw}")
    return Glob(glob, _nodes(root))


def _nodes(pattern: list[object]) -> tuple[Node, ...]:
    return tuple(Alt(tuple(_nodes(o) for o in n[1:])) if isinstance(n, list) else n  # type: ignore[misc]
                 for n in pattern)


def _parse_range(lexer: _GobwasLexer) -> CharTest:
    """gobwas ``parserRange``: ``[abc]``, ``[!abc]``, ``[a-z]``, ``[!a-z]``."""
    negate, lo, hi, chars = False, "", "", ""
    while True:  # each token consumes input
        kind, raw = lexer.next()
        if kind == "eof":
            raise GlobError("unexpected end")
        if kind == "error":
            raise GlobError(raw)
        if kind == "not":
            negate = True
        elif kind == "range_lo":
            lo = raw
        elif kind == "range_hi":
            hi = raw
            if hi < lo:
                raise GlobError(f"hi character '{hi}' should be greater than lo '{lo}'")
        elif kind == "text":
            chars = raw
        elif kind == "range_close":
            is_range, is_chars = bool(lo and hi), chars != ""
            if is_chars == is_range:
                raise GlobError("could not parse range")
            if is_range:
                return lambda c: (lo <= c <= hi) != negate
            return lambda c: (c in chars) != negate
