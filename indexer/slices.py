"""A partitioned reindex's slices, the contract every runner codes against: a slice's task, its run
anywhere, its result, how its failure reads, and what the coordinator adds up.

::

    coordinator (commands.reindex)
      --SliceTask (job, slice, new index; names of secrets only)--> a runner:
          local_runner.run_local(): worker processes on this machine | dask_runner.run_on_dask(): a Dask cluster
              run_slice(): partitions.slice_query --> extract.Reader --> sink.load(Sender into the new index)
              <-- SliceResult (counts, watermark marks and notes)    rows done --report(n)--> on_rows --> progress
      <-- results in slice order --> merged(), Answers.settle() against what the index holds --> the one swap

A slice only reads, encodes, sends and counts; its dead letters travel back in its counts for the
coordinator to write. Each worker opens its own database connection and engine client, reading
passwords from its own environment by variable name.

Retries (the runners): a slice that fails is run again, up to ``SLICE_ATTEMPTS`` attempts in all.
A ConfigError or VerificationError (a missing variable, the slice's error budget exceeded) would
fail the same way again: never retried (``NOT_RETRIED``). A rerun resends documents its failed attempt
may have written; ids are deterministic, so they are overwritten, and :func:`duplicates` does not take
their ``updated`` answers for duplicate keys.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from indexer import extract
from indexer.cluster import opened
from indexer.config import Job
from indexer.counts import Answers, Counts
from indexer.errors import ConfigError, IndexerError, VerificationError
from indexer.extract import Chunk, ReadPlan
from indexer.partitions import Slice, slice_query
from indexer.sink import Progress, Sender, check_error_budget, load
from indexer.watermark import Kind

SLICE_ATTEMPTS = 3
NOT_RETRIED = (ConfigError, VerificationError)  # failures an attempt more would only repeat


class SliceFailed(IndexerError):
    """A slice failed for good; the message names the slice. Exit code: its cause's (2 for a ConfigError)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class SliceTask:
    """One slice to run; picklable, and never holds a secret (workers read passwords from their own env)."""

    job: Job
    slice: Slice
    index: str | None              # the new index to send into; None = extraction only (read + encode)
    kind: Kind | None = None       # the run's watermark kind (from the coordinator's probe)
    keep_from: Any = None          # lookback floor for marks (as ReadPlan.keep_from)
    include_doc: bool = False      # dead letters carry the document


@dataclass
class SliceResult:
    """What one slice did; picklable; everything the coordinator adds up."""

    number: int
    counts: Counts                 # this slice's counts, its dead letters included
    marks: list                    # the watermark marks of this slice (extract.Chunk.marks, all chunks)
    null_watermarks: int = 0
    child_rows: int = 0
    orphans: int = 0
    odd_watermark: str | None = None
    unpaired: bool = False
    nbytes: int = 0                # NDJSON bytes encoded
    seconds: float = 0.0           # wall time of the slice in its worker
    cpu_seconds: float = 0.0       # CPU of the worker process during the slice
    attempts: int = 1              # set by the runner: the attempt this result came from
    worker: str = ""               # the process that ran it, host:pid (the summary counts them)

    def note(self, chunks: list[Chunk]) -> None:
        for chunk in chunks:
            self.marks.extend(chunk.marks)
            self.null_watermarks += chunk.null_watermarks
            self.child_rows += chunk.child_rows
            self.orphans += chunk.orphans
            self.odd_watermark = self.odd_watermark or chunk.odd_watermark
            self.unpaired = self.unpaired or chunk.unpaired
            self.nbytes += sum(len(action.line) for action in chunk.actions)


# ------------------------------------------------------------------ one slice (in a worker)


class _Report(Progress):
    """``load``'s progress (rows finished so far) as ``report(rows finished since the last call)``."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self.report, self.done = report, 0

    def rows(self, done: int) -> None:
        if self.report is not None and done > self.done:
            self.report(done - self.done)
            self.done = done


def run_slice(task: SliceTask, report: Callable[[int], None] | None = None) -> SliceResult:
    """Blocking: read, encode and (with ``task.index``) send one slice; its counts and marks.

    ``report(n)`` is called with the rows finished since its last call, about once per chunk.
    Raises an IndexerError with one line (the caller names the slice).
    """
    started, cpu = time.monotonic(), time.process_time()
    sql, params = slice_query(task.job, task.slice)
    plan = ReadPlan(sql, params, "reindex", kind=task.kind, keep_from=task.keep_from,
                    bounds=(task.slice.lo, task.slice.hi, task.slice.nulls))
    result = SliceResult(task.slice.number, Counts(), [], worker=f"{socket.gethostname()}:{os.getpid()}")
    progress = _Report(report)
    if task.index is None:
        for chunk in extract.read_chunks(task.job, plan):
            result.counts.add(chunk, Answers())
            result.note([chunk])
            check_error_budget(task.job.job, result.counts)
            progress.rows(result.counts.rows_read)
    else:
        asyncio.run(_send(task, plan, result, progress))
    result.seconds = round(time.monotonic() - started, 3)
    result.cpu_seconds = round(time.process_time() - cpu, 3)
    return result


async def _send(task: SliceTask, plan: ReadPlan, result: SliceResult, progress: Progress) -> None:
    settings = task.job.job
    async with opened(task.job.target) as engine:
        sender = Sender.for_job(engine, task.index or "", settings, include_doc=task.include_doc, fresh_index=True)

        async def remember(chunks: list[Chunk]) -> None:
            result.note(chunks)

        await load(lambda: extract.read_chunks(task.job, plan), sender, settings, result.counts, dead_letters=None,
                   progress=progress, on_acked=remember)


def failed(task: SliceTask, exc: BaseException, attempts: int) -> SliceFailed:
    """The run's one line for a slice that failed for good, with its cause's exit code."""
    s, column = task.slice, task.job.job.partition_by or "?"
    what = str(exc) if isinstance(exc, (IndexerError, AttemptFailed)) else f"{type(exc).__name__}: {exc}"
    return SliceFailed(f"{s.name()} ({s.describe(column)}) failed after {attempts} attempt(s): {what}",
                       getattr(exc, "exit_code", 1))


class AttemptFailed(Exception):
    """An attempt's failure as it crosses back from a worker process (plain, so it always unpickles)."""

    def __init__(self, message: str, final: bool, exit_code: int) -> None:
        super().__init__(message, final, exit_code)
        self.message, self.final, self.exit_code = message, final, exit_code

    def __str__(self) -> str:
        return self.message


# ------------------------------------------------------------------ the coordinator's side


class RowTotal:
    """``on_rows`` for the runners: adds up the rows reported (from any thread) into ``progress``."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.done, self.lock = progress, 0, threading.Lock()

    def __call__(self, rows: int) -> None:
        with self.lock:
            self.done += rows
            self.progress.rows(self.done)


def merged(results: list[SliceResult]) -> Counts:
    """All slices' counts in one; duplicate samples only from slices not rerun (see :func:`duplicates`)."""
    total = Counts()
    for result in results:
        if result.attempts > 1:
            result.counts.answers.duplicate_ids = []
        total.merge(result.counts)
    return total
