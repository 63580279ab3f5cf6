"""The frame of one reindex or sync: its summary, its clock, its lease and its record.

::

    run(command, job) --> engine (opened here unless given) --> state store --> lease on the alias
        --> Run(summary, engine, store, dead letters, lease, started)   [the command works inside]
        <-- on failure, refusal or interruption: last_run recorded here (the command records success)
        <-- always: dead-letter file closed, seconds and docs/s in the summary

Counting happens in ``sink.Counts``; :meth:`Summary.count` copies those counts into
the summary once, the same way for both commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from indexer.config import Job
from indexer.deadletter import DeadLetters
from indexer.engine import Engine, open_engine
from indexer.errors import IndexerError, RefusedError
from indexer.lease import Lease, LeaseLostError
from indexer.sink import Counts
from indexer.state import ClusterState, FileState, RunRecord, StateStore


def utc_now() -> dt.datetime:
    """The only clock a run reads (index names, run times); never used inside documents."""
    return dt.datetime.now(dt.UTC)


@dataclass(kw_only=True)
class Summary(RunRecord):
    """What a reindex or sync did: the run record it stores (command, times, outcome, the
    counts it keeps) and what only the terminal shows; one line, or JSON with --json."""

    job: str
    alias: str
    outcome: str = "failed"
    index: str | None = None
    previous: list[str] = field(default_factory=list)
    engine: str = ""
    # documents = skipped + rejected + sent (= rows_read unless a transform changed the number of documents);
    # sent = indexed + duplicates + deleted + not_found + failed
    documents: int = 0
    skipped: int = 0
    duplicates: int = 0
    not_found: int = 0  # deletes of documents that were already absent
    dead_lettered: int = 0  # rejected + failed
    dead_letter_file: str | None = None
    retried: int = 0
    bulk_requests: int = 0
    requests_retried: int = 0  # whole requests sent again (Engine.request); ``retried`` counts items
    documents_in_index: int | None = None
    documents_in_alias_before: int | None = None  # reindex: what the alias served before the swap
    force_swap: bool = False                      # reindex: the swap guard was overridden
    null_watermarks: int = 0                      # rows indexed whose watermark is NULL (reindex) or unusable
    partitions: int = 0                           # reindex: slices read in parallel (0: not partitioned)
    workers: int = 0                              # reindex: the processes that ran slices (here or on Dask)
    warnings: list[str] = field(default_factory=list)
    deleted_indices: list[str] = field(default_factory=list)
    watermark_before: Any = None
    watermark: Any = None
    seconds: float = 0.0
    docs_per_second: float = 0.0
    def as_dict(self) -> dict:
        return asdict(self)

    def count(self, counts: Counts) -> None:
        """Take the run's counts (``documents = skipped + rejected + sent``,
        ``sent = indexed + duplicates + deleted + not_found + failed``)."""
        self.rows_read, self.documents, self.skipped, self.sent = (counts.rows_read, counts.documents,
                                                                    counts.skipped, counts.sent)
        self.indexed, self.duplicates, self.deleted = counts.indexed, counts.duplicates, counts.deleted
        self.not_found, self.retried, self.bulk_requests = counts.not_found, counts.retried, counts.requests
        self.failed, self.rejected = len(counts.failed), len(counts.rejected)
        self.dead_lettered = self.failed + self.rejected

    def record(self) -> RunRecord:
        """The ``last_run`` stored for this run, ended now."""
        self.ended = utc_now().isoformat()
        return RunRecord(**{f.name: getattr(self, f.name) for f in dataclasses.fields(RunRecord)})


@dataclass
class Run:
    """One reindex or sync in progress: what every stage of it reports into."""

    summary: Summary
    engine: Engine
    store: StateStore
    dead: DeadLetters
    lease: Lease
    started: dt.datetime


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
        await asyncio.wait_for(asyncio.shield(store.record_run(summary.alias, summary.record())), 10)


# The summary of the run started last in this process (a watch loop runs one at a time).
latest: list[Summary | None] = [None]


def outcome_of(exc: BaseException) -> str:
    """The recorded outcome of a run that ended with ``exc``."""
    return "refused" if isinstance(exc, RefusedError) else "failed"


@contextlib.asynccontextmanager
async def run(command: str, job: Job, engine: Engine | None, state_file: Path | None,
              dead_letter_file: Path | None, include_doc: bool) -> AsyncIterator[Run]:
    """The frame every writing command shares: summary, dead-letter file, engine, the lease on the
    alias, and the run record: saved by the command on success, here on failure, refusal (the lock
    held by another run, a guard) or interruption (Ctrl-C, SIGTERM).

    Every file the run will write is checked first, before a row is read. A failure carries the
    summary so far (``exc.summary``: ``--json`` prints it). A failure of a run whose lease was lost
    meanwhile is reported as the lost lease, its own error after it: the lost lease is the cause.
    """
    started_clock, started = time.monotonic(), utc_now()
    summary = Summary(command=command, started=started.isoformat(), job=job.name, alias=job.job.alias)
    latest[0] = summary  # what --json prints when the run is interrupted (the CLI sees no exception of ours)
    own = engine is None
    store: StateStore | None = None
    dead = dead_letters(job, dead_letter_file, include_doc, started)
    try:
        dead.check()
        if state_file:
            FileState(state_file).check()
        engine = engine or await open_engine(job.target)
        summary.engine = engine.flavor
        store = state_store(engine, state_file)
        # the lock is the cluster's lease whichever store keeps the state: one lock per alias
        async with ClusterState(engine).lease(job.job.alias) as lease:
            try:
                yield Run(summary, engine, store, dead, lease, started)
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
        summary.outcome, summary.error = "interrupted", "interrupted by a signal (Ctrl-C or SIGTERM)"
        await _record(store, summary)
        raise
    except Exception as exc:  # a defect of ours: recorded all the same, then the CLI reports it in one line
        summary.outcome = "failed"
        summary.error = f"unexpected {type(exc).__name__} (run with --debug for the traceback)"
        exc.summary = summary  # type: ignore[attr-defined]
        await _record(store, summary)
        raise
    finally:
        if engine is not None:
            summary.requests_retried = engine.retries
            if own:
                await engine.close()
        dead.close()
        if dead.count:
            summary.dead_letter_file = str(dead.path)
        summary.seconds = round(time.monotonic() - started_clock, 3)
        if summary.seconds:
            summary.docs_per_second = round(summary.sent / summary.seconds, 1)
