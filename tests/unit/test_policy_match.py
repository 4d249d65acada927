"""Image naming and pattern matching of each engine.

Vectors re-express the upstream test tables: Kyverno ``pkg/utils/image/infos_test.go``,
go-wildcard v1.0.3 ``wildcard_test.go`` and Kyverno ``ext/wildcard/match_test.go``, and
policy-controller ``pkg/apis/glob/glob_test.go`` (adjusted where noted: the webhook matches
``ref.Name()``, so that file's "deprecated fallback" rows do not match in admission).

gobwas/glob v0.2.3 rows (ImageValidatingPolicy ``matchImageReferences``) and Go's
``filepath.Match(glob, "")`` errors (policy-controller ``ValidateGlob``) were produced by running
those libraries (gobwas/glob v0.2.3 from Kyverno v1.19.1's go.sum; Go 1.26 ``path/filepath``).
"""

from __future__ import annotations

import time

import pytest

from labkit.policy.match import (
    GlobError,
    compile_glob,
    compile_ivp_glob,
    glob_match,
    kyverno_normalize,
    wildcard_match,
)

D = "sha256:" + "5504f2a95018e3d8a52d80d9e1a128c6ea337581808ff9fe96f5628ce2336350"


@pytest.mark.parametrize(
    ("image", "normalized"),
    [
        ("nginx", "docker.io/nginx:latest"),  # no library/
        (f"ghcr.io/x/app:v1@{D}", f"ghcr.io/x/app@{D}"),  # the digest replaces the tag
        ("127.0.0.1:5000/lab/app:v1", "127.0.0.1:5000/lab/app:v1"),
    ],
)
def test_kyverno_matches_patterns_against_its_own_normal_form(image: str, normalized: str) -> None:
    # the normaliser lives in labkit.oci.reference (tested there); these rows pin what the
    # policy patterns below are matched against
    assert kyverno_normalize(image) == normalized


@pytest.mark.parametrize(
    ("pattern", "text", "matched"),
    [
        ("*", "s3:GetObject", True),
        ("", "s3:GetObject", False),
        ("", "", True),
        ("s3:*", "s3:ListMultipartUploadParts", True),
        ("s3:ListBucketMultipartUploads", "s3:ListBucket", False),
        ("s3:ListBucket", "s3:ListBucket", True),
        ("s3:ListBucket", "s3:ListBucketMultipartUploads", False),
        ("my-bucket/oo*", "my-bucket/odo", False),
        ("my-bucket/In*", "my-bucket/India/Karnataka/", True),
        ("my-bucket/In*", "my-bucket/Karnataka/India/", False),
        ("my-bucket/In*/Ka*/Ban*", "my-bucket/India/Karnataka/Bangalore", True),
        ("my-bucket/In?ia", "my-bucket/India", True),
        ("my-bucket/In?ia", "my-bucket/Inia", False),
        ("?", "", False),
        ("a*b*c", "abxbxc", True),
        ("a*b*c", "abxbxcd", False),
        # image strings: * crosses '/', ':' and '@'; the match is case-sensitive
        ("ghcr.io/*", f"ghcr.io/x/app@{D}", True),
        ("ghcr.io/x/app:*", f"ghcr.io/x/app@{D}", False),
        ("ghcr.io/x/app*", f"ghcr.io/x/app@{D}", True),
        ("docker.io/library/nginx*", "docker.io/nginx:latest", False),
        ("GHCR.io/*", "ghcr.io/x:1", False),
    ],
)
def test_wildcard_match(pattern: str, text: str, matched: bool) -> None:
    assert wildcard_match(pattern, text) is matched


@pytest.mark.parametrize(
    ("image", "glob", "matched"),
    [
        ("foo", "index.docker.io/library/foo:latest", True),
        ("foo", "index.docker.io/library/foo:*", True),
        ("foo", "index.docker.io/library/*", True),
        ("foo", "index.docker.io/library/*:latest", True),
        ("foo", "index.docker.io/*/*", True),
        ("foo", "index.docker.io/**", True),
        ("foo", "inde**", True),
        ("foo", "**", True),
        ("foo", "*", True),
        ("myuser/myapp", "*/*", True),
        ("myuser/myapp", "index.docker.io/myuser/*:latest", True),
        ("ghcr.io/foo/bar", "ghcr.io/*/*", True),
        ("ghcr.io/foo", "ghcr.io/*/*", False),
        ("ghcr.io/foo", "*/**", True),
        ("ghcr.io/foo", "ghcr.io/foo*", True),
        ("prefix-ghcr.io/foo", "ghcr.io/foo", False),
        ("ghcr.io/foo-suffix", "ghcr.io/foo", False),
        ("ghcrxio/foo", "ghcr.io/**", False),
        ("docker.io/foo:1", "index.docker.io/library/foo:1", True),
        ("localhost/app", "localhost/app:latest", True),
        (f"foo@{D}", f"index.docker.io/library/foo@{D}", True),
        (f"ghcr.io/foo@{D}", f"ghcr.io/foo@{D}", True),
        # glob_test.go expects True via the raw-string fallback; the webhook and tester pass
        # ref.Name() (index.docker.io/library/foo:latest), so in admission these never match.
        ("foo", "foo", False),
        ("myuser/myapp", "myuser/myapp*", False),
        # the tag is dropped under a digest, so a ':*' glob misses digest references
        (f"ghcr.io/org/app:v1@{D}", "ghcr.io/org/app:*", False),
        (f"ghcr.io/org/app:v1@{D}", "ghcr.io/org/app*", True),  # '*' crosses '@' and ':'
        (f"ghcr.io/org/app@{D}", "ghcr.io/org/app", False),
    ],
)
def test_glob_match(image: str, glob: str, matched: bool) -> None:
    assert glob_match(glob, image) is matched


@pytest.mark.parametrize("glob", [".+", "[a-z]*", "ghcr.io/app?", "a b"])
def test_invalid_globs(glob: str) -> None:
    with pytest.raises(GlobError, match=r'^invalid glob "'):
        compile_glob(glob)


@pytest.mark.parametrize(("glob", "reason"), [
    # ValidateGlob: filepath.Match(glob, "") first (it checks only the text before the first '*')
    ("127.0.0.1:1/team/[abc", "syntax error in pattern"),
    ("*[", "syntax error in pattern"),
    ("a\\", "syntax error in pattern"),
    ("127.0.0.1:1/*/[abc", 'invalid glob "127.0.0.1:1/*/[abc"'),
    ("127.0.0.1:1/team/{a,b", 'invalid glob "127.0.0.1:1/team/{a,b"'),
    ("[abc]", 'invalid glob "[abc]"'),
])
def test_policy_controller_glob_errors_in_validation_order(glob: str, reason: str) -> None:
    with pytest.raises(GlobError) as err:
        compile_glob(glob)
    assert str(err.value) == reason


@pytest.mark.parametrize(("glob", "text", "matched"), [
    ("{a,b", "b", True),  # an unclosed '{' ends the alternatives at the end of the pattern
    ("ghcr.io/{lab,ops}/*", "ghcr.io/ops/x", True),
    ("[!a-c]x", "dx", True),
    ("[!a-c]x", "bx", False),
    ("{a,{b,c}d}", "cd", True),
    ("{a,}x", "x", True),
    ("[\\]]", "]", True),
    ("[a\\-z]", "-", True),
    ("[!-a]", "b", True),
    ("{[a]}", "a", True),
    ("a\\*", "a*", True),
    ("a\\*", "ab", False),
    ("{ab,a}b", "ab", True),
    ("[é-ö]", "ø", False),
    ("[é-ö]", "ö", True),
    ("a?c", "abc", True),
    ("a??", "ab", False),
])
def test_gobwas_glob_semantics(glob: str, text: str, matched: bool) -> None:
    assert compile_ivp_glob(glob).matches(text) is matched


@pytest.mark.parametrize(("glob", "reason"), [
    ("127.0.0.1:1/team/[abc", "unexpected end of input"),
    ("127.0.0.1:1/*/[abc", "unexpected end of input"),
    ("x[a", "unexpected end of input"),
    ("{a[}", "unexpected end of input"),
    ("[a-]]", "hi character ']' should be greater than lo 'a'"),
    ("[a-zb]", "expected close range character"),
    ("[!]", "could not parse range"),
])
def test_gobwas_glob_errors(glob: str, reason: str) -> None:
    with pytest.raises(GlobError) as err:
        compile_ivp_glob(glob)
    assert str(err.value) == reason


@pytest.mark.parametrize("compile_", [compile_ivp_glob, compile_glob])
def test_globs_match_in_bounded_time(compile_: object) -> None:
    # exponential for a backtracking matcher; the automaton walks each character once
    glob = compile_("**a" * 40 + "b")  # type: ignore[operator]
    start = time.monotonic()
    assert not glob.matches("a" * 5000)
    assert time.monotonic() - start < 10


def test_kyverno_wildcard_treats_brackets_and_braces_as_characters() -> None:
    # go-wildcard v1.0.3 knows only '*' and '?': a malformed "glob" is a literal that never
    # matches an image, and ClusterPolicy validation does not look at imageReferences' syntax
    assert not wildcard_match("127.0.0.1:1/team/[abc", "127.0.0.1:1/team/a:latest")
    assert wildcard_match("127.0.0.1:1/team/[abc*", "127.0.0.1:1/team/[abc:latest")
    assert wildcard_match("x/{a,b", "x/{a,b")
