"""The CLI's password reading: cosign's order (COSIGN_PASSWORD, a TTY prompt, stdin), never echoed."""

from __future__ import annotations

import io

import pytest

from labkit.cli.passwords import read_password
from labkit.errors import PasswordError


class FakeStdin(io.BytesIO):
    def __init__(self, data: bytes, tty: bool) -> None:
        super().__init__(data)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_read_password_order() -> None:
    stdin = FakeStdin(b"from-stdin\n", tty=False)
    assert read_password(confirm=True, environ={"COSIGN_PASSWORD": ""}, stdin=stdin) == b""
    # not a terminal: all of stdin, trailing newline included (cosign's io.ReadAll)
    assert read_password(confirm=True, environ={}, stdin=stdin) == b"from-stdin\n"
    answers = iter(["one", "two"])
    prompts: list[str] = []

    def fake_getpass(prompt: str, stream) -> str:
        prompts.append(prompt)
        return next(answers)

    with pytest.raises(PasswordError, match=r"^passwords do not match") as info:
        read_password(confirm=True, environ={}, stdin=FakeStdin(b"", tty=True),
                      stderr=io.StringIO(), getpass=fake_getpass)
    assert "one" not in str(info.value) and "two" not in str(info.value)
    assert prompts == ["Enter password for private key: ", "Enter password for private key again: "]


def test_cosign_password_is_the_variables_bytes() -> None:
    """Any bytes, as cosign takes them: os.environ holds 0xff as a surrogate (issue 13)."""
    assert read_password(confirm=False, environ={"COSIGN_PASSWORD": "\udcffé"}) == b"\xff\xc3\xa9"
