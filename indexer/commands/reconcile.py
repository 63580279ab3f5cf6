"""``indexer reconcile``: make the ids under the alias equal to the ids the job's query produces now (and,
with job.digest, the documents' contents too).

::

    run frame (lease) -> the alias's write index, refreshed
      source ids (worker thread) --SortedIds--> sorted runs on disk --\\
      index ids (scroll, no _source) --SortedIds--> sorted runs ------ merge-join --> to_delete (sorted runs)
                                                                                 \\-> to_index  (sorted runs)
      (job.digest: (id, digest) pairs both sides, SortedPairs; the index's read from indexer_digest)
                                                                                 \\-> changed   (sorted runs)
      -> refusals (min_ratio, empty source) -> [--dry-run stops here]
      -> sink.load(delete chunks from to_delete, then index chunks from a second read of the source
         keeping only rows whose id is in to_index or changed) -> Sender -> counts
      -> state (last_reconcile, last_run)
      (before the first write: sync's marks of the documents to delete forgotten, incremental.forget)

Decisions (what is compared, in bounded memory, and how the repair reads the rows: ``indexer.drift``):

* **Which index.** The alias's write index (the one writes go to), read by ``Engine.ids``. An
  id missing from that read (a scroll page lost to a retried request) can only cause a
  needless re-index, never a delete.
* **Counts.** ``compared = unchanged + changed + to_delete + to_index`` (distinct ids on either side;
  ``changed`` is 0 without job.digest). The
  write phase is counted by ``counts.Counts`` from the engine's answers, as in reindex and sync:
  each id to delete and each row to index is one action taken up, so ``rows_read`` counts those
  and the sums of docs/running.md still hold. Dead letters and the error budget are the sink's.
* **Refusals.** RefusedError (exit 1, outcome ``refused``, nothing written) when the index would keep fewer than
  ``job.min_ratio`` of its documents, or when the source yields no id while the index holds
  some; ``force`` overrides (with a warning). ``dry_run`` computes the same counts and samples,
  reports a refusal as a warning, and writes nothing: no action, no state. It still takes the
  lock, so a sync cannot change the index under the comparison; like every run, a dry run that
  fails is recorded in ``last_run``.
* **State.** A finished run stores its record as ``last_run`` and ``last_reconcile``; a failed or
  refused one stores ``last_reconcile`` too (best effort), so that ``sync --every`` with
  ``reconcile_every`` waits a full interval before trying again. Before it sends anything, a run drops
  sync's marks of the documents it is about to delete: a row restored as it was, at the same watermark,
  inside the lookback window, would otherwise be skipped by the next sync as still indexed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer import incremental, spill
from indexer.cluster import opened
from indexer.config import Job
from indexer.drift import Diff, compare, compare_content, refusal, source_ids, write_chunks
from indexer.engine import Engine
from indexer.errors import IndexerError, RefusedError
from indexer.run import Run, Summary, outcome_of, run, state_store, utc_now
from indexer.sink import Progress, Sender, check_error_budget, load
from indexer.spill import DEFAULT_RUN_SIZE, SortedIds, SortedPairs
from indexer.state import Outcome
from indexer.watermark import parse_duration


@dataclass(kw_only=True)
class ReconcileSummary(Summary):
    """A reconcile's summary: the run's counts (``Summary``) and the comparison's."""

    dry_run: bool = False
    in_source: int = 0        # distinct ids the query produces
    in_index: int = 0         # ids in the alias's write index
    digest: bool = False      # contents compared too (job.digest)
    compared: int = 0         # distinct ids on either side = unchanged + changed + to_delete + to_index
    unchanged: int = 0
    changed: int = 0          # in both, the index's document differs (or has no digest): re-indexed
    to_delete: int = 0        # in the index, not in the source
    to_index: int = 0         # in the source, not in the index
    no_id: int = 0            # source rows without a usable id (a NULL key): left out, as a reindex does
    index_passes: int = 0     # reads of the source to index the missing ids
    sample_to_delete: list[str] = field(default_factory=list)
    sample_to_index: list[str] = field(default_factory=list)
    sample_changed: list[str] = field(default_factory=list)
    ids_per_second: float = 0.0


async def reconcile(
    job: Job, *, dry_run: bool = False, force: bool = False, progress: Progress = Progress(),
    engine: Engine | None = None, state_file: Path | None = None, dead_letter_file: Path | None = None,
    include_doc: bool = False, temp_dir: Path | None = None, run_size: int = DEFAULT_RUN_SIZE,
) -> ReconcileSummary:
    """Delete the ids the source no longer has, index the ones the index lacks or holds changed (see the module
    docstring)."""
    with spill.workspace(job.job.alias, temp_dir) as folder:
        async with run("reconcile", job, engine, state_file, dead_letter_file, include_doc,
                       ReconcileSummary, progress) as frame:
            try:
                await _reconcile(job, frame, folder, dry_run, force, progress, run_size)
            except IndexerError as exc:
                if not dry_run:
                    await _remember_failure(job, frame, exc)
                raise
    done = frame.summary
    if done.seconds:
        done.ids_per_second = round(done.compared / done.seconds, 1)
    return done


async def _reconcile(job: Job, frame: Run[ReconcileSummary], folder: Path, dry_run: bool, force: bool,
                     progress: Progress, run_size: int) -> None:
    settings, engine, summary = job.job, frame.engine, frame.summary
    summary.dry_run, summary.digest = dry_run, settings.digest_on  # first: a failure's summary says so too
    index = summary.index = await engine.write_index(settings.alias)
    await engine.refresh(index)  # documents written since the last refresh are read too
    diff = await _compare(job, engine, index, folder, run_size)
    summary.in_source, summary.in_index = diff.in_source, diff.in_index
    summary.unchanged, summary.changed = diff.unchanged, diff.changed.added
    summary.to_delete, summary.to_index = diff.to_delete.added, diff.to_index.added
    summary.compared = summary.unchanged + summary.changed + summary.to_delete + summary.to_index
    summary.no_id, summary.sample_to_delete, summary.sample_to_index, summary.sample_changed = (
        diff.no_id, diff.sample_to_delete, diff.sample_to_index, diff.sample_changed)
    problem = refusal(settings, index, diff.in_source, diff.in_index, diff.to_delete.added)
    if problem and dry_run:
        summary.warnings.append(f"without --dry-run this would be refused: {problem}")
    elif problem and force:
        summary.warnings.append(f"--force: {problem}")
    elif problem:
        raise RefusedError(f"reconcile refused: {problem}; nothing was written "
                           "(check the query and its parameters, or pass --force)")
    writes = diff.to_index.added + diff.changed.added
    if writes > run_size:
        summary.warnings.append(f"{writes} ids to index take {-(-writes // run_size)} "
                                "reads of the source; `indexer reindex` is the cheaper repair for this much")
    if dry_run:
        summary.outcome = Outcome.DRY_RUN
        return
    summary.index_passes = await _write(job, frame, index, diff, progress, run_size)


async def _compare(job: Job, engine: Engine, index: str, folder: Path, run_size: int) -> Diff:
    """Both sides read at once, spilled sorted, then merge-joined; with job.digest, (id, digest) pairs."""
    diff = Diff(SortedIds(folder, "delete", run_size), SortedIds(folder, "add", run_size),
                SortedIds(folder, "changed", run_size))
    if job.job.digest_on:
        pairs, indexed = SortedPairs(folder, "source", run_size), SortedPairs(folder, "index", run_size)
        diff.no_id = await _read_both(job, pairs, engine.ids(index, digest=True), indexed)
        return await asyncio.to_thread(compare_content, pairs.sorted(), indexed.sorted(), diff)
    ids, in_index = SortedIds(folder, "source", run_size), SortedIds(folder, "index", run_size)
    diff.no_id = await _read_both(job, ids, engine.ids(index), in_index)
    return await asyncio.to_thread(compare, ids.sorted(), in_index.sorted(), diff)


async def _read_both(job: Job, from_source: SortedIds | SortedPairs, pages: AsyncGenerator[list[Any], None],
                     from_index: SortedIds | SortedPairs) -> int:
    """The source (in a worker thread) and the index's pages (the scroll) read at once, each into its spill;
    the source rows without an id."""
    stop = threading.Event()

    async def scroll() -> None:
        async with contextlib.aclosing(pages):
            async for page in pages:
                from_index.add(page)

    reading = asyncio.ensure_future(asyncio.to_thread(source_ids, job, from_source, stop))
    scrolling = asyncio.ensure_future(scroll())
    try:
        await asyncio.gather(reading, scrolling)  # the first failure ends the comparison
    finally:
        stop.set()  # the source read ends at its next chunk; the scroll is cleared
        scrolling.cancel()
        await asyncio.wait({reading, scrolling})
        for task in (reading, scrolling):
            if not task.cancelled():
                task.exception()  # retrieved: the one that failed first is already raised
    return reading.result()


async def _write(job: Job, frame: Run, index: str, diff: Diff, progress: Progress, run_size: int) -> int:
    """Send the deletes and the missing rows to the write index; store the run. The source reads made."""
    settings, summary = job.job, frame.summary
    progress.total(diff.to_delete.added + diff.to_index.added + diff.changed.added)
    counts, passes = summary.counts, list[int]()
    sender = Sender.for_job(frame.engine, index, settings, include_doc=frame.dead_letters.include_doc,
                            guard=frame.lease.check)
    state = await frame.store.load(settings.alias)
    forgotten = await asyncio.to_thread(incremental.forget, state.marks, diff.to_delete.sorted())
    if forgotten is not state.marks:  # stored before any delete is sent: a run that fails midway forgot them too
        state.marks = forgotten
        frame.lease.check()
        await frame.store.save(settings.alias, state)
    frame.lease.check()
    await load(lambda: write_chunks(job, diff, run_size, passes), sender, settings, counts,
               dead_letters=frame.dead_letters, progress=progress)
    check_error_budget(settings, counts, final=True)
    if counts.sent:
        await frame.engine.refresh(index)
    summary.outcome = Outcome.DEAD_LETTERS if counts.dead_lettered else Outcome.OK
    state = await frame.store.load(settings.alias)
    state.last_run = state.last_reconcile = summary.record()
    frame.lease.check()
    await frame.store.save(settings.alias, state)
    return len(passes)


async def _remember_failure(job: Job, frame: Run, exc: IndexerError) -> None:
    """Best effort: a failed or refused reconcile is ``last_reconcile`` too (the frame records ``last_run``)."""
    frame.summary.error, frame.summary.outcome = str(exc), outcome_of(exc)
    with contextlib.suppress(Exception):
        frame.lease.check()
        state = await frame.store.load(job.job.alias)
        state.last_reconcile = frame.summary.record()
        async with asyncio.timeout(10):
            await frame.store.save(job.job.alias, state)


async def due(job: Job, *, engine: Engine | None = None, state_file: Path | None = None) -> bool:
    """Whether ``job.reconcile_every`` has passed since the last reconcile started (``sync --every``)."""
    every = job.job.reconcile_every
    if every is None:
        return False
    async with opened(job.target, engine) as connected:
        last = (await state_store(connected, state_file).load(job.job.alias)).last_reconcile
    if last is None or not last.started:
        return True
    return utc_now() - dt.datetime.fromisoformat(last.started) >= parse_duration(every)
