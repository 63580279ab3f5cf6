"""indexer.partitions: the slices of a partitioned reindex. Planning for each column type (every value in
exactly one slice, the open ends and the NULL slice), the refusals, and the SQL each driver gets; the
readings table (a real SQLite file) where planning reads the database. Running the slices:
test_slices.py, test_local_runner.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from indexer.config import Job
from indexer.errors import ConfigError
from indexer.partitions import Slice, plan_slices, slice_query, slices_between
from tests.support.builders import readings_job

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


# ---------------------------------------------------------------- planning on a real SQLite file


def test_a_partition_column_the_query_lacks_or_of_plain_text_is_one_config_error(readings):
    with pytest.raises(ConfigError, match=r"job.partition_by: column 'nope' is not among the query's columns"):
        plan_slices(readings_job(readings, column="nope"), 3)
    with pytest.raises(ConfigError, match=r"column 'code' holds str values \(text that is not ISO 8601\)"):
        plan_slices(readings_job(readings, column="code"), 3)


def test_a_cluster_without_a_partition_column_is_refused(readings):
    with pytest.raises(ConfigError, match="job.cluster needs job.partition_by"):
        plan_slices(readings_job(readings, column=None, partitions=1, cluster="tcp://127.0.0.1:8786"), 1)
