"""The documentation keeps up with the code: every command, option and job-file field is documented where
the facts now live (the README's commands table, the generated references, the manual in docs/), and the
exit codes, the summary's sums and the safety defaults the manual states are the ones the code uses."""

import dataclasses
import re
from pathlib import Path

import pytest
import typer.main

from indexer.cli import app
from indexer.config import JobSettings, SourceConfig, TargetConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATED = ("cli-reference.md", "config-reference.md")
README = (ROOT / "README.md").read_text()
CLI_REFERENCE = (DOCS / "cli-reference.md").read_text()
# The manual: what people wrote, as opposed to what the generators wrote.
MANUAL = {path.name: path.read_text() for path in sorted(DOCS.glob("*.md")) if path.name not in GENERATED}
ALL_PROSE = "\n".join([README, *MANUAL.values()])
GROUP = typer.main.get_command(app)
COMMANDS = GROUP.commands
OPTIONS = sorted({opt for params in [GROUP.params, *(cmd.params for cmd in COMMANDS.values())] for p in params
                  for opt in [*p.opts, *p.secondary_opts] if opt.startswith("--") and opt != "--help"})
README_MAX_LINES = 150


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    match = re.search(rf"^{re.escape(heading)}\n(.*?)(?=^#{{1,{len(level)}}} |\Z)", text, re.M | re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def _readme_row(name: str) -> str:
    match = re.search(rf"^\| \[`indexer {name}\b[^`]*`\]\(([^)#]+)(#[^)]*)?\) \|.*$", README, re.M)
    assert match, f"indexer {name} has no row in the README's commands table, linked to its page"
    return match.group(1)


# Commands


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_row_in_the_readme_table_linked_to_a_page_that_explains_it(name):
    page = ROOT / _readme_row(name)
    assert page.is_file(), f"the README links indexer {name} to {page}, which does not exist"
    assert f"indexer {name}" in page.read_text(), f"{page.name} never names `indexer {name}`"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_section_in_the_cli_reference(name):
    assert f"\n## indexer {name}\n" in CLI_REFERENCE, f"indexer {name} is not in docs/cli-reference.md"


def test_the_readme_commands_table_has_one_short_line_per_command():
    rows = re.findall(r"^\| \[`indexer .*$", README, re.M)
    assert len(rows) == len(COMMANDS)
    assert all(len(row) <= 240 for row in rows), [row for row in rows if len(row) > 240]


# Options


@pytest.mark.parametrize(("name", "option"), sorted(
    (name, opt) for name, cmd in COMMANDS.items() for p in cmd.params for opt in [*p.opts, *p.secondary_opts]
    if opt.startswith("--")))
def test_every_option_is_in_its_command_section_of_the_cli_reference(name, option):
    section = _section(CLI_REFERENCE, f"## indexer {name}")
    assert re.search(rf"^\| `[^`]*{re.escape(option)}\b", section, re.M), f"{name} {option} is not in the reference"


@pytest.mark.parametrize("option", sorted(opt for p in GROUP.params for opt in p.opts))
def test_every_option_before_the_command_is_in_the_cli_reference(option):
    section = _section(CLI_REFERENCE, "## indexer")
    assert re.search(rf"^\| `{re.escape(option)}\b", section, re.M), f"indexer {option} is not in the reference"


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_is_mentioned_in_the_manual(option):
    assert option in ALL_PROSE, f"{option} is in no hand-written page (README.md, docs/*.md but the generated ones)"


# The job file


@pytest.mark.parametrize("field", sorted(set(SourceConfig.model_fields) | set(TargetConfig.model_fields)
                                         | set(JobSettings.model_fields)))
def test_every_job_file_field_is_mentioned_in_the_manual(field):
    # as a field, not as a word of English (key, url, query, keep...): `field`, field = ..., or table.field
    assert re.search(rf"`{field}`|\b{field} =|\.{field}\b", ALL_PROSE), f"job-file field {field} is in no hand-written page"


def test_the_job_file_page_shows_every_table_and_links_the_reference():
    page = MANUAL["job-file.md"]
    for table in ("[source]", "[target]", "[job]", "[job.params]"):
        assert f"\n{table}" in page, table
    assert "(config-reference.md)" in page


# Exit codes and counts


def test_the_exit_code_table_lists_every_code_the_cli_can_return():
    import indexer.cli as cli
    from indexer.errors import ConfigError, IndexerError

    codes = {0, IndexerError.exit_code, ConfigError.exit_code, cli.EXIT_DEAD_LETTERS, 130, 143}
    table = {int(c) for c in re.findall(r"^\| (\d+) \|", _section(MANUAL["failures.md"], "## Exit codes"), re.M)}
    assert codes <= table, f"undocumented exit codes in docs/failures.md: {codes - table}"
    brief = re.search(r"^Exit codes: (.*?)\n\n", README, re.M | re.S)
    assert brief, "the README has no 'Exit codes: ...' paragraph"
    assert codes <= {int(c) for c in re.findall(r"\b(\d+)\b", brief.group(1))}, "the README's exit codes in brief"
    assert "(docs/failures.md#exit-codes)" in brief.group(1)


def test_bootstrap_check_states_its_own_exit_codes():
    import indexer.cli as cli

    assert (f"exits 0 when the cluster matches the files, 1 when it differs, {cli.EXIT_COULD_NOT_CHECK} when it "
            "could not") in " ".join(MANUAL["bootstrap.md"].split())


def _summary_names() -> set[str]:
    """The names a summary shows: its fields, and the numbers of what it holds (its counts)."""
    from indexer.run import Summary

    names = set(Summary.__dataclass_fields__)
    for field in dataclasses.fields(Summary):
        if field.default_factory is not dataclasses.MISSING:
            held = field.default_factory()
            if callable(getattr(held, "numbers", None)):
                names |= set(held.numbers())
    return names


def test_the_summary_arithmetic_in_the_manual_names_real_summary_fields():
    section = " ".join(_section(MANUAL["running.md"], "## The summary").split())
    for formula in ("documents = skipped + rejected + sent",
                    "sent = indexed + duplicates + deleted + not_found + failed",
                    "dead_lettered = rejected + failed"):
        assert f"`{formula}`" in section, formula
        assert set(re.findall(r"\w+", formula)) <= _summary_names(), formula


def test_the_safety_page_states_the_defaults_the_code_uses():
    from indexer.config import DEFAULT_MIN_RATIO
    from indexer.lease import DEFAULT_LEASE_SECONDS, LEASE_ENV

    safety = " ".join(MANUAL["safety.md"].split())
    assert f"`min_ratio` (default {DEFAULT_MIN_RATIO:g})" in safety
    assert f"`{LEASE_ENV}` (default {DEFAULT_LEASE_SECONDS:g})" in safety
    assert f"`min_ratio` (default {DEFAULT_MIN_RATIO:g})" in " ".join(MANUAL["reconcile.md"].split())


# The README and the index


def test_the_readme_stays_short_and_keeps_the_two_commands():
    assert len(README.splitlines()) <= README_MAX_LINES, "the manual belongs in docs/; the README stays short"
    assert "make demo" in README and "make test" in README


@pytest.mark.parametrize("page", sorted(path.name for path in DOCS.glob("*.md")) + ["ARCHITECTURE.md"])
def test_every_doc_is_linked_from_the_readme_and_from_the_docs_index(page):
    from_readme = page if page == "ARCHITECTURE.md" else f"docs/{page}"
    assert f"]({from_readme})" in README, f"README.md does not link {from_readme}"
    if page != "README.md":
        from_index = "../ARCHITECTURE.md" if page == "ARCHITECTURE.md" else page
        assert f"]({from_index})" in MANUAL["README.md"], f"docs/README.md does not link {from_index}"
