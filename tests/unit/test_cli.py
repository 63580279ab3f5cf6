"""indexer.cli: the command line's help reads like a person wrote it. Every option by its full name with
a metavar saying what it takes (``--workers N``), never a type in angle brackets, never cut at 80 columns."""

import re

import click
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from indexer.cli import app

COMMANDS = ["bootstrap", "reindex", "sync", "reconcile", "status", "init", "preview"]


def _help(*args: str, width: int = 80) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": str(width), "TERMINAL_WIDTH": str(width)})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_shown_whole_with_what_it_takes(command):
    text = _help(command)
    # <list[Path]>: sync's job files, one or more (what it takes); any other bare type says nothing
    assert not re.search(r"<(bool|str|int|float|list\[(?!Path\])\w+\]|int range)>", text), text
    assert "…" not in text and "\\[" not in text, text
    for line in text.splitlines():
        assert len(line) <= 80, line
    click_command = get_command(app).commands[command]  # type: ignore[attr-defined]
    for param in click_command.params:
        if isinstance(param, click.Option):
            for name in param.opts:
                assert name in text, (name, text)   # the full name, never truncated
            if not param.is_flag:
                assert param.metavar and param.metavar in text, (param.name, param.metavar)


def test_options_that_take_a_value_say_what_it_is():
    reindex = _help("reindex")
    for shown in ("--workers N", "--partitions N", "--cluster tcp://HOST:PORT", "--param NAME=VALUE",
                  "--state-file PATH", "--dead-letter-file PATH", "--dead-letter-include-doc"):
        assert shown in reindex, shown
    assert "--every DURATION" in _help("sync") and "--limit N" in _help("preview")
    assert "--mappings DIR" in _help("bootstrap") and "--table [SCHEMA.]NAME" in _help("init")
