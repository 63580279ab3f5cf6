"""The commands as short compositions of the stages; the CLI calls only this module.

::

    reindex:   run frame (lease) -> indices: orphans out, fresh index -> extract.probe [-> partitions.plan_slices]
               -> sink.load(extract.Reader -> Sender)  |  partitioned: slices.run_slices, the slices' counts
               added up -> counts verified, swap guard -> one alias swap -> incremental.after_reindex -> state
    sync:      run frame (lease) -> the alias's write index -> incremental.since/skip
               -> sink.load(extract.Reader -> Sender) -> incremental.Advance -> state after every
               acknowledged chunk
    reconcile: run frame (lease) -> the alias's write index -> both sides' ids, sorted on disk (spill)
               -> merge-join -> refusals -> sink.load(deletes, then the missing rows) -> state
               (the composition lives in ``reconcile``: its comparison and spill files are its own)
    status:    state + alias count + source count

Where things live: reading and encoding rows in ``extract``; sending and counting in
``sink``; the run's frame, summary and clock in ``run``; index names, orphans and the
swap in ``indices``; sync bookkeeping in ``incremental``; the stored state in ``state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer import documents, extract, incremental, indices, slices, source
from indexer import watermark as wm
from indexer.config import Job
from indexer.engine import Engine, open_engine
from indexer.errors import ConfigError, EngineError, VerificationError
from indexer.extract import Chunk, ReadPlan, user_params
from indexer.partitions import Plan as SlicePlan
from indexer.partitions import plan_slices
from indexer.reconcile import ReconcileSummary, reconcile
from indexer.run import Run, Summary, run, state_store, utc_now
from indexer.sink import Counts, Progress, Sender, check_error_budget, load, write_dead_letters
from indexer.state import RunRecord
from indexer.watermark import Mark

__all__ = ["Progress", "ReconcileSummary", "Summary", "Status", "reconcile", "reindex", "status", "sync"]


# ------------------------------------------------------------------ reindex


async def reindex(
    job: Job, *, allow_duplicates: bool = False, force_swap: bool = False, progress: Progress = Progress(),
    engine: Engine | None = None, state_file: Path | None = None,
    dead_letter_file: Path | None = None, include_doc: bool = False, workers: int | None = None,
) -> Summary:
    """Full rebuild into a fresh index, verified, then an atomic alias swap.

    With ``job.partitions`` > 1 or ``job.cluster``, the query is read as slices in parallel
    (``workers`` local processes, default one per slice up to the CPU count; or the Dask cluster).
    """
    if _partitioned(job) and allow_duplicates:
        raise ConfigError("--allow-duplicates cannot be used with partitions: slices read in parallel have no "
                          "source order to pick the latest row by (reindex without partitions)")
    async with run("reindex", job, engine, state_file, dead_letter_file, include_doc) as frame:
        await _reindex(job, frame, allow_duplicates, force_swap, progress, workers)
    return frame.summary


def _partitioned(job: Job) -> bool:
    return job.job.partitions > 1 or bool(job.job.cluster)


async def _reindex(job: Job, frame: Run, allow_duplicates: bool, force_swap: bool, progress: Progress,
                   workers: int | None) -> None:
    settings, alias = job.job, job.job.alias
    engine, summary = frame.engine, frame.summary
    state = await frame.store.load(alias)
    live = summary.previous = await indices.live_indices(engine, alias)
    frame.lease.check()
    ours, summary.deleted_indices = await indices.delete_orphans(engine, alias, live)
    # never reuse the name of an orphan just deleted: one name, one index, in logs and summaries
    index = summary.index = indices.index_name(alias, utc_now(), ours + summary.deleted_indices)

    plan = ReadPlan(settings.query, user_params(job), "reindex", versioned=allow_duplicates)
    found = await asyncio.to_thread(extract.probe, job, plan, count=progress.counting)
    if found.total is not None:
        progress.total(found.total)
    keep_from = wm.minus(found.source_max, settings.lookback) if found.source_max is not None else None
    plan = dataclasses.replace(plan, kind=found.kind, keep_from=keep_from)
    planned = await asyncio.to_thread(plan_slices, job, settings.partitions) if _partitioned(job) else None
    wanted = await indices.create_for_load(engine, index)
    try:
        if planned is None:
            marks = await _load(job, frame, plan, index, wanted, progress)
        else:
            marks = await _load_slices(job, frame, plan, planned, wanted, progress, workers)
        if live:
            await engine.refresh(alias)
            summary.documents_in_alias_before = await engine.count(alias)
        forced = indices.swap_guard(settings, summary.documents_in_alias_before, summary.documents_in_index, force_swap)
        if forced:
            summary.force_swap = True
            summary.warnings.append(forced)
        frame.lease.check()
        await indices.swap(engine, alias, index, live)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(engine.delete_index(index))
        raise

    if summary.null_watermarks:
        summary.warnings.insert(0, f"{summary.null_watermarks} row(s) have a NULL or unusable {settings.watermark!r}: "
                                   "indexed, but never a stored watermark, and sync may not see changes to them "
                                   "(README, Incremental sync)")
    summary.outcome = "dead_letters" if summary.dead_lettered else "ok"
    summary.watermark_before, summary.watermark = state.watermark, found.source_max
    new = incremental.after_reindex(state, index, found.source_max, marks, keep_from, bool(settings.watermark))
    new.last_run = summary.record()
    frame.lease.check()
    await frame.store.save(alias, new)
    summary.deleted_indices += await indices.retire(engine, index, ours, settings.keep)


async def _load(job: Job, frame: Run, plan: ReadPlan, index: str, wanted: dict, progress: Progress) -> list[Mark]:
    """One reader, one sender: the query's rows into ``index``, counted and verified; their marks."""
    settings, summary = job.job, frame.summary
    counts, marks = Counts(), []

    async def remember(chunks: list[Chunk]) -> None:
        for chunk in chunks:
            marks.extend(chunk.marks)
            _note_watermarks(summary, chunk, settings.watermark)

    sender = Sender(frame.engine, index, fresh_index=True, max_bytes=settings.chunk_bytes,
                    scrub_reasons=not frame.dead.include_doc, versioned=plan.versioned)
    try:
        await load(lambda: extract.read_chunks(job, plan), sender, settings, counts, dead=frame.dead,
                   progress=progress, on_acked=remember)
    finally:
        summary.count(counts)
    check_error_budget(settings, counts, final=True)
    summary.documents_in_index = await indices.finish_load(frame.engine, index, wanted)
    _verify(summary, counts, plan.versioned)
    return marks


async def _load_slices(job: Job, frame: Run, plan: ReadPlan, planned: SlicePlan, wanted: dict, progress: Progress,
                       workers: int | None) -> list[Mark]:
    """The slices in parallel into the new index; their counts added up and verified (against the query's
    own count too), their dead letters written here, the error budget judged on the totals; their marks."""
    settings, summary = job.job, frame.summary
    tasks = [slices.SliceTask(job, s, summary.index, plan.kind, plan.keep_from, frame.dead.include_doc)
             for s in planned.slices]
    summary.partitions = len(tasks)
    local = min(workers or os.cpu_count() or 1, max(len(tasks), 1))
    results = await slices.run_slices(job, tasks, local, slices.RowTotal(progress))
    summary.workers = len({result.worker for result in results})  # the processes that ran a slice, here or on Dask
    counts = slices.merged(results)
    write_dead_letters(frame.dead, counts.rejected, counts.failed)
    for result in results:
        _note_watermarks(summary, result, settings.watermark)
    summary.count(counts)
    await _check_rows(job, summary, counts.rows_read, planned.rows)
    check_error_budget(settings, counts, final=True)
    summary.documents_in_index = await indices.finish_load(frame.engine, summary.index, wanted)
    # a rerun slice's "updated" answers echo its failed attempt: duplicates are counted from the index
    counts.duplicates = slices.duplicates(results, summary.documents_in_index)
    counts.indexed = summary.documents_in_index
    summary.count(counts)
    _verify(summary, counts, False)
    return [mark for result in results for mark in result.marks]


async def _check_rows(job: Job, summary: Summary, read: int, planned: int) -> None:
    """The slices must have read as many rows as the query returned when they were planned. When they did
    not, the query is counted again: the same count means rows were lost or read twice (refused); another
    count means the table changed meanwhile, which no count can settle (a warning; sync catches up)."""
    if read == planned:
        return
    now = await asyncio.to_thread(_count_rows, job)
    if now == planned:
        raise VerificationError(f"the slices read {read} rows but job.query returns {planned} (counted before and "
                                "after): rows were lost or read twice; alias not changed")
    summary.warnings.append(f"the slices read {read} rows while job.query returned {planned} when they were planned "
                            f"and {now} after: the source changed during the reindex (the next sync catches up)")


def _count_rows(job: Job) -> int:
    with source.connect(job.source, job.job.chunk_size) as conn:
        return source.count_rows(conn, job.job.query, user_params(job))


_ODD_WATERMARK = "watermark values that cannot be compared or are no point in time"


def _note_watermarks(summary: Summary, chunk: Chunk | slices.SliceResult, column: str | None) -> None:
    """Carry a chunk's (or a slice's) watermark warnings into the summary, once each."""
    summary.null_watermarks += chunk.null_watermarks
    if chunk.odd_watermark and not any(w.startswith(_ODD_WATERMARK) for w in summary.warnings):
        summary.warnings.append(f"{_ODD_WATERMARK} (first: {chunk.odd_watermark})")
    if chunk.unpaired and column and not any("job.transform" in w for w in summary.warnings):
        summary.warnings.append("job.transform changed the number of documents in a chunk: rows re-read inside the "
                                "lookback window are resent, not recognised by their fingerprint")


def _verify(summary: Summary, counts: Counts, allow_duplicates: bool) -> None:
    """Dead letters were within budget (``load`` checks); what remains must be exact."""
    if counts.duplicates and not allow_duplicates:
        sample = f" (e.g. {', '.join(repr(i) for i in counts.duplicate_ids)})" if counts.duplicate_ids else ""
        raise VerificationError(
            f"{counts.duplicates} duplicate key(s) in the query result{sample}; alias not changed "
            "(fix job.key, or pass --allow-duplicates to keep the row latest in source order)"
        )
    if summary.documents_in_index != counts.indexed:
        raise VerificationError(
            f"the new index holds {summary.documents_in_index} documents but {counts.indexed} distinct keys "
            "were read; alias not changed"
        )


# ------------------------------------------------------------------ sync


async def sync(
    job: Job, *, progress: Progress = Progress(), engine: Engine | None = None,
    state_file: Path | None = None, stop: asyncio.Event | None = None,
    dead_letter_file: Path | None = None, include_doc: bool = False,
) -> Summary:
    """Index the rows changed since the stored watermark (minus the lookback) into the alias."""
    if not job.job.watermark:
        raise ConfigError("sync needs job.watermark (the column that grows when a row changes)")
    async with run("sync", job, engine, state_file, dead_letter_file, include_doc) as frame:
        await _sync(job, frame, progress, stop)
    return frame.summary


async def _sync(job: Job, frame: Run, progress: Progress, stop: asyncio.Event | None) -> None:
    settings, alias = job.job, job.job.alias
    engine, summary, store = frame.engine, frame.summary, frame.store
    if not await engine.alias_targets(alias):
        raise EngineError(f"alias {alias!r} does not exist: run `indexer reindex` first")
    summary.index = await engine.write_index(alias)  # exactly one write target, or refuse before reading
    state = await store.load(alias)
    summary.watermark_before = summary.watermark = state.watermark
    if state.watermark is None:
        raise ConfigError(f"no watermark is stored for alias {alias!r}: run `indexer reindex` with "
                          "job.watermark set first (it records where sync starts)")
    try:
        wm.value_kind(state.watermark)
    except wm.NotAPointError as exc:  # stored by an earlier version: psycopg2's datetime.max for 'infinity'
        raise ConfigError(f"the stored watermark of alias {alias!r}: {exc.reason}; nothing later could ever be "
                          "read: run `indexer reindex` to store a real one") from None
    sql = extract.sync_query(job)
    params = source.dialect(job.source.dbtype).params(
        {**settings.params, "since": incremental.since(state, settings.lookback)}, sql)
    plan = ReadPlan(sql, params, "sync", kind=wm.value_kind(state.watermark), skip=incremental.skip(state))
    found = await asyncio.to_thread(extract.probe, job, plan, count=progress.counting)
    if found.total is not None:
        progress.total(found.total)
    advance = incremental.Advance(state, settings.lookback)
    running = RunRecord(command="sync", started=frame.started.isoformat())

    async def store_progress(chunks: list[Chunk]) -> None:
        for chunk in chunks:
            _note_watermarks(summary, chunk, settings.watermark)
        new = advance.add(chunks)
        if new is None:
            return  # nothing new: no write
        new.index, new.last_run = summary.index, running
        frame.lease.check()
        await store.save(alias, new)
        summary.watermark = new.watermark

    counts = Counts()
    sender = Sender(engine, alias, max_bytes=settings.chunk_bytes, scrub_reasons=not frame.dead.include_doc)
    try:
        await load(lambda: extract.read_chunks(job, plan), sender, settings, counts, dead=frame.dead,
                   progress=progress, on_acked=store_progress, stop=stop)
    finally:
        summary.count(counts)
    if summary.null_watermarks:  # sync reads no NULL watermark: these are infinity, NaN...
        summary.warnings.insert(0, f"{summary.null_watermarks} row(s) whose {settings.watermark!r} is no point in "
                                   "time: indexed, but that value is never stored as the watermark")
    summary.outcome = "stopped" if stop and stop.is_set() else "dead_letters" if summary.dead_lettered else "ok"
    if summary.sent:
        await engine.refresh(alias)  # `status` and searches see this run's writes from now on
    final = await store.load(alias)
    last = final.last_run
    if not summary.sent and not summary.dead_lettered and last is not None and last.outcome in ("ok", "stopped"):
        return  # nothing new and the last run went well: no state write at all
    final.index, final.last_run = summary.index, summary.record()
    frame.lease.check()
    await store.save(alias, final)


# ------------------------------------------------------------------ status


@dataclass
class Status:
    """What the stored state says, what the alias holds, and what the source holds."""

    job: str
    alias: str
    alias_indices: list[str]
    watermark: Any
    last_run: dict | None
    last_reconcile: dict | None
    documents_in_alias: int | None  # as of the alias's last refresh (reindex and sync refresh at their end)
    rows_in_source: int
    difference: int | None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


async def status(job: Job, *, engine: Engine | None = None, state_file: Path | None = None) -> Status:
    own = engine is None
    engine = engine or await open_engine(job.target)
    try:
        state = await state_store(engine, state_file).load(job.job.alias)
        live = await engine.alias_targets(job.job.alias)
        in_alias = await engine.count(job.job.alias) if live else None
    finally:
        if own:
            await engine.close()
    rows = await asyncio.to_thread(_source_count, job)
    return Status(job.name, job.job.alias, live, state.watermark,
                  state.last_run.as_dict() if state.last_run else None,
                  state.last_reconcile.as_dict() if state.last_reconcile else None, in_alias, rows,
                  None if in_alias is None else rows - in_alias)


def _source_count(job: Job) -> int:
    with source.connect(job.source, job.job.chunk_size) as conn:
        if not job.job.deleted:
            return source.count_rows(conn, job.job.query, user_params(job))
        groups = source.count_by(conn, job.job.query, user_params(job), job.job.deleted)
        return sum(n for flag, n in groups if not documents.is_true(flag))
