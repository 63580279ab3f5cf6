"""PostgreSQL: a query with a literal % runs as written, and failures quote the user's query (indexer.sources)."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest

from indexer import sources
from indexer.config import SourceConfig
from indexer.errors import SourceError
from tests.support.harness import pg_source

T0 = dt.datetime(2024, 1, 1, 10, 0, 0)


@pytest.fixture
def codes_table(pg_tables) -> str:
    """Ten rows: SEN000001 and SEN000010..SEN000018, changed one minute apart; dropped afterwards."""
    codes = ["SEN000001"] + [f"SEN0000{i}" for i in range(10, 19)]
    return pg_tables.create("code text PRIMARY KEY, site text, changed timestamp",
                            [(c, "eu" if n % 2 else "us", T0 + dt.timedelta(minutes=n)) for n, c in enumerate(codes)],
                            prefix="codes")


@pytest.fixture
def pg(codes_table):
    """indexer's own PostgreSQL connection (server-side cursors), closed before the table is dropped."""
    with sources.connect(SourceConfig(**pg_source())) as conn:
        yield conn


def rows_of(conn, query, params):
    return [r for _, chunk in sources.iter_row_chunks(conn, query, params, 4) for r in chunk]


@pytest.mark.parametrize("params", [None, {}, {"unused": 1}])
def test_a_literal_percent_without_bind_parameters_runs_as_written(codes_table, pg, params):
    # Before issue 8: "TypeError: dict is not a sequence" (a traceback) in reindex and status.
    query = f"SELECT code, changed FROM {codes_table} WHERE code LIKE 'SEN00001%'"
    assert sources.count_rows(pg, query, params) == 9
    assert sources.extreme(pg, query, params, "changed", "MAX") == T0 + dt.timedelta(minutes=9)
    assert sorted(sources.count_by(pg, query.replace("code, changed", "code, site"), params, "site")) == [
        ("eu", 5), ("us", 4)]
    assert sources.columns_of(pg, query, params) == ("code", "changed")
    assert [r[0] for r in rows_of(pg, query, params)] == [f"SEN0000{i}" for i in range(10, 19)]


def test_the_sync_wrapper_keeps_the_literal_percent_of_a_query_without_parameters(codes_table, pg):
    d = sources.dialect("PG")
    sql = d.sync_query(f"SELECT code, changed FROM {codes_table} WHERE code LIKE 'SEN00001%'", "changed")
    params = d.params({"since": T0 + dt.timedelta(minutes=7)}, sql)
    assert [r[0] for r in rows_of(pg, sql, params)] == ["SEN000016", "SEN000017", "SEN000018"]


def test_the_sync_wrapper_of_a_query_with_parameters_keeps_its_doubled_percent(codes_table, pg):
    d = sources.dialect("PG")
    sql = d.sync_query(f"SELECT code, changed FROM {codes_table} WHERE code LIKE 'SEN00001%%' AND site = %(site)s",
                       "changed")
    params = d.params({"site": "eu", "since": T0 + dt.timedelta(minutes=4)}, sql)
    assert [r[0] for r in rows_of(pg, sql, params)] == ["SEN000014", "SEN000016", "SEN000018"]


def test_a_single_percent_in_a_query_with_parameters_is_one_line_naming_the_fix(codes_table, pg):
    query = f"SELECT code FROM {codes_table} WHERE code LIKE 'SEN%' AND site = %(site)s"
    for call in (lambda: sources.count_rows(pg, query, {"site": "eu"}),
                 lambda: rows_of(pg, query, {"site": "eu"})):
        with pytest.raises(SourceError) as info:
            call()
        message = str(info.value)
        assert message.startswith("job.query failed: the parameters cannot be placed")
        assert message.endswith("write a literal % as %%") and "\n" not in message


def test_columns_of_reads_the_named_cursors_description_without_rows(codes_table, pg):
    assert sources.columns_of(pg, f'SELECT code AS "Code", changed FROM {codes_table}', None) == ("code", "changed")


@pytest.mark.parametrize("call", [
    lambda conn, q: sources.columns_of(conn, q, None),
    lambda conn, q: sources.count_rows(conn, q, None),
    lambda conn, q: sources.extreme(conn, q, None, "code", "MAX"),
    lambda conn, q: sources.count_by(conn, q, None, "code"),
    lambda conn, q: list(sources.iter_row_chunks(conn, q, None, 10)),
])
def test_a_failing_query_quotes_no_generated_sql(pg, call):
    missing = f"nosuch_{uuid.uuid4().hex[:8]}"
    with pytest.raises(SourceError) as info:
        call(pg, f"SELECT code FROM {missing}")
    assert str(info.value) == f'job.query failed: relation "{missing}" does not exist'
    # the connection is still usable afterwards (the failed transaction was rolled back)
    assert sources.count_rows(pg, "SELECT 1 AS one", None) == 1


def test_the_connection_is_psycopg2s_own_with_server_side_cursors(pg):
    # etlhelper recognises a plain psycopg2 connection: nothing is registered into it.
    assert type(pg.raw) is psycopg2.extensions.connection
    cursor = pg.raw.cursor()
    assert cursor.name.startswith("indexer_")
    cursor.close()
    named = pg.raw.cursor("mine")
    assert named.name == "mine"
    named.close()


def test_a_failing_query_keeps_the_drivers_error_as_its_cause_for_debug(pg):
    missing = f"nosuch_{uuid.uuid4().hex[:8]}"
    for call in (lambda: sources.count_rows(pg, f"SELECT code FROM {missing}", None),
                 lambda: rows_of(pg, f"SELECT code FROM {missing}", None)):
        with pytest.raises(SourceError) as info:
            call()
        assert isinstance(info.value.__cause__, psycopg2.errors.UndefinedTable)


def test_a_data_error_masks_the_row_value_and_drops_the_cause_that_quotes_it(codes_table, pg):
    query = f"SELECT code::int AS n FROM {codes_table}"
    for call in (lambda: sources.extreme(pg, query, None, "n", "MAX"),
                 lambda: rows_of(pg, query, None)):
        with pytest.raises(SourceError) as info:
            call()
        assert "SEN0000" not in str(info.value) and "invalid input syntax" in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__  # --debug shows no row value


def test_a_refused_login_drops_the_cause_that_may_quote_the_password(codes_table, monkeypatch):
    monkeypatch.setenv("INDEXER_TEST_WRONG_PASSWORD", "not-the-password")
    config = SourceConfig(**{**pg_source(), "password_env": "INDEXER_TEST_WRONG_PASSWORD"})
    with pytest.raises(SourceError, match="cannot connect to PostgreSQL") as info:
        with sources.connect(config):
            pass
    assert info.value.__cause__ is None and info.value.__suppress_context__
