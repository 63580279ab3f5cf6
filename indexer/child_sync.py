"""Sync of nested documents: the parents whose children changed, rewritten whole (after the parent's own pass).

::

    JobState.children[path] (watermark, marks) --plans()--> per child: its sync query, since = watermark - lookback
    chunks(): each child's changed rows, a fetch at a time, in watermark order
        --> rows already seen unchanged (their newest mark: same watermark, same row) left out
        --> the root keys of the rest (every descendant's rows carry their document's key)
        --> extract.Reader.rewrite: those parents and all their children, by key lists --> one Chunk
            carrying the child's largest watermark read and its marks (``child_watermarks``, ``child_marks``)
    incremental.Advance moves a child's watermark and marks only with that chunk's acknowledgement, in order.

Decisions (docs/nested.md, "Sync"): a parent whose row is soft-deleted gives a delete, one that is gone gives
nothing (reconcile's); a child's marks follow issue 19's rules for rows (a fingerprint starts with the child row's
hash; only each row's newest mark counts; a chunk whose documents were not all written leaves tombstones, so its
rows are read again). A child hard-deleted leaves its parent stale until ``reconcile`` compares digests.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from indexer import assemble, documents, extract, incremental, sources
from indexer import watermark as wm
from indexer.assemble import Descendant
from indexer.config import Job
from indexer.errors import ConfigError, IndexerError, SourceError
from indexer.extract import Chunk, ReadPlan, user_params
from indexer.incremental import ROW, TOMBSTONE, Skip
from indexer.sources.base import SINCE
from indexer.state import JobState
from indexer.watermark import Kind, Mark


@dataclass(frozen=True)
class ChildPlan:
    """What one child's pass reads: its changed rows since its stored watermark minus its lookback."""

    descendant: Descendant
    sql: str
    params: Any
    kind: Kind | None      # None: nothing stored yet (the child's first value decides)
    skip: Skip


def lookbacks(job: Job) -> dict[str, Any]:
    """Each child's lookback, by path (its own, else the job's)."""
    return {d.path: d.child.lookback if d.child.lookback is not None else job.job.lookback
            for d in assemble.descendants(job)}


def plans(job: Job, state: JobState) -> list[ChildPlan]:
    """One plan per child, parents before their children; refused when a child has no stored watermark (a
    child added since the last reindex, or a state written by a version without children)."""
    db, alias, windows = sources.dialect(job.source.dbtype), job.job.alias, lookbacks(job)
    made = []
    for d in assemble.descendants(job):
        stored = state.children.get(d.path)
        if d.child.watermark is None or stored is None:
            raise ConfigError(f"no watermark is stored for child {d.path!r} of alias {alias!r}: run `indexer "
                              "reindex` (it records where sync starts for every child)")
        if stored.watermark is None:  # the child had no row (with a watermark) at the reindex: read them all
            sql = db.ordered_query(d.child.query, [d.child.watermark], [d.child.watermark], set())
            made.append(ChildPlan(d, sql, assemble.params(job, sql), None, {}))
            continue
        try:
            kind = wm.value_kind(stored.watermark)
        except wm.WatermarkValueError as exc:
            raise ConfigError(f"the stored watermark of child {d.path!r}: {exc.reason}: run `indexer "
                              "reindex`") from None
        sql = db.sync_query(d.child.query, d.child.watermark)
        since = wm.minus(stored.watermark, windows[d.path])
        made.append(ChildPlan(d, sql, db.params({**job.job.params, SINCE: since}, sql), kind,
                              incremental.skip_of(stored.marks, kind)))
    return made


def _fingerprint(row: dict, key: list[str]) -> str:
    """A child row's: its key's hash, then its whole content's (its deleted flag included); a row whose content
    cannot be encoded gets one that never matches."""
    id_ = "\x1f".join(repr(row[c]) for c in key)
    try:
        content = hashlib.blake2b(documents.dumps(row), digest_size=8).hexdigest()
    except IndexerError:
        content = TOMBSTONE
    return incremental.row_hash(id_) + content


def chunks(job: Job, child_plans: list[ChildPlan], first_seq: int) -> Generator[Chunk, None, None]:
    """Blocking: the chunks of rewritten documents, one per fetch of changed child rows, numbered on from
    ``first_seq`` (after the parent's own chunks)."""
    settings = job.job
    reader = extract.Reader(job, ReadPlan(settings.query, user_params(job), "sync"))
    seq = first_seq
    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(sources.connect(job.source, settings.chunk_size))
        keyed = stack.enter_context(sources.connect(job.source, settings.chunk_size))
        for plan in child_plans:
            child, path = plan.descendant.child, plan.descendant.path
            skip, kind = dict(plan.skip), plan.kind
            last: Any = None
            rows_of = stack.enter_context(contextlib.closing(sources.iter_row_chunks(
                conn, plan.sql, plan.params, settings.chunk_size, assemble.what(path))))
            for description, rows in rows_of:
                mapper = documents.make_row_mapper(documents.column_names(description))
                found = list(map(mapper, rows))
                values = [row[child.watermark] for row in found]
                kind = kind or _first_kind(values)
                keys: list = _keys(values, kind, path) if kind else [None] * len(values)
                present = [k for k in keys if k is not None]
                if present and ((last is not None and present[0] < last) or present != sorted(present)):
                    raise SourceError(f"{assemble.what(path)}: the sync query's rows are not in watermark order")
                last = present[-1] if present else last
                marks, roots = [], set()
                for row, value, k in zip(found, values, keys, strict=True):
                    fp = _fingerprint(row, child.key)
                    if k is not None and skip.pop(fp[:ROW], None) == (k, fp):
                        continue  # this row as it was when its document was last written
                    root = tuple(row[c] for c in plan.descendant.root)
                    if None not in root:
                        roots.add(root)
                    if k is not None:
                        marks.append(Mark(value, fp))
                made = reader.rewrite(keyed, sorted(roots), seq) if roots else iter([Chunk(seq, 0, [], [])])
                chunk, unwritten = next(made), False
                for following in made:  # one chunk held back: the last carries the child's watermark
                    unwritten = unwritten or bool(chunk.rejected) or chunk.unpaired
                    yield chunk
                    chunk = following
                if unwritten or chunk.rejected or chunk.unpaired:  # not every document written: read them again
                    marks = [Mark(m.value, m.fingerprint[:ROW] + TOMBSTONE) for m in marks]
                top = max((i for i, k in enumerate(keys) if k is not None), key=keys.__getitem__, default=None)
                if top is not None:
                    chunk.child_watermarks[path] = values[top]
                    chunk.child_marks[path] = marks
                yield chunk
                seq = chunk.seq + 1


def _first_kind(values: list) -> Kind | None:
    """The kind of the first value that is a point in time (a child read from its start)."""
    for value in values:
        with contextlib.suppress(wm.WatermarkValueError):
            if value is not None:
                return wm.value_kind(value)
    return None


def _keys(values: list, kind: Kind, path: str) -> list:
    """Comparable keys of a child's watermarks; None for a value that is no point in time (its row is rewritten
    every pass, never stored as the watermark); a value of another kind stops the run, naming the child."""
    try:
        return wm.keys_of(values, kind)
    except wm.WatermarkValueError:
        keys = []
        for value in values:
            try:
                keys.append(wm.keys_of([value], kind)[0])
            except wm.NotAPointError:
                keys.append(None)
            except wm.WatermarkValueError as exc:
                raise SourceError(f"{assemble.what(path)}: watermark column: {exc.reason}") from None
        return keys
