"""Go's ``%q`` for strings (``strconv.Quote``): the engines quote user input this way in their
messages, which also keeps a hostile value (a newline, a control byte) on one line."""

from __future__ import annotations

_CONTROL = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
_ESCAPES = {**_CONTROL, "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """``strconv.Quote(text)``: printable runes as they are, the rest escaped."""
    return '"' + "".join(_ESCAPES.get(ch) or _rune(ch) for ch in text) + '"'


def printable(text: str) -> str:
    """``text`` with only its non-printable runes escaped as ``strconv.Quote`` escapes them: an
    engine's message that quotes input unquoted stays as it is, on one line."""
    return "".join(_CONTROL.get(ch) or _rune(ch) for ch in text)


def _rune(ch: str) -> str:
    if ch.isprintable() or ch == " ":
        return ch
    if ord(ch) < 0x80:
        return f"\\x{ord(ch):02x}"
    return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
