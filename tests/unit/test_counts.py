"""indexer.counts: what a run's chunks held and what the cluster answered, added up in one place. The sums
docs/running.md states, a new counter carried everywhere by being one field, slices' counts merged."""

from __future__ import annotations

from indexer.counts import Answers, Counts, Failure
from tests.support.builders import chunk, doubled_chunk


def test_counts_add_up_as_docs_running_says():
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


def test_a_new_counter_is_added_up_named_and_stored_without_another_change():
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


def test_documents_and_rows_are_counted_apart_when_a_transform_changes_their_number():
    """A transform returning two documents a row broke the sums ("3430 documents failed in 1715 rows")."""
    counts = Counts()
    counts.add(doubled_chunk(), Answers(indexed=5))
    assert (counts.rows_read, counts.documents) == (3, 6)
    assert counts.documents == counts.skipped + len(counts.rejected) + counts.sent


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
