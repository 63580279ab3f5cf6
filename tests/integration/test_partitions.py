"""`indexer reindex --partitions N` against the real node, real SQLite and real PostgreSQL, local worker processes.

The table is made for it: a partition column with NULLs, negative values and heavy skew (most rows in one
narrow band, so one equal-width range holds most of them), and a timestamp column with NULLs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.harness import (
    alias_targets, count, documents, indices, pg_source, readable, run_indexer, slow_transform, sql, sql_many, sqlite_source,
    start_indexer, wait_until, write_job,
)

ROWS = 3000
BASE = dt.datetime(2024, 3, 1, 8, 0, 0)
COLUMNS = "code, part, at, label, value"


def part_of(i: int) -> int | None:
    if i % 50 == 0:
        return None
    if i % 10 == 0:
        return -37 * i          # negative values, spread thin
    if i % 10 == 1:
        return 1000 * i         # a long thin tail up to about 3,000,000
    return 5000 + i % 20        # most rows: one narrow band (skew)


def parts_rows(n: int = ROWS) -> list[tuple]:
    return [(f"c{i}", part_of(i), None if i % 45 == 0 else BASE + dt.timedelta(minutes=7 * i),
             f"L{i}%", i / 4) for i in range(n)]


def write_sqlite_parts(path, rows) -> None:
    sql(path, "CREATE TABLE parts (code TEXT, part INTEGER, at TEXT, label TEXT, value REAL)")
    sql_many(path, "INSERT INTO parts VALUES (?, ?, ?, ?, ?)",
             [(c, p, a.isoformat(sep=" ") if a else None, lab, v) for c, p, a, lab, v in rows])


@pytest.fixture
def sqlite_parts(tmp_path):
    path = tmp_path / "parts.db"
    write_sqlite_parts(path, parts_rows())
    return path


@pytest.fixture
def pg_parts(pg_tables):
    return pg_tables.create("code TEXT, part BIGINT, at TIMESTAMP, label TEXT, value DOUBLE PRECISION", parts_rows(),
                            prefix="parts")


def reindex(job, *extra) -> dict:
    result = run_indexer("reindex", str(job), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def failing(job, *extra, code: int = 1) -> str:
    """Run a reindex that must fail; its one error line."""
    result = run_indexer("reindex", str(job), *extra)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def same_index_with_1_3_and_4_partitions(tmp_path, target, alias, source, query, column) -> None:
    job = {"alias": alias, "key": ["code"], "query": query, "chunk_size": 250, "watermark": "at"}
    plain = reindex(write_job(tmp_path / "plain.toml", source, target, job))
    expected = documents(alias)
    assert len(expected) == plain["indexed"] == ROWS and plain["partitions"] == 0

    sliced = write_job(tmp_path / "sliced.toml", source, target, {**job, "partition_by": column})
    for partitions in (1, 3, 4):
        summary = reindex(sliced, "--partitions", str(partitions))
        assert documents(alias) == expected, partitions
        assert (summary["rows_read"], summary["indexed"], summary["duplicates"]) == (ROWS, ROWS, 0)
        assert summary["null_watermarks"] == plain["null_watermarks"] > 0
        assert summary["watermark"] == plain["watermark"]
        # the ranges, plus the slice of NULLs
        assert summary["partitions"] == (0 if partitions == 1 else partitions + 1)
        # the processes that ran a slice: at least one, at most one per CPU (none without partitions)
        assert summary["workers"] == 0 if partitions == 1 else 1 <= summary["workers"] <= (os.cpu_count() or 1)
        assert alias_targets(alias) == [summary["index"]]


@pytest.mark.parametrize("column", ["part", "at"])
def test_sqlite_slices_build_the_index_a_plain_reindex_builds(tmp_path, target, alias, sqlite_parts, column):
    same_index_with_1_3_and_4_partitions(tmp_path, target, alias, sqlite_source(sqlite_parts),
                                         f"SELECT {COLUMNS} FROM parts", column)


@pytest.mark.parametrize("column", ["part", "at"])
def test_postgres_slices_build_the_index_a_plain_reindex_builds(tmp_path, target, alias, pg_parts, column):
    # a literal % in a query without parameters: the slices bind theirs, so the tool doubles it
    same_index_with_1_3_and_4_partitions(tmp_path, target, alias, pg_source(),
                                         f"SELECT {COLUMNS} FROM {pg_parts} WHERE label LIKE 'L%'", column)


def test_postgres_slices_bind_the_jobs_own_parameters_first(tmp_path, target, alias, pg_parts):
    job = write_job(tmp_path / "job.toml", pg_source(), target, {
        "alias": alias, "key": ["code"], "partition_by": "part", "partitions": 3,
        "query": f"SELECT {COLUMNS} FROM {pg_parts} WHERE value >= %(low)s AND label LIKE 'L%%'"},
        params={"low": 100.0})
    summary = reindex(job)
    assert summary["indexed"] == ROWS - 400 == len(documents(alias))


def test_a_worker_killed_during_a_slice_is_replaced_and_the_index_is_exact(tmp_path, target, alias, sqlite_parts):
    # The transform kills its own worker process once, halfway through the big slice: chunks of that
    # slice were already written, so the rerun overwrites them (answered "updated", not duplicates).
    (tmp_path / "killer.py").write_text(
        "import os, signal\nfrom pathlib import Path\n\nFLAG = Path(__file__).with_name('killed.flag')\n\n"
        "def once(docs):\n"
        "    if not FLAG.exists() and any(d['code'] == 'c2502' for d in docs):\n"
        "        FLAG.write_text('killed')\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return docs\n")
    job = {"alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts", "chunk_size": 100}
    reindex(write_job(tmp_path / "plain.toml", sqlite_source(sqlite_parts), target, job))
    expected = documents(alias)

    sliced = write_job(tmp_path / "sliced.toml", sqlite_source(sqlite_parts), target,
                       {**job, "partition_by": "part", "partitions": 4, "transform": "killer:once"})
    summary = reindex(sliced, "--workers", "2")
    assert (tmp_path / "killed.flag").exists()
    assert (summary["indexed"], summary["duplicates"], summary["documents_in_index"]) == (ROWS, 0, ROWS)
    assert documents(alias) == expected and alias_targets(alias) == [summary["index"]]


def test_a_slice_that_fails_for_good_fails_the_run_and_the_alias_stays(tmp_path, target, alias, sqlite_parts):
    good = reindex(write_job(tmp_path / "good.toml", sqlite_source(sqlite_parts), target,
                             {"alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts"}))
    # Reading the one row whose part is 5007 raises "integer overflow" in SQLite, on every attempt:
    # the slice holding it fails for good; the others succeed.
    boom = "CASE WHEN part = 5007 THEN abs(-9223372036854775807 - 1 + 0 * part) ELSE 0 END AS boom"
    bad = write_job(tmp_path / "bad.toml", sqlite_source(sqlite_parts), target, {
        "alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS}, {boom} FROM parts",
        "partition_by": "part", "partitions": 3})
    line = failing(bad)
    assert "slice 1 of 4 (part < " in line and "failed after 3 attempt(s)" in line and "integer overflow" in line
    assert alias_targets(alias) == [good["index"]]
    assert indices(f"{alias}-*") == [good["index"]]     # the partial index is deleted


def test_duplicate_keys_in_two_slices_are_detected(tmp_path, target, alias):
    db = tmp_path / "dups.db"
    write_sqlite_parts(db, parts_rows() + [("c3", 2_500_000, BASE, "again", 0.0)])   # c3's part is 5003
    job = write_job(tmp_path / "job.toml", sqlite_source(db), target, {
        "alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts", "partition_by": "part",
        "partitions": 4})
    line = failing(job)
    assert line == ("error: 1 duplicate key(s) in the query result (e.g. 'c3'); alias not changed "
                    "(fix job.key, or pass --allow-duplicates to keep the row latest in source order)")
    assert alias_targets(alias) == [] and indices(f"{alias}-*") == []


def test_dead_letters_of_every_slice_reach_the_dead_letter_file(tmp_path, target, alias):
    db = tmp_path / "dead.db"
    no_keys = [(None, -50_000, BASE, "no key", 0.0), (None, 2_900_000, BASE, "no key", 0.0)]   # in two slices
    write_sqlite_parts(db, parts_rows() + no_keys)
    job = write_job(tmp_path / "job.toml", sqlite_source(db), target, {
        "alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts", "partition_by": "part",
        "partitions": 4})
    result = run_indexer("reindex", str(job), "--json")
    assert result.returncode == 3, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rejected"], summary["indexed"], summary["dead_lettered"]) == (2, ROWS, 2)
    letters = [json.loads(line) for line in (tmp_path / "job.dead-letters.ndjson").read_text().splitlines()]
    assert [letter["stage"] for letter in letters] == ["convert", "convert"]


def test_options_and_columns_that_cannot_be_partitioned_are_refused_before_anything_is_written(
        tmp_path, target, alias, sqlite_parts):
    job = write_job(tmp_path / "job.toml", sqlite_source(sqlite_parts), target, {
        "alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts", "partition_by": "label"})
    assert "job.partition_by: column 'label' holds str values" in failing(job, "--partitions", "3", code=2)
    assert "--allow-duplicates cannot be used with partitions" in failing(
        job, "--partitions", "3", "--allow-duplicates", code=2)
    missing = write_job(tmp_path / "missing.toml", sqlite_source(sqlite_parts), target, {
        "alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts", "partition_by": "nope",
        "partitions": 2})
    assert "job.partition_by: column 'nope' is not among the query's columns" in failing(missing, code=2)
    assert indices(f"{alias}-*") == []


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_sigterm_stops_the_workers_deletes_the_new_index_and_leaves_the_alias(tmp_path, target, alias, sqlite_parts):
    good = reindex(write_job(tmp_path / "good.toml", sqlite_source(sqlite_parts), target,
                             {"alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts"}))
    job = write_job(tmp_path / "slow.toml", sqlite_source(sqlite_parts), target, {
        "alias": alias, "key": ["code"], "query": f"SELECT {COLUMNS} FROM parts", "partition_by": "part",
        "partitions": 4, "chunk_size": 50, "transform": slow_transform(tmp_path, 0.3)})   # about 20 s of work
    run = start_indexer("reindex", str(job))
    try:
        wait_until(lambda: any(count(i) for i in readable(f"{alias}-*") if i != good["index"]),
                   "the slices writing into the new index", run)
        workers = children(run.pid)
        run.send_signal(signal.SIGTERM)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, stderr
    assert workers
    # the workers are stopped; multiprocessing's resource tracker follows
    wait_until(lambda: not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "the workers gone", timeout=10)
    assert alias_targets(alias) == [good["index"]] and indices(f"{alias}-*") == [good["index"]]
