"""``indexer reindex``: a full rebuild into a fresh index, verified, then one atomic alias swap.

::

    run frame (lease) -> indices: orphans out, the new index named -> extract.probe (columns, count, MAX)
      -> one reader:  sink.load(extract.Reader -> Sender) into the new index
       | partitioned: partitions.plan_slices -> runners.run_slices (local processes | Dask) -> slices added up,
                      their rows checked against the query's own count
      -> the error budget on the totals, duplicates and the count verified -> the swap guard
      -> lease checked -> one alias swap -> incremental.after_reindex -> state -> old indices retired

Any failure before the swap deletes the new index; the alias stays where it was (docs/safety.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from pathlib import Path

from indexer import extract, incremental, indices, slices, sources
from indexer.config import Job
from indexer.counts import Counts
from indexer.engine import Engine
from indexer.errors import ConfigError, VerificationError
from indexer.extract import Chunk, ReadPlan, user_params
from indexer.partitions import Plan as SlicePlan
from indexer.partitions import plan_slices
from indexer.run import Run, Summary, run, utc_now
from indexer.runners import run_slices
from indexer.sink import Progress, Sender, check_error_budget, load, write_dead_letters
from indexer.state import Outcome
from indexer.watermark import Mark


async def reindex(
    job: Job, *, allow_duplicates: bool = False, force_swap: bool = False, progress: Progress = Progress(),
    engine: Engine | None = None, state_file: Path | None = None,
    dead_letter_file: Path | None = None, include_doc: bool = False, workers: int | None = None,
) -> Summary:
    """Full rebuild into a fresh index, verified, then an atomic alias swap.

    With ``job.partitions`` > 1 or ``job.cluster``, the query is read as slices in parallel
    (``workers`` local processes, default one per slice up to the CPU count; or the Dask cluster).
    """
    if partitioned(job) and allow_duplicates:
        raise ConfigError("--allow-duplicates cannot be used with partitions: slices read in parallel have no "
                          "source order to pick the latest row by (reindex without partitions)")
    async with run("reindex", job, engine, state_file, dead_letter_file, include_doc, Summary, progress) as frame:
        await _reindex(job, frame, allow_duplicates, force_swap, progress, workers)
    return frame.summary


def partitioned(job: Job) -> bool:
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
    plan = dataclasses.replace(plan, kind=found.kind, keep_from=incremental.keep_from(found.source_max,
                                                                                       settings.lookback))
    planned = await asyncio.to_thread(plan_slices, job, settings.partitions) if partitioned(job) else None
    wanted = await indices.create_for_load(engine, index, settings.load_replicas)
    try:
        if planned is None:
            marks = await _load(job, frame, plan, index, wanted, progress)
        else:
            marks = await _load_slices(job, frame, plan, planned, index, wanted, progress, workers)
        if live:
            await engine.refresh(alias)
            summary.documents_in_alias_before = await engine.count(alias)
        forced = indices.swap_guard(settings, summary.documents_in_alias_before, summary.documents_in_index or 0,
                                    force_swap)
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
                                   "(docs/sync.md)")
    summary.note_orphans()
    summary.outcome = Outcome.DEAD_LETTERS if summary.counts.dead_lettered else Outcome.OK
    summary.watermark_before, summary.watermark = state.watermark, found.source_max
    new = incremental.after_reindex(state, index, found.source_max, marks, plan.keep_from, bool(settings.watermark),
                                    found.child_max)
    new.last_run = summary.record()
    frame.lease.check()
    await frame.store.save(alias, new)
    summary.deleted_indices += await indices.retire(engine, index, ours, settings.keep)


async def _load(job: Job, frame: Run, plan: ReadPlan, index: str, wanted: dict, progress: Progress) -> list[Mark]:
    """One reader, one sender: the query's rows into ``index``, counted and verified; their marks."""
    settings, summary = job.job, frame.summary
    counts = summary.counts
    marks: list[Mark] = []

    async def remember(chunks: list[Chunk]) -> None:
        for chunk in chunks:
            marks.extend(chunk.marks)
            frame.note_watermarks(chunk)

    sender = Sender.for_job(frame.engine, index, settings, include_doc=frame.dead_letters.include_doc,
                            fresh_index=True, versioned=plan.versioned, guard=frame.lease.check)
    await load(lambda: extract.read_chunks(job, plan), sender, settings, counts, dead_letters=frame.dead_letters,
               progress=progress, on_acked=remember)
    check_error_budget(settings, counts, final=True)
    # "updated" answers may be the engine's replays after a lost primary: duplicates are what the index says
    summary.documents_in_index = await indices.finish_load(frame.engine, index, wanted)
    counts.answers.settle(summary.documents_in_index)
    _verify(summary, counts, plan.versioned)
    return marks


async def _load_slices(job: Job, frame: Run, plan: ReadPlan, planned: SlicePlan, index: str, wanted: dict,
                       progress: Progress, workers: int | None) -> list[Mark]:
    """The slices in parallel into the new index; their counts added up and verified (against the query's
    own count too), their dead letters written here, the error budget judged on the totals; their marks."""
    settings, summary = job.job, frame.summary
    tasks = [slices.SliceTask(job, s, index, plan.kind, plan.keep_from, frame.dead_letters.include_doc)
             for s in planned.slices]
    summary.partitions = len(tasks)
    local = min(workers or os.cpu_count() or 1, max(len(tasks), 1))
    results = await run_slices(job, tasks, local, slices.RowTotal(progress))
    summary.workers = len({result.worker for result in results})  # the processes that ran a slice, here or on Dask
    counts = summary.counts = slices.merged(results)
    write_dead_letters(frame.dead_letters, counts.rejected, counts.answers.failed)
    for result in results:
        frame.note_watermarks(result)
    await _check_rows(job, summary, counts.rows_read, planned.rows)
    check_error_budget(settings, counts, final=True)
    in_index = summary.documents_in_index = await indices.finish_load(frame.engine, index, wanted)
    counts.answers.settle(in_index)  # a rerun slice's "updated" answers echo its failed attempt
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
    with sources.connect(job.source, job.job.chunk_size) as conn:
        return sources.count_rows(conn, job.job.query, user_params(job))


def _verify(summary: Summary, counts: Counts, allow_duplicates: bool) -> None:
    """Dead letters were within budget (``load`` checks); what remains must be exact."""
    answers = counts.answers
    if answers.duplicates and not allow_duplicates:
        sample = f" (e.g. {', '.join(repr(i) for i in answers.duplicate_ids)})" if answers.duplicate_ids else ""
        raise VerificationError(
            f"{answers.duplicates} duplicate key(s) in the query result{sample}; alias not changed "
            "(fix job.key, or pass --allow-duplicates to keep the row latest in source order)"
        )
    if summary.documents_in_index != answers.indexed:
        raise VerificationError(
            f"the new index holds {summary.documents_in_index} documents but {answers.indexed} distinct keys "
            "were read; alias not changed"
        )
