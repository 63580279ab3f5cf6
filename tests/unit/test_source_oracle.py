"""The database side without a server: Oracle driver defaults, secrets, SQLite streaming (indexer.source)."""

import sqlite3
import typing

import oracledb
import pytest

from indexer.config import SourceConfig
from indexer.errors import ConfigError, SourceError
from indexer.source import connect, dialect, iter_row_chunks, password_for

PG = dict(dbtype="PG", host="db.example", port=5432, dbname="plant", user="reader", password_env="PLANT_DB_PASSWORD")


@pytest.fixture
def oracle_defaults():
    """Driver-wide settings are process-wide: put them back afterwards."""
    names = ("fetch_lobs", "fetch_decimals", "arraysize", "prefetchrows")
    saved = {n: getattr(oracledb.defaults, n) for n in names}
    yield oracledb.defaults
    for name, value in saved.items():
        setattr(oracledb.defaults, name, value)


@pytest.fixture
def readings_db(tmp_path):
    path = tmp_path / "readings.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, Site TEXT, reading REAL)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?)", [(i, "eu" if i % 2 else "us", i / 2) for i in range(1, 8)])
    conn.close()
    return path


# ---------------------------------------------------------------- Oracle driver defaults


def test_the_oracle_dialect_fetches_lobs_as_values_numbers_as_decimals_and_one_chunk_per_round_trip(oracle_defaults):
    dialect("ORACLE").configure(5000)
    assert oracle_defaults.fetch_lobs is False
    assert oracle_defaults.fetch_decimals is True
    assert oracle_defaults.arraysize == 5000
    assert oracle_defaults.prefetchrows == 5000


def test_the_oracle_dialect_follows_the_chunk_size(oracle_defaults):
    dialect("ORACLE").configure(250)
    assert (oracle_defaults.arraysize, oracle_defaults.prefetchrows) == (250, 250)


# ---------------------------------------------------------------- bind styles


def test_bind_styles_by_driver_for_every_database_a_job_file_may_name():
    dbtypes = typing.get_args(SourceConfig.model_fields["dbtype"].annotation)
    assert {db: dialect(db).bind("since") for db in dbtypes} == {
        "ORACLE": ":since", "SQLITE": ":since", "PG": "%(since)s", "MSSQL": "?",
    }


def test_sqlite_bind_style_binds_a_parameter(readings_db):
    query = f"SELECT id FROM readings WHERE id >= {dialect('SQLITE').bind('since')} ORDER BY id"
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        rows = [row for _, chunk in iter_row_chunks(conn, query, {"since": 6}, 100) for row in chunk]
    assert rows == [(6,), (7,)]


# ---------------------------------------------------------------- secrets


def test_password_is_read_from_the_named_variable():
    assert password_for(SourceConfig(**PG), env={"PLANT_DB_PASSWORD": "hunter2"}) == "hunter2"


def test_missing_password_variable_is_a_config_error_naming_it_without_secrets():
    env = {"PGPASSWORD": "hunter2", "OTHER_SECRET": "s3cr3t"}
    with pytest.raises(ConfigError) as info:
        password_for(SourceConfig(**PG), env=env)
    message = str(info.value)
    assert "PLANT_DB_PASSWORD" in message and "not set" in message
    assert "hunter2" not in message and "s3cr3t" not in message


def test_sqlite_needs_no_password():
    assert password_for(SourceConfig(dbtype="SQLITE", filename="x.db"), env={}) is None


# ---------------------------------------------------------------- SQLite


def test_missing_sqlite_file_is_a_config_error_and_no_file_is_created(tmp_path):
    # issue 8: a job-file problem (exit 2), no longer a SourceError (exit 1)
    missing = tmp_path / "typo.db"
    with pytest.raises(ConfigError) as info:
        with connect(SourceConfig(dbtype="SQLITE", filename=missing)):
            pass
    assert str(info.value) == f"source.filename: SQLite database file not found: {missing}"
    assert not missing.exists()
    assert list(tmp_path.iterdir()) == []


def test_sqlite_is_opened_read_only(readings_db):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.raw.execute("DELETE FROM readings")


def test_rows_stream_as_tuples_in_chunks_of_chunk_size_with_the_description(readings_db):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        chunks = list(iter_row_chunks(conn, "SELECT id, Site, reading FROM readings ORDER BY id", None, 3))
    assert [len(rows) for _, rows in chunks] == [3, 3, 1]
    assert [col[0] for col in chunks[0][0]] == ["id", "Site", "reading"]
    assert all(type(row) is tuple for _, rows in chunks for row in rows)
    assert [row for _, rows in chunks for row in rows][:2] == [(1, "eu", 0.5), (2, "us", 1.0)]


def test_a_query_with_no_rows_yields_no_chunks(readings_db):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        assert list(iter_row_chunks(conn, "SELECT id FROM readings WHERE id < 0", None, 3)) == []


@pytest.mark.parametrize("query, cause", [("SELECT * FROM no_such_table", "no such table"), ("SELEC id FROM readings", "syntax error")])
def test_a_bad_query_is_a_one_line_source_error(readings_db, query, cause):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        with pytest.raises(SourceError) as info:
            list(iter_row_chunks(conn, query, None, 3))
    message = str(info.value)
    assert cause in message and "\n" not in message
