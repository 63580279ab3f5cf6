"""PostgreSQL rows are streamed through a server-side cursor: memory stays flat in the table size."""

from __future__ import annotations

import os

import psycopg2
import pytest

from demo.generate import write_postgres
from indexer import sources
from indexer.config import SourceConfig
from tests.support.harness import PG, PG_PASSWORD_ENV, PgTables, pg_dsn

ROWS = 300_000
BOUND_MIB = 25


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def big_table():
    tables = PgTables()
    table = tables.name("stream_check")
    write_postgres(pg_dsn() + f" password={os.environ[PG_PASSWORD_ENV]}", ROWS, table=table)
    yield table
    tables.drop()


def test_reading_300k_rows_grows_rss_less_than_a_client_side_cursor_would(big_table):
    config = SourceConfig(dbtype="PG", **PG, password_env=PG_PASSWORD_ENV)
    before = peak = rss_mib()
    rows = 0
    with sources.connect(config, 5000) as conn:
        for description, chunk in sources.iter_row_chunks(conn, f"SELECT * FROM {big_table}", {}, 5000):
            rows += len(chunk)
            peak = max(peak, rss_mib())
            del chunk
    assert rows == ROWS
    assert [c[0] for c in description][:2] == ["code", "description"]
    assert peak - before < BOUND_MIB

    # The same read with psycopg2's default (client-side) cursor, to show the bound means something.
    before = rss_mib()
    conn = psycopg2.connect(password=os.environ[PG_PASSWORD_ENV], **PG)
    cur = conn.cursor()
    cur.execute(f"SELECT * FROM {big_table}")
    client_side = rss_mib() - before
    cur.close()
    conn.close()
    assert client_side > BOUND_MIB
