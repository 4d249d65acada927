"""``go_quote`` against Go's own ``strconv.Quote``: the vectors below are its output (go1.26.8,
``fmt.Println(strconv.Quote(s))`` for each input)."""

from __future__ import annotations

import pytest

from labkit._internal.gofmt import go_quote, printable


@pytest.mark.parametrize(("text", "quoted"), [
    ("a\nb", r'"a\nb"'),
    ("\x00\x7f", r'"\x00\x7f"'),
    ("é\u00a0\u2028", r'"é\u00a0\u2028"'),
    ("\U0001F600\U000E0001", r'"😀\U000e0001"'),
    ('tab\there "q" \\', r'"tab\there \"q\" \\"'),
    ("\u200b", r'"\u200b"'),
])
def test_go_quote_is_strconv_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_printable_escapes_only_what_would_break_the_line() -> None:
    # strconv.Quote's escapes for non-printable runes; quotes and backslashes stay as typed
    assert printable('a\nb "q" \\ é\x00\u2028') == 'a\\nb "q" \\ é\\x00\\u2028'
    assert printable("ghcr.io/team/app:v1") == "ghcr.io/team/app:v1"
