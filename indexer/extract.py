"""Rows become chunks of bulk actions, in the worker thread: the extract stage of a run.

::

    probe():  the query's columns (checked against the job), its row count, MAX(watermark)
    Reader:   rows --(soft-delete flag)--> live rows --documents, transform--> index actions
                                      \\-> gone rows --> delete actions (sync) | skipped (reindex)
              watermarks --> comparable keys --> the chunk's largest, marks, dedup by fingerprint
              --> Chunk (the unit of acknowledgement), one per fetch

Each action stays with its id, its line and the document it came from (``Action.at``),
so a watermark is paired with its action by position in the chunk, never by
matching parallel lists. A transform that changes the number of documents breaks
that pairing: the chunk is then marked ``unpaired`` and its rows inside the lookback
window are resent instead of recognised (the run says so in its summary).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from indexer import assemble, digest, documents, incremental, nesting, sources, transform
from indexer import watermark as wm
from indexer.config import Job, JobSettings
from indexer.documents import Action, Rejected
from indexer.errors import ConfigError, IndexerError, SourceError
from indexer.watermark import Kind, Mark


@dataclass(frozen=True)
class Probe:
    """What the source says before a row is read."""

    total: int | None = None        # rows the query returns (for the progress bar), when asked
    source_max: Any = None          # reindex: MAX(watermark), what the run will store
    kind: Kind | None = None        # the watermark's kind (watermark.value_kind of source_max)
    child_max: dict[str, Any] = field(default_factory=dict)  # reindex: each child's MAX(watermark), by path


@dataclass(frozen=True)
class ReadPlan:
    """What to read and how to encode it; input only (what the reader finds comes back in chunks)."""

    query: str
    params: Any
    mode: str                             # "reindex" | "sync"
    kind: Kind | None = None              # the run's watermark kind: the stored one's, or the source max's
    keep_from: Any = None                 # remember fingerprints of rows with watermark >= this
    skip: incremental.Skip = field(default_factory=dict)  # rows already indexed: newest marks (sync)
    versioned: bool = False               # reindex --allow-duplicates: actions versioned in source order
    bounds: tuple[Any, Any, bool] | None = None  # a partitioned reindex's slice (lo, hi, nulls): children's too
    by_keys: bool = False                 # children by key lists for each fetch, not merged streams (preview)


@dataclass
class Chunk:
    """One fetch of source rows, encoded."""

    seq: int
    rows_read: int
    actions: list[Action]
    rejected: list[Rejected]
    skipped: int = 0                     # rows left out: soft-deleted (reindex), or already indexed unchanged
    watermark: Any = None                # the largest watermark among this chunk's rows
    marks: list[Mark] = field(default_factory=list)  # fresh actions inside the lookback window
    null_watermarks: int = 0             # reindex: rows indexed whose watermark is NULL or unusable
    odd_watermark: str | None = None     # reindex: the first unusable (not NULL) watermark, described
    unpaired: bool = False               # a transform changed the document count: no lookback dedup
    child_rows: int = 0                  # nested documents: child rows read into this chunk's documents
    orphans: int = 0                     # child rows whose parent the parent query did not return (merge)
    child_watermarks: dict[str, Any] = field(default_factory=dict)  # sync: a child's rows read up to these
    child_marks: dict[str, list[Mark]] = field(default_factory=dict)  # sync: their marks (child_sync)


def user_params(job: Job) -> Any:
    """The job's own parameters, in its driver's shape (only those its query binds)."""
    return sources.dialect(job.source.dbtype).params(job.job.params, job.job.query)


def sync_query(job: Job) -> str:
    """The incremental query: the job's own ``sync_query``, or the query wrapped to read rows whose
    watermark is at or after ``since`` (always a bind parameter), in watermark order."""
    settings = job.job
    if settings.sync_query:
        return settings.sync_query
    if settings.watermark is None:
        raise ConfigError("sync needs job.watermark (the column that grows when a row changes)")
    return sources.dialect(job.source.dbtype).sync_query(settings.query, settings.watermark)


def check_columns(settings: JobSettings, columns: tuple[str, ...], has_transform: bool) -> None:
    """The job's columns must be in the query's result: checked before any other query runs."""
    for name, what in ((settings.watermark, "job.watermark"), (settings.deleted, "job.deleted")):
        if name and name not in columns:
            raise ConfigError(f"{what}: column {name!r} is not among the query's columns ({', '.join(columns)})")
    documents.check_key_columns(columns, settings.key, has_transform)
    if settings.digest_on and not has_transform and digest.FIELD in {c.split(".")[0] for c in columns}:
        raise ConfigError(f"the query returns column {digest.FIELD!r}, the field job.digest stores each document's "
                          "digest in: rename it in the query, or set job.digest = false")


def probe(job: Job, plan: ReadPlan, *, count: bool) -> Probe:
    """Blocking: check the job's columns, then count the plan's rows and, for a reindex with a
    watermark, read MAX(watermark) before any row is read (changes made meanwhile are the next sync's)."""
    settings = job.job
    what = "job.sync_query" if plan.mode == "sync" and settings.sync_query else "job.query"
    with sources.connect(job.source, settings.chunk_size) as conn:
        columns = sources.columns_of(conn, settings.query, user_params(job))
        check_columns(settings, columns, bool(settings.transform))
        if settings.children:
            assemble.check_columns(job, conn, columns)
        total = sources.count_rows(conn, plan.query, plan.params, what) if count else None
        if plan.mode != "reindex" or not settings.watermark:
            return Probe(total)
        # the largest value that is a point in time: PostgreSQL's infinity sorts above every timestamp
        top = sources.usable_extreme(conn, settings.query, user_params(job), settings.watermark, "MAX", _is_point)
        # each child's too, before any row is read: what changes meanwhile is the next sync's
        child_max = {d.path: sources.usable_extreme(conn, d.child.query, assemble.params(job, d.child.query),
                                                    d.child.watermark, "MAX", _is_point, assemble.what(d.path))
                     for d in assemble.descendants(job) if d.child.watermark}
    try:
        kind = wm.value_kind(top) if top is not None else None
    except wm.WatermarkValueError:
        kind = None  # an odd maximum: the rows decide the kind
    return Probe(total, top if kind else None, kind, child_max)


def _why_unusable(value: Any) -> str:
    try:
        wm.value_kind(value)
    except wm.WatermarkValueError as exc:
        return exc.reason
    return "unusable value"


def _is_point(value: Any) -> bool:
    try:
        wm.value_kind(value)
    except wm.NotAPointError:
        return False
    except wm.WatermarkValueError:
        return True  # another kind of odd value: probe() says so, the rows decide
    return True


def _unset(row: Any) -> dict:
    raise AssertionError("the row mapper is set at the first fetch")


class Reader:
    """One run's rows, read and encoded chunk by chunk (in the worker thread)."""

    def __init__(self, job: Job, plan: ReadPlan) -> None:
        self.job, self.settings, self.plan = job, job.job, plan
        self.transform = transform.load(self.settings.transform, job.base_dir) if self.settings.transform else None
        self.kind = plan.kind
        self.floor = wm.keys_of([plan.keep_from], plan.kind)[0] if plan.keep_from is not None else None
        self.skip = dict(plan.skip)  # this run's own: a row met is taken out (incremental.settle)
        self.last_key: Any = None  # sync: the last watermark key, to check the query's order
        self.mapper: Callable[[Any], dict] = _unset  # set by _columns() at the first fetch
        self.w_at: int | None = None
        self.d_at: int | None = None
        self.key_at: list[int] = []  # with children: the key's columns in the parent rows
        self.rows_per_parent = 1 + len(self.settings.descendants())  # key lists: rows a parent brings, as seen
        self.tally = nesting.Tally()

    def chunks(self) -> Generator[Chunk, None, None]:
        settings, plan = self.settings, self.plan
        what = "job.sync_query" if plan.mode == "sync" and settings.sync_query else "job.query"
        row_number = 0
        with contextlib.ExitStack() as stack:  # closed in reverse: every cursor before its connection
            conn = stack.enter_context(sources.connect(self.job.source, settings.chunk_size))
            query, merged, keyed = plan.query, None, None
            if settings.children and plan.mode == "reindex" and not plan.by_keys:  # every parent: one merge
                assemble.check_columns(self.job, conn, sources.columns_of(conn, settings.query, user_params(self.job)))
                query = assemble.parent_query(self.job, conn, plan.query, plan.params)
                merged = assemble.Merged(self.job, stack, plan.bounds)
                self.tally = merged.tally
            elif settings.children:  # some parents: their children by key lists, beside the open cursor
                keyed = stack.enter_context(sources.connect(self.job.source, settings.chunk_size))
            rows_of = stack.enter_context(contextlib.closing(
                sources.iter_row_chunks(conn, query, plan.params, settings.chunk_size, what)))
            seq = 0
            for description, rows in rows_of:
                if self.mapper is _unset:
                    self._columns(documents.column_names(description))
                families = merged.families(map(self.key_of, rows)) if merged is not None \
                    else self._by_keys(keyed, rows) if keyed is not None else None
                if families is not None:
                    pieces = nesting.pieces(families, len(rows), settings.chunk_size, self.tally)
                    for start, end, got, child_rows, orphans in pieces:
                        chunk = self.encode(rows[start:end], seq, row_number + start, got)
                        chunk.child_rows, chunk.orphans = child_rows, orphans
                        seq += 1
                        yield chunk
                else:
                    yield self.encode(rows, seq, row_number)
                    seq += 1
                row_number += len(rows)
            if merged is not None and (left := merged.rest()):  # child rows past the last parent: counted
                yield Chunk(seq, 0, [], [], orphans=left)

    def key_of(self, row: Any) -> tuple:
        return tuple(row[i] for i in self.key_at)

    def _by_keys(self, conn: sources.Connection, rows: list) -> Iterator[assemble.Family]:
        """The family of each parent row, in order, read by key lists on ``conn`` (a key with a NULL: none), for
        batches of parents sized to bring about ``chunk_size`` rows each (from the rows per parent seen so far)."""
        keys = [self.key_of(row) for row in rows]
        start = 0
        while start < len(keys):
            batch = keys[start:start + max(1, self.settings.chunk_size // self.rows_per_parent)]
            found, sizes = assemble.by_keys(self.job, conn, [k for k in batch if None not in k], nesting.Tally())
            self.rows_per_parent = max(1, -(-sum(sizes.values()) // len(batch)) + 1)
            for key in batch:  # each family's rows counted as it is handed on: the pieces measure them
                if None in key:
                    yield {}, None
                    continue
                self.tally.child_rows += sizes[key]
                yield found[key]
            start += len(batch)

    def rewrite(self, conn: sources.Connection, keys: list[tuple], seq: int) -> Iterator[Chunk]:
        """The whole documents of the parents of ``keys`` (a sync's, for a child that changed), read by key
        lists on ``conn``, in chunks numbered from ``seq`` whose parent watermarks are left alone (``child_sync``)."""
        rows: list = []
        for description, found in sources.rows_by_keys(conn, self.settings.query, user_params(self.job),
                                                       self.settings.key, keys, "job.query"):
            if self.mapper is _unset:
                self._columns(documents.column_names(description))
            rows.extend(found)
        pieces = nesting.pieces(self._by_keys(conn, rows), len(rows), self.settings.chunk_size, self.tally)
        for start, end, got, child_rows, orphans in pieces:
            chunk = self.encode(rows[start:end], seq, start, got, watermarks=False)
            chunk.child_rows, chunk.orphans = child_rows, orphans
            seq += 1
            yield chunk

    def _columns(self, columns: tuple[str, ...]) -> None:
        self.mapper = documents.make_row_mapper(columns)
        self.w_at = columns.index(self.settings.watermark) if self.settings.watermark else None
        self.d_at = columns.index(self.settings.deleted) if self.settings.deleted else None
        if self.settings.children:
            self.key_at = [columns.index(c) for c in self.settings.key]

    def encode(self, rows: list, seq: int, first_row: int, families: list[assemble.Family] | None = None,
               watermarks: bool = True) -> Chunk:
        """One fetch of rows -> one chunk: index actions for live rows, deletes (sync) for gone ones; with
        ``families`` (nested documents), each live row's children join its document before the transform, and a
        row whose family is a problem (``many = false`` with two rows) is rejected, naming it."""
        settings, mapper = self.settings, self.mapper
        live_at: list[int] | range = range(len(rows))
        gone_at: list[int] = []
        if self.d_at is not None:
            flags = [documents.is_true(r[self.d_at]) for r in rows]
            if any(flags):
                live_at = [i for i, gone in enumerate(flags) if not gone]
                gone_at = [i for i, gone in enumerate(flags) if gone]
        bad = {i: problem for i in live_at if (problem := families[i][1])} if families else {}
        if bad:
            live_at = [i for i in live_at if i not in bad]
        remapped = bool(gone_at or bad)
        docs = list(map(mapper, rows)) if not remapped else [mapper(rows[i]) for i in live_at]
        if self.d_at is not None:
            for doc in docs:
                doc.pop(settings.deleted, None)  # the flag decides; it is not part of the document
        if families:
            for doc, i in zip(docs, live_at, strict=True):
                doc.update(families[i][0])
        if self.transform is not None:
            docs = transform.apply(self.transform, docs)
        paired = len(docs) == len(live_at)
        version_base = (seq + 1) << 32 if self.plan.versioned else None
        encoded = documents.encode_chunk(docs, settings.key, first_row=first_row, version_base=version_base,
                                         digest=settings.digest_on)
        # Action.at: the row in ``rows`` each action came from (-1 when a transform decided).
        actions = [a._replace(at=live_at[a.at] if paired else -1) for a in encoded.actions] if remapped or not paired \
            else encoded.actions
        rejected = encoded.rejected
        if remapped and paired:  # row numbers count every row read, soft-deleted ones included
            rejected = [r._replace(row=first_row + live_at[r.row - first_row]) for r in rejected]
        rejected += [Rejected(first_row + i, problem, mapper(rows[i])) for i, problem in bad.items()]
        chunk = Chunk(seq, len(rows), actions, rejected, unpaired=not paired)
        if self.plan.mode == "reindex":
            chunk.skipped += len(gone_at)  # a reindex leaves soft-deleted rows out
        elif gone_at:
            self._deletes(chunk, rows, gone_at, first_row, families)
        if self.w_at is not None and watermarks:
            values = [r[self.w_at] for r in rows]
            self._watermarks(chunk, values, self._keys(chunk, values, rows, first_row))
        return chunk

    def _deletes(self, chunk: Chunk, rows: list, gone_at: list[int], first_row: int,
                 families: list[assemble.Family] | None = None) -> None:
        gone = [self.mapper(rows[i]) for i in gone_at]
        if families:  # the transform sees documents of one shape, gone or not
            for doc, i in zip(gone, gone_at, strict=True):
                doc.update(families[i][0])
        if self.transform is not None:
            gone = transform.apply(self.transform, gone)  # only to derive the ids the transform gives
        paired = len(gone) == len(gone_at)
        chunk.unpaired = chunk.unpaired or not paired
        for n, doc in enumerate(gone):
            at = gone_at[n] if paired else -1
            try:
                id_ = documents.doc_id(doc, self.settings.key)
            except IndexerError as exc:
                chunk.rejected.append(Rejected(first_row + (at if paired else 0), str(exc), doc))
                continue
            chunk.actions.append(Action(id_, documents.delete_action(id_), at))

    def _keys(self, chunk: Chunk, values: list, rows: list, first_row: int) -> list:
        """Comparable keys of the chunk's watermarks (None for NULL, and for a value that is no point in time).

        A reindex indexes rows whose watermark is NULL or cannot be compared, counting them
        (sync cannot see changes to them). A sync indexes a row whose watermark is no point in time
        (``watermark.NotAPointError``: infinity, NaN...) and counts it, never storing that value; it stops at
        any other value it cannot compare, naming the row and its key.
        """
        settings = self.settings
        sync = self.plan.mode == "sync"

        def where(i: int) -> str:
            try:
                key = documents.doc_id(self.mapper(rows[i]), settings.key)
            except IndexerError:
                key = "?"
            return f"row {first_row + i + 1} (key {key!r})"

        def refuse(i: int, reason: str) -> SourceError:
            return SourceError(f"{where(i)}: job.watermark column {settings.watermark!r}: {reason}")

        if self.kind is None:
            self.kind = self._first_kind(values)
        if self.kind is None:  # every value NULL or unusable so far
            keys = [None] * len(values)
        else:
            try:
                keys = wm.keys_of(values, self.kind)
            except wm.WatermarkValueError:
                keys = []
                for i, value in enumerate(values):
                    try:
                        keys.append(wm.keys_of([value], self.kind)[0])
                    except wm.WatermarkValueError as one:
                        if sync and not isinstance(one, wm.NotAPointError):
                            raise refuse(i, one.reason) from one
                        keys.append(None)
                        chunk.odd_watermark = chunk.odd_watermark or f"{where(i)}: {one.reason}"
        if sync:
            if any(k is None and v is None for k, v in zip(keys, values, strict=True)):
                i = next(i for i, v in enumerate(values) if v is None)
                raise refuse(i, "NULL (job.sync_query must leave out rows whose watermark is NULL)")
        elif chunk.odd_watermark is None and self.kind is None:
            odd = next((i for i, value in enumerate(values) if value is not None), None)
            if odd is not None:
                chunk.odd_watermark = f"{where(odd)}: {_why_unusable(values[odd])}"
        chunk.null_watermarks += keys.count(None)
        return keys

    def _first_kind(self, values: list) -> Kind | None:
        """The kind of the first value that is usable (a sync knows it from the stored watermark)."""
        for value in values:
            if value is None:
                continue
            try:
                return wm.value_kind(value)
            except wm.WatermarkValueError:
                continue
        return None

    def _watermarks(self, chunk: Chunk, values: list, keys: list) -> None:
        """Record the chunk's largest watermark (a sync: checking the query's order); then the boundary
        dedup and the marks of the lookback window, which are ``incremental``'s."""
        present = [i for i, k in enumerate(keys) if k is not None]
        if not present:
            return
        if self.plan.mode == "sync":  # in order, leaving out the values that are no point in time
            ordered = [keys[i] for i in present]
            last = self.last_key
            backwards = any(b < a for a, b in zip(ordered, ordered[1:], strict=False))
            if (last is not None and ordered[0] < last) or backwards:
                raise ConfigError("the sync query must return rows ORDER BY the watermark column (job.sync_query)")
            self.last_key = ordered[-1]
        chunk.watermark = values[max(present, key=keys.__getitem__)]
        incremental.settle(chunk, values, keys, self.floor, self.skip)


def read_chunks(job: Job, plan: ReadPlan) -> Generator[Chunk, None, None]:
    """The run's chunks (blocking; run it in the worker thread)."""
    return Reader(job, plan).chunks()
