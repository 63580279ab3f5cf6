"""Bad input ends with one clear line on stderr and a non-zero exit: 2 for config/usage, 1 for run failures."""

from __future__ import annotations

import pytest

from tests.support.harness import ENGINE_URL, PG, SENSORS_QUERY, alias_targets, indices, run_indexer, sensors_job

CANARY = "c4n4ry pw@%x"
NODE = {"url": ENGINE_URL}


def _assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert CANARY not in result.stdout + result.stderr


def test_missing_password_variable(tmp_path):
    source = {**PG, "dbtype": "PG", "password_env": "INDEXER_TEST_UNSET_PASSWORD"}
    result = run_indexer("reindex", str(sensors_job(tmp_path, "sensors", NODE, "failures", source=source)))
    _assert_one_line_error(result, 2, "INDEXER_TEST_UNSET_PASSWORD", "not set")


def test_unreachable_database(tmp_path, engine_url):
    source = {**PG, "port": 1, "dbtype": "PG", "password_env": "CANARY_PW"}
    job = sensors_job(tmp_path, "sensors", NODE, "failures", source=source)
    result = run_indexer("reindex", str(job), env={"CANARY_PW": CANARY})
    _assert_one_line_error(result, 1, "cannot connect to PostgreSQL at 127.0.0.1:1")


def test_wrong_database_password_is_reported_without_the_password(tmp_path, engine_url):
    source = {**PG, "dbtype": "PG", "password_env": "CANARY_PW"}
    job = sensors_job(tmp_path, "sensors", NODE, "failures", source=source)
    result = run_indexer("reindex", str(job), env={"CANARY_PW": CANARY})
    _assert_one_line_error(result, 1, "password authentication failed")


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch", "auto"])
def test_unreachable_cluster(tmp_path, sqlite_sensors, engine):
    job = sensors_job(tmp_path, sqlite_sensors, {"url": "http://127.0.0.1:1", "engine": engine}, "failures")
    result = run_indexer("reindex", str(job))
    _assert_one_line_error(result, 1, "cannot reach the cluster at http://127.0.0.1:1", "connection refused")


def test_bad_sql(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, query="SELECT code FROM no_such_table")
    result = run_indexer("reindex", str(job))
    _assert_one_line_error(result, 1, "query failed", "no such table")
    assert alias_targets(alias) == [] and indices(f"{alias}-*") == []


def test_key_column_missing_from_the_query(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, key=["sensor_id"])
    result = run_indexer("reindex", str(job))
    _assert_one_line_error(result, 2, "key column 'sensor_id' is not in the query result")
    assert indices(f"{alias}-*") == []


def test_duplicate_keys_fail_before_the_swap_unless_allowed(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias,
                      query=SENSORS_QUERY + " UNION ALL " + SENSORS_QUERY + " WHERE code = 'SEN0000042'")
    result = run_indexer("reindex", str(job))
    _assert_one_line_error(result, 1, "1 duplicate key(s)", "'SEN0000042'", "--allow-duplicates")
    assert alias_targets(alias) == [] and indices(f"{alias}-*") == []

    allowed = run_indexer("reindex", str(job), "--allow-duplicates")
    assert allowed.returncode == 0, allowed.stderr
    assert len(alias_targets(alias)) == 1


@pytest.mark.parametrize("bad", ["Sensors", "sen*sors", "_sensors", "a b", "x" * 250])
def test_invalid_alias_name(tmp_path, bad):
    result = run_indexer("reindex", str(sensors_job(tmp_path, tmp_path / "sensors.db", NODE, bad)))
    _assert_one_line_error(result, 2, "job.alias")


def test_unknown_job_file_field(tmp_path):
    job = sensors_job(tmp_path, tmp_path / "sensors.db", NODE, "failures")
    job.write_text(job.read_text().replace("[job]\n", "[job]\nchunk_sise = 10\n"))
    result = run_indexer("reindex", str(job))
    _assert_one_line_error(result, 2, "job.chunk_sise", "unknown field")


def test_missing_job_file_and_bad_toml(tmp_path):
    _assert_one_line_error(run_indexer("reindex", str(tmp_path / "nope.toml")), 2, "job file not found")
    bad = tmp_path / "bad.toml"
    bad.write_text("[job\nalias = 1\n")
    _assert_one_line_error(run_indexer("reindex", str(bad)), 2, "not valid TOML")


def test_missing_sqlite_file_is_not_created(tmp_path):
    result = run_indexer("reindex", str(sensors_job(tmp_path, tmp_path / "sensors.db", NODE, "failures")))
    _assert_one_line_error(result, 2, "source.filename: SQLite database file not found")
    assert not (tmp_path / "sensors.db").exists()


def test_debug_shows_the_traceback(tmp_path):
    result = run_indexer("reindex", str(tmp_path / "nope.toml"), "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ConfigError" in result.stderr
