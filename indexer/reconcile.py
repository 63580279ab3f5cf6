"""``reconcile``: make the ids under the alias equal to the ids the job's query produces now.

::

    run frame (lease) -> the alias's write index, refreshed
      source ids (worker thread) --SortedIds--> sorted runs on disk --\\
      index ids (scroll, no _source) --SortedIds--> sorted runs ------ merge-join --> to_delete (sorted runs)
                                                                                 \\-> to_index  (sorted runs)
      -> refusals (min_ratio, empty source) -> [--dry-run stops here]
      -> sink.load(delete chunks from to_delete, then index chunks from a second read of the source
         keeping only rows whose id is in to_index) -> Sender -> counts -> state (last_reconcile, last_run)

Decisions:

* **Which ids.** Exactly a reindex's: soft-deleted rows left out, after the transform. Without a
  transform the source is read as a projection ``SELECT q.<key...>[, q.<deleted>] FROM (<query>) q``
  (far cheaper than whole rows) when every key column is a plain column of the query; otherwise
  (a transform, a dotted key) whole rows go through ``extract.Reader`` as in a reindex. A row
  without a usable id (a NULL key) is counted in ``no_id`` and left out, as a reindex rejects it;
  it is not dead-lettered again here.
* **Which index.** The alias's write index (the one writes go to), read by ``Engine.ids``. An
  id missing from that read (a scroll page lost to a retried request) can only cause a
  needless re-index, never a delete.
* **Bounded memory.** Both sides are external-sorted (``spill``): runs of at most ``run_size``
  ids in memory, in files under ``temp_dir`` that hold ids only and are removed at the end (and
  by the next run after a SIGKILL). One merge-join compares the two sorted streams and spills the
  differences, sorted, the same way.
* **Indexing the missing ids.** Their rows come from a second read of the source that keeps rows
  whose id is in a set of at most ``run_size`` of them; more than that takes one more read per
  ``run_size`` ids (said in a warning: a reindex is then the cheaper repair). Every occurrence of a
  repeated key is sent, so the row latest in source order wins, as in a sync.
* **Counts.** ``compared = unchanged + to_delete + to_index`` (distinct ids on either side). The
  write phase is counted by ``sink.Counts`` from the engine's answers, as in reindex and sync:
  each id to delete and each row to index is one action taken up, so ``rows_read`` counts those
  and both sums of the README still hold. Dead letters and the error budget are the sink's.
* **Refusals.** RefusedError (exit 1, outcome ``refused``, nothing written) when the index would keep fewer than
  ``job.min_ratio`` of its documents, or when the source yields no id while the index holds
  some; ``force`` overrides (with a warning). ``dry_run`` computes the same counts and samples,
  reports a refusal as a warning, and writes nothing: no action, no state. It still takes the
  lock, so a sync cannot change the index under the comparison; like every run, a dry run that
  fails is recorded in ``last_run``.
* **State.** A finished run stores its record as ``last_run`` and ``last_reconcile``; a failed or
  refused one stores ``last_reconcile`` too (best effort), so that ``sync --every`` with
  ``reconcile_every`` waits a full interval before trying again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from indexer import documents, extract, source, spill
from indexer.config import SQL_IDENTIFIER, Job, JobSettings
from indexer.documents import Action
from indexer.engine import Engine, open_engine
from indexer.errors import IndexerError, RefusedError, RowError
from indexer.extract import Chunk, ReadPlan, user_params
from indexer.run import Run, Summary, outcome_of, run, state_store, utc_now
from indexer.sink import Counts, Progress, Sender, check_error_budget, load
from indexer.spill import DEFAULT_RUN_SIZE, SortedIds
from indexer.watermark import parse_duration

SAMPLE = 5  # ids shown of each kind


@dataclass(kw_only=True)
class ReconcileSummary(Summary):
    """A reconcile's summary: the run's counts (``Summary``) and the comparison's."""

    dry_run: bool = False
    in_source: int = 0        # distinct ids the query produces
    in_index: int = 0         # ids in the alias's write index
    compared: int = 0         # distinct ids on either side = unchanged + to_delete + to_index
    unchanged: int = 0
    to_delete: int = 0        # in the index, not in the source
    to_index: int = 0         # in the source, not in the index
    no_id: int = 0            # source rows without a usable id (a NULL key): left out, as a reindex does
    index_passes: int = 0     # reads of the source to index the missing ids
    sample_to_delete: list[str] = field(default_factory=list)
    sample_to_index: list[str] = field(default_factory=list)
    ids_per_second: float = 0.0


@dataclass
class Diff:
    """The comparison's outcome; the ids themselves are in the two spills."""

    to_delete: SortedIds
    to_index: SortedIds
    unchanged: int = 0
    no_id: int = 0
    sample_to_delete: list[str] = field(default_factory=list)
    sample_to_index: list[str] = field(default_factory=list)

    @property
    def in_source(self) -> int:
        return self.unchanged + self.to_index.added

    @property
    def in_index(self) -> int:
        return self.unchanged + self.to_delete.added


def compare(source_ids: Iterable[str], index_ids: Iterable[str], diff: Diff) -> Diff:
    """Merge-join two ascending streams of distinct ids into ``diff``; holds two ids at a time."""
    s, i = iter(source_ids), iter(index_ids)
    a, b = next(s, None), next(i, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a < b):
            diff.to_index.append(a)
            if len(diff.sample_to_index) < SAMPLE:
                diff.sample_to_index.append(a)
            a = next(s, None)
        elif a is None or b < a:
            diff.to_delete.append(b)
            if len(diff.sample_to_delete) < SAMPLE:
                diff.sample_to_delete.append(b)
            b = next(i, None)
        else:
            diff.unchanged += 1
            a, b = next(s, None), next(i, None)
    return diff


def refusal(settings: JobSettings, index: str, in_source: int, in_index: int, to_delete: int) -> str | None:
    """Why writing would be unsafe (a broken view, an emptied table), or None."""
    if in_index and not in_source:
        return f"the source yields no ids while {index} holds {in_index} documents"
    if in_index - to_delete < settings.min_ratio * in_index:
        return (f"{to_delete} of the {in_index} documents in {index} would be deleted, keeping fewer than "
                f"job.min_ratio = {settings.min_ratio:g} of them")
    return None


# ------------------------------------------------------------------ the source side (worker thread)


def projection(settings: JobSettings, columns: tuple[str, ...]) -> str | None:
    """The query reduced to its key (and soft-delete) columns, or None when a key is not a plain column."""
    wanted = list(dict.fromkeys([*settings.key, *([settings.deleted] if settings.deleted else [])]))
    if settings.transform or not all(c in columns and SQL_IDENTIFIER.match(c) for c in wanted):
        return None
    # bandit B608 accepted: the job's own query; the columns passed SQL_IDENTIFIER and are the query's
    return f"SELECT {', '.join(f'q.{c}' for c in wanted)} FROM ({settings.query}) q"  # nosec B608


def source_ids(job: Job, into: SortedIds, stop: threading.Event) -> int:
    """Blocking: every id the query produces, into ``into``; the rows without a usable id."""
    settings, params = job.job, user_params(job)
    with source.connect(job.source, settings.chunk_size) as conn:
        columns = source.columns_of(conn, settings.query, params)
        extract.check_columns(settings, columns, bool(settings.transform))
        sql = projection(settings, columns)
        if sql is None:
            return _ids_of_rows(job, into, stop)
        no_id = 0
        with contextlib.closing(source.iter_row_chunks(conn, sql, params, settings.chunk_size)) as chunks:
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


def _ids_of_rows(job: Job, into: SortedIds, stop: threading.Event) -> int:
    """With a transform (or a dotted key): whole rows, encoded exactly as a reindex encodes them."""
    no_id = 0
    with contextlib.closing(extract.read_chunks(job, _plan(job))) as chunks:
        for chunk in chunks:
            if stop.is_set():
                break
            into.add(action.id for action in chunk.actions)
            no_id += len(chunk.rejected)
    return no_id


def _plan(job: Job) -> ReadPlan:
    return ReadPlan(job.job.query, user_params(job), "reindex")


def write_chunks(job: Job, diff: Diff, run_size: int, passes: list[int]) -> Iterator[Chunk]:
    """Blocking: the write phase's chunks: deletes first, then the rows of the ids to index, read
    again from the source ``run_size`` ids at a time (``passes`` counts the reads)."""
    seq, size = itertools.count(), job.job.chunk_size
    for ids in spill.in_slices(diff.to_delete.sorted(), size):
        yield Chunk(next(seq), len(ids), [Action(i, documents.delete_action(i), -1) for i in ids], [])
    for wanted in spill.in_slices(diff.to_index.sorted(), run_size):
        wanted_set = set(wanted)
        passes.append(len(wanted))
        with contextlib.closing(extract.read_chunks(job, _plan(job))) as chunks:
            for chunk in chunks:
                kept = [action for action in chunk.actions if action.id in wanted_set]
                yield Chunk(next(seq), len(kept), kept, [])


# ------------------------------------------------------------------ the command


async def reconcile(
    job: Job, *, dry_run: bool = False, force: bool = False, progress: Progress = Progress(),
    engine: Engine | None = None, state_file: Path | None = None, dead_letter_file: Path | None = None,
    include_doc: bool = False, temp_dir: Path | None = None, run_size: int = DEFAULT_RUN_SIZE,
) -> ReconcileSummary:
    """Delete the ids the source no longer has, index the ones the index lacks (see the module docstring)."""
    with spill.workspace(job.job.alias, temp_dir) as folder:
        async with run("reconcile", job, engine, state_file, dead_letter_file, include_doc) as frame:
            try:
                result = await _reconcile(job, frame, folder, dry_run, force, progress, run_size)
            except IndexerError as exc:
                if not dry_run:
                    await _remember_failure(job, frame, exc)
                raise
    done = ReconcileSummary(**{f.name: getattr(frame.summary, f.name) for f in dataclasses.fields(Summary)},
                            **result)
    if done.seconds:
        done.ids_per_second = round(done.compared / done.seconds, 1)
    return done


async def _reconcile(job: Job, frame: Run, folder: Path, dry_run: bool, force: bool, progress: Progress,
                     run_size: int) -> dict:
    settings, engine, summary = job.job, frame.engine, frame.summary
    index = summary.index = await engine.write_index(settings.alias)
    await engine.refresh(index)  # documents written since the last refresh are read too
    diff = await _compare(job, engine, index, folder, run_size)
    result = {"dry_run": dry_run, "in_source": diff.in_source, "in_index": diff.in_index,
              "compared": diff.unchanged + diff.to_delete.added + diff.to_index.added, "unchanged": diff.unchanged,
              "to_delete": diff.to_delete.added, "to_index": diff.to_index.added, "no_id": diff.no_id,
              "sample_to_delete": diff.sample_to_delete, "sample_to_index": diff.sample_to_index}
    problem = refusal(settings, index, diff.in_source, diff.in_index, diff.to_delete.added)
    if problem and dry_run:
        summary.warnings.append(f"without --dry-run this would be refused: {problem}")
    elif problem and force:
        summary.warnings.append(f"--force: {problem}")
    elif problem:
        raise RefusedError(f"reconcile refused: {problem}; nothing was written "
                                "(check the query and its parameters, or pass --force)")
    if diff.to_index.added > run_size:
        summary.warnings.append(f"{diff.to_index.added} ids to index take {-(-diff.to_index.added // run_size)} "
                                "reads of the source; `indexer reindex` is the cheaper repair for this much")
    if dry_run:
        summary.outcome = "dry_run"
        return result
    result["index_passes"] = await _write(job, frame, index, diff, progress, run_size)
    return result


async def _compare(job: Job, engine: Engine, index: str, folder: Path, run_size: int) -> Diff:
    """Both sides read at once (the source in a worker thread), spilled sorted, then merge-joined."""
    from_source, from_index = SortedIds(folder, "source", run_size), SortedIds(folder, "index", run_size)
    stop = threading.Event()

    async def scroll() -> None:
        async with contextlib.aclosing(engine.ids(index)) as pages:
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
    diff = Diff(SortedIds(folder, "delete", run_size), SortedIds(folder, "add", run_size), no_id=reading.result())
    return await asyncio.to_thread(compare, from_source.sorted(), from_index.sorted(), diff)


async def _write(job: Job, frame: Run, index: str, diff: Diff, progress: Progress, run_size: int) -> int:
    """Send the deletes and the missing rows to the write index; store the run. The source reads made."""
    settings, summary = job.job, frame.summary
    progress.total(diff.to_delete.added + diff.to_index.added)
    counts, passes = Counts(), []
    sender = Sender(frame.engine, index, max_bytes=settings.chunk_bytes, scrub_reasons=not frame.dead.include_doc)
    frame.lease.check()
    try:
        await load(lambda: write_chunks(job, diff, run_size, passes), sender, settings, counts, dead=frame.dead,
                   progress=progress)
    finally:
        summary.count(counts)
    check_error_budget(settings, counts, final=True)
    if summary.sent:
        await frame.engine.refresh(index)
    summary.outcome = "dead_letters" if summary.dead_lettered else "ok"
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
        await asyncio.wait_for(frame.store.save(job.job.alias, state), 10)


# ------------------------------------------------------------------ for the CLI


def describe(summary: ReconcileSummary) -> list[str]:
    """The lines the CLI prints after the run's summary line."""
    s = summary
    lines = [f"compared {s.compared} ids = {s.unchanged} unchanged + {s.to_delete} to delete + {s.to_index} to index "
             f"({s.in_source} in the source, {s.in_index} in {s.index}; {s.no_id} source rows without an id); "
             f"{s.ids_per_second:.0f} ids/s" + ("; dry run: nothing written" if s.dry_run else "")]
    for what, sample in (("to delete", s.sample_to_delete), ("to index", s.sample_to_index)):
        if sample:
            lines.append(f"{what}, e.g.: {', '.join(repr(i) for i in sample)}")
    return lines


async def due(job: Job, *, engine: Engine | None = None, state_file: Path | None = None) -> bool:
    """Whether ``job.reconcile_every`` has passed since the last reconcile started (``sync --every``)."""
    every = job.job.reconcile_every
    if every is None:
        return False
    own = engine is None
    engine = engine or await open_engine(job.target)
    try:
        last = (await state_store(engine, state_file).load(job.job.alias)).last_reconcile
    finally:
        if own:
            await engine.close()
    if last is None or not last.started:
        return True
    return utc_now() - dt.datetime.fromisoformat(last.started) >= parse_duration(every)
