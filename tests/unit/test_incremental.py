"""indexer.incremental: sync's bookkeeping. The marks kept for the lookback window, the watermark advanced
over acknowledged chunks only, and every state writer keeping the fields it does not own."""

from __future__ import annotations

import dataclasses

import pytest

from indexer import documents, incremental
from indexer.state import JobState
from indexer.watermark import Mark
from tests.support.builders import chunk, every_field_set


def test_kept_marks_compare_in_the_watermarks_own_type_and_keep_the_newest(monkeypatch):
    marks = [Mark("2025-01-01 00:00:09", "a"), Mark("2025-01-01T00:00:10", "b"), Mark("2025-01-01 00:00:11", "c")]
    assert [m.fingerprint for m in incremental.kept_marks(marks, "2025-01-01 00:00:10")] == ["b", "c"]
    monkeypatch.setattr(incremental, "MAX_MARKS", 2)
    assert [m.fingerprint for m in incremental.kept_marks(marks, None)] == ["b", "c"]


def test_a_sync_advances_over_acknowledged_chunks_and_stores_nothing_when_nothing_is_new():
    state = JobState(watermark="2025-01-01 00:10:00", marks=[Mark("2025-01-01 00:09:00", "old")], index="t-1")
    advance = incremental.Advance(state, "5m")
    assert advance.add([chunk(0, actions=0, skipped=3, watermark="2025-01-01 00:09:30")]) is None
    new = advance.add([chunk(1, watermark="2025-01-01 00:20:00", marks=[Mark("2025-01-01 00:20:00", "fresh")])])
    assert new.watermark == "2025-01-01 00:20:00" and new.index == "t-1"
    assert [m.fingerprint for m in new.marks] == ["fresh"]     # "old" fell out of the window (00:15 and later)
    assert incremental.since(new, "5m") == "2025-01-01 00:15:00"
    assert incremental.skip(new) == {}    # "fresh" names no row (as marks stored by an earlier version): skips nothing


def _settled(state: JobState, rows: list[tuple[str, bytes, str]]):
    """A sync chunk of ``rows`` (id, action line, watermark) settled against ``state``'s marks: the ids sent."""
    c = chunk(0, actions=0)
    c.actions = [documents.Action(id_, line, at) for at, (id_, line, _) in enumerate(rows)]
    values = [w for _, _, w in rows]
    incremental.settle(c, values, values, None, incremental.skip(state))
    return [a.id for a in c.actions], c.marks


def test_a_mark_skips_only_its_rows_newest_write_at_the_same_watermark():
    """The soak's finding: delete, revive, delete inside the window; the second delete's line is the first's."""
    delete, revived = documents.delete_action("x"), documents.index_action("x", b'{"v":2}')
    state = JobState(watermark="t1")
    sent, marks = _settled(state, [("x", delete, "t1")])
    state = JobState(watermark="t1", marks=marks)
    assert _settled(state, [("x", delete, "t1")])[0] == []           # re-read unchanged: skipped
    sent, more = _settled(state, [("x", revived, "t2")])
    assert sent == ["x"]
    state = JobState(watermark="t2", marks=marks + more)
    assert _settled(state, [("x", delete, "t3")])[0] == ["x"]         # deleted again: sent (was skipped)
    assert _settled(state, [("x", delete, "t1")])[0] == ["x"]         # the old write is no longer the row's newest
    assert _settled(state, [("x", revived, "t2")])[0] == []


def test_other_rows_marks_do_not_hide_a_rows_newest_write():
    a, b = documents.index_action("a", b'{"v":1}'), documents.index_action("b", b'{"v":1}')
    _, marks = _settled(JobState(watermark="t1"), [("a", a, "t1"), ("b", b, "t1")])
    state = JobState(watermark="t1", marks=marks)
    assert _settled(state, [("a", a, "t1"), ("b", b, "t1")])[0] == []
    assert _settled(state, [("a", a, "t2")])[0] == ["a"]               # same line, later watermark: a new write


@pytest.mark.parametrize("writer, owns", [
    (lambda s: incremental.Advance(s, 2).add([chunk(0, watermark=12, marks=[Mark(12, "f12")])]),
     {"watermark", "marks"}),
    (lambda s: incremental.after_reindex(s, "sensors-20250202000000", 20, [Mark(20, "f20")], 18, True),
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
