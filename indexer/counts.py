"""Counting: what a run's chunks held and what the cluster answered, added up in one place. Pure.

::

    Sender --Answers (one chunk's items: indexed, duplicates, deleted, ...)--> Counts.add(chunk, answers)
    slices' Counts --Counts.merge()--> the run's Counts
    Counts.numbers() --> every counter by name: the summary's JSON, the stored run record, the one-line summary

A new counter is one field: of ``Answers`` when the cluster's answer says it, of ``Counts`` when the
rows do. ``add``, ``merge`` and ``numbers`` go over the fields, so nothing else changes but the printer
(``terminal``), which decides where a person sees it. The sums (docs/running.md):
``documents = skipped + rejected + sent``, ``sent = indexed + duplicates + deleted + not_found + failed``,
``dead_lettered = rejected + failed``; ``documents`` is ``rows_read`` unless a transform changed the
number of documents.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from indexer.documents import Rejected
from indexer.errors import VerificationError

if TYPE_CHECKING:  # a chunk is counted here; extract makes it (and imports nothing of this module)
    from indexer.extract import Chunk

DUPLICATE_SAMPLE = 5  # duplicate ids kept for the error message


@dataclass
class Failure:
    """A document that failed for good; ``line`` is its bulk action (for the dead-letter file)."""

    id: str
    status: int
    type: str
    reason: str
    line: bytes = b""


def _numeric(obj: object) -> list[str]:
    return [f.name for f in dataclasses.fields(obj) if f.type in ("int", int)]  # type: ignore[arg-type]


def _sample(into: list[str], more: list[str]) -> None:
    into.extend(more[:DUPLICATE_SAMPLE - len(into)])


@dataclass
class Answers:
    """What the cluster answered for some actions, item by item (``sink.Sender`` counts them)."""

    indexed: int = 0        # created, or updated in a live index
    duplicates: int = 0     # fresh index: a second row of a key (updated), or an older one refused (409, versioned)
    deleted: int = 0
    not_found: int = 0      # deletes of documents that were already absent
    retried: int = 0        # item resends
    bulk_requests: int = 0  # bulk requests made
    failed: list[Failure] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)  # a sample, for the error message

    def merge(self, other: Answers) -> None:
        for name in _numeric(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failed.extend(other.failed)
        _sample(self.duplicate_ids, other.duplicate_ids)

    def settle(self, in_index: int) -> None:
        """A reindex's duplicates as the fresh index counts them, not as the answers said.

        Every action answered 2xx (created or updated) is in the index unless a later one with the same
        key replaced it. An ``updated`` answer is not always a second row of a key: the engine replays a
        shard's items on the new primary when the old one is lost mid-write, and a rerun slice's answers
        echo its failed attempt. So duplicates = written - held, never more than the answers called
        duplicates (fewer documents than that: some were lost) and never negative (more documents than
        written: rows changed between a slice's attempts); either is a VerificationError."""
        written = self.indexed + self.duplicates
        if in_index > written:
            raise VerificationError(f"the new index holds {in_index} documents but {written} were written: "
                                    "rows changed between a slice's attempts; alias not changed")
        if written - in_index > self.duplicates:
            raise VerificationError(f"the new index holds {in_index} documents but {written - self.duplicates} "
                                    "distinct keys were written; alias not changed")
        self.duplicates, self.indexed = written - in_index, in_index


@dataclass
class Counts:
    """Everything a run counts: what its chunks held (rows read, skipped, rejected, sent) and what the
    cluster answered for them (``answers``)."""

    rows_read: int = 0
    skipped: int = 0        # left out: soft-deleted (reindex), or already indexed unchanged (sync)
    sent: int = 0           # actions sent
    rejected: list[Rejected] = field(default_factory=list)  # rows that could not become a document
    answers: Answers = field(default_factory=Answers)

    def add(self, chunk: Chunk, answers: Answers) -> None:
        """One chunk, and what the cluster answered for its actions."""
        self.rows_read += chunk.rows_read
        self.skipped += chunk.skipped
        self.sent += len(chunk.actions)
        self.rejected.extend(chunk.rejected)
        self.answers.merge(answers)

    def merge(self, other: Counts) -> None:
        """Another run's counts added to these (a partitioned reindex adds up its slices')."""
        for name in _numeric(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.extend(other.rejected)
        self.answers.merge(other.answers)

    @property
    def documents(self) -> int:
        """The documents the run's rows became (soft-deleted rows left out of a reindex count one each)."""
        return self.skipped + len(self.rejected) + self.sent

    @property
    def dead_lettered(self) -> int:
        """Documents that went to the dead-letter file: rows rejected and documents that failed for good."""
        return len(self.rejected) + len(self.answers.failed)

    def numbers(self) -> dict[str, int]:
        """Every counter by name, in reading order: the summary's and the run record's numbers."""
        answers = self.answers
        return {**{name: getattr(self, name) for name in _numeric(self)}, "documents": self.documents,
                "rejected": len(self.rejected), **{name: getattr(answers, name) for name in _numeric(answers)},
                "failed": len(answers.failed), "dead_lettered": self.dead_lettered}
