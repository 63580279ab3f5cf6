"""indexer.extract: ``Reader.encode`` (rows -> actions with their rows, watermarks, marks and dedup) and the
sync query derived from the job's, bound in each driver's style; no database involved."""

from __future__ import annotations

import pytest

from indexer import documents, incremental
from indexer.config import Job
from indexer.errors import ConfigError, SourceError
from indexer.extract import Reader, ReadPlan, sync_query
from indexer.state import JobState
from indexer.watermark import Mark

COLUMNS = ("code", "value", "changed", "gone")


def reader(mode="sync", kind="ISO text", keep_from=None, skip=None, transform=None, tmp_path=None) -> Reader:
    settings = {"alias": "t", "key": ["code"], "query": "SELECT 1", "watermark": "changed", "deleted": "gone"}
    if transform:
        settings["transform"] = transform
    job = Job(source={"dbtype": "SQLITE", "filename": "unused.db"}, job=settings, base_dir=tmp_path or ".")
    r = Reader(job, ReadPlan("SELECT 1", None, mode, kind=kind, keep_from=keep_from, skip=skip or {}))
    r._columns(COLUMNS)
    return r


def row(code, changed, gone=0, value=1.0):
    return (code, value, changed, gone)


def test_each_action_keeps_the_row_it_came_from_and_deletes_follow_the_live_rows():
    chunk = reader().encode([row("a", "2025-01-01 00:00:01"), row("b", "2025-01-01 00:00:02", gone=1),
                             row("c", "2025-01-01 00:00:03")], seq=0, first_row=0)
    assert [(a.id, a.at) for a in chunk.actions] == [("a", 0), ("c", 2), ("b", 1)]
    assert chunk.actions[2].line == documents.delete_action("b")
    assert chunk.watermark == "2025-01-01 00:00:03"


def test_rejected_rows_are_numbered_by_their_own_row_even_among_soft_deleted_ones():
    # The landed code gave every rejected soft-deleted row the chunk's first row number,
    # and numbered rejected live rows as if the deleted rows were not there.
    chunk = reader().encode([row("a", "2025-01-01 00:00:01", gone=1), row(None, "2025-01-01 00:00:02"),
                             row(None, "2025-01-01 00:00:03", gone=1)], seq=3, first_row=300)
    assert sorted(r.row for r in chunk.rejected) == [301, 302]
    assert all("NULL" in r.reason for r in chunk.rejected)


def test_rows_already_indexed_unchanged_are_skipped_and_fresh_ones_in_the_window_are_marked():
    first = reader(keep_from="2025-01-01 00:00:02")
    chunk = first.encode([row("a", "2025-01-01 00:00:01"), row("b", "2025-01-01 00:00:02"),
                          row("c", "2025-01-01 00:00:03")], seq=0, first_row=0)
    assert [a.id for a in chunk.actions] == ["a", "b", "c"]
    assert [m.value for m in chunk.marks] == ["2025-01-01 00:00:02", "2025-01-01 00:00:03"]  # a is below the window

    again = reader(keep_from="2025-01-01 00:00:02",
                   skip=incremental.skip(JobState(watermark="2025-01-01 00:00:03", marks=chunk.marks)))
    chunk = again.encode([row("b", "2025-01-01 00:00:02"), row("c", "2025-01-01 00:00:03", value=2.0)],
                         seq=0, first_row=0)
    assert [a.id for a in chunk.actions] == ["c"] and chunk.skipped == 1   # c changed: sent again
    assert [m.value for m in chunk.marks] == ["2025-01-01 00:00:03"] and isinstance(chunk.marks[0], Mark)


def test_a_row_met_twice_in_one_run_is_skipped_at_most_the_first_time():
    """The skip list is the run's, not the chunk's: a row met again in a later chunk is sent."""
    marks = reader().encode([row("b", "2025-01-01 00:00:02")], seq=0, first_row=0).marks
    again = reader(skip=incremental.skip(JobState(watermark="2025-01-01 00:00:02", marks=marks)))
    assert again.encode([row("b", "2025-01-01 00:00:02")], seq=0, first_row=0).skipped == 1
    assert [a.id for a in again.encode([row("b", "2025-01-01 00:00:02")], seq=1, first_row=1).actions] == ["b"]


def test_a_sync_refuses_rows_out_of_watermark_order_across_chunks():
    r = reader()
    r.encode([row("a", "2025-01-01 00:00:05")], seq=0, first_row=0)
    with pytest.raises(ConfigError, match="ORDER BY the watermark"):
        r.encode([row("b", "2025-01-01 00:00:04")], seq=1, first_row=1)


def test_a_sync_names_the_row_and_key_of_a_watermark_it_cannot_compare():
    with pytest.raises(SourceError, match=r"^row 12 \(key 'b'\): job.watermark column 'changed': "
                                          r"mixes timestamps with and without a UTC offset$"):
        reader().encode([row("a", "2025-01-01 00:00:01"), row("b", "2025-01-01 00:00:02+02:00")], seq=0, first_row=10)


def test_a_reindex_counts_null_and_odd_watermarks_and_indexes_their_rows():
    chunk = reader(mode="reindex").encode([row("a", None), row("b", ""), row("c", "2025-01-01 00:00:03")],
                                          seq=0, first_row=0)
    assert [a.id for a in chunk.actions] == ["a", "b", "c"]
    assert chunk.null_watermarks == 2 and chunk.odd_watermark == "row 2 (key 'b'): empty text"
    assert chunk.watermark == "2025-01-01 00:00:03"


def test_a_transform_that_changes_the_count_is_unpaired_and_its_rows_are_all_sent(tmp_path):
    (tmp_path / "double.py").write_text("def twice(docs):\n    return [dict(d, code=d['code'] + s) for d in docs for s in 'xy']\n")
    r = reader(transform="double:twice", tmp_path=tmp_path, keep_from="2025-01-01 00:00:00")
    chunk = r.encode([row("a", "2025-01-01 00:00:01")], seq=0, first_row=0)
    assert chunk.unpaired and [(a.id, a.at) for a in chunk.actions] == [("ax", -1), ("ay", -1)]
    assert chunk.marks == [] and chunk.watermark == "2025-01-01 00:00:01"


def test_versioned_actions_carry_versions_growing_in_source_order():
    r = reader(mode="reindex")
    r.plan = ReadPlan("SELECT 1", None, "reindex", kind="ISO text", versioned=True)
    first = r.encode([row("a", "2025-01-01 00:00:01"), row("a", "2025-01-01 00:00:02")], seq=0, first_row=0)
    later = r.encode([row("a", "2025-01-01 00:00:03")], seq=1, first_row=2)
    versions = [int(a.line.split(b'"version":')[1].split(b",")[0]) for a in first.actions + later.actions]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert b'"version_type":"external_gte"' in first.actions[0].line


@pytest.mark.parametrize("dbtype, bind", [("SQLITE", ":since"), ("ORACLE", ":since"), ("PG", "%(since)s"), ("MSSQL", "?")])
def test_the_derived_sync_query_binds_the_watermark_in_the_drivers_style(dbtype, bind):
    source = {"dbtype": dbtype, "filename": "x.db"} if dbtype == "SQLITE" else {
        "dbtype": dbtype, "host": "h", "port": 1, "dbname": "d", "user": "u", "password_env": "P", "odbc_driver": "x"}
    if dbtype != "MSSQL":
        source.pop("odbc_driver", None)
    job = Job(source=source, job={"alias": "a", "key": ["code"], "query": "SELECT code, changed FROM t",
                                  "watermark": "CHANGED"})
    assert sync_query(job) == f"SELECT * FROM (SELECT code, changed FROM t) q WHERE q.changed >= {bind} ORDER BY q.changed"
