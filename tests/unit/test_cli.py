"""The CLI's verb table: each verb builds only its own module's parser, so the table must name
exactly the module that registers it, and a partial parser must parse as the whole one does."""

from __future__ import annotations

import argparse
import importlib

from labkit import cli


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
