"""labkit's copies of Go standard-library checks (``labkit/_internal/goregexp.py`` and
``gostd.py``), which policy-controller applies to ClusterImagePolicy and TrustRoot fields.

Oracles: the texts the real policy-controller v0.13.1 webhook returned for these inputs on the
native lab (tests/lab/test_policy_controller_lint.py holds lint to it case by case), and, where Go
is installed, Go itself: a small program calling ``regexp.Compile``, ``url.Parse``,
``base64.StdEncoding.Decode`` and ``json.Unmarshal`` decides a seeded sample of generated inputs.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from labkit._internal.goregexp import go_regexp_error
from labkit._internal.gostd import (
    base64_error,
    json_syntax_error,
    request_uri_error,
    split_host_port_error,
    url_parse_error,
)


def regexp_text(pattern: str) -> str:
    error = go_regexp_error(pattern)
    return str(error) if error else ""


# (pattern, Go's error) as the webhook quoted them after "regex is invalid: "
# (clusterimagepolicy_validation.go:358-364, ValidateRegex)
WEBHOOK_REGEXPS = [
    ("(abc", "error parsing regexp: missing closing ): `(abc`"),
    ("[a-z", "error parsing regexp: missing closing ]: `[a-z`"),
    ("a)", "error parsing regexp: unexpected ): `a)`"),
    ("foo(?=bar)", "error parsing regexp: invalid or unsupported Perl syntax: `(?=`"),
    ("(a)\\1", "error parsing regexp: invalid escape sequence: `\\1`"),
    ("a**", "error parsing regexp: invalid nested repetition operator: `**`"),
    ("a*+", "error parsing regexp: invalid nested repetition operator: `*+`"),
    ("*a", "error parsing regexp: missing argument to repetition operator: `*`"),
    ("[z-a]", "error parsing regexp: invalid character class range: `z-a`"),
    ("abc\\", "error parsing regexp: trailing backslash at end of expression: ``"),
    ("a{1001}", "error parsing regexp: invalid repeat count: `{1001}`"),
    ("\\i", "error parsing regexp: invalid escape sequence: `\\i`"),
    ("(?>abc)", "error parsing regexp: invalid or unsupported Perl syntax: `(?>`"),
]
# accepted by the webhook (and refused, or read otherwise, by Python's re)
WEBHOOK_ACCEPTED = ["\\pL+@\\p{Greek}", "[[:alpha:]]+", "[[:word:]]", "(?P<user>[a-z]+)@(?<domain>.+)", "^abc\\z",
                    "(?i)ALICE|(?s:a.b)", "^https://(accounts\\.google|github)\\.com$"]


@pytest.mark.parametrize(("pattern", "expected"), WEBHOOK_REGEXPS)
def test_regexp_errors_are_the_webhooks(pattern: str, expected: str) -> None:
    assert regexp_text(pattern) == expected


@pytest.mark.parametrize("pattern", WEBHOOK_ACCEPTED)
def test_regexps_the_webhook_accepts(pattern: str) -> None:
    assert regexp_text(pattern) == ""


def test_nested_repeats_count_as_go_counts_them() -> None:
    # regexp/syntax repeatIsValid: at most 1000 copies of the innermost thing
    assert regexp_text("(a{500}b{3}){3}") == "error parsing regexp: invalid repeat count: `{3}`"
    assert regexp_text("(a{500}){2}") == ""
    assert regexp_text("(a{0}){1000}") == ""
    assert regexp_text("\\p{Old_Italic}") == "error parsing regexp: invalid character class range: `\\p{Old_Italic}`"


def test_url_and_base64_errors_are_the_webhooks() -> None:
    # the defaulting webhook's "cannot decode incoming new object: …" for apis.URL and []byte fields
    assert url_parse_error("http://[::1") == "parse \"http://[::1\": missing ']' in host"
    assert url_parse_error("https://[rekor") == "parse \"https://[rekor\": missing ']' in host"
    assert url_parse_error("https://fulcio.example") is None
    assert base64_error("not base64!") == "illegal base64 data at input byte 3"
    assert base64_error("-----BEGIN CERTIFICATE-----") == "illegal base64 data at input byte 0"
    assert base64_error("QUJD\nRA==") is None


def test_request_uri_and_host_port() -> None:
    assert request_uri_error("slsaprovenance") == 'parse "slsaprovenance": invalid URI for request'
    assert request_uri_error("https://slsa.dev/provenance/v1") is None
    assert split_host_port_error("localhost") == "address localhost: missing port in address"
    assert split_host_port_error("localhost:4566") is None


# --- Go itself, where it is installed ----------------------------------------------------------

ORACLE = """\
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"regexp"
)

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s string
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			panic(err)
		}
		var err error
		switch os.Args[1] {
		case "regexp":
			_, err = regexp.Compile(s)
		case "url":
			_, err = url.Parse(s)
		case "json":
			var v interface{}
			err = json.Unmarshal([]byte(s), &v)
		default:
			_, err = base64.StdEncoding.Decode(make([]byte, len(s)), []byte(s))
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		out, _ := json.Marshal(msg)
		fmt.Println(string(out))
	}
}
"""

TOKENS = {
    "regexp": [*"ab()[]{}|*+?^$.\\-:,0123456789xpPQEzdwsi<>=!_", "(?", "(?P<", "(?<", "[:", ":]", "\\p{", "Greek}",
               "{2}", "{1001}", "{2,3}", "{500}", "{0}", "{0,}", "{999}", "\\x{", "é"],
    "url": ["http", "https", "s3", ":", "//", "/", "[", "]", "::1", "1.2.3.4", "%", "%2", "%25", "%41", "%zz", "@",
            "user", "a", "?", "#", " ", "\t", "8080", ":80", "-", "{", "|", "é", "fe80::1", "*"],
    "base64": [*"ABCDabcd0129+/=\n\r -_!é", "QUJD", "QQ==", "QUI=", "===="],
    "json": [*'{}[]:,"\\ \t\n-+.eE0123456789tfnrulasx\'/bé\x01', "true", "false", "null", '"a"', "\\u00", "1.5",
             '{"k":', "[1,"],
}
CHECKS = {"regexp": regexp_text, "url": lambda s: url_parse_error(s) or "", "base64": lambda s: base64_error(s) or "",
          "json": lambda s: json_syntax_error(s.encode()) or ""}


@pytest.fixture(scope="module")
def go_oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed: the generated cases need Go's regexp, net/url and encoding/base64")
    src = tmp_path_factory.mktemp("go-oracle")
    (src / "main.go").write_text(ORACLE)
    binary = src / "oracle"
    # standard library only: no module, no download
    subprocess.run([go, "build", "-o", str(binary), "main.go"], cwd=src, check=True, timeout=300,
                   env={**os.environ, "GOTOOLCHAIN": "local", "GO111MODULE": "off", "GOFLAGS": ""})
    return binary


@pytest.mark.parametrize("what", sorted(TOKENS))
def test_generated_inputs_agree_with_go(go_oracle: Path, what: str) -> None:
    rng = random.Random(20261203)
    inputs = sorted({"".join(rng.choice(TOKENS[what]) for _ in range(rng.randint(0, 12))) for _ in range(4000)})
    out = subprocess.run([str(go_oracle), what], input="".join(json.dumps(s) + "\n" for s in inputs),
                         capture_output=True, text=True, timeout=120, check=True).stdout.splitlines()
    differ = [(s, json.loads(go), CHECKS[what](s)) for s, go in zip(inputs, out, strict=True)
              if json.loads(go) != CHECKS[what](s)]
    assert differ == []
