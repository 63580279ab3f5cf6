"""The frame of one writing run (reindex, sync, reconcile): its summary, its clock, its lease and its record.

::

    run(command, job) --> files checked --> engine (opened here unless given) --> state store
        --> the cluster's lease on the alias --> Run(summary, engine, store, dead letters, lease, started, watermark)
            [the command works inside, counting into summary.counts]
        <-- on failure, refusal or interruption: last_run recorded here (the command records success)
        <-- always: dead-letter file closed, seconds and docs/s in the summary

The summary holds the run's ``counts.Counts`` (composition: the very object the run counts into),
and shows its numbers beside its own fields, in JSON and in the record it stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from indexer.cluster import opened
from indexer.config import Job
from indexer.counts import Counts
from indexer.deadletter import DeadLetters
from indexer.engine import Engine
from indexer.errors import IndexerError, RefusedError
from indexer.lease import Lease, LeaseLostError
from indexer.sink import Progress
from indexer.state import ClusterState, FileState, Outcome, RunRecord, StateStore

if TYPE_CHECKING:
    from indexer.extract import Chunk
    from indexer.slices import SliceResult


def utc_now() -> dt.datetime:
    """The only clock a run reads (index names, run times); never used inside documents."""
    return dt.datetime.now(dt.UTC)


_ODD_WATERMARK = "watermark values that cannot be compared or are no point in time"


@dataclass(kw_only=True)
class Summary:
    """What a run did: its record (command, times, outcome, error), its ``counts``, and what only the
    terminal shows; one line, or JSON with --json (the counts' numbers beside the other fields)."""

    command: str
    job: str
    alias: str
    started: str
    ended: str | None = None
    outcome: Outcome = Outcome.FAILED
    error: str | None = None
    counts: Counts = field(default_factory=Counts)
    index: str | None = None
    previous: list[str] = field(default_factory=list)
    engine: str = ""
    dead_letter_file: str | None = None
    requests_retried: int = 0  # whole requests sent again (Engine.request); counts' ``retried`` counts items
    documents_in_index: int | None = None
    documents_in_alias_before: int | None = None  # reindex: what the alias served before the swap
    force_swap: bool = False                      # reindex: the swap guard was overridden
    null_watermarks: int = 0                      # rows indexed whose watermark is NULL (reindex) or unusable
    child_rows: int = 0                           # nested documents: child rows read into documents
    orphans: int = 0                              # child rows whose parent the parent query did not return
    partitions: int = 0                           # reindex: slices read in parallel (0: not partitioned)
    workers: int = 0                              # reindex: the processes that ran slices (here or on Dask)
    warnings: list[str] = field(default_factory=list)
    deleted_indices: list[str] = field(default_factory=list)
    watermark_before: Any = None
    watermark: Any = None
    seconds: float = 0.0
    docs_per_second: float = 0.0

    def as_dict(self) -> dict:
        """The summary as --json prints it: every field, the counts as their numbers (flat)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "counts"}
        head = {name: fields.pop(name) for name in ("command", "job", "alias", "started", "ended", "outcome")}
        return {**head, **self.counts.numbers(), **fields}

    def note_orphans(self) -> None:
        """Say once how many child rows found no parent (left out of every document)."""
        if self.orphans:
            self.warnings.append(f"{self.orphans} child row(s) whose parent the parent query did not return: left "
                                 "out (filter the child queries like job.query to read fewer; docs/nested.md)")

    def record(self) -> RunRecord:
        """The ``last_run`` stored for this run, ended now."""
        self.ended = utc_now().isoformat()
        return RunRecord(self.command, self.started, self.ended, self.outcome, self.error, self.counts.numbers())


S = TypeVar("S", bound=Summary)


@dataclass
class Run(Generic[S]):
    """One writing run in progress: what every stage of it reports into (``summary``: the command's kind)."""

    summary: S
    engine: Engine
    store: StateStore
    dead_letters: DeadLetters
    lease: Lease
    started: dt.datetime
    watermark: str | None  # the job's watermark column

    def note_watermarks(self, chunk: Chunk | SliceResult) -> None:
        """Carry a chunk's (or a slice's) watermark notes into the summary, each warning once."""
        summary = self.summary
        summary.null_watermarks += chunk.null_watermarks
        summary.child_rows += chunk.child_rows
        summary.orphans += chunk.orphans
        if chunk.odd_watermark and not any(w.startswith(_ODD_WATERMARK) for w in summary.warnings):
            summary.warnings.append(f"{_ODD_WATERMARK} (first: {chunk.odd_watermark})")
        if chunk.unpaired and self.watermark and not any("job.transform" in w for w in summary.warnings):
            summary.warnings.append("job.transform changed the number of documents in a chunk: rows re-read inside "
                                    "the lookback window are resent, not recognised by their fingerprint")


def state_store(engine: Engine, state_file: Path | None) -> StateStore:
    return FileState(state_file) if state_file else ClusterState(engine)


def dead_letters(job: Job, path: Path | None, include_doc: bool, started: dt.datetime) -> DeadLetters:
    path = path or job.base_dir / f"{job.name}.dead-letters.ndjson"
    return DeadLetters(path, job.name, job.job.alias, job.job.key, started.isoformat(), include_doc)


async def _record(store: StateStore | None, summary: Summary) -> None:
    """Record a run that did not finish in ``last_run`` (best effort: the cluster may be what
    failed). Only ``last_run`` is written, so this is safe without the lock."""
    if store is None:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(10):
            await asyncio.shield(store.record_run(summary.alias, summary.record()))


# The summary of the run started last in this process (a watch loop runs one at a time).
latest: list[Summary | None] = [None]


def outcome_of(exc: BaseException) -> Outcome:
    """The recorded outcome of a run that ended with ``exc``."""
    return Outcome.REFUSED if isinstance(exc, RefusedError) else Outcome.FAILED


@contextlib.asynccontextmanager
async def run(command: str, job: Job, engine: Engine | None, state_file: Path | None,
              dead_letter_file: Path | None, include_doc: bool, kind: type[S],
              progress: Progress = Progress()) -> AsyncIterator[Run[S]]:
    """The frame every writing command shares: summary (of the command's ``kind``), dead-letter file,
    engine, the lease on the alias, and the run record: saved by the command on success, here on failure,
    refusal (the lock held by another run, a guard) or interruption (Ctrl-C, SIGTERM).

    Every file the run will write is checked first, before a row is read. A failure carries the
    summary so far (``exc.summary``: ``--json`` prints it); ``progress`` is told when the lock is taken and
    let go (the daemon's metrics show it). A failure of a run whose lease was lost
    meanwhile is reported as the lost lease, its own error after it: the lost lease is the cause.
    """
    started_clock, started = time.monotonic(), utc_now()
    summary = kind(command=command, started=started.isoformat(), job=job.name, alias=job.job.alias)
    latest[0] = summary  # what --json prints when the run is interrupted (the CLI sees no exception of ours)
    store: StateStore | None = None
    dead = dead_letters(job, dead_letter_file, include_doc, started)
    # What is entered here (the engine, the lease) is left after the handlers below ran: a failure is
    # recorded while the engine is still open (and the lock still held).
    async with contextlib.AsyncExitStack() as stack:
        try:
            dead.check()
            if state_file:
                FileState(state_file).check()
            connected = await stack.enter_async_context(opened(job.target, engine))
            stack.callback(lambda: setattr(summary, "requests_retried", connected.retries))
            summary.engine = connected.flavor
            store = state_store(connected, state_file)
            # the lock is the cluster's lease whichever store keeps the state: one lock per alias
            stack.callback(progress.holding, False)  # called once the lease below was let go (or never taken)
            lease = await stack.enter_async_context(ClusterState(connected).lease(job.job.alias))
            progress.holding(True)
            try:
                yield Run(summary, connected, store, dead, lease, started, job.job.watermark)
            except IndexerError as exc:
                # The lost lease is the cause of what failed next (another run deleted our index...):
                # asked once more of the cluster, since the renewal may not have run since.
                if not isinstance(exc, LeaseLostError) and await lease.confirm_lost():
                    raise LeaseLostError(f"{lease.describe_loss()} (the run then failed: {exc})") from exc
                raise
        except IndexerError as exc:
            summary.outcome, summary.error = outcome_of(exc), str(exc)
            exc.summary = summary  # type: ignore[attr-defined]
            await _record(store, summary)
            raise
        except (asyncio.CancelledError, KeyboardInterrupt):
            summary.outcome, summary.error = Outcome.INTERRUPTED, "interrupted by a signal (Ctrl-C or SIGTERM)"
            await _record(store, summary)
            raise
        except Exception as exc:  # a defect of ours: recorded all the same, then the CLI reports it in one line
            summary.outcome = Outcome.FAILED
            summary.error = f"unexpected {type(exc).__name__} (run with --debug for the traceback)"
            exc.summary = summary  # type: ignore[attr-defined]
            await _record(store, summary)
            raise
        finally:
            dead.close()
            if dead.count:
                summary.dead_letter_file = str(dead.path)
            summary.seconds = round(time.monotonic() - started_clock, 3)
            if summary.seconds:
                summary.docs_per_second = round(summary.counts.sent / summary.seconds, 1)
