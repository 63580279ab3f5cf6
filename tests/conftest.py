"""Fixtures for the integration suites: the real node (one engine per run), SQLite and PostgreSQL data."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from demo.generate import write_postgres, write_sqlite
from tests.support import harness


@pytest.fixture(scope="session")
def engine_url() -> str:
    harness.require_engine()
    return harness.ENGINE_URL


@pytest.fixture(scope="session")
def engine_kind() -> str:
    """opensearch | elasticsearch | elasticsearch9: the node under test (INDEXER_TEST_ENGINE_KIND)."""
    return harness.ENGINE_KIND


@pytest.fixture
def target(engine_url) -> dict:
    """The [target] table for the node under test, straight at it: opensearch-py for OpenSearch,
    the elasticsearch client for Elasticsearch 8 and 9 (`make test` runs the suite once per engine)."""
    return {"url": engine_url, "engine": harness.CLIENT_ENGINE}


@pytest.fixture
def alias(engine_url):
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    harness.delete_indices(f"{name}-*")


@pytest.fixture
def sqlite_sensors(tmp_path) -> Path:
    path = tmp_path / "sensors.db"
    write_sqlite(path, 3000)
    return path


@pytest.fixture
def pg_tables():
    """Scratch tables in the test PostgreSQL (``harness.PgTables``), dropped afterwards."""
    tables = harness.PgTables()
    yield tables
    tables.drop()


@pytest.fixture
def pg_table(pg_tables) -> str:
    """A fresh sensors table in the test PostgreSQL with 3,000 rows; dropped afterwards."""
    table = pg_tables.name("sensors")
    write_postgres(harness.pg_dsn() + f" password={os.environ[harness.PG_PASSWORD_ENV]}", 3000, table=table)
    return table
