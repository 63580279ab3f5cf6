"""indexer.config: the job file's model. What a valid job is (every rule and the one line it refuses with),
and every default; the files are real TOML read by ``jobfile.load_job``, the one way a job is read."""

import json

import pytest

from indexer.config import DEFAULT_CHUNK_SIZE, DEFAULT_URL
from indexer.errors import ConfigError
from indexer.jobfile import load_job
from tests.support.builders import JOB_WITH_WATERMARK, PG_SOURCE, SQLITE_JOB, config_error, write

# ---------------------------------------------------------------- defaults


def test_minimal_sqlite_job_loads_with_defaults(tmp_path):
    job = load_job(write(tmp_path, SQLITE_JOB), env={})
    assert job.source.dbtype == "SQLITE"
    assert job.job.alias == "sensors"
    assert job.job.key == ["id"]  # key names are lower-cased like the columns
    assert job.job.chunk_size == DEFAULT_CHUNK_SIZE
    assert job.target.url == DEFAULT_URL
    assert job.name == "sensors" and job.base_dir == tmp_path.resolve()


# ---------------------------------------------------------------- the alias


@pytest.mark.parametrize("alias", ["Sensors", "sensors*", "_sensors", "-sensors", "my sensors", "x" * 241, "É",
                                   "adv-É"])
def test_invalid_alias_is_refused_naming_job_alias(tmp_path, alias):
    text = SQLITE_JOB.replace('alias = "sensors"', f'alias = "{alias}"')
    assert "job.alias" in config_error(write(tmp_path, text), env={})


def test_alias_of_240_bytes_leaves_room_for_the_timestamp_suffix(tmp_path):
    text = SQLITE_JOB.replace('alias = "sensors"', f'alias = "{"x" * 240}"')
    assert len(load_job(write(tmp_path, text), env={}).job.alias) == 240


def test_non_ascii_lowercase_alias_is_accepted(tmp_path):
    text = SQLITE_JOB.replace('alias = "sensors"', 'alias = "adv-é"')
    assert load_job(write(tmp_path, text), env={}).job.alias == "adv-é"


def test_uppercase_non_ascii_alias_is_refused_like_a_to_z(tmp_path):
    text = SQLITE_JOB.replace('alias = "sensors"', 'alias = "adv-É"')
    assert config_error(write(tmp_path, text), env={}) == (
        "sensors.toml: job.alias: alias 'adv-É' contains 'É' (lowercase, no \\ / * ? \" < > | , # : or spaces)"
    )


# ---------------------------------------------------------------- secrets are referred to by name


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


@pytest.mark.parametrize("url", ["https://elastic:hunter2@es.example:9200", "http://elastic:hunter2@localhost:9200/"])
def test_url_with_embedded_credentials_in_the_file_is_refused_without_echoing_them(tmp_path, url):
    message = config_error(write(tmp_path, SQLITE_JOB + f'\n[target]\nurl = "{url}"\n'), env={})
    assert "target.url" in message and "without credentials" in message
    assert "hunter2" not in message


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


def test_a_cloud_id_names_the_deployment_in_messages_and_refuses_indexer_url_beside_it(tmp_path):
    text = SQLITE_JOB.replace("[job]", '[target]\ncloud_id = "prod-search:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm"\n'
                              '\n[job]')
    job = load_job(write(tmp_path, text), env={})
    assert job.target.where == "Elastic Cloud deployment 'prod-search'"
    assert load_job(write(tmp_path, SQLITE_JOB), env={}).target.where == DEFAULT_URL
    with pytest.raises(ConfigError, match="^INDEXER_URL and target.cloud_id both name the cluster"):
        load_job(write(tmp_path, text), env={"INDEXER_URL": "http://other:9200"})


# ---------------------------------------------------------------- job settings


def test_transform_spec_must_be_module_colon_function(tmp_path):
    text = SQLITE_JOB.replace('[job]\n', '[job]\ntransform = "transforms.add_site"\n')
    assert "job.transform" in config_error(write(tmp_path, text), env={})


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


def test_reconcile_every_is_optional_and_takes_a_duration(tmp_path):
    assert load_job(write(tmp_path, SQLITE_JOB), env={}).job.reconcile_every is None
    for value in ('"24h"', '"90m"', "3600", '"1d"'):
        text = SQLITE_JOB.replace("[job]\n", f"[job]\nreconcile_every = {value}\n")
        assert load_job(write(tmp_path, text), env={}).job.reconcile_every is not None


@pytest.mark.parametrize("value", ['"daily"', '"0s"', "0", "-5", '"-1h"'])
def test_a_reconcile_every_that_is_no_positive_duration_is_refused_naming_the_field(tmp_path, value):
    text = SQLITE_JOB.replace("[job]\n", f"[job]\nreconcile_every = {value}\n")
    assert "sensors.toml: job.reconcile_every:" in config_error(write(tmp_path, text), env={})


# ---------------------------------------------------------------- several nodes (target.url)


def _target_url(tmp_path, value: str, env: dict | None = None):
    return load_job(write(tmp_path, SQLITE_JOB + f"\n[target]\nurl = {value}\n"), env=env or {}).target


@pytest.mark.parametrize("value", ['["http://n1:9200", "http://n2:9200/", "http://n3:9200"]',
                                   '"http://n1:9200, http://n2:9200/,http://n3:9200"'])
def test_url_takes_an_array_of_nodes_or_one_string_of_them_separated_by_commas(tmp_path, value):
    target = _target_url(tmp_path, value)
    assert target.urls == ["http://n1:9200", "http://n2:9200", "http://n3:9200"]
    assert target.url == "http://n1:9200,http://n2:9200,http://n3:9200"  # still a string to code reading url
    assert target.where == "http://n1:9200, http://n2:9200, http://n3:9200"


def test_one_url_stays_one_node_named_as_before(tmp_path):
    target = _target_url(tmp_path, '"https://es.example:9243/"')
    assert (target.url, target.urls, target.where) == ("https://es.example:9243", ["https://es.example:9243"],
                                                       "https://es.example:9243")


def test_indexer_url_may_name_several_nodes_separated_by_commas(tmp_path):
    target = _target_url(tmp_path, '"http://file:9200"', env={"INDEXER_URL": "http://e1:9200,http://e2:9200"})
    assert target.urls == ["http://e1:9200", "http://e2:9200"]


@pytest.mark.parametrize(("value", "problem"), [
    ('["http://n1:9200", "https://n2:9200"]', "mixes http:// and https:// nodes: name every node of the cluster "
                                              "with the same scheme"),
    ('"http://n1:9200,http://N1:9200/"', "names the node http://N1:9200 twice"),
    ("[]", "names no node"),
    ('""', "names no node"),
    ('"http://n1:9200,,http://n2:9200"', "has an empty entry (two commas in a row, or one at an end)"),
    ('"http://n1:9200,"', "has an empty entry (two commas in a row, or one at an end)"),
    ('["http://n1:9200", 9200]', "must be a URL, an array of URLs, or URLs separated by commas"),
    ("9200", "must be a URL, an array of URLs, or URLs separated by commas"),
])
def test_a_list_of_nodes_that_is_not_right_is_one_line_naming_the_problem(tmp_path, value, problem):
    message = config_error(write(tmp_path, SQLITE_JOB + f"\n[target]\nurl = {value}\n"), env={})
    assert message == f"sensors.toml: target.url: {problem}"


@pytest.mark.parametrize("value", ['["http://n1:9200", "https://elastic:hunter2@n2:9200"]',
                                   '"http://n1:9200,http://elastic:hunter2@n2:9200"'])
def test_every_node_is_checked_for_credentials_and_none_is_echoed(tmp_path, value):
    message = config_error(write(tmp_path, SQLITE_JOB + f"\n[target]\nurl = {value}\n"), env={})
    assert "target.url" in message and "without credentials" in message and "hunter2" not in message


def test_indexer_url_naming_a_node_with_credentials_is_refused_without_echoing_them(tmp_path):
    with pytest.raises(ConfigError) as caught:
        _target_url(tmp_path, '"http://file:9200"', env={"INDEXER_URL": "http://e1:9200,http://u:hunter2@e2:9200"})
    assert str(caught.value).startswith("INDEXER_URL: must look like") and "hunter2" not in str(caught.value)


def test_sniff_is_off_by_default_and_not_for_elastic_cloud(tmp_path):
    assert load_job(write(tmp_path, SQLITE_JOB), env={}).target.sniff is False
    assert _target_url(tmp_path, '["http://n1:9200", "http://n2:9200"]\nsniff = true').sniff is True
    text = SQLITE_JOB.replace("[job]", '[target]\ncloud_id = "prod:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm"\n'
                              "sniff = true\n\n[job]")
    message = config_error(write(tmp_path, text), env={})
    assert message.startswith("sensors.toml: target.sniff: is not for Elastic Cloud")


def test_a_cloud_id_beside_a_list_of_nodes_is_still_the_cluster(tmp_path):
    text = SQLITE_JOB.replace("[job]", '[target]\ncloud_id = "prod:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm"\n'
                              'url = ["http://n1:9200", "http://n2:9200"]\n\n[job]')
    assert load_job(write(tmp_path, text), env={}).target.where == "Elastic Cloud deployment 'prod'"
