"""Fixtures for the integration suites: the real node, both client paths, SQLite and PostgreSQL data."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from demo.generate import write_postgres, write_sqlite
from tests.support import harness
from tests.support.httpproxy import ProxyServer


@pytest.fixture(scope="session")
def engine_url() -> str:
    harness.require_engine()
    return harness.ENGINE_URL


@pytest.fixture(scope="session")
def elastic_adaptor(engine_url):
    """TEST-ONLY adaptor so the official elasticsearch client can talk to the real OpenSearch node.

    It adds ``X-Elastic-Product: Elasticsearch`` to responses and rewrites the
    ``compatible-with=8`` media types; every request is still answered by the
    real node (see tests/support/httpproxy.py).
    """
    with ProxyServer(upstream=engine_url, elastic=True) as proxy:
        yield proxy


@pytest.fixture(params=["opensearch", "elasticsearch"])
def target(request, engine_url) -> dict:
    """The [target] table for each client path: opensearch-py direct, elasticsearch via the test-only adaptor."""
    if request.param == "opensearch":
        return {"url": engine_url, "engine": "opensearch"}
    adaptor = request.getfixturevalue("elastic_adaptor")
    return {"url": adaptor.url, "engine": "elasticsearch"}


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
def pg_table():
    """A fresh sensors table in the test PostgreSQL with 3,000 rows; dropped afterwards."""
    conn = harness.pg_connect()
    table = f"sensors_{uuid.uuid4().hex[:8]}"
    conn.close()
    write_postgres(harness.pg_dsn() + f" password={os.environ[harness.PG_PASSWORD_ENV]}", 3000, table=table)
    yield table
    conn = harness.pg_connect()
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()
