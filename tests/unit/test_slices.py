"""indexer.slices: one slice run anywhere (read, encode, count: every row of a real query read exactly once,
nothing sent) and what the coordinator adds up from the slices' results (duplicates across slices, a rerun
slice's updates). Real SQLite files; no engine."""

from __future__ import annotations

import sqlite3

import pytest

from indexer.config import Job
from indexer.counts import Answers, Counts
from indexer.errors import VerificationError
from indexer.partitions import plan_slices
from indexer.slices import SliceResult, SliceTask, merged, run_slice
from tests.support.builders import readings_job

# ---------------------------------------------------------------- a slice, run


def test_the_slices_of_a_real_query_read_every_row_exactly_once(readings):
    work = readings_job(readings)
    planned = plan_slices(work, 3)
    assert planned.rows == 50
    assert [s.nulls for s in planned.slices] == [False, False, False, True]
    assert planned.slices[1].lo == -6 and planned.slices[2].lo == 27   # the odd ids among -40..59, site eu

    results = [run_slice(SliceTask(work, s, None)) for s in planned.slices]
    assert sum(r.counts.rows_read for r in results) == 50 == sum(r.counts.sent for r in results)
    assert results[3].counts.rows_read == 10              # the eu rows whose id is NULL
    assert all(r.nbytes > 0 and r.seconds >= 0 for r in results[:3])


def test_an_iso_text_column_plans_and_reads_every_row_once(readings):
    work = readings_job(readings, column="at")
    planned = plan_slices(work, 4)
    assert planned.slices[1].lo > "2024-01-01 00:01:00" and planned.slices[-1].hi is None
    reported = []
    results = [run_slice(SliceTask(work, s, None), reported.append) for s in planned.slices]
    assert sum(r.counts.rows_read for r in results) == 50 == sum(reported)


def test_infinite_values_in_a_real_sqlite_column_are_read_by_the_open_ends(tmp_path):
    path = tmp_path / "inf.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE r (code TEXT, v REAL)")
        conn.executemany("INSERT INTO r VALUES (?, ?)", [("a", float("-inf")), ("b", 1.0), ("c", 2.0),
                                                           ("d", 3.0), ("e", float("inf")), ("f", None)])
    conn.close()
    work = Job(source={"dbtype": "SQLITE", "filename": str(path)},
               job={"alias": "t", "key": ["code"], "query": "SELECT code, v FROM r", "partition_by": "v",
                    "partitions": 2, "max_errors": 10, "max_error_rate": 1})
    planned = plan_slices(work, 2)
    assert planned.rows == 6 and planned.slices[1].lo == 2.0   # split between the finite 1.0 and 3.0
    results = [run_slice(SliceTask(work, s, None)) for s in planned.slices]
    assert [r.counts.rows_read for r in results] == [2, 3, 1]   # -inf, 1 | 2, 3, inf | NULL
    # infinity cannot be JSON: those two rows are rejected (dead letters), not lost
    assert sum(len(r.counts.rejected) for r in results) == 2


# ---------------------------------------------------------------- adding up


def result(number, indexed, duplicates, ids=(), attempts=1) -> SliceResult:
    counts = Counts(rows_read=indexed + duplicates, sent=indexed + duplicates,
                    answers=Answers(indexed=indexed, duplicates=duplicates, duplicate_ids=list(ids)))
    return SliceResult(number, counts, [], attempts=attempts)


def settled(results, in_index: int) -> Answers:
    answers = merged(results).answers
    answers.settle(in_index)
    return answers


def test_a_rerun_slices_updated_answers_are_not_duplicates():
    # slice 1 was rerun: 40 of its 100 documents answered "updated" (its failed attempt wrote them)
    results = [result(0, 100, 0), result(1, 60, 40, ["x"], attempts=2)]
    answers = settled(results, 200)
    assert (answers.duplicates, answers.indexed) == (0, 200)
    assert merged(results).answers.duplicate_ids == []


def test_duplicates_across_slices_are_what_the_index_lacks():
    results = [result(0, 100, 0), result(1, 99, 1, ["k7"])]
    assert settled(results, 199).duplicates == 1 and merged(results).answers.duplicate_ids == ["k7"]


def test_more_documents_than_the_slices_wrote_is_refused():
    with pytest.raises(VerificationError, match="rows changed between a slice's attempts"):
        settled([result(0, 10, 0)], 11)


def test_the_engines_replays_after_a_lost_primary_are_no_duplicates():
    # 100 items of a bulk were replayed on the new primary: answered "updated", yet one document each
    answers = Answers(indexed=2900, duplicates=100, duplicate_ids=["SEN1"])
    answers.settle(3000)
    assert (answers.indexed, answers.duplicates) == (3000, 0)


def test_fewer_documents_than_acknowledged_are_refused_not_called_duplicates():
    answers = Answers(indexed=3000, duplicates=0)
    with pytest.raises(VerificationError, match="holds 2990 documents but 3000 distinct keys were written"):
        answers.settle(2990)
