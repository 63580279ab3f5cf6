"""Drift between the source and the index: both sides' ids (and digests), compared in bounded memory, and
what repairs it.

::

    source ids (blocking: a projection of the query when it can, else whole rows through extract.Reader)
        --SortedIds--> sorted runs on disk --\
    index ids (the caller's scroll) --SortedIds--> sorted runs ---- compare() (merge-join) --> Diff:
                                                                      to_delete, to_index (spilled, sorted)
    with job.digest: (id, digest) pairs on both sides (the source's from whole documents, the
    index's from indexer_digest) --SortedPairs--> compare_content() --> Diff: also changed
    refusal() --> why writing would be unsafe (a broken view, an emptied table), or None
    write_chunks() --> the repair's chunks: deletes, then the rows of the ids to index (a second read)

Decisions (docs/reconcile.md):

* **Which ids.** Exactly a reindex's: soft-deleted rows left out, after the transform. Without a
  transform the source is read as a projection ``SELECT q.<key...>[, q.<deleted>] FROM (<query>) q``
  (far cheaper than whole rows) when every key column is a plain column of the query; otherwise
  (a transform, a dotted key) whole rows go through ``extract.Reader`` as in a reindex. A row
  without a usable id (a NULL key) is counted in ``no_id`` and left out, as a reindex rejects it.
* **Bounded memory.** Both sides are external-sorted (``spill``); one merge-join compares the two
  sorted streams and spills the differences, sorted, the same way.
* **Indexing the missing ids.** Their rows come from a second read of the source that keeps rows
  whose id is in a set of at most ``run_size`` of them; more than that takes one more read per
  ``run_size`` ids. Every occurrence of a repeated key is sent, so the row latest in source order
  wins, as in a sync.
* **Content (job.digest).** The source is read whole (a digest needs the whole document, so no
  projection), each action's digest taken from its encoded line. An id in both sides is
  ``changed`` when the index's digest is none of the source's (a repeated key may give one id
  several documents: the one the repair sends last is among them, so a repaired id compares
  unchanged), or when the document has no digest (written before digest was on): re-indexed,
  never deleted. ``changed`` ids are repaired as the missing ones are, by the second read.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from indexer import digest, documents, extract, sources, spill
from indexer.config import SQL_IDENTIFIER, Job, JobSettings
from indexer.documents import Action
from indexer.errors import RowError
from indexer.extract import Chunk, ReadPlan, user_params
from indexer.spill import SortedIds, SortedPairs

SAMPLE = 5  # ids shown of each kind


@dataclass
class Diff:
    """The comparison's outcome; the ids themselves are in the two spills."""

    to_delete: SortedIds
    to_index: SortedIds
    changed: SortedIds  # in both, their digests differ (compare_content only; else stays empty)
    unchanged: int = 0
    no_id: int = 0
    sample_to_delete: list[str] = field(default_factory=list)
    sample_to_index: list[str] = field(default_factory=list)
    sample_changed: list[str] = field(default_factory=list)

    @property
    def in_source(self) -> int:
        return self.unchanged + self.changed.added + self.to_index.added

    @property
    def in_index(self) -> int:
        return self.unchanged + self.changed.added + self.to_delete.added

    def to_write(self) -> Iterator[str]:
        """The ids whose rows the repair sends: missing from the index or changed, ascending."""
        return heapq.merge(self.to_index.sorted(), self.changed.sorted())


def compare(source_ids: Iterable[str], index_ids: Iterable[str], diff: Diff) -> Diff:
    """Merge-join two ascending streams of distinct ids into ``diff``; holds two ids at a time."""
    s, i = iter(source_ids), iter(index_ids)
    a, b = next(s, None), next(i, None)
    while a is not None or b is not None:
        if a is not None and (b is None or a < b):
            diff.to_index.append(a)
            if len(diff.sample_to_index) < SAMPLE:
                diff.sample_to_index.append(a)
            a = next(s, None)
        elif b is not None and (a is None or b < a):
            diff.to_delete.append(b)
            if len(diff.sample_to_delete) < SAMPLE:
                diff.sample_to_delete.append(b)
            b = next(i, None)
        else:
            diff.unchanged += 1
            a, b = next(s, None), next(i, None)
    return diff


def _grouped(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, set[str]]]:
    """Ascending distinct pairs -> each id once with its digests (one, but for a repeated key)."""
    for id_, group in itertools.groupby(pairs, key=itemgetter(0)):
        yield id_, {d for _, d in group}


def compare_content(source: Iterable[tuple[str, str]], index: Iterable[tuple[str, str]], diff: Diff) -> Diff:
    """Merge-join two ascending streams of ``(id, digest)`` pairs into ``diff``, ``changed`` included."""
    s, i = _grouped(source), _grouped(index)
    a, b = next(s, None), next(i, None)
    while a is not None and b is not None:
        if a[0] < b[0]:
            _note(diff.to_index, diff.sample_to_index, a[0])
            a = next(s, None)
        elif b[0] < a[0]:
            _note(diff.to_delete, diff.sample_to_delete, b[0])
            b = next(i, None)
        else:
            if (b[1] - {""}) & a[1]:
                diff.unchanged += 1
            else:
                _note(diff.changed, diff.sample_changed, a[0])
            a, b = next(s, None), next(i, None)
    for id_, _ in itertools.chain([a] if a else [], s):  # one side ended: the rest of the other
        _note(diff.to_index, diff.sample_to_index, id_)
    for id_, _ in itertools.chain([b] if b else [], i):
        _note(diff.to_delete, diff.sample_to_delete, id_)
    return diff


def _note(into: SortedIds, sample: list[str], id_: str) -> None:
    into.append(id_)
    if len(sample) < SAMPLE:
        sample.append(id_)


def refusal(settings: JobSettings, index: str, in_source: int, in_index: int, to_delete: int) -> str | None:
    """Why writing would be unsafe (a broken view, an emptied table), or None."""
    if in_index and not in_source:
        return f"the source yields no ids while {index} holds {in_index} documents"
    if in_index - to_delete < settings.min_ratio * in_index:
        return (f"{to_delete} of the {in_index} documents in {index} would be deleted, keeping fewer than "
                f"job.min_ratio = {settings.min_ratio:g} of them")
    return None


def projection(settings: JobSettings, columns: tuple[str, ...]) -> str | None:
    """The query reduced to its key (and soft-delete) columns, or None when a key is not a plain column."""
    wanted = list(dict.fromkeys([*settings.key, *([settings.deleted] if settings.deleted else [])]))
    if settings.transform or not all(c in columns and SQL_IDENTIFIER.match(c) for c in wanted):
        return None
    # bandit B608 accepted: the job's own query; the columns passed SQL_IDENTIFIER and are the query's
    return f"SELECT {', '.join(f'q.{c}' for c in wanted)} FROM ({settings.query}) q"  # nosec B608


def source_ids(job: Job, into: SortedIds | SortedPairs, stop: threading.Event) -> int:
    """Blocking: every id the query produces, into ``into`` (with their documents' digests when it is
    a ``SortedPairs``); the rows without a usable id."""
    settings, params = job.job, user_params(job)
    with sources.connect(job.source, settings.chunk_size) as conn:
        columns = sources.columns_of(conn, settings.query, params)
        extract.check_columns(settings, columns, bool(settings.transform))
        if isinstance(into, SortedPairs):
            return _ids_of_rows(job, into, stop)  # a digest needs the whole document
        sql = projection(settings, columns)
        if sql is None:
            return _ids_of_rows(job, into, stop)
        no_id = 0
        with contextlib.closing(sources.iter_row_chunks(conn, sql, params, settings.chunk_size)) as chunks:
            for description, rows in chunks:
                if stop.is_set():
                    break
                names = documents.column_names(description)
                gone = names.index(settings.deleted) if settings.deleted else None
                mapper = documents.make_row_mapper(names)
                for row in rows:
                    if gone is not None and documents.is_true(row[gone]):
                        continue
                    try:
                        into.append(documents.doc_id(mapper(row), settings.key))
                    except RowError:
                        no_id += 1
        return no_id


def _ids_of_rows(job: Job, into: SortedIds | SortedPairs, stop: threading.Event) -> int:
    """With a transform (or a dotted key, or digests): whole rows, encoded exactly as a reindex encodes them."""
    no_id = 0
    with contextlib.closing(extract.read_chunks(job, _plan(job))) as chunks:
        for chunk in chunks:
            if stop.is_set():
                break
            if isinstance(into, SortedPairs):
                into.add((action.id, digest.of_line(action.line)) for action in chunk.actions)
            else:
                into.add(action.id for action in chunk.actions)
            no_id += len(chunk.rejected)
    return no_id


def _plan(job: Job) -> ReadPlan:
    return ReadPlan(job.job.query, user_params(job), "reindex")


def write_chunks(job: Job, diff: Diff, run_size: int, passes: list[int]) -> Iterator[Chunk]:
    """Blocking: the write phase's chunks: deletes first, then the rows of the ids to index (missing
    or changed), read again from the source ``run_size`` ids at a time (``passes`` counts the reads)."""
    seq, size = itertools.count(), job.job.chunk_size
    for ids in spill.in_slices(diff.to_delete.sorted(), size):
        yield Chunk(next(seq), len(ids), [Action(i, documents.delete_action(i), -1) for i in ids], [])
    for wanted in spill.in_slices(diff.to_write(), run_size):
        wanted_set = set(wanted)
        passes.append(len(wanted))
        with contextlib.closing(extract.read_chunks(job, _plan(job))) as chunks:
            for chunk in chunks:
                kept = [action for action in chunk.actions if action.id in wanted_set]
                yield Chunk(next(seq), len(kept), kept, [])
