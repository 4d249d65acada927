"""Whether Go's ``regexp.Compile`` accepts a pattern, and its error text when it does not.

Engines written in Go validate user regular expressions with ``regexp.Compile`` (RE2 syntax with
Perl extensions: policy-controller's ``issuerRegExp``/``subjectRegExp``). Python's ``re`` accepts
what RE2 refuses (look-around, back-references, possessive and atomic forms) and refuses what RE2
accepts (``\\pL``, ``\\z``, ``[[:alpha:]]``), so labkit checks the syntax itself, following the
parser of Go's ``regexp/syntax`` (``parse.go``) as of Go 1.26: the same error codes, and the same
part of the pattern quoted. Only the syntax is checked; the size limits (``expression too large``,
nesting deeper than 1000) are not.
"""

from __future__ import annotations

from dataclasses import dataclass

# Go 1.26 unicode.Categories and unicode.Scripts keys (the names \p{…} looks up, after
# regexp/syntax's canonicalName, which is why the underscored script names never match there).
_TABLE_NAMES = """
Adlam Ahom Anatolian_Hieroglyphs Arabic Armenian Avestan Balinese Bamum Bassa_Vah Batak Bengali
Bhaiksuki Bopomofo Brahmi Braille Buginese Buhid C Canadian_Aboriginal Carian Caucasian_Albanian Cc Cf
Chakma Cham Cherokee Chorasmian Cn Co Common Coptic Cs Cuneiform Cypriot Cypro_Minoan Cyrillic Deseret
Devanagari Dives_Akuru Dogra Duployan Egyptian_Hieroglyphs Elbasan Elymaic Ethiopic Georgian Glagolitic
Gothic Grantha Greek Gujarati Gunjala_Gondi Gurmukhi Han Hangul Hanifi_Rohingya Hanunoo Hatran Hebrew
Hiragana Imperial_Aramaic Inherited Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kannada
Katakana Kawi Kayah_Li Kharoshthi Khitan_Small_Script Khmer Khojki Khudawadi L LC Lao Latin Lepcha Limbu
Linear_A Linear_B Lisu Ll Lm Lo Lt Lu Lycian Lydian M Mahajani Makasar Malayalam Mandaic Manichaean
Marchen Masaram_Gondi Mc Me Medefaidrin Meetei_Mayek Mende_Kikakui Meroitic_Cursive Meroitic_Hieroglyphs
Miao Mn Modi Mongolian Mro Multani Myanmar N Nabataean Nag_Mundari Nandinagari Nd New_Tai_Lue Newa Nko
Nl No Nushu Nyiakeng_Puachue_Hmong Ogham Ol_Chiki Old_Hungarian Old_Italic Old_North_Arabian Old_Permic
Old_Persian Old_Sogdian Old_South_Arabian Old_Turkic Old_Uyghur Oriya Osage Osmanya P Pahawh_Hmong
Palmyrene Pau_Cin_Hau Pc Pd Pe Pf Phags_Pa Phoenician Pi Po Ps Psalter_Pahlavi Rejang Runic S Samaritan
Saurashtra Sc Sharada Shavian Siddham SignWriting Sinhala Sk Sm So Sogdian Sora_Sompeng Soyombo
Sundanese Syloti_Nagri Syriac Tagalog Tagbanwa Tai_Le Tai_Tham Tai_Viet Takri Tamil Tangsa Tangut Telugu
Thaana Thai Tibetan Tifinagh Tirhuta Toto Ugaritic Vai Vithkuqi Wancho Warang_Citi Yezidi Yi Z
Zanabazar_Square Zl Zp Zs
"""
_TABLES = frozenset(_TABLE_NAMES.split())
# unicode.CategoryAliases keys, looked up by their canonical names
_ALIAS_NAMES = """
Cased_Letter Close_Punctuation Combining_Mark Connector_Punctuation Control Currency_Symbol
Dash_Punctuation Decimal_Number Enclosing_Mark Final_Punctuation Format Initial_Punctuation Letter
Letter_Number Line_Separator Lowercase_Letter Mark Math_Symbol Modifier_Letter Modifier_Symbol
Nonspacing_Mark Number Open_Punctuation Other Other_Letter Other_Number Other_Punctuation Other_Symbol
Paragraph_Separator Private_Use Punctuation Separator Space_Separator Spacing_Mark Surrogate Symbol
Titlecase_Letter Unassigned Uppercase_Letter cntrl digit punct
"""
_ALIASES = _ALIAS_NAMES.split()
_POSIX = frozenset(f"[:{neg}{name}:]" for neg in ("", "^") for name in (
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct", "space",
    "upper", "word", "xdigit"))
_PERL_CLASSES = frozenset("dDsSwW")
_FLAGS = frozenset("imsU")
_MAX_REPEAT = 1000


def _canonical(name: str) -> str:
    """regexp/syntax ``canonicalName``: first letter upper, the rest lower, no ``_``, ``-`` or space."""
    out, first = [], True
    for ch in name:
        if ch in "_- ":
            continue
        if first:
            out.append(ch.upper() if "a" <= ch <= "z" else ch)
            first = False
        else:
            out.append(ch.lower() if "A" <= ch <= "Z" else ch)
    return "".join(out)


_UNICODE_NAMES = _TABLES | {"Any", "Assigned", "Ascii", "Lc"} | {_canonical(a) for a in _ALIASES}


@dataclass
class GoRegexpError(Exception):
    """``regexp/syntax.Error``: ``code`` (an ``ErrorCode``) and the part of the pattern it is about."""

    code: str
    expr: str

    def __str__(self) -> str:
        return f"error parsing regexp: {self.code}: `{self.expr}`"


# parse-stack entries: an operand with its repeat weight, "(" (a group's start) or "|"
_LPAREN, _BAR = "(", "|"


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.whole = pattern
        self.stack: list[object] = []  # int (an operand's weight) | _LPAREN | _BAR
        self.groups: list[bool] = []  # per open group: whether it had flags only

    def error(self, code: str, expr: str) -> GoRegexpError:
        return GoRegexpError(code, expr)

    def operand(self, weight: int = 1) -> None:
        self.stack.append(weight)

    def collapse(self) -> int:
        """Pop the operands back to the last ``(`` (kept); their weight is the largest."""
        weight = 1
        while self.stack and self.stack[-1] != _LPAREN:
            top = self.stack.pop()
            if isinstance(top, int):
                weight = max(weight, top)
        return weight

    def parse(self) -> None:
        t, last_repeat = self.whole, ""
        while t:
            repeat = ""
            c = t[0]
            if c == "(":
                if len(t) >= 2 and t[1] == "?":
                    t = self.perl_flags(t)
                else:
                    self.stack.append(_LPAREN)
                    t = t[1:]
            elif c == "|":
                self.stack.append(_BAR)
                t = t[1:]
            elif c == ")":
                weight = self.collapse()
                if not self.stack:
                    raise self.error("unexpected )", self.whole)
                self.stack.pop()
                self.operand(weight)
                t = t[1:]
            elif c in "^$.":
                self.operand()
                t = t[1:]
            elif c == "[":
                t = self.char_class(t)
                self.operand()
            elif c in "*+?":
                after = self.repeat(t, t[1:], last_repeat, 1)
                repeat, t = t, after
            elif c == "{":
                parsed = _parse_repeat(t)
                if parsed is None:
                    self.operand()  # not a repeat: a literal {
                    t = t[1:]
                else:
                    lo, hi, after = parsed
                    if lo < 0 or lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and lo > hi):
                        raise self.error("invalid repeat count", t[:len(t) - len(after)])
                    size = hi if hi >= 0 else max(lo, 1)  # x{0,}: no bound, no factor
                    after = self.repeat(t, after, last_repeat, size, check=lo >= 2 or hi >= 2)
                    repeat, t = t, after
            elif c == "\\":
                t = self.escape_atom(t)
            else:
                self.operand()
                t = t[1:]
            last_repeat = repeat
        self.collapse()
        if self.stack:  # an unclosed group
            raise self.error("missing closing )", self.whole)

    def repeat(self, before: str, after: str, last_repeat: str, size: int, *, check: bool = False) -> str:
        if after.startswith("?"):
            after = after[1:]
        if last_repeat:
            raise self.error("invalid nested repetition operator", last_repeat[:len(last_repeat) - len(after)])
        if not self.stack or not isinstance(self.stack[-1], int):
            raise self.error("missing argument to repetition operator", before[:len(before) - len(after)])
        weight = self.stack[-1]
        assert isinstance(weight, int)
        if size == 0:
            self.stack[-1] = 1  # x{0}: repeatIsValid stops there
        else:
            self.stack[-1] = weight * size
            if check and weight * size > _MAX_REPEAT:
                raise self.error("invalid repeat count", before[:len(before) - len(after)])
        return after

    def perl_flags(self, s: str) -> str:
        starts_p = len(s) > 4 and s[2] == "P" and s[3] == "<"
        starts_name = len(s) > 3 and s[2] == "<"
        if starts_p or starts_name:
            end = s.find(">")
            if end < 0:
                raise self.error("invalid named capture", s)
            name = s[(4 if starts_p else 3):end]
            if not name or not all(ch == "_" or (ch.isascii() and ch.isalnum()) for ch in name):
                raise self.error("invalid named capture", s[:end + 1])
            self.stack.append(_LPAREN)
            return s[end + 1:]
        t, sign, saw_flag = s[2:], 1, False
        while t:
            c, t = t[0], t[1:]
            if c in _FLAGS:
                saw_flag = True
            elif c == "-":
                if sign < 0:
                    break
                sign, saw_flag = -1, False
            elif c in ":)":
                if sign < 0 and not saw_flag:
                    break
                if c == ":":
                    self.stack.append(_LPAREN)
                return t
            else:
                break
        raise self.error("invalid or unsupported Perl syntax", s[:len(s) - len(t)])

    def escape_atom(self, t: str) -> str:
        if len(t) >= 2:
            if t[1] in "AbBz":
                self.operand()
                return t[2:]
            if t[1] == "C":
                raise self.error("invalid escape sequence", t[:2])
            if t[1] == "Q":
                lit, _, rest = t[2:].partition("\\E")
                for _ in lit:
                    self.operand()
                return rest
        after_class = self.unicode_class(t)
        if after_class is not None:
            self.operand()
            return after_class
        if len(t) >= 2 and t[1] in _PERL_CLASSES:
            self.operand()
            return t[2:]
        _, after = self.escape(t)
        self.operand()
        return after

    def unicode_class(self, s: str) -> str | None:
        """The rest after a leading ``\\p…``/``\\P…`` class; None when there is none."""
        if len(s) < 2 or s[0] != "\\" or s[1] not in "pP":
            return None
        if len(s) == 2:
            seq, rest, name = s, "", ""
        elif s[2] != "{":
            seq, rest, name = s[:3], s[3:], s[2]
        else:
            end = s.find("}")
            if end < 0:
                raise self.error("invalid character class range", s)
            seq, rest, name = s[:end + 1], s[end + 1:], s[3:end]
        name = name.removeprefix("^")
        if _canonical(name) not in _UNICODE_NAMES:
            raise self.error("invalid character class range", seq)
        return rest

    def escape(self, s: str) -> tuple[int, str]:
        """``parseEscape``: one escaped character and the rest."""
        t = s[1:]
        if not t:
            raise self.error("trailing backslash at end of expression", "")
        c, t = t[0], t[1:]
        if c.isascii() and not c.isalnum():
            return ord(c), t
        if c in "1234567" and not (t and "0" <= t[0] <= "7"):
            pass  # a back-reference: unsupported
        elif c in "01234567":
            value = int(c)
            for _ in range(2):
                if not t or not "0" <= t[0] <= "7":
                    break
                value, t = value * 8 + int(t[0]), t[1:]
            return value, t
        elif c == "x" and t:
            c, t = t[0], t[1:]
            if c == "{":
                value, digits = 0, 0
                while t:  # Go stops after the character that ends or breaks the number
                    c, t = t[0], t[1:]
                    if c == "}":
                        if digits:
                            return value, t
                        break
                    if not _is_hex(c):
                        break
                    value, digits = value * 16 + int(c, 16), digits + 1
                    if value > 0x10FFFF:
                        break
            elif t:
                y, t2 = t[0], t[1:]
                t = t2
                if _is_hex(c) and _is_hex(y):
                    return int(c + y, 16), t
        elif c in "afnrtv":
            return ord({"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}[c]), t
        raise self.error("invalid escape sequence", s[:len(s) - len(t)])

    def char_class(self, s: str) -> str:
        t = s[1:]
        if t.startswith("^"):
            t = t[1:]
        first = True
        while not t or t[0] != "]" or first:
            first = False
            if len(t) > 2 and t[0] == "[" and t[1] == ":":
                end = t.find(":]", 2)
                if end >= 0:
                    name = t[:end + 2]
                    if name not in _POSIX:
                        raise self.error("invalid character class range", name)
                    t = t[end + 2:]
                    continue
            rest = self.unicode_class(t)
            if rest is not None:
                t = rest
                continue
            if len(t) >= 2 and t[0] == "\\" and t[1] in _PERL_CLASSES:
                t = t[2:]
                continue
            rng = t
            lo, t = self.class_char(t, s)
            hi = lo
            if len(t) >= 2 and t[0] == "-" and t[1] != "]":
                hi, t = self.class_char(t[1:], s)
                if hi < lo:
                    raise self.error("invalid character class range", rng[:len(rng) - len(t)])
        return t[1:]

    def class_char(self, s: str, whole_class: str) -> tuple[int, str]:
        if not s:
            raise self.error("missing closing ]", whole_class)
        if s[0] == "\\":
            return self.escape(s)
        return ord(s[0]), s[1:]


def _is_hex(ch: str) -> bool:
    return ch in "0123456789abcdefABCDEF"


def _parse_int(s: str) -> tuple[int, str] | None:
    if not s or not "0" <= s[0] <= "9" or (len(s) >= 2 and s[0] == "0" and "0" <= s[1] <= "9"):
        return None
    end = 0
    while end < len(s) and "0" <= s[end] <= "9":
        end += 1
    digits = s[:end]
    return (int(digits) if len(digits) <= 9 else -1), s[end:]  # -1: too big, as Go says


def _parse_repeat(s: str) -> tuple[int, int, str] | None:
    """``parseRepeat``: ``{n}``, ``{n,}`` (max -1) or ``{n,m}`` and the rest; None if not one."""
    got = _parse_int(s[1:])
    if got is None:
        return None
    lo, t = got
    if not t:
        return None
    if t[0] != ",":
        hi = lo
    else:
        t = t[1:]
        if not t:
            return None
        if t[0] == "}":
            hi = -1
        else:
            got = _parse_int(t)
            if got is None:
                return None
            hi, t = got
            if hi < 0:
                lo = -1
    if not t or t[0] != "}":
        return None
    return lo, hi, t[1:]


def go_regexp_error(pattern: str) -> GoRegexpError | None:
    """None when Go's ``regexp.Compile(pattern)`` succeeds, else the error it returns."""
    try:
        _Parser(pattern).parse()
    except GoRegexpError as exc:
        return exc
    return None
