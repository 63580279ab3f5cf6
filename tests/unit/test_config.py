"""The job file: loading, validation and the messages a user sees (indexer.config)."""

import datetime as dt
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from indexer.config import DEFAULT_CHUNK_SIZE, DEFAULT_URL, load_job, load_transform, parse_param
from indexer.errors import ConfigError

SQLITE_JOB = """
[source]
dbtype = "sqlite"
filename = "data/readings.db"

[job]
alias = "sensors"
key = ["ID"]
query = "SELECT id, reading FROM readings WHERE taken >= :since"

[job.params]
since = 2000-01-01
limit = 10
"""

PG_SOURCE = """
[source]
dbtype = "pg"
host = "db.example"
port = 5432
dbname = "plant"
user = "reader"
{extra}

[job]
alias = "sensors"
key = ["id"]
query = "SELECT 1 AS id"
"""


def write(folder: Path, text: str, name: str = "sensors.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_job(path, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- loading


def test_minimal_sqlite_job_loads_with_defaults(tmp_path):
    job = load_job(write(tmp_path, SQLITE_JOB), env={})
    assert job.source.dbtype == "SQLITE"
    assert job.job.alias == "sensors"
    assert job.job.key == ["id"]  # key names are lower-cased like the columns
    assert job.job.chunk_size == DEFAULT_CHUNK_SIZE
    assert job.target.url == DEFAULT_URL
    assert job.name == "sensors" and job.base_dir == tmp_path.resolve()


def test_relative_filename_is_relative_to_the_job_file_not_the_cwd(tmp_path, monkeypatch):
    path = write(tmp_path, SQLITE_JOB)
    monkeypatch.chdir(tmp_path.parent)
    job = load_job(Path(tmp_path.name) / path.name, env={})
    assert job.source.filename == tmp_path.resolve() / "data" / "readings.db"


def test_absolute_filename_is_kept(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "x.db"
    job = load_job(write(tmp_path, SQLITE_JOB.replace('"data/readings.db"', f'"{elsewhere}"')), env={})
    assert job.source.filename == elsewhere


def test_missing_job_file_is_a_config_error(tmp_path):
    assert "job file not found" in config_error(tmp_path / "nope.toml")


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path):
    message = config_error(write(tmp_path, "[source\n"))
    assert message.startswith("sensors.toml: not valid TOML")


# ---------------------------------------------------------------- validation messages


@pytest.mark.parametrize("table, field", [("[source]", "source.bogus"), ("[job]", "job.bogus")])
def test_unknown_field_is_named_with_its_path(tmp_path, table, field):
    text = SQLITE_JOB.replace(table, f"{table}\nbogus = 1")
    assert config_error(write(tmp_path, text), env={}) == f"sensors.toml: {field}: unknown field"


def test_missing_required_field_is_named(tmp_path):
    text = SQLITE_JOB.replace('key = ["ID"]\n', "")
    assert "job.key: required field is missing" in config_error(write(tmp_path, text), env={})


@pytest.mark.parametrize("alias", ["Sensors", "sensors*", "_sensors", "-sensors", "my sensors", "x" * 241])
def test_invalid_alias_is_refused_naming_job_alias(tmp_path, alias):
    text = SQLITE_JOB.replace('alias = "sensors"', f'alias = "{alias}"')
    assert "job.alias" in config_error(write(tmp_path, text), env={})


def test_alias_of_240_bytes_leaves_room_for_the_timestamp_suffix(tmp_path):
    text = SQLITE_JOB.replace('alias = "sensors"', f'alias = "{"x" * 240}"')
    assert len(load_job(write(tmp_path, text), env={}).job.alias) == 240


def test_database_with_a_password_needs_password_env(tmp_path):
    message = config_error(write(tmp_path, PG_SOURCE.format(extra="")), env={})
    assert "source" in message and "needs password_env" in message


def test_password_env_names_a_variable(tmp_path):
    job = load_job(write(tmp_path, PG_SOURCE.format(extra='password_env = "PLANT_DB_PASSWORD"')), env={})
    assert job.source.password_env == "PLANT_DB_PASSWORD"


@pytest.mark.parametrize("secret", ["correct horse battery", "PGPASSWORD=hunter2", "hunter2!"])
def test_a_secret_written_as_password_env_is_refused_and_not_echoed(tmp_path, secret):
    message = config_error(write(tmp_path, PG_SOURCE.format(extra=f'password_env = "{secret}"')), env={})
    assert "source.password_env" in message and "not a secret" in message
    assert secret not in message and "hunter2" not in message and "horse" not in message


# ---------------------------------------------------------------- params


def test_toml_dates_in_params_stay_dates(tmp_path):
    job = load_job(write(tmp_path, SQLITE_JOB), env={})
    assert job.job.params == {"since": dt.date(2000, 1, 1), "limit": 10}
    assert type(job.job.params["since"]) is dt.date


def test_params_override_merges_into_the_file_params(tmp_path):
    job = load_job(write(tmp_path, SQLITE_JOB), params={"limit": 5, "site": "eu"}, env={})
    assert job.job.params == {"since": dt.date(2000, 1, 1), "limit": 5, "site": "eu"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("since=2000-01-01", ("since", dt.date(2000, 1, 1))),
        ("limit=5", ("limit", 5)),
        ("site=abc", ("site", "abc")),
        ("site=\"quoted\"", ("site", "quoted")),
        ("expr=a=b", ("expr", "a=b")),
        ("empty=", ("empty", "")),
        (" name =7", ("name", 7)),
    ],
)
def test_parse_param_reads_toml_values_and_falls_back_to_text(text, expected):
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["noequals", "=5", " =5"])
def test_parse_param_refuses_text_without_a_name(text):
    with pytest.raises(ConfigError, match="expected name=value"):
        parse_param(text)


# ---------------------------------------------------------------- target url


def test_indexer_url_in_the_environment_overrides_the_file(tmp_path):
    text = SQLITE_JOB + '\n[target]\nurl = "http://file.example:9200"\n'
    job = load_job(write(tmp_path, text), env={"INDEXER_URL": "https://env.example:9243/"})
    assert job.target.url == "https://env.example:9243"


def test_file_url_is_used_without_indexer_url(tmp_path):
    text = SQLITE_JOB + '\n[target]\nurl = "http://file.example:9200"\n'
    assert load_job(write(tmp_path, text), env={}).target.url == "http://file.example:9200"


@pytest.mark.parametrize("url", ["https://elastic:hunter2@es.example:9200", "http://elastic:hunter2@localhost:9200/"])
def test_url_with_embedded_credentials_in_the_file_is_refused_without_echoing_them(tmp_path, url):
    message = config_error(write(tmp_path, SQLITE_JOB + f'\n[target]\nurl = "{url}"\n'), env={})
    assert "target.url" in message and "without credentials" in message
    assert "hunter2" not in message


def test_url_with_embedded_credentials_in_indexer_url_is_refused_without_echoing_them(tmp_path):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": "https://elastic:hunter2@es.example:9200"})
    assert "target.url" in message and "hunter2" not in message


def test_url_with_embedded_credentials_whose_password_holds_a_slash_is_refused(tmp_path):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": "https://elastic:hunter/2@es.example:9200"})
    assert "hunter" not in message


# ---------------------------------------------------------------- transforms


@pytest.fixture
def module_name(monkeypatch):
    """A module name no other test uses; sys.path and sys.modules restored afterwards."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"transform_{uuid.uuid4().hex}"
    yield name
    sys.modules.pop(name, None)


def test_transform_is_imported_from_the_job_folder(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text(
        "def add_site(docs):\n    return [{**d, 'site': 'eu'} for d in docs]\n"
    )
    transform = load_transform(f"{module_name}:add_site", tmp_path)
    assert transform([{"id": 1}]) == [{"id": 1, "site": "eu"}]


def test_missing_transform_module_is_a_config_error(tmp_path, module_name):
    with pytest.raises(ConfigError, match=f"job.transform: cannot import module '{module_name}'"):
        load_transform(f"{module_name}:add_site", tmp_path)


def test_missing_transform_function_is_a_config_error(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text("def other(docs):\n    return docs\n")
    with pytest.raises(ConfigError, match="has no function 'add_site'"):
        load_transform(f"{module_name}:add_site", tmp_path)


def test_transform_module_with_a_syntax_error_is_a_config_error(tmp_path, module_name):
    (tmp_path / f"{module_name}.py").write_text("def add_site(docs):\n    return docs +\n")
    with pytest.raises(ConfigError, match="job.transform"):
        load_transform(f"{module_name}:add_site", tmp_path)


def test_transform_spec_must_be_module_colon_function(tmp_path):
    text = SQLITE_JOB.replace('[job]\n', '[job]\ntransform = "transforms.add_site"\n')
    assert "job.transform" in config_error(write(tmp_path, text), env={})
