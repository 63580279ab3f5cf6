"""The SQL the tool wraps around the user's query, and the errors the user sees (indexer.source, SQLite)."""

import datetime as dt
import sqlite3

import pytest

from indexer.config import SourceConfig
from indexer.errors import SourceError
from indexer.source import (
    columns_of, connect, count_by, count_rows, dialect, extreme, iter_row_chunks, max_value, pg_time_caster,
    usable_extreme,
)
from indexer.values import DbText, Unconvertible

# Evaluating this column on any row raises "integer overflow" in SQLite: a query that selects it
# succeeds only when no row is read.
BOOM = "abs(-9223372036854775807 - 1 + 0 * id) AS Boom"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "readings.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, Site TEXT, code TEXT, changed TEXT)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", [
            (i, "eu" if i % 2 else "us", f"SEN{i:06d}", f"2024-01-{i:02d} 10:00:00") for i in range(1, 8)])
    conn.close()
    return SourceConfig(dbtype="SQLITE", filename=path)


def one_line_error(call) -> str:
    with pytest.raises(SourceError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- Dialect


@pytest.mark.parametrize("dbtype, placeholder", [("SQLITE", ":since"), ("ORACLE", ":since"), ("PG", "%(since)s"),
                                                 ("MSSQL", "?")])
def test_each_dialect_writes_its_drivers_placeholder(dbtype, placeholder):
    assert dialect(dbtype).bind("since") == placeholder
    assert dialect(dbtype).sync_query("SELECT code, changed FROM t", "changed") == (
        f"SELECT * FROM (SELECT code, changed FROM t) q WHERE q.changed >= {placeholder} ORDER BY q.changed")


def test_postgres_sync_query_doubles_a_literal_percent_of_a_query_without_parameters():
    query = "SELECT code, changed FROM t WHERE code LIKE 'SEN000001%'"
    assert dialect("PG").sync_query(query, "changed") == (
        "SELECT * FROM (SELECT code, changed FROM t WHERE code LIKE 'SEN000001%%') q "
        "WHERE q.changed >= %(since)s ORDER BY q.changed")


def test_postgres_sync_query_keeps_the_percent_of_a_query_with_parameters_as_written():
    # With parameters of its own the user already wrote psycopg2's %% for a literal %.
    query = "SELECT code, changed FROM t WHERE code LIKE 'SEN%%' AND site = %(site)s"
    assert dialect("PG").sync_query(query, "changed").startswith(f"SELECT * FROM ({query}) q")
    assert "%%%%" not in dialect("PG").sync_query(query, "changed", has_user_params=True)
    assert "LIKE 'SEN%%%%'" in dialect("PG").sync_query(query, "changed", has_user_params=False)


@pytest.mark.parametrize("dbtype", ["SQLITE", "ORACLE"])
def test_a_literal_percent_is_never_doubled_outside_postgres(dbtype):
    assert "LIKE 'SEN%')" in dialect(dbtype).sync_query("SELECT * FROM t WHERE code LIKE 'SEN%'", "changed")


def test_params_keep_only_the_names_the_query_binds_and_are_none_when_nothing_is_bound():
    values = {"site": "eu", "limit": 5, "since": 3}
    assert dialect("SQLITE").params(values, "SELECT * FROM t WHERE site = :site AND id >= :since") == {
        "site": "eu", "since": 3}
    assert dialect("SQLITE").params(values, "SELECT * FROM t") is None
    assert dialect("SQLITE").params({}) is None
    assert dialect("PG").params(values, "SELECT * FROM t WHERE site = %(site)s") == {"site": "eu"}
    assert dialect("ORACLE").params(values, "SELECT * FROM t WHERE site = :SITE") == {"site": "eu"}


def test_mssql_params_are_positional_in_file_order_with_since_last():
    assert dialect("MSSQL").params({"site": "eu", "limit": 5, "since": 3}) == ("eu", 5, 3)
    assert dialect("MSSQL").params({}) is None


def test_the_sync_query_runs_on_sqlite_with_the_dialects_params(db):
    d = dialect("SQLITE")
    sql = d.sync_query("SELECT id, changed FROM readings WHERE Site = :site", "changed")
    params = d.params({"site": "eu", "since": "2024-01-03 00:00:00"}, sql)
    with connect(db) as conn:
        rows = [r for _, chunk in iter_row_chunks(conn, sql, params, 100) for r in chunk]
    assert rows == [(3, "2024-01-03 10:00:00"), (5, "2024-01-05 10:00:00"), (7, "2024-01-07 10:00:00")]


def test_driver_errors_are_recognised_by_the_drivers_exception_classes():
    import oracledb
    import psycopg2

    assert dialect("SQLITE").errors == (sqlite3.Error, sqlite3.Warning)
    assert dialect("PG").errors == (psycopg2.Error, psycopg2.Warning)
    assert dialect("ORACLE").errors == (oracledb.Error, oracledb.Warning)


def test_the_connection_carries_the_dialect_it_was_opened_with(db):
    with connect(db) as conn:
        assert conn.dialect is dialect("SQLITE")
        assert isinstance(conn.raw, sqlite3.Connection)


# ---------------------------------------------------------------- columns_of


def test_columns_of_names_the_query_columns_lower_cased_without_reading_a_row(db):
    with connect(db) as conn:
        assert columns_of(conn, f"SELECT id, Site, {BOOM} FROM readings", None) == ("id", "site", "boom")
        # the same query reading its rows fails: columns_of did not read any
        with pytest.raises(SourceError, match="integer overflow"):
            list(iter_row_chunks(conn, f"SELECT id, Site, {BOOM} FROM readings", None, 10))


def test_columns_of_binds_the_query_parameters(db):
    with connect(db) as conn:
        assert columns_of(conn, "SELECT id, code FROM readings WHERE Site = :site", {"site": "eu"}) == ("id", "code")


def test_columns_of_a_failing_query_is_the_users_query_failing(db):
    with connect(db) as conn:
        message = one_line_error(lambda: columns_of(conn, "SELECT id FROM sensorz", None))
    assert message == "job.query failed: no such table: sensorz"


def test_a_failing_query_keeps_the_drivers_error_as_its_cause_for_debug(db):
    with connect(db) as conn:
        for call in (lambda: columns_of(conn, "SELECT id FROM sensorz", None),
                     lambda: list(iter_row_chunks(conn, "SELECT id FROM sensorz", None, 10))):
            with pytest.raises(SourceError) as info:
                call()
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)


# ---------------------------------------------------------------- errors quote the user's query


@pytest.mark.parametrize("call", [
    lambda conn, q: count_rows(conn, q, None),
    lambda conn, q: max_value(conn, q, None, "id"),
    lambda conn, q: count_by(conn, q, None, "id"),
    lambda conn, q: list(iter_row_chunks(conn, q, None, 10)),
])
def test_a_failing_query_is_reported_as_job_query_failing_without_generated_sql(db, call):
    with connect(db) as conn:
        message = one_line_error(lambda: call(conn, "SELECT id FROM sensorz"))
    assert message == "job.query failed: no such table: sensorz"


def test_the_failing_query_is_named_as_the_caller_says(db):
    with connect(db) as conn:
        message = one_line_error(lambda: list(iter_row_chunks(conn, "SELECT id FROM sensorz", {}, 10,
                                                              what="job.sync_query")))
    assert message == "job.sync_query failed: no such table: sensorz"


@pytest.mark.parametrize("params", [None, {}, ()])
def test_counts_and_maxima_run_without_parameters(db, params):
    with connect(db) as conn:
        assert count_rows(conn, "SELECT id FROM readings WHERE code LIKE 'SEN00000%'", params) == 7
        assert max_value(conn, "SELECT id, changed FROM readings", params, "changed") == "2024-01-07 10:00:00"
        assert sorted(count_by(conn, "SELECT Site FROM readings", params, "site")) == [("eu", 4), ("us", 3)]
        assert columns_of(conn, "SELECT code FROM readings", params) == ("code",)



# ---------------------------------------------------------------- values the driver would change


@pytest.mark.parametrize("name, base, text, expected", [
    ("timestamp", "PYDATETIME", "infinity", DbText("infinity")),
    ("timestamp", "PYDATETIME", "-infinity", DbText("-infinity")),
    ("date", "PYDATE", "infinity", DbText("infinity")),
    ("date", "PYDATE", "10000-01-01", DbText("10000-01-01")),       # psycopg2: ValueError, the whole fetch lost
    ("date", "PYDATE", "0044-03-15 BC", DbText("0044-03-15 BC")),
    ("time", "PYTIME", "24:00:00", DbText("24:00:00")),             # psycopg2: time(0, 0), another real value
    ("timetz", "PYTIME", "24:00:00+02", DbText("24:00:00+02")),
    ("interval", "PYINTERVAL", "1000000000 days", Unconvertible(
        "an interval beyond Python's range of +-999,999,999 days; convert it in the query (e.g. EXTRACT(EPOCH FROM ...))")),
    ("timestamp", "PYDATETIME", "2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
    ("date", "PYDATE", "2024-01-02", dt.date(2024, 1, 2)),
    ("time", "PYTIME", "23:59:59.5", dt.time(23, 59, 59, 500000)),
    ("interval", "PYINTERVAL", "1 day 02:00:00", dt.timedelta(days=1, hours=2)),
    ("timestamp", "PYDATETIME", None, None),
])
def test_postgres_casters_keep_what_psycopg2_would_change_or_choke_on(name, base, text, expected):
    import psycopg2.extensions

    value = pg_time_caster(name, getattr(psycopg2.extensions, base))(text, None)  # no cursor: never a zone here
    assert value == expected and type(value) is type(expected)


def test_a_value_the_driver_cannot_convert_ends_the_fetch_in_one_line(tmp_path):
    """A conversion error that is not the driver's own class was a 40-line traceback."""
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('x')")
    conn.close()
    with connect(SourceConfig(dbtype="SQLITE", filename=path)) as conn:
        # what a driver's converter raising on a value looks like from the fetch loop
        conn.raw.row_factory = lambda cursor, row: (_ for _ in ()).throw(OverflowError(f"{row[0]} too big"))
        message = one_line_error(lambda: list(iter_row_chunks(conn, "SELECT v FROM t", None, 10)))
    assert message == ("reading rows failed (job.query): the driver could not convert a value (OverflowError); "
                       "convert the column in the query")
    assert "x too big" not in message  # the value is not quoted


# ---------------------------------------------------------------- an aggregate asked again past an unusable extreme


@pytest.fixture
def floats(tmp_path):
    path = tmp_path / "f.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE f (id INTEGER, v REAL)")
        conn.executemany("INSERT INTO f VALUES (?, ?)", [(1, float("-inf")), (2, 1.5), (3, 7.0), (4, float("inf")),
                                                         (5, None)])
    conn.close()
    return SourceConfig(dbtype="SQLITE", filename=path)


def test_usable_extreme_asks_again_past_each_value_that_is_not_usable(floats):
    import math

    with connect(floats) as conn:
        assert extreme(conn, "SELECT id, v FROM f", None, "v", "MAX") == math.inf
        assert usable_extreme(conn, "SELECT id, v FROM f", None, "v", "MAX", math.isfinite) == 7.0
        assert usable_extreme(conn, "SELECT id, v FROM f", None, "v", "MIN", math.isfinite) == 1.5
        # the job's own parameters are bound before the one indexer adds
        query = "SELECT id, v FROM f WHERE id < :top"
        assert usable_extreme(conn, query, {"top": 3}, "v", "MAX", math.isfinite) == 1.5
        assert usable_extreme(conn, "SELECT id, v FROM f WHERE id = 1", None, "v", "MAX", math.isfinite) is None


@pytest.mark.parametrize("dbtype, params, expected", [
    ("SQLITE", None, {"indexer_beyond": 5}),
    ("PG", {"site": "eu"}, {"site": "eu", "indexer_beyond": 5}),
    ("MSSQL", None, (5,)),                 # positional: never a dict for a "?"
    ("MSSQL", ("eu", 3), ("eu", 3, 5)),
])
def test_the_added_bound_is_in_each_drivers_shape(dbtype, params, expected):
    assert dialect(dbtype).with_param(params, "indexer_beyond", 5) == expected
