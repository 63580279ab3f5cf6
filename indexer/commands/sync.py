"""``indexer sync``: the rows changed since the stored watermark (minus the lookback), into the alias.

::

    run frame (lease) -> the alias's one write index -> the stored watermark (a real point in time)
      -> incremental.since / skip -> extract.probe -> sink.load(extract.Reader -> Sender through the alias)
         (nested documents: then child_sync's chunks, the parents of each child's changed rows, rewritten whole)
      -> incremental.Advance over acknowledged chunks, in source order -> state after every one of them
      -> refresh -> the run recorded (nothing new and the last run well: no write at all)

A watch loop (``sync --every``) runs this pass after pass: ``commands.watch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

from indexer import child_sync, extract, incremental, sources
from indexer import watermark as wm
from indexer.config import Job
from indexer.engine import Engine
from indexer.errors import ConfigError, EngineError
from indexer.extract import Chunk, ReadPlan
from indexer.run import Run, Summary, run
from indexer.sink import Progress, Sender, load
from indexer.sources.base import SINCE
from indexer.state import JobState, Outcome, RunRecord


async def sync(
    job: Job, *, progress: Progress = Progress(), engine: Engine | None = None,
    state_file: Path | None = None, stop: asyncio.Event | None = None,
    dead_letter_file: Path | None = None, include_doc: bool = False,
) -> Summary:
    """Index the rows changed since the stored watermark (minus the lookback) into the alias."""
    if not job.job.watermark:
        raise ConfigError("sync needs job.watermark (the column that grows when a row changes)")
    async with run("sync", job, engine, state_file, dead_letter_file, include_doc, Summary, progress) as frame:
        await _sync(job, frame, progress, stop)
    return frame.summary


async def _sync(job: Job, frame: Run, progress: Progress, stop: asyncio.Event | None) -> None:
    settings, alias = job.job, job.job.alias
    engine, summary, store = frame.engine, frame.summary, frame.store
    if not await engine.alias_targets(alias):
        raise EngineError(f"alias {alias!r} does not exist: run `indexer reindex` first")
    summary.index = await engine.write_index(alias)  # exactly one write target, not red, or refuse before reading
    state = incremental.for_index(await store.load(alias), summary.index)
    summary.watermark_before = summary.watermark = state.watermark
    plan = _plan(job, state)
    child_plans = child_sync.plans(job, state)
    found = await asyncio.to_thread(extract.probe, job, plan, count=progress.counting)
    if found.total is not None:
        progress.total(found.total)
    advance = incremental.Advance(state, settings.lookback, child_sync.lookbacks(job))
    running = RunRecord(command="sync", started=frame.started.isoformat())

    async def store_progress(chunks: list[Chunk]) -> None:
        for chunk in chunks:
            frame.note_watermarks(chunk)
        new = advance.add(chunks)
        if new is None:
            return  # nothing new: no write
        new.index, new.last_run = summary.index, running
        frame.lease.check()
        await store.save(alias, new)
        summary.watermark = new.watermark

    counts = summary.counts
    sender = Sender.for_job(engine, alias, settings, include_doc=frame.dead_letters.include_doc,
                            guard=frame.lease.check)
    def read() -> Iterator[Chunk]:
        """The parent's changed rows, then (nested documents) the parents of each child's changed rows."""
        seq = -1
        with contextlib.closing(extract.read_chunks(job, plan)) as parents:
            for chunk in parents:
                seq = chunk.seq
                yield chunk
        if child_plans:
            with contextlib.closing(child_sync.chunks(job, child_plans, seq + 1)) as rewritten:
                yield from rewritten

    # With children one document may be written more than once in a pass (its own row changed, then a child's):
    # the later read must land last, so those passes send one request at a time, in order.
    sending = settings.model_copy(update={"concurrency": 1}) if child_plans else settings
    await load(read, sender, sending, counts, dead_letters=frame.dead_letters,
               progress=progress, on_acked=store_progress, stop=stop)
    summary.note_orphans()
    if summary.null_watermarks:  # sync reads no NULL watermark: these are infinity, NaN...
        summary.warnings.insert(0, f"{summary.null_watermarks} row(s) whose {settings.watermark!r} is no point in "
                                   "time: indexed, but that value is never stored as the watermark")
    summary.outcome = (Outcome.STOPPED if stop and stop.is_set()
                       else Outcome.DEAD_LETTERS if counts.dead_lettered else Outcome.OK)
    if counts.sent:
        await engine.refresh(alias)  # `status` and searches see this run's writes from now on
    final = await store.load(alias)
    last = final.last_run
    if not counts.sent and not counts.dead_lettered and last is not None \
            and last.outcome in (Outcome.OK, Outcome.STOPPED):
        return  # nothing new and the last run went well: no state write at all
    final.index, final.last_run = summary.index, summary.record()
    frame.lease.check()
    await store.save(alias, final)


def _plan(job: Job, state: JobState) -> ReadPlan:
    """What a sync reads: the sync query, bound to the stored watermark minus the lookback, skipping the
    rows already indexed unchanged inside that window; refused without a usable stored watermark."""
    settings, alias = job.job, job.job.alias
    if state.watermark is None:
        raise ConfigError(f"no watermark is stored for alias {alias!r}: run `indexer reindex` with "
                          "job.watermark set first (it records where sync starts)")
    try:
        kind = wm.value_kind(state.watermark)
    except wm.NotAPointError as exc:  # stored by an earlier version: psycopg2's datetime.max for 'infinity'
        raise ConfigError(f"the stored watermark of alias {alias!r}: {exc.reason}; nothing later could ever be "
                          "read: run `indexer reindex` to store a real one") from None
    sql = extract.sync_query(job)
    params = sources.dialect(job.source.dbtype).params(
        {**settings.params, SINCE: incremental.since(state, settings.lookback)}, sql)
    return ReadPlan(sql, params, "sync", kind=kind, skip=incremental.skip(state, kind))
