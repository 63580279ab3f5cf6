"""Slices of a partitioned reindex: planning for each column type, the SQL each driver gets, counting
(indexer.partitions, indexer.slices); real SQLite for what reads a database, no engine."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal

import pytest

from indexer.config import Job
from indexer.errors import ConfigError, VerificationError
from indexer.partitions import Slice, plan_slices, slices_between, slice_query
from indexer.counts import Answers, Counts
from indexer.local_runner import run_local
from indexer.slices import SLICE_ATTEMPTS, SliceFailed, SliceResult, SliceTask, duplicates, merged, run_slice

UTC = dt.timezone.utc


def holder(slices: list[Slice], value) -> list[int]:
    """The numbers of the slices whose condition holds for ``value`` (as the database would judge it)."""
    found = []
    for s in slices:
        if s.nulls:
            inside = value is None
        else:  # an open end (None) holds every value beyond the other bound
            inside = value is not None and (s.lo is None or s.lo <= value) and (s.hi is None or value < s.hi)
        if inside:
            found.append(s.number)
    return found


def assert_each_value_in_exactly_one(slices: list[Slice], values) -> None:
    for value in values:
        assert len(holder(slices, value)) == 1, (value, slices)


# ---------------------------------------------------------------- planning, by type


def test_integers_split_into_equal_ranges_that_hold_every_value_once():
    slices = slices_between(0, 99, False, 4)
    assert [(s.lo, s.hi) for s in slices] == [(None, 25), (25, 50), (50, 75), (75, None)]
    assert [s.count for s in slices] == [4] * 4 and [s.number for s in slices] == [0, 1, 2, 3]
    assert_each_value_in_exactly_one(slices, range(-1000, 1000))  # open ends: values beyond MIN and MAX too


def test_negative_integers_and_a_null_slice_last():
    slices = slices_between(-50, 49, True, 3)
    assert [s.nulls for s in slices] == [False, False, False, True]
    assert slices[-1] == Slice(3, 4, nulls=True) and slices[2].hi is None
    assert_each_value_in_exactly_one(slices, [*range(-50, 50), None])


def test_more_partitions_than_values_gives_one_slice_per_value():
    slices = slices_between(1, 3, False, 10)
    assert [(s.lo, s.hi) for s in slices] == [(None, 2), (2, 3), (3, None)]


def test_min_equal_to_max_is_one_slice_of_every_non_null_value():
    assert slices_between(7, 7, False, 4) == [Slice(0, 1)]
    assert Slice(0, 1).describe("id") == "id is not NULL"


def test_an_empty_result_has_no_slice_and_an_all_null_one_only_the_null_slice():
    assert slices_between(None, None, False, 4, others=False) == []
    assert slices_between(None, None, True, 4, others=False) == [Slice(0, 1, nulls=True)]


def test_a_column_with_no_finite_value_is_one_slice_of_every_non_null_value():
    # e.g. every timestamp is PostgreSQL's infinity: nothing to split on, nothing left out
    assert slices_between(None, None, True, 4, others=True) == [Slice(0, 2), Slice(1, 2, nulls=True)]


def test_infinities_and_nan_beyond_the_finite_bounds_are_read_by_the_open_ends():
    """Ranges closed at MIN and MAX lost PostgreSQL's infinity rows (psycopg2 read them as datetime.max)."""
    slices = slices_between(0.0, 10.0, True, 3)
    assert_each_value_in_exactly_one(slices, [float("-inf"), -1e300, 0.0, 5.0, 10.0, 1e300, float("inf"), None])
    days = slices_between(dt.datetime(2024, 1, 1), dt.datetime(2024, 6, 1), False, 2)
    assert_each_value_in_exactly_one(days, [dt.datetime.min, dt.datetime(2024, 3, 1), dt.datetime.max])


def test_decimals_split_exactly_and_integral_ones_on_integers():
    slices = slices_between(Decimal("-1.5"), Decimal("2.5"), False, 4)
    assert [s.lo for s in slices] == [None, Decimal("-0.5"), Decimal("0.5"), Decimal("1.5")]
    assert_each_value_in_exactly_one(slices, [Decimal(n) / 10 for n in range(-15, 26)])
    whole = slices_between(Decimal(10), Decimal(20), False, 3)
    assert [s.lo for s in whole] == [None, Decimal(13), Decimal(17)]


def test_floats_split_between_min_and_max_and_mixed_numbers_as_floats():
    slices = slices_between(-1.0, 1.0, False, 3)
    assert slices[0].lo is None and slices[1].lo > -1.0 and slices[-1].hi is None and len(slices) == 3
    assert_each_value_in_exactly_one(slices, [i / 100 for i in range(-100, 101)])
    mixed = slices_between(0, 2.5, False, 2)
    assert [(s.lo, s.hi) for s in mixed] == [(None, 1.25), (1.25, None)]


def test_a_tiny_float_range_gives_fewer_slices_never_an_empty_or_reversed_one():
    low = 1.0
    high = low + 2 * 2.220446049250313e-16
    slices = slices_between(low, high, False, 8)
    assert 1 <= len(slices) <= 3
    assert all(s.lo < s.hi for s in slices[1:-1])


def test_dates_split_on_whole_days():
    slices = slices_between(dt.date(2024, 1, 1), dt.date(2024, 1, 10), False, 3)
    assert [s.lo for s in slices] == [None, dt.date(2024, 1, 4), dt.date(2024, 1, 7)]
    assert_each_value_in_exactly_one(slices, [dt.date(2024, 1, d) for d in range(1, 11)])


def test_timestamps_naive_and_aware_split_on_microseconds():
    low = dt.datetime(2024, 1, 1)
    slices = slices_between(low, dt.datetime(2024, 1, 2), False, 4)
    assert [s.lo for s in slices] == [None] + [low + dt.timedelta(hours=6 * i) for i in range(1, 4)]
    assert_each_value_in_exactly_one(slices, [low + dt.timedelta(minutes=m) for m in range(0, 24 * 60 + 1, 7)])
    aware = slices_between(dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1, 0, 0, 0, 2, tzinfo=UTC),
                           False, 5)
    assert len(aware) == 3 and all(s.lo.tzinfo is UTC for s in aware[1:])


def test_iso_text_splits_as_timestamps_written_in_the_columns_own_layout():
    slices = slices_between("2024-01-01T00:00:00", "2024-01-03T00:00:00", True, 4)
    assert [s.lo for s in slices[:4]] == [None, "2024-01-01T12:00:00", "2024-01-02T00:00:00", "2024-01-02T12:00:00"]
    # compared as text (as SQLite does): every text between MIN and MAX is in one range, any layout
    assert_each_value_in_exactly_one(slices, ["2024-01-01T00:00:00", "2024-01-01T23:00", "2024-01-02",
                                              "2024-01-02T12:00:00.5", "2024-01-03T00:00:00", None])
    with_offset = slices_between("2024-01-01 00:00:00+02:00", "2024-01-01 04:00:00+02:00", False, 2)
    assert with_offset[1].lo == "2024-01-01 02:00:00+02:00"


@pytest.mark.parametrize("low, high, named", [
    ("abc", "xyz", "str values (text that is not ISO 8601)"),
    (False, True, "bool values"),
    (1, "2024-01-01", "mixes"),
    (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2, tzinfo=UTC), "with and without a UTC offset"),
    ("2024-01-01 00:00", "2024-01-02 00:00+01:00", "with and without a UTC offset"),
    (float("-inf"), 1.0, "infinite or NaN"),
])
def test_a_column_that_cannot_be_ranged_is_one_config_error(low, high, named):
    with pytest.raises(ConfigError) as info:
        slices_between(low, high, False, 4, "code")
    assert named in str(info.value) and "job.partition_by" in str(info.value) and "\n" not in str(info.value)


def test_describe_names_the_range_without_anything_else():
    slices = slices_between(100, 250, True, 2)
    assert [s.describe("id") for s in slices] == ["id < 175", "id >= 175", "id is NULL"]
    assert slices_between(100, 250, False, 3)[1].describe("id") == "id >= 150 and < 200"
    assert slices[2].name() == "slice 3 of 3"


# ---------------------------------------------------------------- the SQL each driver gets


def job(dbtype: str, query: str, params: dict | None = None) -> Job:
    source = {"dbtype": dbtype, "filename": "x.db"} if dbtype == "SQLITE" else {
        "dbtype": dbtype, "host": "h", "port": 1, "dbname": "d", "user": "u", "odbc_driver": "x", "password_env": "PW"}
    return Job(source=source, job={"alias": "t", "key": ["id"], "query": query, "partition_by": "id",
                                   "partitions": 2, "params": params or {}})


RANGE, FIRST, LAST, NULLS = Slice(1, 4, 1, 5), Slice(0, 4, None, 1), Slice(2, 4, 5), Slice(3, 4, nulls=True)


@pytest.mark.parametrize("dbtype, lo, hi", [("SQLITE", ":slice_lo", ":slice_hi"), ("ORACLE", ":slice_lo", ":slice_hi")])
def test_named_drivers_bind_the_bounds_by_name_after_the_jobs_own(dbtype, lo, hi):
    sql, params = slice_query(job(dbtype, "SELECT id FROM t WHERE site = :site", {"site": "eu"}), RANGE)
    assert sql == f"SELECT * FROM (SELECT id FROM t WHERE site = :site) q WHERE q.id >= {lo} AND q.id < {hi}"
    assert params == {"site": "eu", "slice_lo": 1, "slice_hi": 5}
    sql, params = slice_query(job(dbtype, "SELECT id FROM t"), LAST)
    assert sql.endswith(f"q.id >= {lo}") and params == {"slice_lo": 5}
    sql, params = slice_query(job(dbtype, "SELECT id FROM t"), FIRST)
    assert sql.endswith(f"WHERE q.id < {hi}") and params == {"slice_hi": 1}
    sql, params = slice_query(job(dbtype, "SELECT id FROM t"), Slice(0, 1))
    assert sql.endswith("WHERE q.id IS NOT NULL") and params is None


def test_the_null_slice_binds_only_the_jobs_parameters():
    sql, params = slice_query(job("SQLITE", "SELECT id FROM t WHERE site = :site", {"site": "eu"}), NULLS)
    assert sql == "SELECT * FROM (SELECT id FROM t WHERE site = :site) q WHERE q.id IS NULL"
    assert params == {"site": "eu"}
    assert slice_query(job("SQLITE", "SELECT id FROM t"), NULLS)[1] is None


def test_postgres_binds_pyformat_and_doubles_the_percent_of_a_query_without_parameters():
    sql, params = slice_query(job("PG", "SELECT id FROM t WHERE code LIKE 'SEN%'"), RANGE)
    assert sql == ("SELECT * FROM (SELECT id FROM t WHERE code LIKE 'SEN%%') q "
                   "WHERE q.id >= %(slice_lo)s AND q.id < %(slice_hi)s")
    assert params == {"slice_lo": 1, "slice_hi": 5}
    # nothing bound for the NULL slice: the query runs as written, its % as it is
    sql, params = slice_query(job("PG", "SELECT id FROM t WHERE code LIKE 'SEN%'"), NULLS)
    assert "LIKE 'SEN%')" in sql and params is None


def test_postgres_keeps_the_percent_of_a_query_with_parameters_as_written():
    query = "SELECT id FROM t WHERE code LIKE 'SEN%%' AND site = %(site)s"
    sql, params = slice_query(job("PG", query, {"site": "eu", "unused": 1}), RANGE)
    assert sql.startswith(f"SELECT * FROM ({query}) q WHERE") and params == {"site": "eu", "slice_lo": 1, "slice_hi": 5}


def test_mssql_binds_positionally_the_jobs_parameters_first():
    sql, params = slice_query(job("MSSQL", "SELECT id FROM t WHERE site = ? AND n > ?", {"site": "eu", "n": 3}), RANGE)
    assert sql == "SELECT * FROM (SELECT id FROM t WHERE site = ? AND n > ?) q WHERE q.id >= ? AND q.id < ?"
    assert params == ("eu", 3, 1, 5)
    assert slice_query(job("MSSQL", "SELECT id FROM t"), NULLS) == (
        "SELECT * FROM (SELECT id FROM t) q WHERE q.id IS NULL", None)


# ---------------------------------------------------------------- planning and reading a real SQLite file


@pytest.fixture
def readings(tmp_path):
    path = tmp_path / "readings.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER, site TEXT, at TEXT, code TEXT)")
        rows = [(None if i % 10 == 5 else i - 40, "eu" if i % 2 else "us", f"2024-01-01 00:{i % 60:02d}:00", f"S{i}")
                for i in range(100)]
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
    conn.close()
    return path


def sqlite_job(path, column="id", query="SELECT id, site, at, code FROM readings WHERE site = :site", **extra) -> Job:
    return Job(source={"dbtype": "SQLITE", "filename": str(path)},
               job={"alias": "t", "key": ["code"], "query": query, "partition_by": column, "partitions": 3,
                    "params": {"site": "eu"}} | extra)


def test_the_slices_of_a_real_query_read_every_row_exactly_once(readings):
    work = sqlite_job(readings)
    planned = plan_slices(work, 3)
    assert planned.rows == 50
    assert [s.nulls for s in planned.slices] == [False, False, False, True]
    assert planned.slices[1].lo == -6 and planned.slices[2].lo == 27   # the odd ids among -40..59, site eu

    results = [run_slice(SliceTask(work, s, None)) for s in planned.slices]
    assert sum(r.counts.rows_read for r in results) == 50 == sum(r.counts.sent for r in results)
    assert results[3].counts.rows_read == 10              # the eu rows whose id is NULL
    assert all(r.nbytes > 0 and r.seconds >= 0 for r in results[:3])


def test_an_iso_text_column_plans_and_reads_every_row_once(readings):
    work = sqlite_job(readings, column="at")
    planned = plan_slices(work, 4)
    assert planned.slices[1].lo > "2024-01-01 00:01:00" and planned.slices[-1].hi is None
    reported = []
    results = [run_slice(SliceTask(work, s, None), reported.append) for s in planned.slices]
    assert sum(r.counts.rows_read for r in results) == 50 == sum(reported)


def test_a_partition_column_the_query_lacks_or_of_plain_text_is_one_config_error(readings):
    with pytest.raises(ConfigError, match=r"job.partition_by: column 'nope' is not among the query's columns"):
        plan_slices(sqlite_job(readings, column="nope"), 3)
    with pytest.raises(ConfigError, match=r"column 'code' holds str values \(text that is not ISO 8601\)"):
        plan_slices(sqlite_job(readings, column="code"), 3)


def test_the_local_runner_returns_every_slice_in_order_and_reports_their_rows(readings):
    work = sqlite_job(readings)
    tasks = [SliceTask(work, s, None) for s in plan_slices(work, 3).slices]
    reported = []
    results = run_local(tasks, workers=2, on_rows=reported.append)
    assert [r.number for r in results] == [0, 1, 2, 3] and all(r.attempts == 1 for r in results)
    assert sum(r.counts.rows_read for r in results) == 50 == sum(reported)


def test_a_slice_failing_on_every_attempt_fails_the_run_naming_the_slice(readings):
    # SQLite raises "integer overflow" when it reads the row whose id is 1: only slice 2's reads fail
    query = ("SELECT id, site, at, code, CASE WHEN id = 1 THEN abs(-9223372036854775807 - 1 + 0 * id) END AS boom "
             "FROM readings WHERE site = :site")
    work = sqlite_job(readings, query=query)
    tasks = [SliceTask(work, s, None) for s in plan_slices(work, 3).slices]
    with pytest.raises(SliceFailed) as info:
        run_local(tasks, workers=2, on_rows=lambda n: None)
    assert str(info.value).startswith(f"slice 2 of 4 (id >= -6 and < 27) failed after {SLICE_ATTEMPTS} attempt(s): ")
    assert "integer overflow" in str(info.value) and info.value.exit_code == 1


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


def test_a_cluster_without_a_partition_column_is_refused(readings):
    with pytest.raises(ConfigError, match="job.cluster needs job.partition_by"):
        plan_slices(sqlite_job(readings, column=None, partitions=1, cluster="tcp://127.0.0.1:8786"), 1)


# ---------------------------------------------------------------- adding up


def result(number, indexed, duplicates, ids=(), attempts=1) -> SliceResult:
    counts = Counts(rows_read=indexed + duplicates, sent=indexed + duplicates,
                    answers=Answers(indexed=indexed, duplicates=duplicates, duplicate_ids=list(ids)))
    return SliceResult(number, counts, [], attempts=attempts)


def test_counts_merge_adds_every_counter_and_keeps_a_short_duplicate_sample():
    total = Counts()
    total.merge(Counts(rows_read=3, skipped=1, sent=2,
                       answers=Answers(indexed=2, bulk_requests=1, duplicate_ids=["a", "b", "c"])))
    total.merge(Counts(rows_read=4, sent=4, answers=Answers(indexed=3, duplicates=1, retried=2,
                                                          duplicate_ids=["d", "e", "f"])))
    n = total.numbers()
    assert (n["rows_read"], n["skipped"], n["sent"], n["indexed"], n["duplicates"], n["retried"],
            n["bulk_requests"]) == (7, 1, 6, 5, 1, 2, 1)
    assert total.answers.duplicate_ids == ["a", "b", "c", "d", "e"]


def test_a_rerun_slices_updated_answers_are_not_duplicates():
    # slice 1 was rerun: 40 of its 100 documents answered "updated" (its failed attempt wrote them)
    results = [result(0, 100, 0), result(1, 60, 40, ["x"], attempts=2)]
    assert duplicates(results, 200) == 0
    assert merged(results).answers.duplicate_ids == []


def test_duplicates_across_slices_are_what_the_index_lacks():
    results = [result(0, 100, 0), result(1, 99, 1, ["k7"])]
    assert duplicates(results, 199) == 1 and merged(results).answers.duplicate_ids == ["k7"]


def test_more_documents_than_the_slices_wrote_is_refused():
    with pytest.raises(VerificationError, match="rows changed between a slice's attempts"):
        duplicates([result(0, 10, 0)], 11)


# ---------------------------------------------------------------- the coordinator's rows check


def test_slices_that_read_another_number_of_rows_than_the_query_returns_are_refused(readings):
    import asyncio

    from indexer.commands.reindex import _check_rows
    from indexer.run import Summary

    work = sqlite_job(readings)   # the query returns 50 rows (site eu)
    summary = Summary(command="reindex", started="", job="t", alias="t")
    asyncio.run(_check_rows(work, summary, 50, 50))
    with pytest.raises(VerificationError, match="the slices read 48 rows but job.query returns 50 .*alias not changed"):
        asyncio.run(_check_rows(work, summary, 48, 50))   # counted again: still 50, so two rows were lost
    assert summary.warnings == []
    # a count that moved between planning and now is a table that changed: no count can settle that
    asyncio.run(_check_rows(work, summary, 53, 52))
    assert summary.warnings == ["the slices read 53 rows while job.query returned 52 when they were planned "
                                "and 50 after: the source changed during the reindex (the next sync catches up)"]
