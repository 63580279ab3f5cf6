"""docs/config-reference.md is generated from the job model: it fails here when it is stale, when a field
has no description, or when the reference leaves out a field or a default the model has."""

import subprocess
import sys
from pathlib import Path

import pytest

from indexer import reference
from indexer.config import DEFAULT_CHUNK_BYTES, MAX_PARTITIONS, Job, JobSettings, SourceConfig, TargetConfig

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "config-reference.md"
MODELS = (Job, SourceConfig, TargetConfig, JobSettings)


def test_the_committed_reference_is_what_the_generator_writes_now():
    written = subprocess.run([sys.executable, "-m", "indexer.reference"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert REFERENCE.read_text() == written, (
        "docs/config-reference.md is stale: run `python -m indexer.reference > docs/config-reference.md`")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_has_a_description(model):
    missing = [name for name, info in model.model_fields.items() if not (info.description or "").strip()]
    assert not missing, f"{model.__name__} fields without a description: {missing}"


def test_every_table_and_field_of_the_job_file_is_in_the_reference():
    text = REFERENCE.read_text()
    assert [header for header, _, _ in reference.tables()] == ["source", "target", "job", "job.params"]
    for header in ("## [source] (required)", "## [target] (optional)", "## [job] (required)", "## [job.params] (optional)"):
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

    assert reference.type_name(Optional[int]) == "integer"
    assert reference.type_name(P | None) == "string (a path)"
    assert reference.type_name(Literal["a", "b"]) == "string"
    assert reference.type_name(list[str]) == "array of strings"
    assert reference.type_name(str | int | float | None) == "string or number"
