"""The README documents every command, every option and every job-file field (fails when one is added without docs)."""

import re
from pathlib import Path

import pytest
import typer.main

from indexer.cli import app
from indexer.config import JobSettings, SourceConfig, TargetConfig

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
COMMANDS = typer.main.get_command(app).commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_is_in_the_readme_table(name):
    assert re.search(rf"^\| `indexer {name}\b", README, re.M), f"indexer {name} is not documented"


@pytest.mark.parametrize("option", sorted({opt for cmd in COMMANDS.values() for p in cmd.params
                                           for opt in p.opts if opt.startswith("--") and opt != "--help"}))
def test_every_option_is_mentioned(option):
    assert option in README, f"{option} is not documented"


@pytest.mark.parametrize("field", sorted(set(SourceConfig.model_fields) | set(TargetConfig.model_fields)
                                         | set(JobSettings.model_fields)))
def test_every_job_file_field_is_mentioned(field):
    assert re.search(rf"\b{field}\b", README), f"job-file field {field} is not documented"


def test_the_exit_code_table_lists_every_code_the_cli_can_return():
    import indexer.cli as cli
    from indexer.errors import ConfigError, IndexerError

    table = set(re.findall(r"^\| (\d+) \|", README, re.M))
    codes = {0, IndexerError.exit_code, ConfigError.exit_code, cli.EXIT_DEAD_LETTERS, 130, 143}
    assert {str(c) for c in codes} <= table, f"undocumented exit codes: {codes - {int(c) for c in table}}"
    assert f"exits 0 when the cluster matches the files, 1 when it differs, {cli.EXIT_COULD_NOT_CHECK} when it could not" in README


def test_the_summary_arithmetic_in_the_readme_names_real_summary_fields():
    from indexer.run import Summary

    fields = set(Summary.__dataclass_fields__)
    for formula in ("documents = skipped + rejected + sent", "sent = indexed + duplicates + deleted + not_found + failed",
                    "dead_lettered = rejected + failed"):
        assert f"`{formula}`" in README, formula
        assert set(re.findall(r"\w+", formula)) <= fields, formula


def test_the_safety_section_states_the_defaults_the_code_uses():
    from indexer.config import DEFAULT_MIN_RATIO
    from indexer.lease import DEFAULT_LEASE_SECONDS, LEASE_ENV

    assert f"`min_ratio` (default {DEFAULT_MIN_RATIO:g})" in README
    assert f"`{LEASE_ENV}` (default {DEFAULT_LEASE_SECONDS:g})" in README
