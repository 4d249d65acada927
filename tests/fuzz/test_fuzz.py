"""Property-based fuzzing of what labkit reads from users and registries: image references, the
engines' pattern matchers, key files, policy YAML and AdmissionReviews.

The property for every target: any input is either accepted or refused with a ``LabkitError``
(or the matcher's own error type) whose message is one line — never another exception, and an
answer within ``PER_INPUT`` seconds (a hang fails with the input that caused it). Inputs are
built from fragments of valid input (a real reference, key, policy, review) mixed with hostile
ones, so the fuzzer reaches past the first check. `make fuzz` runs 10⁵ inputs per target.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from labkit.admission.sources import NamespaceLabels, PolicyDirectory
from labkit.admission.webhook import ENDPOINTS, Webhook, WebhookApp
from labkit.errors import LabkitError, PolicyError
from labkit.keys import decrypt_private_key, load_public_key, parse_importable_key
from labkit.oci.client import RegistryClient
from labkit.oci.reference import Reference
from labkit.policy import load_policies
from labkit.policy.match import GlobError, compile_glob, compile_ivp_glob, wildcard_match

CASES = Path(__file__).resolve().parents[1] / "conformance" / "cases"

PUBLIC_PEM = (b"-----BEGIN PUBLIC KEY-----\n"
              b"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW+Ykosag/z0zqAuVP3HvhUlQrUfe\n"
              b"pMnL7qNZjAVEEb0S/YDtqf8+4cyXT70a2pKGEelvjYMTc9r/kO7y4kAYoA==\n"
              b"-----END PUBLIC KEY-----\n")

# Pieces of references and patterns, valid and hostile, for the fuzzer to combine.
REF_PIECES = ["127.0.0.1:5000", "localhost", "docker.io", "ghcr.io", "[::1]:5000", "team", "app", "library",
              "..", ".", "/", ":", "@", "sha256:", "ab" * 32, "v1", "latest", "-", "_", "__", "UPPER", "%2e",
              "\\", " ", "\x00", "é", ":99999", "a" * 130]
GLOB_PIECES = ["*", "**", "?", "[", "]", "[!a]", "[a-z]", "{", "}", "{a,b}", ",", "\\", "/", "team", "app",
               "127.0.0.1:5000", "index.docker.io", ":", "@", "!", "-", "^", "."]


PER_INPUT = 10.0


@contextlib.contextmanager
def _answers_in_time() -> Iterator[None]:
    """Fail the input if it takes more than PER_INPUT seconds (SIGALRM: the tests run in the main thread)."""
    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {PER_INPUT} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, PER_INPUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _one_line(exc: LabkitError | GlobError) -> None:
    """The message says what failed on its first line. Only a policy's validation errors run on:
    they are the engine's own multi-line text (knative's ``invalid value: …\nglob is invalid: …``,
    as kube-apiserver relays it), each line ending in the value quoted."""
    message = exc.message if isinstance(exc, LabkitError) else str(exc)
    assert message.strip(), f"{type(exc).__name__} without a message"
    if not isinstance(exc, PolicyError):
        assert "\n" not in message.strip(), f"{type(exc).__name__} over several lines: {message!r}"


def _accepted_or_refused_in_one_line(call: Callable[[], object]) -> None:
    """``call()`` answers in time, returning or raising a LabkitError whose message is one line."""
    with _answers_in_time():
        try:
            call()
        except LabkitError as exc:
            _one_line(exc)


def _joined(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces) | st.text(max_size=4), max_size=12).map("".join)


# --- references --------------------------------------------------------------------------------


@given(_joined(REF_PIECES) | st.text(max_size=300))
def test_a_reference_parses_or_is_refused_in_one_line(text: str) -> None:
    with _answers_in_time():
        try:
            ref = Reference.parse(text)
        except LabkitError as exc:
            _one_line(exc)
            return
        assert Reference.parse(str(ref)) == ref  # what labkit prints, it reads back the same


# --- pattern matchers ---------------------------------------------------------------------------


@given(_joined(GLOB_PIECES), _joined(REF_PIECES))
def test_policy_controller_and_ivp_globs_compile_or_are_refused(glob: str, image: str) -> None:
    with _answers_in_time():
        for compile_ in (compile_glob, compile_ivp_glob):
            try:
                compiled = compile_(glob)
            except GlobError as exc:
                _one_line(exc)
                continue
            assert compiled.matches(image) in (True, False)


@given(_joined(GLOB_PIECES), _joined(REF_PIECES))
def test_kyverno_wildcards_answer(pattern: str, image: str) -> None:
    with _answers_in_time():
        assert wildcard_match(pattern, image) in (True, False)


# --- key files ----------------------------------------------------------------------------------


def _mutated(seed: bytes) -> st.SearchStrategy[bytes]:
    """``seed`` with a slice replaced by random bytes: a key file damaged anywhere."""
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 64), st.binary(max_size=64)).map(
        lambda t: seed[:t[0]] + t[2] + seed[t[0] + t[1]:])


KEY_BYTES = _mutated(PUBLIC_PEM) | st.binary(max_size=2048) | st.builds(
    lambda kind, body: b"-----BEGIN " + kind + b"-----\n" + body + b"\n-----END " + kind + b"-----\n",
    st.sampled_from([b"PUBLIC KEY", b"EC PRIVATE KEY", b"PRIVATE KEY", b"RSA PRIVATE KEY",
                     b"ENCRYPTED SIGSTORE PRIVATE KEY", b"ENCRYPTED COSIGN PRIVATE KEY"]),
    st.binary(max_size=512).map(base64.encodebytes))


@given(KEY_BYTES)
def test_a_public_key_loads_or_is_refused_in_one_line(data: bytes) -> None:
    _accepted_or_refused_in_one_line(lambda: load_public_key(data))


@given(KEY_BYTES)
def test_an_importable_key_parses_or_is_refused_in_one_line(data: bytes) -> None:
    _accepted_or_refused_in_one_line(lambda: parse_importable_key(data, source="fuzz.pem"))


@given(KEY_BYTES, st.binary(max_size=16))
def test_an_encrypted_key_opens_or_is_refused_in_one_line(data: bytes, password: bytes) -> None:
    _accepted_or_refused_in_one_line(lambda: decrypt_private_key(data, password, source="fuzz.key"))


# --- policies -----------------------------------------------------------------------------------


def _sample_policies() -> list[dict[str, Any]]:
    """The conformance corpus's policies: every kind, valid and invalid, as seeds to mutate."""
    docs = []
    for path in sorted(CASES.glob("*/policy.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


SAMPLE_POLICIES = _sample_policies()
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4),
                           max_leaves=12)


def _replace_somewhere(doc: Any, value: Any, path: list[int]) -> Any:
    """``doc`` with the value at a position chosen by ``path`` replaced by ``value``."""
    if not path or not isinstance(doc, (dict, list)) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    key = keys[path[0] % len(keys)]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[key] = _replace_somewhere(doc[key], value, path[1:])  # type: ignore[index]
    return copy


POLICY_TEXT = st.builds(
    lambda doc, value, path: yaml.safe_dump(_replace_somewhere(doc, value, path)),
    st.sampled_from(SAMPLE_POLICIES), JSON_VALUES, st.lists(st.integers(0, 50), max_size=8),
) | st.text(max_size=400)


@given(POLICY_TEXT)
def test_a_policy_loads_or_is_refused_in_one_line(text: str) -> None:
    _accepted_or_refused_in_one_line(lambda: load_policies(text))


# --- AdmissionReviews ---------------------------------------------------------------------------


def _review(obj: Any) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "operation": "CREATE", "namespace": "fuzz", "name": "p",
        "kind": {"group": "", "version": "v1", "kind": "Pod"}, "object": obj}}).encode()


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "fuzz"},
       "spec": {"containers": [{"name": "c", "image": "127.0.0.1:9/app:v1"}]}}
REVIEW_BODIES = (st.builds(lambda value, path: _review(_replace_somewhere(POD, value, path)), JSON_VALUES,
                           st.lists(st.integers(0, 50), max_size=6))
                 | st.builds(lambda value, path: json.dumps(_replace_somewhere(json.loads(_review(POD)), value, path))
                             .encode(), JSON_VALUES, st.lists(st.integers(0, 50), max_size=6))
                 | st.binary(max_size=512))


def _post(app: WebhookApp, path: str, body: bytes) -> tuple[int, Any]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "method": "POST",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> WebhookApp:
    # no policies: nothing in a review makes the webhook contact a registry
    root = tmp_path_factory.mktemp("webhook")
    (root / "policies").mkdir()
    (root / "namespaces.json").write_text(json.dumps({"fuzz": {"policy.sigstore.dev/include": "true"}}))
    return WebhookApp(Webhook(PolicyDirectory(root / "policies"), NamespaceLabels(root / "namespaces.json"),
                              RegistryClient(), cache_ttl=0))


@given(body=REVIEW_BODIES, path=st.sampled_from(sorted(ENDPOINTS)))
def test_the_webhook_answers_any_body_with_a_review_or_a_400(app: WebhookApp, body: bytes, path: str) -> None:
    with _answers_in_time():
        status, answer = _post(app, path, body)
        assert status in (200, 400), (status, answer)
        if status == 400:
            assert answer["error"].strip()
        else:
            assert answer["kind"] == "AdmissionReview" and isinstance(answer["response"]["allowed"], bool)
