"""The run's bookkeeping without a cluster: Counts, Acks, the error budget, and sync's watermark and marks."""

from __future__ import annotations

import pytest

from indexer import incremental
from indexer.config import JobSettings
from indexer.documents import Action, Rejected
from indexer.errors import VerificationError
from indexer.extract import Chunk
from indexer.counts import Answers, Counts, Failure
from indexer.sink import Acks, check_error_budget
from indexer.state import JobState
from indexer.watermark import Mark


def chunk(seq, actions=1, rejected=0, skipped=0, watermark=None, marks=()):
    return Chunk(seq, actions + rejected + skipped, [Action(f"{seq}-{i}", b"x\n", i) for i in range(actions)],
                 [Rejected(seq * 10 + i, "NULL key", None) for i in range(rejected)], skipped=skipped,
                 watermark=watermark, marks=list(marks))


def settings(**extra) -> JobSettings:
    return JobSettings(alias="t", key=["id"], query="SELECT 1", **extra)


def test_counts_add_up_as_the_readme_says():
    counts = Counts()
    counts.add(chunk(0, actions=4, rejected=1, skipped=2),
               Answers(indexed=2, duplicates=1, failed=[Failure("0-3", 400, "mapper_parsing_exception", "")],
                       retried=3, bulk_requests=2, duplicate_ids=["0-1"]))
    counts.add(chunk(1, actions=2), Answers(deleted=1, not_found=1, bulk_requests=1))
    n = counts.numbers()
    assert n["rows_read"] == n["documents"] == n["skipped"] + n["rejected"] + n["sent"] == 9
    assert n["sent"] == n["indexed"] + n["duplicates"] + n["deleted"] + n["not_found"] + n["failed"]
    assert n["dead_lettered"] == n["rejected"] + n["failed"] == 2
    assert (n["retried"], n["bulk_requests"], counts.answers.duplicate_ids) == (3, 3, ["0-1"])


def test_a_new_counter_is_added_up_named_and_stored_without_another_change(monkeypatch):
    """A counter is one field: add(), merge(), numbers() and the stored run record go over the fields."""
    import dataclasses

    from indexer import counts as counting
    from indexer.state import RunRecord

    @dataclasses.dataclass
    class More(counting.Answers):
        routed: int = 0

    total = Counts(answers=More())
    total.add(chunk(0, actions=1), More(indexed=1, routed=2))
    other = Counts(answers=More(routed=3))
    total.merge(other)
    assert total.numbers()["routed"] == 5
    record = RunRecord("sync", "s", counts=total.numbers())
    assert RunRecord.from_dict(record.as_dict()).counts["routed"] == 5


def test_acks_release_chunks_in_source_order_only():
    acks = Acks()
    assert acks.done(chunk(1)) == [] and acks.done(chunk(2)) == []
    assert [c.seq for c in acks.done(chunk(0))] == [0, 1, 2]
    assert [c.seq for c in acks.done(chunk(3))] == [3]


def test_while_streaming_the_rate_waits_for_a_thousand_rows_but_max_errors_does_not():
    counts = Counts()
    counts.add(chunk(0, actions=0, rejected=5), Answers())
    check_error_budget(settings(), counts)                     # 5 of 5 rows, but only 5 rows read so far
    with pytest.raises(VerificationError, match=r"5 document\(s\) failed for good in 5 rows, over job.max_error_rate"):
        check_error_budget(settings(), counts, final=True)      # at the end the rate counts, whatever the size
    with pytest.raises(VerificationError, match=r"over job.max_errors = 4 \(first: row 1: NULL key\)"):
        check_error_budget(settings(max_errors=4), counts)


def test_a_run_within_budget_passes_at_the_end_too():
    counts = Counts()
    counts.add(chunk(0, actions=999, rejected=1), Answers(indexed=999))
    check_error_budget(settings(max_error_rate=0.01), counts, final=True)


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


def test_documents_and_rows_are_counted_apart_when_a_transform_changes_their_number():
    """A transform returning two documents a row broke the sums ("3430 documents failed in 1715 rows")."""
    doubled = Chunk(0, 3, [Action(f"d{i}", b"x\n", -1) for i in range(5)], [Rejected(0, "NaN", None)], unpaired=True)
    counts = Counts()
    counts.add(doubled, Answers(indexed=5))
    assert (counts.rows_read, counts.documents) == (3, 6)
    assert counts.documents == counts.skipped + len(counts.rejected) + counts.sent
    with pytest.raises(VerificationError, match=r"^1 document\(s\) failed for good in 6 documents \(from 3 rows\)"):
        check_error_budget(settings(max_error_rate=0.1), counts, final=True)
