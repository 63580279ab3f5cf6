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
