"""SQLite (indexer.sources.sqlite): a read-only file, ``:name`` binds, the catalogue and dates kept as text."""

import sqlite3

import pytest

from indexer.catalogue import catalogue, read_table, text_date_columns
from indexer.config import SourceConfig
from indexer.errors import ConfigError
from indexer.sources import Column, TableName, connect, dialect, iter_row_chunks, password_for

# ---------------------------------------------------------------- connecting


def test_sqlite_needs_no_password():
    assert password_for(SourceConfig(dbtype="SQLITE", filename="x.db"), env={}) is None


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


def test_the_connection_carries_the_dialect_it_was_opened_with(db):
    with connect(db) as conn:
        assert conn.dialect is dialect("SQLITE")
        assert isinstance(conn.raw, sqlite3.Connection)


def test_driver_errors_are_sqlite3s_exception_classes():
    assert dialect("SQLITE").errors == (sqlite3.Error, sqlite3.Warning)


# ---------------------------------------------------------------- binds


def test_sqlite_bind_style_binds_a_parameter(readings_db):
    query = f"SELECT id FROM readings WHERE id >= {dialect('SQLITE').bind('since')} ORDER BY id"
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        rows = [row for _, chunk in iter_row_chunks(conn, query, {"since": 6}, 100) for row in chunk]
    assert rows == [(6,), (7,)]


def test_params_keep_only_the_names_the_query_binds_and_are_none_when_nothing_is_bound():
    values = {"site": "eu", "limit": 5, "since": 3}
    assert dialect("SQLITE").params(values, "SELECT * FROM t WHERE site = :site AND id >= :since") == {
        "site": "eu", "since": 3}
    assert dialect("SQLITE").params(values, "SELECT * FROM t") is None
    assert dialect("SQLITE").params({}) is None


def test_a_name_in_a_literal_a_quoted_name_or_a_comment_is_no_bind():
    assert dialect("SQLITE").binds("SELECT :a, ':b', \"x:c\", :a /* :d */ FROM t -- :e\nWHERE y = :f") == ("a", "f")
    assert dialect("SQLITE").binds("SELECT '12:30', x::text") == ()


def test_the_sync_query_runs_on_sqlite_with_the_dialects_params(db):
    d = dialect("SQLITE")
    sql = d.sync_query("SELECT id, changed FROM readings WHERE Site = :site", "changed")
    params = d.params({"site": "eu", "since": "2024-01-03 00:00:00"}, sql)
    with connect(db) as conn:
        rows = [r for _, chunk in iter_row_chunks(conn, sql, params, 100) for r in chunk]
    assert rows == [(3, "2024-01-03 10:00:00"), (5, "2024-01-05 10:00:00"), (7, "2024-01-07 10:00:00")]


def test_a_slice_binds_its_bounds_and_takes_the_nulls_apart(db):
    d = dialect("SQLITE")
    assert d.slice_query("SELECT id FROM t", "id", lower=True, upper=True) == (
        "SELECT * FROM (SELECT id FROM t) q WHERE q.id >= :slice_lo AND q.id < :slice_hi")
    assert d.slice_query("SELECT id FROM t", "id", lower=False, upper=False).endswith("WHERE q.id IS NOT NULL")
    assert d.slice_query("SELECT id FROM t", "id", lower=True, upper=True, nulls=True).endswith("WHERE q.id IS NULL")


# ---------------------------------------------------------------- catalogue and types


def test_the_catalogue_binds_the_table_and_its_schema():
    assert dialect("SQLITE").columns_query(TableName(None, "t", "t")) == (
        "SELECT name, type, pk FROM pragma_table_info(:name) ORDER BY cid", {"name": "t"})
    assert dialect("SQLITE").columns_query(TableName("main", "t", "main.t"))[1] == {"name": "t", "schema": "main"}


def test_declared_sizes_are_read_from_the_type_and_the_key_from_the_pk_positions():
    rows = [("b", "VARCHAR(10)", 0), ("n", "DECIMAL(10, 2)", 2), ("a", None, 1)]
    assert dialect("SQLITE").read_columns(rows) == (
        ("b", "varchar(10)", 10, 10, None), ("n", "decimal(10, 2)", 10, 10, 2), ("a", "", None, None, None))
    assert dialect("SQLITE").key_from_columns(rows) == ("a", "n")


def test_a_column_found_holding_dates_is_a_date_whatever_its_declared_type():
    assert dialect("SQLITE").kind(Column("c", "text", is_date=True)) == "date"
    assert dialect("SQLITE").kind(Column("c", "datetime")) is None  # not a type SQLite has


def test_text_that_holds_iso_dates_is_found_by_sampling(tmp_path):
    path = tmp_path / "d.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, updated_at TEXT, created DATETIME, note TEXT, "
                     "changed TEXT, empty_date DATE)")
        conn.execute("INSERT INTO t VALUES (1, '2024-01-02 03:04:05', '2024-01-02', 'x', 'yesterday', NULL)")
    conn.close()
    with connect(SourceConfig(dbtype="SQLITE", filename=path)) as conn:
        table = read_table(conn, catalogue("SQLITE").parse_table("t"))
        # note: no date name; changed: named like one, but not ISO text; empty_date: declared, empty
        assert text_date_columns(conn, table.name, table.columns) == {"updated_at", "created", "empty_date"}
