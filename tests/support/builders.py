"""Real values built small, for the unit tests of more than one module. TEST-ONLY.

* job files as text, and what loading one says (tests/unit/test_config.py, test_jobfile.py);
* a ``Chunk`` as extract hands it on, and one a transform doubled (test_counts.py, test_sink.py,
  test_incremental.py);
* a ``JobState`` with every field set (test_state.py, test_incremental.py);
* the readings table, a real SQLite file, and a partitioned job over it (test_partitions.py,
  test_slices.py, test_local_runner.py, test_commands_reindex.py; the ``readings`` fixture).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import textwrap
from pathlib import Path

import pytest

from indexer.config import Job
from indexer.documents import Action, Rejected
from indexer.errors import ConfigError
from indexer.extract import Chunk
from indexer.jobfile import load_job
from indexer.state import JobState, RunRecord
from indexer.watermark import Mark

# ---------------------------------------------------------------- job files as text

SQLITE_JOB = """
[source]
dbtype = "sqlite"
filename = "data/readings.db"

[job]
alias = "sensors"
key = ["ID"]
query = "SELECT id, reading FROM readings WHERE taken >= :since"

[job.params]
since = 2000-01-01
limit = 10
"""

PG_SOURCE = """
[source]
dbtype = "pg"
host = "db.example"
port = 5432
dbname = "plant"
user = "reader"
{extra}

[job]
alias = "sensors"
key = ["id"]
query = "SELECT 1 AS id"
"""

JOB_WITH_WATERMARK = """
[source]
dbtype = "sqlite"
filename = "readings.db"

[job]
alias = "sensors"
key = ["id"]
query = "SELECT id, site, changed FROM readings WHERE site = :site"
watermark = "changed"

[job.params]
site = "eu"
"""


def write(folder: Path, text: str, name: str = "sensors.toml") -> Path:
    """``text`` (dedented) as the job file ``folder/name``."""
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def config_error(path: Path, **kwargs) -> str:
    """The one line ``load_job(path, **kwargs)`` refuses the job file with."""
    with pytest.raises(ConfigError) as info:
        load_job(path, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- what the stages hand on


def chunk(seq, actions=1, rejected=0, skipped=0, watermark=None, marks=()) -> Chunk:
    """Chunk ``seq`` of ``actions + rejected + skipped`` rows: one-byte index actions, rows refused for a NULL key."""
    return Chunk(seq, actions + rejected + skipped, [Action(f"{seq}-{i}", b"x\n", i) for i in range(actions)],
                 [Rejected(seq * 10 + i, "NULL key", None) for i in range(rejected)], skipped=skipped,
                 watermark=watermark, marks=list(marks))


def doubled_chunk() -> Chunk:
    """3 rows a transform made 6 documents of: 5 to send and 1 rejected (its count no longer the rows')."""
    return Chunk(0, 3, [Action(f"d{i}", b"x\n", -1) for i in range(5)], [Rejected(0, "NaN", None)], unpaired=True)


def every_field_set() -> JobState:
    """A state with every field holding something (a new field of JobState must be added here: checked)."""
    state = JobState(watermark=10, marks=[Mark(9, "f9")], index="sensors-20250101000000",
                     last_run=RunRecord("sync", "2025-01-01T00:00:00", outcome="ok", counts={"sent": 3}),
                     last_reconcile=RunRecord("reconcile", "2025-01-01T01:00:00", outcome="ok", counts={"deleted": 2}))
    unset = [f.name for f in dataclasses.fields(JobState) if getattr(state, f.name) in (None, [])]
    assert not unset, f"set these fields in every_field_set: {unset}"
    return state


# ---------------------------------------------------------------- the readings table


def write_readings(path: Path) -> Path:
    """100 readings: ids -40..59 (NULL for every tenth from the sixth), sites eu and us by turns, one a minute."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER, site TEXT, at TEXT, code TEXT)")
        rows = [(None if i % 10 == 5 else i - 40, "eu" if i % 2 else "us", f"2024-01-01 00:{i % 60:02d}:00", f"S{i}")
                for i in range(100)]
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
    conn.close()
    return path


def readings_job(path, column="id", query="SELECT id, site, at, code FROM readings WHERE site = :site", **extra) -> Job:
    """A job over the readings at ``path`` (the eu ones: 50 rows), in 3 partitions of ``column``."""
    return Job(source={"dbtype": "SQLITE", "filename": str(path)},
               job={"alias": "t", "key": ["code"], "query": query, "partition_by": column, "partitions": 3,
                    "params": {"site": "eu"}} | extra)


# Every keyword mapping indexer init writes: never an immense term.
KEYWORD = {"type": "keyword", "ignore_above": 8191}
