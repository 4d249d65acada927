"""The CLI's verb table: each verb builds only its own module's parser, so the table must name
exactly the module that registers it, and a partial parser must parse as the whole one does."""

from __future__ import annotations

import argparse
import importlib

import pytest

from labkit import cli
from labkit.errors import UsageError


def _verbs(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_verb_is_in_the_table_with_the_module_that_registers_it() -> None:
    assert _verbs(cli.build_parser()) == set(cli.VERBS)
    for module in set(cli.VERBS.values()):
        parser = argparse.ArgumentParser()
        importlib.import_module(f"labkit.cli.{module}").register(parser.add_subparsers())
        assert _verbs(parser) == {verb for verb, m in cli.VERBS.items() if m == module}


def test_a_verbs_own_parser_parses_like_the_whole_cli() -> None:
    argv = ["verify", "--key", "k.pub", "--insecure-ignore-tlog", "-o", "text", "r.io/a/b@sha256:" + "0" * 64]
    assert vars(cli.build_parser("verify").parse_args(argv)) == vars(cli.build_parser().parse_args(argv))
    assert _verbs(cli.build_parser("nonsense")) == set(cli.VERBS)  # unknown verbs get the full usage


def test_an_error_prints_the_message_then_the_next_step_on_its_own_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # a missing key file fails before any registry is contacted
    code = cli.main(["verify", "--key", "no-such.pub", "--insecure-ignore-tlog", "127.0.0.1:1/a@sha256:" + "0" * 64])
    lines = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("WARNING")]
    assert code == 1
    assert lines == ["Error: public key file no-such.pub does not exist", "Hint: check the path"]


def test_bundle_signing_refuses_options_it_does_not_carry_before_reading_the_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli.main(["sign", "--new-bundle-format", "-a", "k=v", "--recursive", "--key", "no-such.key",
                     "127.0.0.1:1/a@sha256:" + "0" * 64])
    err = capsys.readouterr().err
    assert code == 2  # a usage error, as argparse's
    assert "Error: labkit's --new-bundle-format signing does not take -a, --recursive\n" in err


def test_a_notebook_shows_a_labkit_error_as_its_message_and_hint_not_a_traceback() -> None:
    error = UsageError("unknown lab backend 'kinda'", hint="choose one of: embedded, native, kind")
    assert str(error) == "unknown lab backend 'kinda'"
    assert error._render_traceback_() == ["UsageError: unknown lab backend 'kinda'",
                                          "Hint: choose one of: embedded, native, kind"]
