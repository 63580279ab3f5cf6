"""indexer.jobfile: reading a job file. The TOML, paths relative to the file, ``INDEXER_URL`` over the file's
url, ``--param`` over ``[job.params]`` (and every name the queries bind given a value), ``--partitions`` and
``--cluster`` checked as the file's settings are; every refusal one line that never quotes the input."""

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from indexer.errors import ConfigError
from indexer.jobfile import load_job, parse_param, with_partitions
from tests.support.builders import JOB_WITH_WATERMARK, PG_SOURCE, SQLITE_JOB, config_error, write

# ---------------------------------------------------------------- reading the file


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


def test_a_job_file_starting_with_a_utf8_bom_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(SQLITE_JOB).encode())
    assert load_job(path, env={}).job.alias == "sensors"


# ---------------------------------------------------------------- a validation error in one line


@pytest.mark.parametrize("table, field", [("[source]", "source.bogus"), ("[job]", "job.bogus")])
def test_unknown_field_is_named_with_its_path(tmp_path, table, field):
    text = SQLITE_JOB.replace(table, f"{table}\nbogus = 1")
    assert config_error(write(tmp_path, text), env={}) == f"sensors.toml: {field}: unknown field"


def test_missing_required_field_is_named(tmp_path):
    text = SQLITE_JOB.replace('key = ["ID"]\n', "")
    assert "job.key: required field is missing" in config_error(write(tmp_path, text), env={})


# ---------------------------------------------------------------- params and --param


def test_toml_dates_in_params_stay_dates(tmp_path):
    job = load_job(write(tmp_path, SQLITE_JOB), env={})
    assert job.job.params == {"since": dt.date(2000, 1, 1), "limit": 10}
    assert type(job.job.params["since"]) is dt.date


def test_params_override_merges_into_the_file_params(tmp_path):
    # issue 8: a --param must name a parameter of the job, so "site" is now bound by the query.
    text = SQLITE_JOB.replace("WHERE taken >= :since", "WHERE taken >= :since AND site = :site")
    job = load_job(write(tmp_path, text), params={"limit": 5, "site": "eu"}, env={})
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


def test_a_misspelt_param_is_refused_naming_what_the_job_has(tmp_path):
    path = write(tmp_path, SQLITE_JOB)
    assert config_error(path, params={"sinse": dt.date(2001, 1, 1)}, env={}) == (
        "--param sinse: not a parameter of this job (job.params has: since, limit; the query binds: since)"
    )


def test_a_param_the_query_binds_but_the_file_does_not_list_is_accepted(tmp_path):
    text = SQLITE_JOB.replace("WHERE taken >= :since", "WHERE taken >= :since AND site = :site")
    assert load_job(write(tmp_path, text), params={"site": "eu"}, env={}).job.params["site"] == "eu"


def test_a_param_the_sync_query_binds_is_accepted(tmp_path):
    text = JOB_WITH_WATERMARK.replace(
        'watermark = "changed"\n',
        'watermark = "changed"\nsync_query = "SELECT * FROM readings WHERE changed >= :since AND region = :region '
        'ORDER BY changed"\n')
    assert load_job(write(tmp_path, text), params={"region": "north"}, env={}).job.params["region"] == "north"


def test_a_name_inside_a_string_literal_or_comment_is_not_a_bind(tmp_path):
    text = SQLITE_JOB.replace("WHERE taken >= :since", "WHERE taken >= :since AND at > '12:30:xx' -- :note")
    message = config_error(write(tmp_path, text), params={"xx": 1}, env={})
    assert message.startswith("--param xx: not a parameter of this job") and "the query binds: since)" in message


def test_postgres_binds_are_read_in_pyformat(tmp_path):
    text = PG_SOURCE.format(extra='password_env = "P"').replace(
        'query = "SELECT 1 AS id"', "query = \"SELECT id FROM t WHERE site = %(site)s AND code LIKE 'A%%'\"")
    assert load_job(write(tmp_path, text), params={"site": "eu"}, env={}).job.params == {"site": "eu"}
    assert config_error(write(tmp_path, text), params={"sit": "eu"}, env={}) == (
        "--param sit: not a parameter of this job (job.params has: none; the query binds: site)"
    )


def test_oracle_bind_names_ignore_case(tmp_path):
    text = PG_SOURCE.format(extra='password_env = "P"').replace('dbtype = "pg"', 'dbtype = "oracle"').replace(
        'query = "SELECT 1 AS id"', 'query = "SELECT id FROM t WHERE d >= :StartDate"')
    assert load_job(write(tmp_path, text), params={"startdate": "2001-01-01"}, env={}).job.params


def test_mssql_positional_params_must_be_listed_in_job_params(tmp_path):
    text = PG_SOURCE.format(extra='password_env = "P"\nodbc_driver = "ODBC Driver 18 for SQL Server"').replace(
        'dbtype = "pg"', 'dbtype = "mssql"').replace('query = "SELECT 1 AS id"', 'query = "SELECT id FROM t WHERE d >= ?"')
    assert config_error(write(tmp_path, text), params={"start": 1}, env={}) == (
        "--param start: not a parameter of this job (job.params has: none; "
        "the query binds: ? (positional: name it in [job.params]))"
    )
    listed = text + "\n[job.params]\nstart = 0\n"
    assert load_job(write(tmp_path, listed), params={"start": 1}, env={}).job.params == {"start": 1}


def test_since_is_reserved_for_sync_as_a_param(tmp_path):
    path = write(tmp_path, JOB_WITH_WATERMARK)
    assert config_error(path, params={"since": dt.date(2001, 1, 1)}, env={}) == (
        "--param since: the name since is reserved for sync (it binds the watermark); rename the parameter"
    )


def test_since_is_reserved_for_sync_in_job_params(tmp_path):
    path = write(tmp_path, JOB_WITH_WATERMARK + "since = 2000-01-01\n")
    assert config_error(path, env={}) == (
        "sensors.toml: job.params.since: the name since is reserved for sync (it binds the watermark); "
        "rename the parameter"
    )


def test_a_query_binding_a_name_without_a_value_is_refused(tmp_path):
    text = SQLITE_JOB.replace("WHERE taken >= :since", "WHERE taken >= :since AND site = :site")
    assert config_error(write(tmp_path, text), env={}) == (
        "sensors.toml: job.query binds site but job.params has no site (add it to [job.params] or pass --param site=...)"
    )


@pytest.mark.parametrize("name", ["indexer_beyond", "slice_lo", "slice_hi"])
def test_a_parameter_named_like_one_indexer_binds_is_refused_in_every_job(tmp_path, name):
    """indexer binds these around the job's query (a MAX asked again past infinity, a slice's bounds):
    a job parameter of that name was overwritten inside its own query and the MAX taken over other rows."""
    query = f"SELECT id FROM readings WHERE id < :{name}"
    job = SQLITE_JOB.replace('"SELECT id, reading FROM readings WHERE taken >= :since"', f'"{query}"')
    job = job.replace("limit = 10", f"{name} = 3")
    message = config_error(write(tmp_path, job), env={})
    assert f"the parameter name {name} is one indexer binds itself" in message
    assert "\n" not in message


# ---------------------------------------------------------------- INDEXER_URL


def test_indexer_url_in_the_environment_overrides_the_file(tmp_path):
    text = SQLITE_JOB + '\n[target]\nurl = "http://file.example:9200"\n'
    job = load_job(write(tmp_path, text), env={"INDEXER_URL": "https://env.example:9243/"})
    assert job.target.url == "https://env.example:9243"


def test_file_url_is_used_without_indexer_url(tmp_path):
    text = SQLITE_JOB + '\n[target]\nurl = "http://file.example:9200"\n'
    assert load_job(write(tmp_path, text), env={}).target.url == "http://file.example:9200"


def test_url_with_embedded_credentials_in_indexer_url_is_refused_without_echoing_them(tmp_path):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": "https://elastic:hunter2@es.example:9200"})
    # issue 8: named as the environment variable it came from, not as the job file's target.url
    assert message.startswith("INDEXER_URL: must look like http(s)://host:port")
    assert "target.url" not in message and "hunter2" not in message


def test_url_with_embedded_credentials_whose_password_holds_a_slash_is_refused(tmp_path):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": "https://elastic:hunter/2@es.example:9200"})
    assert "hunter" not in message


@pytest.mark.parametrize("url", ["not a url", "ftp://es.example", "https://es.example:9200/?x=1"])
def test_a_bad_indexer_url_is_named_as_the_environment_variable(tmp_path, url):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": url})
    assert message == ("INDEXER_URL: must look like http(s)://host:port[/path], without credentials or a query "
                       "(use username/password_env or api_key_env)")


# ---------------------------------------------------------------- --partitions and --cluster


def test_partitions_need_a_partition_column_and_the_cli_overrides_are_checked_alike(tmp_path):
    with pytest.raises(ConfigError, match="job.partitions needs job.partition_by"):
        load_job(_with_job_lines(tmp_path, "partitions = 3"), env={})
    job = load_job(_with_job_lines(tmp_path, 'partition_by = "ID"', "partitions = 2"), env={})
    assert (job.job.partition_by, job.job.partitions, job.job.cluster) == ("id", 2, None)
    assert with_partitions(job, 4, "tcp://10.0.0.5:8786").job.partitions == 4
    with pytest.raises(ConfigError, match="^--cluster: must be a Dask scheduler address"):
        with_partitions(job, None, "http://10.0.0.5:8786")
    plain = load_job(write(tmp_path, SQLITE_JOB), env={})
    with pytest.raises(ConfigError, match="needs job.partition_by"):
        with_partitions(plain, 2, None)
    with pytest.raises(ConfigError, match="partition_by: must be a plain column name"):
        load_job(_with_job_lines(tmp_path, 'partition_by = "id; drop table x"'), env={})


def _with_job_lines(tmp_path, *lines):
    text = SQLITE_JOB.replace("[job.params]", "\n".join(lines) + "\n\n[job.params]")
    return write(tmp_path, text)
