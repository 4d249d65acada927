"""The embedded registry answers what distribution 2.8 answers to the same hostile requests.

Oracle: Debian's docker-registry (distribution 2.8, ``tests/peers.py``) run with the same
htpasswd file or sent the same manifest; statuses, error codes and (for auth) bodies are compared.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest

from labkit.registry import serve
from tests.peers import PeerMissing, run_distribution

PASSWORD = "p" * 72  # bcrypt's whole key: distribution compares the first 72 bytes only


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    path.write_text(
        f"learner:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        "broken:$2y$05$notahash\n"  # a malformed hash: that user can never log in
    )
    return path


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory, htpasswd: Path) -> Iterator[tuple[str, str]]:
    """(labkit's URL, distribution's URL), both behind ``htpasswd`` with realm ``labkit``."""
    auth = f"auth: {{htpasswd: {{realm: labkit, path: {htpasswd}}}}}\n"
    labkit = serve(root=tmp_path_factory.mktemp("labkit"), port=0, htpasswd=htpasswd)
    try:
        with run_distribution(tmp_path_factory.mktemp("distribution"), extra_config=auth) as real:
            yield labkit.url, real.url
    except PeerMissing as exc:
        pytest.skip(str(exc))
    finally:
        labkit.stop()


@pytest.mark.parametrize("user, password", [
    ("learner", PASSWORD),
    ("learner", PASSWORD + "-ignored"),  # past 72 bytes: accepted, as bcrypt keys stop there
    ("learner", "q" * 100),  # over 72 bytes and wrong
    ("learner", "x" * 5000),
    ("broken", "anything"),
    ("nobody", "p" * 80),
], ids=["72-bytes", "77-bytes", "100-bytes-wrong", "5000-bytes", "malformed-hash", "unknown-user"])
def test_basic_auth_answers_as_distribution_does(both: tuple[str, str], user: str, password: str) -> None:
    """Issue 13 item 7: long passwords and malformed hashes were HTTP 500; distribution says 401."""
    labkit_url, real_url = both
    mine = httpx.get(f"{labkit_url}/v2/", auth=(user, password), timeout=10)
    theirs = httpx.get(f"{real_url}/v2/", auth=(user, password), timeout=10)
    assert mine.status_code == theirs.status_code
    assert mine.json() == theirs.json()
    assert mine.headers.get("WWW-Authenticate") == theirs.headers.get("WWW-Authenticate")


# --- manifests the registry could store but not serve ---------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = b'{"architecture":"amd64","os":"linux"}'
LAYER = b"layer"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _image(**changes: Any) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _sha256(CONFIG),
                   "size": len(CONFIG)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha256(LAYER),
                    "size": len(LAYER)}],
        **changes,
    }


HOSTILE_MANIFESTS: dict[str, tuple[bytes, str | None]] = {
    "crlf-media-type": (json.dumps(_image(mediaType="application/x\r\nX-Injected: 1")).encode(), None),
    "non-latin-1-media-type": (json.dumps(_image(mediaType="application/\u4e2d\u6587")).encode(), None),
    "deeply-nested": (b'{"schemaVersion":2,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", OCI_MANIFEST),
    "huge-size": (json.dumps(_image()).replace(f'"size": {len(CONFIG)}', '"size": ' + "9" * 30, 1).encode(),
                  OCI_MANIFEST),
    "size-past-int64": (json.dumps(_image()).replace(f'"size": {len(CONFIG)}', f'"size": {2**63}', 1).encode(),
                        OCI_MANIFEST),
    # Go's decoder skips a field it does not know without converting it: distribution stores it.
    "huge-number-unknown-field": (json.dumps(_image()).encode()[:-1] + b', "x": ' + b"9" * 5000 + b"}",
                                  OCI_MANIFEST),
    "non-string-annotation": (json.dumps(_image(annotations={"a": {"b": 1}})).encode(), OCI_MANIFEST),
}


def _push_blobs(client: httpx.Client) -> None:
    for blob in (CONFIG, LAYER):
        location = client.post("/v2/lab/app/blobs/uploads/").headers["Location"]
        separator = "&" if "?" in location else "?"
        assert client.put(f"{location}{separator}digest={_sha256(blob)}", content=blob).status_code == 201


@pytest.fixture(scope="module")
def plain_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """(labkit, distribution) clients, each registry holding the config and layer blobs."""
    labkit = serve(root=tmp_path_factory.mktemp("labkit-plain"), port=0)
    try:
        with run_distribution(tmp_path_factory.mktemp("distribution-plain")) as real, \
                httpx.Client(base_url=labkit.url, timeout=30) as mine, \
                httpx.Client(base_url=real.url, timeout=30) as theirs:
            _push_blobs(mine)
            _push_blobs(theirs)
            yield mine, theirs
    except PeerMissing as exc:
        pytest.skip(str(exc))
    finally:
        labkit.stop()


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_manifest_is_refused_or_served_as_distribution_does(plain_pair: tuple[httpx.Client, httpx.Client],
                                                             case: str) -> None:
    """Issue 13 item 10: a media type no HTTP header can carry was stored (201) and every GET
    then failed; deep nesting and huge numbers were HTTP 500. Whatever is accepted is served."""
    mine, theirs = plain_pair
    body, content_type = HOSTILE_MANIFESTS[case]
    headers = {"Content-Type": content_type} if content_type else {}
    put = mine.put(f"/v2/lab/app/manifests/{case}", content=body, headers=headers)
    expected = theirs.put(f"/v2/lab/app/manifests/{case}", content=body, headers=headers)
    assert put.status_code == expected.status_code, put.text
    if put.status_code == 201:
        got = mine.get(f"/v2/lab/app/manifests/{case}")
        assert (got.status_code, got.content) == (200, body)
    else:
        assert put.json()["errors"][0]["code"] == expected.json()["errors"][0]["code"] == "MANIFEST_INVALID"
