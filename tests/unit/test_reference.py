"""docs/config-reference.md is generated from the job model and docs/cli-reference.md from the typer app: it
fails here when either is stale, when a field has no description or a command, argument or option no help
text, or when a reference leaves out what the code has (a field, a default, an option, a metavar)."""

import subprocess
import sys
from pathlib import Path

import pytest

from indexer import reference
from indexer.config import DEFAULT_CHUNK_BYTES, MAX_PARTITIONS, Job, JobSettings, SourceConfig, TargetConfig

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "config-reference.md"
CLI_REFERENCE = ROOT / "docs" / "cli-reference.md"
MODELS = (Job, SourceConfig, TargetConfig, JobSettings)


def _generate(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "indexer.reference", *args], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


def test_the_committed_reference_is_what_the_generator_writes_now():
    written = _generate()
    assert REFERENCE.read_text() == written, (
        "docs/config-reference.md is stale: run `python -m indexer.reference > docs/config-reference.md`")
    assert _generate("config") == written


def test_the_committed_cli_reference_is_what_the_generator_writes_now():
    assert CLI_REFERENCE.read_text() == _generate("cli"), (
        "docs/cli-reference.md is stale: run `python -m indexer.reference cli > docs/cli-reference.md`")


def test_an_unknown_reference_is_a_usage_error():
    done = subprocess.run([sys.executable, "-m", "indexer.reference", "nope"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and not done.stdout and "usage: python -m indexer.reference [config|cli]" in done.stderr


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model):
    missing = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"{model.__name__} fields without a description: {missing}"


def test_every_table_and_field_of_the_job_file_is_in_the_reference():
    text = REFERENCE.read_text()
    assert [header for header, _, _ in reference.tables()] == ["source", "target", "job", "job.params"]
    for header in ("## [source] (required)", "## [target] (optional)", "## [job] (required)",
                   "## [job.params] (optional)"):
        assert header in text
    for model in (SourceConfig, TargetConfig, JobSettings):
        for name in model.model_fields:
            assert f"| `{name}` |" in text, name


def test_rows_carry_the_type_default_and_constraints_the_model_enforces():
    rows = {line.split(" | ")[0].strip("| `"): line for line in REFERENCE.read_text().splitlines()
            if line.startswith("| `")}
    assert "| string |  | yes |" in rows["alias"]
    assert f"| integer | `{DEFAULT_CHUNK_BYTES}` | no |" in rows["chunk_bytes"]
    assert f">= 1; <= {MAX_PARTITIONS}" in rows["partitions"]
    assert '`"auto"`, `"elasticsearch"`, `"opensearch"`' in rows["engine"]
    assert "| boolean | `true` |" in rows["verify_certs"]
    assert "| array of strings |" in rows["key"] and "at least 1" in rows["key"]
    assert "| string or number | `\"5m\"` |" in rows["lookback"]
    assert "&lt;alias>" in rows["alias"]  # a bare <alias> would vanish as an HTML tag


def test_type_names_read_as_toml():
    from pathlib import Path as P
    from typing import Literal, Optional

    assert reference.type_name(Optional[int]) == "integer"  # noqa: UP045 - the spelling older job models use
    assert reference.type_name(P | None) == "string (a path)"
    assert reference.type_name(Literal["a", "b"]) == "string"
    assert reference.type_name(list[str]) == "array of strings"
    assert reference.type_name(str | int | float | None) == "string or number"


def test_every_command_argument_and_option_has_help_text():
    assert reference.undocumented(reference.cli_group()) == [], "give them help= in indexer/cli.py"


def test_a_command_or_option_without_help_text_is_found():
    from typing import Annotated

    import typer
    import typer.main

    demo = typer.Typer()

    @demo.command()
    def told(job: Annotated[str, typer.Argument(help="The job.")],
             quiet: Annotated[bool, typer.Option("--quiet", help="Say less.")] = False) -> None:
        """A command with help."""

    @demo.command()
    def untold(job: str, loud: Annotated[bool, typer.Option("--loud")] = False) -> None:
        pass

    assert reference.undocumented(typer.main.get_command(demo)) == ["command untold", "untold JOB", "untold --loud"]


def _cli_rows(command: str) -> dict[str, str]:
    """The rows of one command's table in docs/cli-reference.md, by their first cell."""
    section = CLI_REFERENCE.read_text().split(f"\n## indexer {command}\n", 1)[1].split("\n## ", 1)[0]
    return {line.split(" | ")[0].strip("| `"): line for line in section.splitlines() if line.startswith("| `")}


def test_cli_rows_carry_the_metavar_default_and_bounds_the_app_declares():
    reindex, preview, init, bootstrap = (_cli_rows(c) for c in ("reindex", "preview", "init", "bootstrap"))
    assert "| required |" in reindex["JOB.toml"]
    assert "| unset |" in reindex["--partitions N"] and ">= 1" in reindex["--partitions N"]
    assert "| `--progress` |" in reindex["--progress / --no-progress"]
    assert "repeatable" in reindex["--param NAME=VALUE"]
    assert "| `5` |" in preview["--limit N"] and ">= 1" in preview["--limit N"]
    assert "| required |" in init["--table [SCHEMA.]NAME"]
    assert "| `.` |" in init["--out DIR"]
    assert "repeatable" in init["--key COLUMN"]
    assert "environment variable `INDEXER_URL`" in bootstrap["--url URL"]
    assert "| `auto` |" in bootstrap["--engine auto\\|elasticsearch\\|opensearch"]  # | escaped in a table cell
    assert "| off |" in bootstrap["--dry-run"]
    assert "&lt;job>" in reindex["--dead-letter-file PATH"]  # a bare <job> would vanish as an HTML tag


def test_every_command_is_in_the_cli_reference_in_the_apps_order_with_its_usage():
    text = CLI_REFERENCE.read_text()
    group = reference.cli_group()
    positions = [text.index(f"\n## indexer {name}\n") for name in group.commands]
    assert positions == sorted(positions)
    assert "`indexer reindex [OPTIONS] JOB.toml`" in text and "`indexer init [OPTIONS]`" in text
    for option in ("--version", "--install-completion", "--show-completion"):
        assert f"| `{option}` |" in text.split("\n## indexer bootstrap\n")[0]
