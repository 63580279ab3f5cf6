"""The job file: loading, validation and the messages a user sees (indexer.config)."""

import datetime as dt
import json
import textwrap
from pathlib import Path

import pytest

from indexer.config import DEFAULT_CHUNK_SIZE, DEFAULT_URL
from indexer.jobfile import load_job, parse_param
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


@pytest.mark.parametrize("alias", ["Sensors", "sensors*", "_sensors", "-sensors", "my sensors", "x" * 241, "É", "adv-É"])
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
    # issue 8: named as the environment variable it came from, not as the job file's target.url
    assert message.startswith("INDEXER_URL: must look like http(s)://host:port")
    assert "target.url" not in message and "hunter2" not in message


def test_url_with_embedded_credentials_whose_password_holds_a_slash_is_refused(tmp_path):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": "https://elastic:hunter/2@es.example:9200"})
    assert "hunter" not in message


# ---------------------------------------------------------------- transforms


def test_transform_spec_must_be_module_colon_function(tmp_path):
    text = SQLITE_JOB.replace('[job]\n', '[job]\ntransform = "transforms.add_site"\n')
    assert "job.transform" in config_error(write(tmp_path, text), env={})


# ---------------------------------------------------------------- issue 8: the operator errs


JOB_WITH_WATERMARK = """
[source]
dbtype = "sqlite"
filename = "readings.db"

[job]
alias = "sensors"
key = ["id"]
query = "SELECT id, site, changed FROM readings WHERE site = :site"
watermark = "changed"

[job.params]
site = "eu"
"""


def test_non_ascii_lowercase_alias_is_accepted(tmp_path):
    text = SQLITE_JOB.replace('alias = "sensors"', 'alias = "adv-é"')
    assert load_job(write(tmp_path, text), env={}).job.alias == "adv-é"


def test_uppercase_non_ascii_alias_is_refused_like_a_to_z(tmp_path):
    text = SQLITE_JOB.replace('alias = "sensors"', 'alias = "adv-É"')
    assert config_error(write(tmp_path, text), env={}) == (
        "sensors.toml: job.alias: alias 'adv-É' contains 'É' (lowercase, no \\ / * ? \" < > | , # : or spaces)"
    )


def test_min_ratio_defaults_to_one_half_and_takes_zero_to_one(tmp_path):
    assert load_job(write(tmp_path, SQLITE_JOB), env={}).job.min_ratio == 0.5
    for ratio in (0, 1, 0.9):
        text = SQLITE_JOB.replace("[job]\n", f"[job]\nmin_ratio = {ratio}\n")
        assert load_job(write(tmp_path, text), env={}).job.min_ratio == ratio


@pytest.mark.parametrize("ratio", ["1.5", "-0.1", '"half"'])
def test_min_ratio_outside_zero_to_one_is_refused_naming_the_field(tmp_path, ratio):
    text = SQLITE_JOB.replace("[job]\n", f"[job]\nmin_ratio = {ratio}\n")
    assert "sensors.toml: job.min_ratio:" in config_error(write(tmp_path, text), env={})


@pytest.mark.parametrize("ending", [";", ";;", " ; ", ";\n", "; ;\n\t"])
def test_trailing_semicolons_are_stripped_from_query_and_sync_query(tmp_path, ending):
    query = "SELECT id, site, changed FROM readings WHERE site = :site"
    sync_query = "SELECT * FROM readings WHERE changed >= :since ORDER BY changed"
    text = JOB_WITH_WATERMARK.replace(f'"{query}"', json.dumps(query + ending)).replace(
        'watermark = "changed"\n', f'watermark = "changed"\nsync_query = {json.dumps(sync_query + ending)}\n')
    job = load_job(write(tmp_path, text), env={}).job
    assert (job.query, job.sync_query) == (query, sync_query)


def test_a_semicolon_inside_the_query_is_kept(tmp_path):
    text = SQLITE_JOB.replace("WHERE taken >= :since", "WHERE taken >= :since AND note <> ';'")
    assert load_job(write(tmp_path, text), env={}).job.query.endswith("note <> ';'")


def test_a_query_of_only_semicolons_is_empty(tmp_path):
    text = SQLITE_JOB.replace('query = "SELECT id, reading FROM readings WHERE taken >= :since"', 'query = " ; ;"')
    assert config_error(write(tmp_path, text), env={}) == "sensors.toml: job.query: is empty"


def test_username_without_password_env_is_refused_naming_the_field(tmp_path):
    text = SQLITE_JOB + '\n[target]\nusername = "indexer"\n'
    assert config_error(write(tmp_path, text), env={}) == (
        "sensors.toml: target.username: needs password_env (the name of the variable holding the password)"
    )


def test_password_env_without_username_is_refused_naming_the_field(tmp_path):
    text = SQLITE_JOB + '\n[target]\npassword_env = "ES_PASSWORD"\n'
    assert config_error(write(tmp_path, text), env={}) == (
        "sensors.toml: target.password_env: needs username (basic auth takes both)"
    )


def test_username_with_password_env_is_basic_auth(tmp_path):
    text = SQLITE_JOB + '\n[target]\nusername = "indexer"\npassword_env = "ES_PASSWORD"\n'
    target = load_job(write(tmp_path, text), env={}).target
    assert (target.username, target.password_env) == ("indexer", "ES_PASSWORD")


@pytest.mark.parametrize("url", ["not a url", "ftp://es.example", "https://es.example:9200/?x=1"])
def test_a_bad_indexer_url_is_named_as_the_environment_variable(tmp_path, url):
    message = config_error(write(tmp_path, SQLITE_JOB), env={"INDEXER_URL": url})
    assert message == ("INDEXER_URL: must look like http(s)://host:port[/path], without credentials or a query "
                       "(use username/password_env or api_key_env)")


def test_a_job_file_starting_with_a_utf8_bom_loads(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(SQLITE_JOB).encode())
    assert load_job(path, env={}).job.alias == "sensors"


# --param names


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


def test_reconcile_every_is_optional_and_takes_a_duration(tmp_path):
    assert load_job(write(tmp_path, SQLITE_JOB), env={}).job.reconcile_every is None
    for value in ('"24h"', '"90m"', "3600", '"1d"'):
        text = SQLITE_JOB.replace("[job]\n", f"[job]\nreconcile_every = {value}\n")
        assert load_job(write(tmp_path, text), env={}).job.reconcile_every is not None


@pytest.mark.parametrize("value", ['"daily"', '"0s"', "0", "-5", '"-1h"'])
def test_a_reconcile_every_that_is_no_positive_duration_is_refused_naming_the_field(tmp_path, value):
    text = SQLITE_JOB.replace("[job]\n", f"[job]\nreconcile_every = {value}\n")
    assert "sensors.toml: job.reconcile_every:" in config_error(write(tmp_path, text), env={})


# ---------------------------------------------------------------- partitioned reindex


def test_partitions_need_a_partition_column_and_the_cli_overrides_are_checked_alike(tmp_path):
    from indexer.jobfile import with_partitions

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


def test_a_cloud_id_names_the_deployment_in_messages_and_refuses_indexer_url_beside_it(tmp_path):
    text = SQLITE_JOB.replace("[job]", '[target]\ncloud_id = "prod-search:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm"\n\n[job]')
    job = load_job(write(tmp_path, text), env={})
    assert job.target.where == "Elastic Cloud deployment 'prod-search'"
    assert load_job(write(tmp_path, SQLITE_JOB), env={}).target.where == DEFAULT_URL
    with pytest.raises(ConfigError, match="^INDEXER_URL and target.cloud_id both name the cluster"):
        load_job(write(tmp_path, text), env={"INDEXER_URL": "http://other:9200"})


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
