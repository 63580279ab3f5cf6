"""indexer.incremental: sync's bookkeeping. The marks kept for the lookback window, the watermark advanced
over acknowledged chunks only, and every state writer keeping the fields it does not own."""

from __future__ import annotations

import dataclasses

import pytest

from indexer import incremental
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
    assert incremental.skip(new) == frozenset({"fresh"})


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
