"""A partitioned reindex's slices: one slice run anywhere, the local runner, and what the coordinator adds up.

::

    coordinator (pipeline._reindex)
      --SliceTask (job, slice, new index; names of secrets only)--> run_slices()
          --> run_local(): worker processes on this machine     | dask_runner.run_on_dask(): a Dask cluster
              run_slice(): partitions.slice_query --> extract.Reader --> sink.load(Sender into the new index)
              <-- SliceResult (counts, watermark marks and notes)    rows done --report(n)--> on_rows --> progress
      <-- results in slice order --> duplicates() against what the index holds --> the one swap

A slice only reads, encodes, sends and counts; its dead letters travel back in its counts for the
coordinator to write. Each worker opens its own database connection and engine client, reading
passwords from its own environment by variable name.

Retries (local runner): a slice that fails is run again, up to ``SLICE_ATTEMPTS`` attempts in all,
also when its worker process dies (the pool is then replaced). A ConfigError or VerificationError
(a missing variable, the slice's error budget exceeded) would fail the same way again: never retried.
A rerun resends documents its failed attempt may have written; ids are deterministic, so they are
overwritten, and :func:`duplicates` does not take their ``updated`` answers for duplicate keys.

(About 370 lines: a slice, the local runner and the coordinator's side of them are one contract,
the one ``dask_runner`` also codes against; they stay together.)
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from indexer import extract, tune_gc
from indexer.config import Job
from indexer.engine import open_engine
from indexer.errors import ConfigError, IndexerError, VerificationError
from indexer.extract import Chunk, ReadPlan
from indexer.partitions import Slice, slice_query
from indexer.sink import Counts, Progress, Sender, Sent, check_error_budget, load

SLICE_ATTEMPTS = 3
NOT_RETRIED = (ConfigError, VerificationError)  # failures an attempt more would only repeat
_POLL_SECONDS = 0.5                        # how soon the local runner notices a stop request


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
    kind: str | None = None        # the run's watermark kind (from the coordinator's probe)
    keep_from: Any = None          # lookback floor for marks (as ReadPlan.keep_from)
    include_doc: bool = False      # dead letters carry the document


@dataclass
class SliceResult:
    """What one slice did; picklable; everything the coordinator adds up."""

    number: int
    counts: Counts                 # this slice's counts, its dead letters included
    marks: list                    # the watermark marks of this slice (extract.Chunk.marks, all chunks)
    null_watermarks: int = 0
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
    plan = ReadPlan(sql, params, "reindex", kind=task.kind, keep_from=task.keep_from)
    result = SliceResult(task.slice.number, Counts(), [], worker=f"{socket.gethostname()}:{os.getpid()}")
    progress = _Report(report)
    if task.index is None:
        for chunk in extract.read_chunks(task.job, plan):
            result.counts.add(chunk, Sent())
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
    engine = await open_engine(task.job.target)
    try:
        sender = Sender(engine, task.index, fresh_index=True, max_bytes=settings.chunk_bytes,
                        scrub_reasons=not task.include_doc)

        async def remember(chunks: list[Chunk]) -> None:
            result.note(chunks)

        await load(lambda: extract.read_chunks(task.job, plan), sender, settings, result.counts, dead=None,
                   progress=progress, on_acked=remember)
    finally:
        await engine.close()


def failed(task: SliceTask, exc: BaseException, attempts: int) -> SliceFailed:
    """The run's one line for a slice that failed for good, with its cause's exit code."""
    s, column = task.slice, task.job.job.partition_by or "?"
    what = str(exc) if isinstance(exc, (IndexerError, _AttemptFailed)) else f"{type(exc).__name__}: {exc}"
    return SliceFailed(f"{s.name()} ({s.describe(column)}) failed after {attempts} attempt(s): {what}",
                       getattr(exc, "exit_code", 1))


# ------------------------------------------------------------------ the local runner


class _AttemptFailed(Exception):
    """An attempt's failure as it crosses back from a worker process (plain, so it always unpickles)."""

    def __init__(self, message: str, final: bool, exit_code: int) -> None:
        super().__init__(message, final, exit_code)
        self.message, self.final, self.exit_code = message, final, exit_code

    def __str__(self) -> str:
        return self.message


_rows_queue: Any = None  # in a worker process: where it reports rows (set by _start_worker)


def _start_worker(queue: Any, parent: int) -> None:
    """A worker process's start: Ctrl-C is the coordinator's to handle (it stops the workers), and a
    worker whose coordinator died (killed) exits instead of writing on into an abandoned index."""
    global _rows_queue
    _rows_queue = queue
    tune_gc()  # the worker does the command's work: the command line's collector setting
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _attempt(task: SliceTask, attempt: int) -> SliceResult:
    """One attempt at a slice, in a worker process."""
    number = task.slice.number
    try:
        return run_slice(task, lambda n: _rows_queue.put((number, attempt, n)))
    except Exception as exc:
        code = exc.exit_code if isinstance(exc, IndexerError) else 1
        text = str(exc) if isinstance(exc, IndexerError) else f"{type(exc).__name__}: {exc}"
        raise _AttemptFailed(text, isinstance(exc, NOT_RETRIED), code) from None


class _Rows:
    """Rows the workers report, forwarded to ``on_rows``; a rerun slice first takes back its earlier attempt's."""

    def __init__(self, on_rows: Callable[[int], None]) -> None:
        self.on_rows = on_rows
        self.lock = threading.Lock()
        self.attempt: dict[int, int] = {}
        self.reported: collections.Counter[int] = collections.Counter()

    def restart(self, number: int, attempt: int) -> None:
        with self.lock:
            self.attempt[number] = attempt
            taken = self.reported.pop(number, 0)
        if taken:
            self.on_rows(-taken)

    def drain(self, queue: Any) -> None:
        """Until ``None`` arrives: ``(slice number, attempt, rows)`` from the workers, stale attempts ignored."""
        while (message := queue.get()) is not None:
            number, attempt, rows = message
            with self.lock:
                if self.attempt.get(number) != attempt:
                    continue
                self.reported[number] += rows
            self.on_rows(rows)


def run_local(tasks: list[SliceTask], *, workers: int, on_rows: Callable[[int], None],
              stop: threading.Event | None = None) -> list[SliceResult]:
    """Blocking: run the slices in ``workers`` processes on this machine; their results in slice order.

    A pool takes the next slice as one ends (at most ``workers`` at a time), so slices of unequal
    size even out. A failed attempt is retried (see the module's docstring); when a slice fails for
    good, or ``stop`` is set, the workers are stopped and SliceFailed raised.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    # Rows travel through a manager's queue, one request per put: a worker killed in the middle of
    # one (SIGKILL, the OOM killer) breaks only its own connection. A plain multiprocessing.Queue
    # shares one write lock between the workers, and a worker killed while holding it hangs the rest.
    with context.Manager() as manager:
        queue = manager.Queue()
        rows = _Rows(on_rows)
        drain = threading.Thread(target=rows.drain, args=(queue,), daemon=True, name="slice-rows")
        drain.start()
        todo, results, tries = collections.deque(tasks), {}, collections.Counter()
        try:
            while todo:
                _one_pool(context, queue, min(workers, len(todo)), todo, results, tries, rows, stop)
        finally:
            queue.put(None)
            drain.join()
    return [results[task.slice.number] for task in tasks]


def _one_pool(context: Any, queue: Any, workers: int, todo: collections.deque, results: dict,
              tries: collections.Counter, rows: _Rows, stop: threading.Event | None) -> None:
    """Run ``todo`` on one pool until every slice is done, one fails for good, or a worker process
    dies (the pool is then broken: the slices it held go back into ``todo`` for the next pool)."""
    before = {child.pid for child in multiprocessing.active_children()}
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                                  initargs=(queue, os.getpid()))
    running: dict[concurrent.futures.Future, SliceTask] = {}
    broken, finished = False, False
    try:
        while todo and not broken or running:
            while todo and not broken and len(running) < workers:
                task = todo.popleft()
                tries[task.slice.number] += 1
                rows.restart(task.slice.number, tries[task.slice.number])
                running[pool.submit(_attempt, task, tries[task.slice.number])] = task
            done, _ = concurrent.futures.wait(running, timeout=_POLL_SECONDS,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            if stop is not None and stop.is_set():
                raise SliceFailed("the run was stopped")
            for future in done:
                task = running.pop(future)
                attempts = tries[task.slice.number]
                try:
                    result = future.result()
                except BrokenProcessPool as exc:
                    broken = True
                    _again(task, todo, attempts, final=False, cause=exc)
                except _AttemptFailed as exc:
                    _again(task, todo, attempts, exc.final, exc)
                else:
                    result.attempts = attempts
                    results[task.slice.number] = result
        finished = True
    finally:
        if not finished:  # stop the slices still running: they would write on into an index being deleted
            for child in multiprocessing.active_children():
                if child.pid not in before:
                    child.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


def _again(task: SliceTask, todo: collections.deque, attempts: int, final: bool, cause: BaseException) -> None:
    """Queue a failed slice for another attempt, first in line; or fail the run when it has had its last."""
    if final or attempts >= SLICE_ATTEMPTS:
        if isinstance(cause, BrokenProcessPool):
            cause = _AttemptFailed("its worker process died", True, 1)
        raise failed(task, cause, attempts)
    todo.appendleft(task)


# ------------------------------------------------------------------ the coordinator's side


class RowTotal:
    """``on_rows`` for the runners: adds up the rows reported (from any thread) into ``progress``."""

    def __init__(self, progress: Progress) -> None:
        self.progress, self.done, self.lock = progress, 0, threading.Lock()

    def __call__(self, rows: int) -> None:
        with self.lock:
            self.done += rows
            self.progress.rows(self.done)


async def run_slices(job: Job, tasks: list[SliceTask], workers: int,
                     on_rows: Callable[[int], None]) -> list[SliceResult]:
    """The slices' results, run off the event loop: on the Dask scheduler at ``job.cluster``, else in
    local worker processes. Cancelled (Ctrl-C, SIGTERM), the slices are stopped before it returns."""
    stop = threading.Event()
    if job.job.cluster:
        try:
            from indexer.dask_runner import run_on_dask
        except ImportError as exc:
            raise ConfigError("--cluster needs Dask: pip install 'indexer[dask]'") from exc
        work = functools.partial(run_on_dask, tasks, address=job.job.cluster, on_rows=on_rows, stop=stop)
    else:
        work = functools.partial(run_local, tasks, workers=workers, on_rows=on_rows, stop=stop)
    outcome: concurrent.futures.Future = concurrent.futures.Future()
    outcome.set_running_or_notify_cancel()  # running: cancelling the awaiting coroutine leaves it to the thread

    def body() -> None:
        try:
            outcome.set_result(work())
        except BaseException as exc:  # handed to the awaiting coordinator, which re-raises it
            outcome.set_exception(exc)

    # A daemon thread, not the default executor: a runner slow to stop must not hold the process's exit.
    thread = threading.Thread(target=body, daemon=True, name="slices")
    thread.start()
    try:
        return await asyncio.wrap_future(outcome)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.to_thread(thread.join, 30)
        raise


def merged(results: list[SliceResult]) -> Counts:
    """All slices' counts in one; duplicate samples only from slices not rerun (see :func:`duplicates`)."""
    total = Counts()
    for result in results:
        if result.attempts > 1:
            result.counts.duplicate_ids = []
        total.merge(result.counts)
    return total


def duplicates(results: list[SliceResult], in_index: int) -> int:
    """Repeated keys across and within slices: what the slices wrote minus what the index holds.

    Every action a slice's final attempt saw answered 2xx (``created`` or ``updated``) is in the
    index unless a later one with the same key replaced it; a rerun's ``updated`` answers echo its
    failed attempt and are no duplicates, so they are not counted from the answers but from the index.
    More documents than that means rows changed between a slice's attempts: refused too.
    """
    written = sum(r.counts.indexed + r.counts.duplicates for r in results)
    if in_index > written:
        raise VerificationError(f"the new index holds {in_index} documents but the slices wrote {written}: "
                                "rows changed between a slice's attempts; alias not changed")
    return written - in_index

