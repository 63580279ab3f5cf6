"""Sync bookkeeping of nested documents: each child's watermark and marks stored, moved only with acknowledged
chunks, pruned by the child's own lookback; a child without a stored watermark refused; marks dropped with the
parent's when the alias points elsewhere; the rows a child's sync skips (issue 19's rules, per child row)."""

from __future__ import annotations

import datetime as dt

import pytest

from indexer import child_sync, incremental
from indexer.config import Job
from indexer.errors import ConfigError
from indexer.extract import Chunk
from indexer.state import ChildState, JobState
from indexer.watermark import Mark

T = dt.datetime(2026, 1, 1)
JOB = Job(source={"dbtype": "SQLITE", "filename": "shop.db"}, target={"url": "http://127.0.0.1:9200"}, job={
    "alias": "orders", "key": ["id"], "query": "SELECT id, updated_at FROM orders", "watermark": "updated_at",
    "lookback": "1m", "children": [
        {"name": "lines", "query": "SELECT order_id, line_no, updated_at FROM lines", "parent_key": ["order_id"],
         "key": ["order_id", "line_no"], "watermark": "updated_at", "lookback": "10s"}]}, base_dir=".", name="o")


def at(seconds: int) -> dt.datetime:
    return T + dt.timedelta(seconds=seconds)


def test_a_state_with_children_round_trips_and_one_without_them_stays_as_older_versions_wrote_it():
    state = JobState(at(5), [Mark(at(5), "a" * 28)], "orders-1",
                     children={"lines": ChildState(at(9), [Mark(at(9), "b" * 28)]), "lines.tag": ChildState(7)})
    stored = state.to_stored()
    assert stored["children"]["lines"] == {"watermark": {"type": "datetime", "value": "2026-01-01T00:00:09"},
                                           "marks": [["2026-01-01T00:00:09", "b" * 28]]}
    assert JobState.from_stored(stored) == state
    assert "children" not in JobState(at(5)).to_stored()


def test_a_child_watermark_moves_with_acknowledged_chunks_only_and_its_marks_keep_its_own_lookback():
    state = JobState(at(0), children={"lines": ChildState(at(0))})
    advance = incremental.Advance(state, "1m", child_sync.lookbacks(JOB))
    old, new = Mark(at(0), "1" * 28), Mark(at(30), "2" * 28)
    nothing = Chunk(0, 0, [], [])
    assert advance.add([nothing]) is None  # no action, no child read: nothing to store
    moved = Chunk(1, 0, [], [], child_watermarks={"lines": at(30)}, child_marks={"lines": [old, new]})
    after = advance.add([moved])
    assert after is not None and after.watermark == at(0)  # the parent's is not the child's
    assert after.children["lines"] == ChildState(at(30), [new])  # at(0) is below at(30) - 10s: pruned
    again = Chunk(2, 0, [], [], child_watermarks={"lines": at(30)}, child_marks={"lines": []})
    assert advance.add([again]) is None  # read again, nothing new: no state write


def test_sync_refuses_a_child_without_a_stored_watermark_naming_it():
    with pytest.raises(ConfigError, match=r"^no watermark is stored for child 'lines' of alias 'orders': run "):
        child_sync.plans(JOB, JobState(at(0)))
    [plan] = child_sync.plans(JOB, JobState(at(0), children={"lines": ChildState(at(20))}))
    assert plan.params == {"since": at(10)}  # the child's own lookback: 10s
    assert plan.sql.endswith("WHERE q.updated_at >= :since ORDER BY q.updated_at")


def test_marks_are_dropped_for_another_index_the_childs_too_and_its_watermark_kept():
    state = JobState(at(0), [Mark(at(0), "1" * 28)], "orders-1", children={"lines": ChildState(at(5), [
        Mark(at(5), "2" * 28)])})
    other = incremental.for_index(state, "orders-2")
    assert other.marks == [] and other.children == {"lines": ChildState(at(5))}
    assert incremental.for_index(state, "orders-1") is state


def test_a_child_rows_fingerprint_names_its_row_and_changes_with_any_of_its_values():
    row = {"order_id": 1, "line_no": 2, "qty": 3, "is_deleted": 0}
    same = child_sync._fingerprint(dict(row), ["order_id", "line_no"])
    assert same == child_sync._fingerprint(row, ["order_id", "line_no"])
    assert same[:incremental.ROW] == child_sync._fingerprint({**row, "qty": 4}, ["order_id", "line_no"])[
        :incremental.ROW]
    assert same != child_sync._fingerprint({**row, "is_deleted": 1}, ["order_id", "line_no"])
    assert child_sync._fingerprint({**row, "qty": float("nan")}, ["order_id", "line_no"]).endswith(
        incremental.TOMBSTONE)  # cannot be encoded: never matches a mark
