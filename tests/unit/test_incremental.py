"""indexer.incremental: sync's bookkeeping. The marks kept for the lookback window, the watermark advanced
over acknowledged chunks only, and every state writer keeping the fields it does not own."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from indexer import documents, incremental
from indexer.state import JobState
from indexer.watermark import Mark
from tests.support.builders import chunk, every_field_set


def _mark(value, id_: str, line: bytes = b"x") -> Mark:
    return Mark(value, incremental.fingerprint(id_, line))


def test_kept_marks_compare_in_the_watermarks_own_type_and_keep_the_newest(monkeypatch):
    marks = [_mark("2025-01-01 00:00:09", "a"), _mark("2025-01-01T00:00:10", "b"), _mark("2025-01-01 00:00:11", "c")]
    assert incremental.kept_marks(marks, "2025-01-01 00:00:10") == marks[1:]
    monkeypatch.setattr(incremental, "MAX_MARKS", 2)
    assert incremental.kept_marks(marks, None) == marks[1:]


def test_pruning_keeps_a_rows_newest_mark_or_none_of_its_marks():
    """An older mark left alone would be taken as the row's newest: a late commit gave row x an older watermark
    (95) after a newer one (100); once the floor passes 95, x has no mark, not its older one."""
    older, newer = _mark(100, "x", b"open"), _mark(95, "x", b"closed")
    assert incremental.kept_marks([older, newer], 96) == []
    assert incremental.kept_marks([older, newer], 90) == [newer]


def test_marks_of_an_earlier_version_and_every_mark_before_them_skip_nothing():
    ours, theirs, after = _mark(5, "a"), Mark(6, "0123456789abcdef"), _mark(7, "b")
    state = JobState(watermark=7, marks=[ours, theirs, after])
    assert set(incremental.skip(state)) == {incremental.row_hash("b")}
    assert incremental.kept_marks(state.marks, None) == [after]


def test_a_sync_advances_over_acknowledged_chunks_and_stores_nothing_when_nothing_is_new():
    old, fresh = _mark("2025-01-01 00:09:00", "old"), _mark("2025-01-01 00:20:00", "fresh")
    state = JobState(watermark="2025-01-01 00:10:00", marks=[old], index="t-1")
    advance = incremental.Advance(state, "5m")
    assert advance.add([chunk(0, actions=0, skipped=3, watermark="2025-01-01 00:09:30")]) is None
    new = advance.add([chunk(1, watermark="2025-01-01 00:20:00", marks=[fresh])])
    assert new.watermark == "2025-01-01 00:20:00" and new.index == "t-1"
    assert new.marks == [fresh]     # "old" fell out of the window (00:15 and later)
    assert incremental.since(new, "5m") == "2025-01-01 00:15:00"
    assert incremental.skip(new) == {incremental.row_hash("fresh"): (dt.datetime(2025, 1, 1, 0, 20), fresh.fingerprint)}


def _settled(state: JobState, rows: list[tuple[str, bytes, object]], rejected: bool = False):
    """A sync chunk of ``rows`` (id, action line, watermark) settled against ``state``'s marks: the ids sent, and
    the state a sync would store after it."""
    c = chunk(0, actions=0, rejected=int(rejected))
    c.actions = [documents.Action(id_, line, at) for at, (id_, line, _) in enumerate(rows)]
    values = [w for _, _, w in rows]
    c.watermark = max(values)
    incremental.settle(c, values, values, None, incremental.skip(state))
    return [a.id for a in c.actions], incremental.Advance(state, 100).add([c]) or state


def test_a_mark_skips_only_its_rows_newest_write_at_the_same_watermark():
    """The soak's finding: delete, revive, delete inside the window; the second delete's line is the first's."""
    delete, revived = documents.delete_action("x"), documents.index_action("x", b'{"v":2}')
    sent, state = _settled(JobState(watermark=1), [("x", delete, 1)])
    assert sent == ["x"]
    assert _settled(state, [("x", delete, 1)])[0] == []           # re-read unchanged: skipped
    sent, state = _settled(state, [("x", revived, 2)])
    assert sent == ["x"]
    assert _settled(state, [("x", delete, 3)])[0] == ["x"]         # deleted again: sent (was skipped)
    assert _settled(state, [("x", delete, 1)])[0] == ["x"]         # the first delete is no longer the newest write
    assert _settled(state, [("x", revived, 2)])[0] == []


def test_a_value_changed_and_back_at_one_watermark_is_sent():
    a, b = documents.index_action("x", b'{"v":"A"}'), documents.index_action("x", b'{"v":"B"}')
    _, state = _settled(JobState(watermark=5), [("x", a, 5)])
    sent, state = _settled(state, [("x", b, 5)])
    assert sent == ["x"]
    assert _settled(state, [("x", a, 5)])[0] == ["x"]              # A's line, A's watermark: still not the newest


def test_two_rows_giving_one_id_are_both_sent_again():
    """Skipping the second (the newest mark) and sending the first left the first in the index: it flipped
    between them on every sync."""
    first, second = documents.index_action("x", b'{"v":1}'), documents.index_action("x", b'{"v":2}')
    sent, state = _settled(JobState(watermark=1), [("x", first, 1), ("x", second, 2)])
    assert sent == ["x", "x"]
    assert _settled(state, [("x", first, 1), ("x", second, 2)])[0] == ["x", "x"]


def test_a_chunk_sent_without_marks_leaves_tombstones():
    """A chunk with a rejected row is sent whole and marks nothing; the older mark of a row in it must no
    longer count as its newest: A marked, B sent unmarked, A again at the same watermark is sent."""
    a, b = documents.index_action("x", b'{"v":"A"}'), documents.index_action("x", b'{"v":"B"}')
    _, state = _settled(JobState(watermark=5), [("x", a, 5)])
    sent, state = _settled(state, [("x", b, 5)], rejected=True)
    assert sent == ["x"] and [m.fingerprint[incremental.ROW:] for m in state.marks] == [incremental.TOMBSTONE]
    assert _settled(state, [("x", a, 5)])[0] == ["x"]
    assert incremental.skip(state) == {}


@pytest.mark.parametrize("writer, owns", [
    (lambda s: incremental.Advance(s, 2).add([chunk(0, watermark=12, marks=[_mark(12, "f12")])]),
     {"watermark", "marks"}),
    (lambda s: incremental.after_reindex(s, "sensors-20250202000000", 20, [_mark(20, "f20")], 18, True),
     {"watermark", "marks", "index"}),
    (lambda s: incremental.after_reindex(s, "sensors-20250202000000", None, [], None, False), {"index"}),
])
def test_every_state_writer_keeps_every_field_it_does_not_own(writer, owns):
    """sync dropped last_reconcile on every state write, so reconcile_every never saw a reconcile."""
    before = every_field_set()
    after = writer(before)
    for field in dataclasses.fields(JobState):
        if field.name not in owns:
            assert getattr(after, field.name) == getattr(before, field.name), field.name
    assert all(getattr(after, name) != getattr(before, name) for name in owns), "each writer changes what it owns"


def test_reconcile_forgets_the_marks_of_the_documents_it_deleted():
    a, b, old = _mark(5, "a"), _mark(6, "b"), Mark(4, "0123456789abcdef")
    assert incremental.forget([old, a, b], iter(["b", "zz"])) == [old, a]
    assert incremental.forget([a, b], []) == [a, b]


def test_a_row_sent_unmarked_is_not_skipped_later_in_the_same_run():
    """Row x in a chunk sent unmarked (B), then again (A, its stored newest mark) in a later chunk of the run: the
    second is sent, or the index would keep B."""
    a, b = documents.index_action("x", b'{"v":"A"}'), documents.index_action("x", b'{"v":"B"}')
    _, state = _settled(JobState(watermark=5), [("x", a, 5)])
    skip = incremental.skip(state)
    first, later = chunk(0, actions=0, rejected=1), chunk(1, actions=0)
    first.actions, later.actions = [documents.Action("x", b, 0)], [documents.Action("x", a, 0)]
    first.watermark = later.watermark = 5
    incremental.settle(first, [5], [5], None, skip)
    incremental.settle(later, [5], [5], None, skip)
    assert [a.id for a in later.actions] == ["x"]


def test_a_row_whose_watermark_is_no_point_in_time_leaves_a_tombstone():
    a = documents.index_action("x", b'{"v":"A"}')
    _, state = _settled(JobState(watermark=5), [("x", a, 5)])
    c = chunk(0, actions=0)
    c.actions = [documents.Action("x", documents.index_action("x", b'{"v":"NaN"}'), 0),
                 documents.Action("y", documents.index_action("y", b"{}"), 1)]
    c.watermark = 6
    incremental.settle(c, [float("nan"), 6], [None, 6], None, incremental.skip(state))
    assert [a.id for a in c.actions] == ["x", "y"]
    assert c.marks[0] == Mark(6, incremental.row_hash("x") + incremental.TOMBSTONE)


def test_a_sync_of_another_index_starts_without_the_marks():
    state = JobState(watermark=5, marks=[_mark(5, "x")], index="t-1")
    assert incremental.for_index(state, "t-1") is state
    assert incremental.for_index(state, "t-restored").marks == [] and state.marks
