"""Fixtures the unit tests of several modules share (their data: tests/support/builders.py)."""

from __future__ import annotations

import sqlite3

import pytest

from indexer.config import SourceConfig
from tests.support.builders import write_readings


@pytest.fixture
def readings(tmp_path):
    """The readings table in a real SQLite file (``builders.write_readings``)."""
    return write_readings(tmp_path / "readings.db")


@pytest.fixture
def db(tmp_path):
    """A small readings table (id, Site, code, changed: 7 rows) in a real SQLite file, as a source."""
    path = tmp_path / "readings.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, Site TEXT, code TEXT, changed TEXT)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", [
            (i, "eu" if i % 2 else "us", f"SEN{i:06d}", f"2024-01-{i:02d} 10:00:00") for i in range(1, 8)])
    conn.close()
    return SourceConfig(dbtype="SQLITE", filename=path)


@pytest.fixture
def readings_db(tmp_path):
    """A small readings table (id, Site, reading: 7 rows) in a real SQLite file: its path."""
    path = tmp_path / "readings.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY, Site TEXT, reading REAL)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?)",
                         [(i, "eu" if i % 2 else "us", i / 2) for i in range(1, 8)])
    conn.close()
    return path
