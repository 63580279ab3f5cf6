"""The commands as compositions of the stages; the CLI calls only this module.

::

    bootstrap: mappings/ -> templates -> Engine (component templates, then index templates)
    reindex:   Job -> read (thread) -> documents -> ThreadFeed -> Sender x N -> fresh index
               -> restore settings, refresh, verify -> one atomic _aliases call -> drop old indices -> state
    sync:      Job -> read rows with watermark >= stored - lookback (thread) -> index/delete actions
               -> ThreadFeed -> Sender x N -> the alias -> state after every acknowledged chunk
    status:    state + alias count + source count

A reindex never touches the alias until the new index is complete and verified;
on any failure its own index is deleted, and an index left by a killed run is
deleted by the next run. A sync advances the stored watermark only over chunks
whose every action was acknowledged, in source order.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from indexer import documents, source
from indexer import watermark as wm
from indexer.bridge import ThreadFeed
from indexer.config import DEFAULT_QUEUE_CHUNKS, ERROR_RATE_MIN_ROWS, Job, JobSettings, TargetConfig, load_transform, utc_now
from indexer.deadletter import DeadLetters
from indexer.engine import Engine, open_engine
from indexer.errors import ConfigError, EngineError, IndexerError, SourceError, VerificationError
from indexer.sink import RetryPolicy, Sender, Tally, scrub
from indexer.state import ClusterState, FileState, Lease, StateStore
from indexer.templates import TemplateFile, diff, load_templates, normalise

log = logging.getLogger(__name__)
Progress = Callable[[str, Any], None]  # (event, value): ("total", n) / ("sent", tally)
LOAD_SETTINGS = {"index": {"refresh_interval": "-1", "number_of_replicas": 0}}
MAX_MARKS = 20_000  # fingerprints kept for the lookback window; beyond this, rows are simply resent


# ------------------------------------------------------------------ bootstrap


@dataclass
class TemplateChange:
    kind: str
    name: str
    action: str  # created | updated | unchanged
    diff: str = ""


async def bootstrap(target: TargetConfig, mappings: Path, *, write: bool = True) -> list[TemplateChange]:
    """Install (or, with ``write=False``, only compare) every template file; component templates first.

    The files are read and validated before the first request.
    """
    templates = load_templates(mappings)
    engine = await open_engine(target)
    try:
        return await _bootstrap(engine, templates, write)
    finally:
        await engine.close()


async def _bootstrap(engine: Engine, templates: list[TemplateFile], write: bool) -> list[TemplateChange]:
    changes = []
    for tpl in templates:
        installed = await engine.get_template(tpl.kind, tpl.name)
        if installed is None:
            action = "created"
        elif normalise(installed) == normalise(tpl.body):
            action = "unchanged"
        else:
            action = "updated"
        if write and action != "unchanged":
            await engine.put_template(tpl.kind, tpl.name, tpl.body)
        text = diff(tpl.kind, tpl.name, installed, tpl.body) if action != "unchanged" else ""
        changes.append(TemplateChange(tpl.kind, tpl.name, action, text))
    return changes


# ------------------------------------------------------------------ summaries


@dataclass
class Summary:
    command: str
    job: str
    alias: str
    outcome: str = "failed"
    index: str | None = None
    previous: list[str] = field(default_factory=list)
    engine: str = ""
    rows_read: int = 0
    sent: int = 0
    indexed: int = 0
    deleted: int = 0
    skipped: int = 0
    duplicates: int = 0
    not_found: int = 0  # deletes of documents that were already absent
    retried: int = 0
    failed: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    dead_letter_file: str | None = None
    bulk_requests: int = 0
    requests_retried: int = 0  # whole requests sent again (Engine.request); ``retried`` counts items
    documents_in_index: int | None = None
    documents_in_alias_before: int | None = None  # reindex: what the alias served before the swap
    force_swap: bool = False                      # reindex: the swap guard was overridden
    null_watermarks: int = 0                      # reindex: rows indexed whose watermark is NULL or unusable
    warnings: list[str] = field(default_factory=list)
    deleted_indices: list[str] = field(default_factory=list)
    watermark_before: Any = None
    watermark: Any = None
    seconds: float = 0.0
    docs_per_second: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _fill(summary: Summary, tally: Tally) -> None:
    summary.rows_read = tally.rows_read
    summary.sent = tally.sent
    summary.indexed = tally.created if summary.command == "reindex" else tally.indexed
    summary.deleted = tally.deleted
    summary.not_found = tally.not_found
    summary.duplicates = tally.updated if summary.command == "reindex" else 0
    summary.retried = tally.retried
    summary.failed = len(tally.failed)
    summary.rejected = len(tally.rejected)
    summary.dead_lettered = summary.failed + summary.rejected
    summary.skipped = tally.skipped
    summary.bulk_requests = tally.bulk_requests


# ------------------------------------------------------------------ reading (worker thread)


@dataclass
class Chunk:
    """One fetch of source rows, encoded: the unit of acknowledgement."""

    seq: int
    ids: list[str]
    lines: list[bytes]
    rows_read: int
    rejected: list[tuple[int, str]]
    rejected_docs: list[dict] = field(default_factory=list)
    skipped: int = 0                     # rows already indexed unchanged (inside the lookback window)
    watermark: Any = None                # the largest watermark among this chunk's rows
    marks: list[tuple[Any, str]] = field(default_factory=list)  # (watermark, fingerprint) of rows to remember
    null_watermarks: int = 0             # reindex: rows indexed whose watermark is NULL or unusable
    odd_watermark: str | None = None     # reindex: the first unusable (not NULL) watermark, described


@dataclass
class ReadPlan:
    query: str
    params: Any
    mode: str                             # "reindex" | "sync"
    count: bool = False                   # count rows first (progress total)
    keep_from: Any = None                 # remember fingerprints of rows with watermark >= this
    skip: frozenset[str] = frozenset()    # fingerprints already indexed
    versioned: bool = False               # reindex --allow-duplicates: actions versioned in source order
    kind: str | None = None               # the run's watermark kind (watermark.value_kind): the stored one's, or the first row's
    source_max: Any = None                # reindex: the source's max watermark before reading (set by the reader)
    last_key: Any = None                  # sync: the last watermark key seen, to check the order


def _fingerprint(line: bytes) -> str:
    return hashlib.blake2b(line, digest_size=8).hexdigest()


def _apply_transform(transform: Callable, docs: list[dict]) -> list[dict]:
    try:
        out = transform(docs)
        out = list(out) if out is not None else None
    except Exception as exc:  # noqa: BLE001 - user code: report its failure as ours
        raise IndexerError(f"job.transform raised {type(exc).__name__}: {exc}") from exc
    if out is None or not all(isinstance(d, dict) for d in out):
        raise IndexerError("job.transform must return a list of dicts")
    return out


def user_params(job: Job) -> Any:
    """The job's own parameters, in its driver's shape (only those its query binds)."""
    return source.dialect(job.source.dbtype).params(job.job.params, job.job.query)


def check_columns(settings: JobSettings, columns: tuple[str, ...], has_transform: bool) -> None:
    """The job's columns must be in the query's result: checked before any other query runs."""
    for name, what in ((settings.watermark, "job.watermark"), (settings.deleted, "job.deleted")):
        if name and name not in columns:
            raise ConfigError(f"{what}: column {name!r} is not among the query's columns ({', '.join(columns)})")
    documents.check_key_columns(columns, settings.key, has_transform)


def read_chunks(job: Job, plan: ReadPlan, on_total: Callable[[int], None] | None = None) -> Iterator[Chunk]:
    """Worker-thread side: rows -> documents -> NDJSON actions, one Chunk per fetch."""
    settings = job.job
    transform = load_transform(settings.transform, job.base_dir) if settings.transform else None
    wcol, dcol = settings.watermark, settings.deleted
    what = "job.sync_query" if plan.mode == "sync" and settings.sync_query else "job.query"
    with source.connect(job.source, settings.chunk_size) as conn:
        check_columns(settings, source.columns_of(conn, settings.query, user_params(job)), transform is not None)
        if plan.count and on_total is not None:
            on_total(source.count_rows(conn, plan.query, plan.params, what))
        if plan.mode == "reindex" and wcol:
            plan.source_max = source.max_value(conn, settings.query, user_params(job), wcol)
            if plan.source_max is not None:
                with contextlib.suppress(wm.WatermarkValueError):  # an odd maximum: the rows decide the kind
                    plan.kind = wm.value_kind(plan.source_max)
                    plan.keep_from = wm.minus(plan.source_max, settings.lookback)
        mapper = None
        row_number = 0
        chunks = source.iter_row_chunks(conn, plan.query, plan.params, settings.chunk_size, what)
        for seq, (description, rows) in enumerate(chunks):
            if mapper is None:
                columns = documents.column_names(description)
                mapper = documents.make_row_mapper(columns)
                w_at = columns.index(wcol) if wcol else None
                d_at = columns.index(dcol) if dcol else None
            yield _encode(plan, settings, transform, rows, mapper, w_at, d_at, seq, row_number)
            row_number += len(rows)


def _encode(plan, settings, transform, rows, mapper, w_at, d_at, seq, first_row) -> Chunk:
    live_at: list[int] | range = range(len(rows))
    gone_at: list[int] = []
    if d_at is not None:
        flags = [documents.is_true(r[d_at]) for r in rows]
        if any(flags):
            live_at = [i for i, gone in enumerate(flags) if not gone]
            gone_at = [i for i, gone in enumerate(flags) if gone]
    docs = [mapper(rows[i]) for i in live_at]
    if d_at is not None:
        for doc in docs:
            doc.pop(settings.deleted, None)  # the flag decides; it is not part of the document
    if transform is not None:
        docs = _apply_transform(transform, docs)
    version_base = (seq + 1) << 32 if plan.versioned else None
    encoded = documents.encode_chunk(docs, settings.key, first_row=first_row, version_base=version_base)
    chunk = Chunk(seq, encoded.ids, encoded.lines, len(rows), encoded.rejected, encoded.rejected_docs)
    if plan.mode == "reindex":
        chunk.skipped += len(gone_at)  # a reindex leaves soft-deleted rows out
        gone_at = []
    elif gone_at:
        gone = [mapper(rows[i]) for i in gone_at]
        if transform is not None:
            gone = _apply_transform(transform, gone)  # only to derive the ids the transform gives
        for n, doc in enumerate(gone):
            try:
                id_ = documents.doc_id(doc, settings.key)
            except IndexerError as exc:
                row = first_row + gone_at[n] if len(gone) == len(gone_at) else first_row
                chunk.rejected.append((row, str(exc)))
                chunk.rejected_docs.append(doc)
                continue
            chunk.ids.append(id_)
            chunk.lines.append(documents.delete_action(id_))
    if w_at is not None:
        values = [r[w_at] for r in rows]
        keys = _watermark_keys(plan, chunk, values, settings, rows, mapper, first_row)
        _watermarks(plan, chunk, values, keys, [*live_at, *gone_at])
    return chunk


def _watermark_keys(plan: ReadPlan, chunk: Chunk, values: list, settings: JobSettings, rows: list,
                    mapper: Callable, first_row: int) -> list:
    """Comparable keys of one chunk's watermarks (None for NULL).

    A reindex indexes rows whose watermark is NULL or cannot be compared, counting them
    (sync cannot see changes to them); a sync stops at such a value, naming the row and its key.
    """
    def where(i: int) -> str:
        try:
            key = documents.doc_id(mapper(rows[i]), settings.key)
        except IndexerError:
            key = "?"
        return f"row {first_row + i + 1} (key {key!r})"

    if plan.kind is None:
        for i, value in enumerate(values):
            if value is None:
                continue
            try:
                plan.kind = wm.value_kind(value)
                break
            except wm.WatermarkValueError as exc:
                if plan.mode == "sync":
                    raise SourceError(f"{where(i)}: job.watermark column {settings.watermark!r}: {exc.reason}") from None
        if plan.kind is None:  # every value NULL or unusable so far
            for i, value in enumerate(values):
                if value is not None:
                    chunk.odd_watermark = chunk.odd_watermark or f"{where(i)}: unusable value"
            chunk.null_watermarks += len(values)
            return [None] * len(values)
    try:
        keys = wm.keys_of(values, plan.kind)
    except wm.WatermarkValueError as exc:
        if plan.mode == "sync":
            raise SourceError(f"{where(exc.position)}: job.watermark column {settings.watermark!r}: {exc.reason}") from None
        keys = []
        for i, value in enumerate(values):
            try:
                keys.append(wm.keys_of([value], plan.kind)[0])
            except wm.WatermarkValueError as one:
                keys.append(None)
                chunk.odd_watermark = chunk.odd_watermark or f"{where(i)}: {one.reason}"
    if plan.mode == "sync" and None in keys:
        raise SourceError(f"{where(keys.index(None))}: job.watermark column {settings.watermark!r} is NULL "
                          "(job.sync_query must leave out rows whose watermark is NULL)")
    chunk.null_watermarks += keys.count(None)
    return keys


def _watermarks(plan: ReadPlan, chunk: Chunk, values: list, keys: list, order: list[int]) -> None:
    """Record the chunk's max watermark; drop actions already indexed unchanged; remember fresh fingerprints.

    ``values``/``keys`` are the rows' watermarks as read and their comparable keys; ``order``
    gives, for each action of the chunk, the row it came from (when no transform changed the count).
    """
    present = [i for i, k in enumerate(keys) if k is not None]
    if not present:
        return
    if plan.mode == "sync":
        last = plan.last_key
        if (last is not None and keys[0] < last) or any(b < a for a, b in zip(keys, keys[1:])):
            raise ConfigError("the sync query must return rows ORDER BY the watermark column (job.sync_query)")
        plan.last_key = keys[-1]
    top = max(present, key=keys.__getitem__)
    chunk.watermark = values[top]
    if len(chunk.ids) != len(order) or chunk.rejected:
        return  # a transform changed the row count, or rows were rejected: no pairing, resend all
    floor = wm.keys_of([plan.keep_from], plan.kind)[0] if plan.keep_from is not None else None
    keep_ids, keep_lines = [], []
    skip = plan.skip
    for id_, line, at in zip(chunk.ids, chunk.lines, order):
        fp = _fingerprint(line)
        if fp in skip:
            chunk.skipped += 1
            continue
        keep_ids.append(id_)
        keep_lines.append(line)
        k = keys[at]
        if k is not None and (floor is None or k >= floor):
            chunk.marks.append((values[at], fp))
    chunk.ids, chunk.lines = keep_ids, keep_lines


# ------------------------------------------------------------------ loading (event loop)


class Acks:
    """Releases chunks in source order once each one is fully acknowledged."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.waiting: dict[int, Chunk] = {}

    def done(self, chunk: Chunk) -> list[Chunk]:
        self.waiting[chunk.seq] = chunk
        released = []
        while self.next_seq in self.waiting:
            released.append(self.waiting.pop(self.next_seq))
            self.next_seq += 1
        return released


async def load(
    job: Job, engine: Engine, target: str, tally: Tally, plan: ReadPlan, *, fresh_index: bool,
    progress: Progress | None = None, on_acked: Callable[[list[Chunk]], Any] | None = None,
    stop: asyncio.Event | None = None, dead: DeadLetters | None = None,
) -> None:
    """Stream the plan's rows into ``target`` with ``concurrency`` bulk requests in flight.

    ``on_acked`` is awaited with the chunks that became acknowledged in source
    order: every action answered 2xx or written to the dead-letter file. When the
    dead letters exceed ``max_errors`` or ``max_error_rate`` the run stops with a
    VerificationError and the chunk that crossed the line is never released.
    """
    loop = asyncio.get_running_loop()

    def on_total(n: int) -> None:
        loop.call_soon_threadsafe(progress, "total", n)

    feed: ThreadFeed[Chunk] = ThreadFeed(lambda: read_chunks(job, plan, on_total if progress else None),
                                         maxsize=DEFAULT_QUEUE_CHUNKS)
    sender = Sender(engine, target, tally, policy=RetryPolicy(max_retry_time=job.target.max_retry_time),
                    fresh_index=fresh_index, max_bytes=job.job.chunk_bytes, versioned=plan.versioned,
                    scrub_reasons=not (dead is not None and dead.include_doc))
    acks = Acks()
    ack_lock = asyncio.Lock()

    async def worker() -> None:
        while not (stop and stop.is_set()) and (chunk := await feed.get()) is not None:
            tally.rows_read += chunk.rows_read
            tally.skipped += chunk.skipped
            tally.rejected.extend(chunk.rejected)
            failures = await sender.send(chunk.ids, chunk.lines) if chunk.lines else []
            if dead is None and (chunk.rejected or failures):
                continue  # nowhere to put them: never acknowledged, the watermark stops before it
            if dead is not None:
                for (row, reason), doc in zip(chunk.rejected, chunk.rejected_docs):
                    dead.rejected(row, reason, doc)
                for f in failures:
                    dead.failed(f.id, f.status, f.type, f.reason, f.line)
                _check_error_budget(job, tally)
            if progress is not None:
                progress("rows", tally.rows_read)
            async with ack_lock:
                released = acks.done(chunk)
                if released and on_acked is not None:
                    await on_acked(released)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(job.job.concurrency):
                group.create_task(worker())
    except* Exception as eg:  # one failure ends the run; the first one is the story
        raise eg.exceptions[0] from None
    finally:
        await feed.close()


def _check_error_budget(job: Job, tally: Tally, *, final: bool = False) -> None:
    """Stop when the dead letters exceed ``max_errors`` or ``max_error_rate`` of the rows read.

    While the run streams, the rate is judged from ``ERROR_RATE_MIN_ROWS`` rows on (a bad
    first row must not stop a long run); at the end (``final``) it is judged on the
    totals, whatever the run's size: 49 dead letters in 49 rows never swap an alias.
    """
    dead = len(tally.failed) + len(tally.rejected)
    if not dead:
        return
    settings = job.job
    rate = dead / max(tally.rows_read, 1)
    over_rate = (final or tally.rows_read >= ERROR_RATE_MIN_ROWS) and rate > settings.max_error_rate
    if dead > settings.max_errors or over_rate:
        first = (f"row {tally.rejected[0][0] + 1}: {tally.rejected[0][1]}" if tally.rejected
                 else f"id {tally.failed[0].id!r}: {tally.failed[0].type}: {scrub(tally.failed[0].reason)}")
        limit = (f"max_errors = {settings.max_errors}" if dead > settings.max_errors
                 else f"max_error_rate = {settings.max_error_rate:g}")
        raise VerificationError(f"{dead} document(s) failed for good in {tally.rows_read} rows, over job.{limit} "
                                f"(first: {first}); stopped before any alias swap or watermark advance past them")


# ------------------------------------------------------------------ reindex


def index_name(alias: str, now: dt.datetime, existing: list[str]) -> str:
    """``<alias>-<UTC yyyymmddhhmmss>``, one second past the newest existing one if needed."""
    stamp = now.astimezone(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    stamps = [dt.datetime.strptime(i[len(alias) + 1:], "%Y%m%d%H%M%S") for i in existing]
    if stamps and max(stamps) >= stamp:
        stamp = max(stamps) + dt.timedelta(seconds=1)
    return f"{alias}-{stamp:%Y%m%d%H%M%S}"


def owned_indices(alias: str, names: list[str]) -> list[str]:
    """Indices this tool made for ``alias`` (exactly ``<alias>-`` + 14 digits), oldest first."""
    pattern = re.compile(re.escape(alias) + r"-\d{14}")
    return sorted(n for n in names if pattern.fullmatch(n))


def state_store(engine: Engine, state_file: Path | None) -> StateStore:
    return FileState(state_file) if state_file else ClusterState(engine)


def _run_record(summary: Summary, started_at: dt.datetime) -> dict:
    return {
        "command": summary.command, "started": started_at.isoformat(), "ended": utc_now().isoformat(),
        "outcome": summary.outcome, "rows_read": summary.rows_read, "sent": summary.sent,
        "indexed": summary.indexed, "deleted": summary.deleted, "failed": summary.failed,
        "rejected": summary.rejected, "error": summary.error,
    }


def dead_letters(job: Job, path: Path | None, include_doc: bool, started_at: dt.datetime) -> DeadLetters:
    path = path or job.base_dir / f"{job.name}.dead-letters.ndjson"
    return DeadLetters(path, job.name, job.job.alias, job.job.key, started_at.isoformat(), include_doc)


@dataclass
class _Run:
    """One reindex or sync in progress: what every stage of it reports into."""

    summary: Summary
    engine: Engine
    store: StateStore
    dead: DeadLetters
    started_at: dt.datetime
    lease: Lease


async def _record(store: StateStore | None, summary: Summary, started_at: dt.datetime) -> None:
    """Record a run that did not finish in the state's ``last_run`` (best effort: the
    cluster may be what failed). Only ``last_run`` is written, so this is safe without the lock."""
    if store is None:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.shield(store.record_run(summary.alias, _run_record(summary, started_at))), 10)


@contextlib.asynccontextmanager
async def _command(command: str, job: Job, engine: Engine | None, state_file: Path | None,
                   dead_letter_file: Path | None, include_doc: bool):
    """The frame both commands share: summary, dead-letter file, engine, the lease on the
    alias, and the run record: saved by the command on success, here on failure,
    refusal (another run holds the lock) or interruption (Ctrl-C, SIGTERM)."""
    started, started_at = time.monotonic(), utc_now()
    summary = Summary(command, job.name, job.job.alias)
    own = engine is None
    store: StateStore | None = None
    dead = dead_letters(job, dead_letter_file, include_doc, started_at)
    try:
        engine = engine or await open_engine(job.target)
        summary.engine = engine.flavor
        store = state_store(engine, state_file)
        async with store.lease(job.job.alias) as lease:
            yield _Run(summary, engine, store, dead, started_at, lease)
    except IndexerError as exc:
        summary.error = str(exc)
        await _record(store, summary, started_at)
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        summary.outcome, summary.error = "interrupted", "interrupted by a signal (Ctrl-C or SIGTERM)"
        await _record(store, summary, started_at)
        raise
    finally:
        if engine is not None:
            summary.requests_retried = engine.retries
            if own:
                await engine.close()
        dead.close()
        if dead.count:
            summary.dead_letter_file = str(dead.path)
        summary.seconds = round(time.monotonic() - started, 3)
        if summary.seconds:
            summary.docs_per_second = round(summary.sent / summary.seconds, 1)


async def reindex(
    job: Job, *, allow_duplicates: bool = False, force_swap: bool = False, progress: Progress | None = None,
    engine: Engine | None = None, state_file: Path | None = None,
    dead_letter_file: Path | None = None, include_doc: bool = False,
) -> Summary:
    """Full rebuild into a fresh index, verified, then an atomic alias swap."""
    async with _command("reindex", job, engine, state_file, dead_letter_file, include_doc) as run:
        await _reindex(job, run, allow_duplicates, force_swap, progress)
    return run.summary


async def _reindex(job: Job, run: _Run, allow_duplicates: bool, force_swap: bool, progress: Progress | None) -> None:
    alias = job.job.alias
    engine, summary, store, dead = run.engine, run.summary, run.store, run.dead
    state = await store.load(alias) or {}
    live = await engine.alias_targets(alias)
    if not live and await engine.exists(alias):
        raise EngineError(f"{alias!r} is an index, not an alias: rename or delete that index first (indexer never deletes it)")
    summary.previous = live
    ours = owned_indices(alias, await engine.indices_matching(f"{alias}-*"))
    newest_live = max((i for i in ours if i in live), default=None)
    # We hold the lease: a run that made one of these either ended or lost its lease
    # (expired without renewal) and stops before it touches the alias.
    run.lease.check()
    for orphan in [i for i in ours if i not in live and (newest_live is None or i > newest_live)]:
        log.warning("deleting %s, left by an earlier run that did not finish", orphan)
        await engine.delete_index(orphan)
        summary.deleted_indices.append(orphan)
        ours.remove(orphan)

    # never reuse the name of an orphan just deleted: one name, one index, in logs and summaries
    index = index_name(alias, utc_now(), ours + summary.deleted_indices)
    summary.index = index
    wanted = (await engine.simulate_index(index)).get("index", {})
    await engine.create_index(index, LOAD_SETTINGS)
    tally = Tally()
    plan = ReadPlan(job.job.query, user_params(job), "reindex", count=progress is not None, versioned=allow_duplicates)
    marks: list = []

    async def remember(chunks: list[Chunk]) -> None:
        for chunk in chunks:
            marks.extend(chunk.marks)
            summary.null_watermarks += chunk.null_watermarks
            if chunk.odd_watermark and not any("cannot be compared" in w for w in summary.warnings):
                summary.warnings.append(f"watermark values that cannot be compared (first: {chunk.odd_watermark})")

    try:
        await load(job, engine, index, tally, plan, fresh_index=True, progress=progress, on_acked=remember, dead=dead)
        _fill(summary, tally)
        _check_error_budget(job, tally, final=True)
        await engine.put_settings(index, {"index": {
            "refresh_interval": wanted.get("refresh_interval"),
            "number_of_replicas": wanted.get("number_of_replicas"),
        }})
        await engine.refresh(index)
        summary.documents_in_index = await engine.count(index)
        _verify(summary, tally, allow_duplicates)
        if live:
            await engine.refresh(alias)
            summary.documents_in_alias_before = await engine.count(alias)
        _swap_guard(job, summary, force_swap)
        run.lease.check()
        actions = [{"add": {"index": index, "alias": alias}}]
        actions += [{"remove": {"index": old, "alias": alias}} for old in live]
        await engine.update_aliases(actions)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(engine.delete_index(index))
        raise

    if summary.null_watermarks:
        summary.warnings.insert(0, f"{summary.null_watermarks} row(s) have a NULL or unusable {job.job.watermark!r}: "
                                   "indexed, but sync cannot see changes to them (README, Incremental sync)")
    summary.outcome = "dead_letters" if summary.dead_lettered else "ok"
    summary.watermark_before = wm.from_state(state.get("watermark"))
    summary.watermark = plan.source_max
    new_state = {**state, "index": index, "last_run": _run_record(summary, run.started_at)}
    if job.job.watermark:
        new_state["watermark"] = wm.to_state(plan.source_max) if plan.source_max is not None else None
        new_state["marks"] = _stored_marks(marks, plan.keep_from)
    run.lease.check()
    await store.save(alias, new_state)

    older = sorted({i for i in ours if i < index}, reverse=True)
    for old in older[job.job.keep:]:
        await engine.delete_index(old)
        summary.deleted_indices.append(old)


def _swap_guard(job: Job, summary: Summary, force: bool) -> None:
    """Refuse to move an alias onto an index that lost most of what the alias serves."""
    before, after = summary.documents_in_alias_before, summary.documents_in_index or 0
    if not before:
        return  # a new alias (or an empty one) may start empty
    ratio = job.job.min_ratio
    if after > 0 and after >= ratio * before:
        return
    if force:
        summary.force_swap = True
        summary.warnings.append(f"--force-swap: the alias moved from {before} to {after} documents")
        return
    why = "none" if after == 0 else f"fewer than job.min_ratio = {ratio:g} of them"
    raise VerificationError(
        f"swap refused: the new index holds {after} documents and alias {job.job.alias!r} serves {before} ({why}); "
        "the alias was not moved and the new index was deleted (check the query and its parameters, "
        "or pass --force-swap)")


def _stored_marks(marks: list[tuple[Any, str]], floor: Any) -> list[list]:
    kept = [(v, fp) for v, fp in marks if floor is None or wm.at_least(v, floor)]
    if len(kept) > MAX_MARKS:
        kept = kept[-MAX_MARKS:]
    return [[wm.to_state(v)["value"], fp] for v, fp in kept]


def _verify(summary: Summary, tally: Tally, allow_duplicates: bool) -> None:
    """Dead letters were within budget (``load`` checks); what remains must be exact."""
    if tally.updated and not allow_duplicates:
        sample = ", ".join(repr(i) for i in tally.duplicate_ids)
        raise VerificationError(
            f"{tally.updated} duplicate key(s) in the query result (e.g. {sample}); alias not changed "
            "(fix job.key, or pass --allow-duplicates to keep the last row of each key)"
        )
    if summary.documents_in_index != tally.created:
        raise VerificationError(
            f"the new index holds {summary.documents_in_index} documents but {tally.created} distinct keys were read; alias not changed"
        )


# ------------------------------------------------------------------ sync


def sync_query(job: Job) -> str:
    """The incremental query; the watermark is always a bind parameter (``since``)."""
    settings = job.job
    if settings.sync_query:
        return settings.sync_query
    return source.dialect(job.source.dbtype).sync_query(settings.query, settings.watermark)


async def sync(
    job: Job, *, progress: Progress | None = None, engine: Engine | None = None,
    state_file: Path | None = None, stop: asyncio.Event | None = None,
    dead_letter_file: Path | None = None, include_doc: bool = False,
) -> Summary:
    """Index the rows changed since the stored watermark (minus the lookback) into the alias."""
    if not job.job.watermark:
        raise ConfigError("sync needs job.watermark (the column that grows when a row changes)")
    async with _command("sync", job, engine, state_file, dead_letter_file, include_doc) as run:
        await _sync(job, run, progress, stop)
    return run.summary


async def _sync(job: Job, run: _Run, progress: Progress | None, stop: asyncio.Event | None) -> None:
    alias = job.job.alias
    engine, summary, store, dead, started_at = run.engine, run.summary, run.store, run.dead, run.started_at
    live = await engine.alias_targets(alias)
    if not live:
        raise EngineError(f"alias {alias!r} does not exist: run `indexer reindex` first")
    summary.index = await engine.write_index(alias)  # exactly one write target, or refuse before reading
    state = await store.load(alias) or {}
    stored = wm.from_state(state.get("watermark"))
    summary.watermark_before = summary.watermark = stored
    if stored is None:
        raise ConfigError(f"no watermark is stored for alias {alias!r}: run `indexer reindex` with "
                          "job.watermark set first (it records where sync starts)")
    marks = [(wm.from_state({"type": state["watermark"]["type"], "value": v}), fp)
             for v, fp in state.get("marks", [])]
    since = wm.minus(stored, job.job.lookback)
    sql = sync_query(job)
    params = source.dialect(job.source.dbtype).params({**job.job.params, "since": since}, sql)
    plan = ReadPlan(sql, params, "sync", skip=frozenset(fp for _, fp in marks), kind=wm.value_kind(stored))
    tally = Tally()
    progress_state = {"watermark": stored, "marks": marks}

    async def advance(chunks: list[Chunk]) -> None:
        for chunk in chunks:
            progress_state["watermark"] = wm.newer(progress_state["watermark"], chunk.watermark)
            progress_state["marks"].extend(chunk.marks)
        mark = progress_state["watermark"]
        if mark == stored and not any(c.lines for c in chunks):
            return  # nothing new: no write
        floor = wm.minus(mark, job.job.lookback)
        progress_state["marks"] = [m for m in progress_state["marks"] if wm.at_least(m[0], floor)]
        run.lease.check()
        await store.save(alias, {
            **state, "watermark": wm.to_state(mark), "marks": _stored_marks(progress_state["marks"], floor),
            "index": summary.index, "last_run": {"command": "sync", "started": started_at.isoformat(),
                                                  "outcome": "running"},
        })
        summary.watermark = mark

    try:
        await load(job, engine, alias, tally, plan, fresh_index=False, progress=progress,
                   on_acked=advance, stop=stop, dead=dead)
    finally:
        _fill(summary, tally)
    summary.outcome = "stopped" if stop and stop.is_set() else "dead_letters" if summary.dead_lettered else "ok"
    if summary.sent:
        await engine.refresh(alias)  # `status` and searches see this run's writes from now on
    final = await store.load(alias) or state
    if not summary.sent and not summary.dead_lettered and (final.get("last_run") or {}).get("outcome") in ("ok", "stopped"):
        return  # nothing new and the last run went well: no state write at all
    run.lease.check()
    await store.save(alias, {**final, "index": summary.index, "last_run": _run_record(summary, started_at)})


# ------------------------------------------------------------------ status


async def status(job: Job, *, engine: Engine | None = None, state_file: Path | None = None) -> dict:
    """What the stored state says, what the alias holds, and what the source holds."""
    own = engine is None
    engine = engine or await open_engine(job.target)
    try:
        store = state_store(engine, state_file)
        state = (await store.load(job.job.alias)) or {}
        live = await engine.alias_targets(job.job.alias)
        in_alias = await engine.count(job.job.alias) if live else None
    finally:
        if own:
            await engine.close()
    rows = await asyncio.to_thread(_source_count, job)
    return {
        "job": job.name, "alias": job.job.alias, "alias_indices": live,
        "watermark": wm.from_state(state.get("watermark")), "last_run": state.get("last_run"),
        "documents_in_alias": in_alias, "rows_in_source": rows,
        "difference": None if in_alias is None else rows - in_alias,
    }


def _source_count(job: Job) -> int:
    with source.connect(job.source, job.job.chunk_size) as conn:
        if not job.job.deleted:
            return source.count_rows(conn, job.job.query, user_params(job))
        groups = source.count_by(conn, job.job.query, user_params(job), job.job.deleted)
        return sum(n for flag, n in groups if not documents.is_true(flag))
