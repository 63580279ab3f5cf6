"""Slices run by worker processes on this machine (``reindex --workers N``): the local runner.

::

    run_local(tasks) --a process pool (spawn) of ``workers``--> _attempt(task) in a worker --> slices.run_slice
        rows done --a manager's queue--> _Rows.drain --> on_rows (the coordinator's progress)
        a failed attempt --> again, first in line (up to SLICE_ATTEMPTS) | a dead worker --> a new pool

Retries: a slice that fails is run again, up to ``slices.SLICE_ATTEMPTS`` attempts in all, also when
its worker process dies (the pool is then replaced); ``slices.NOT_RETRIED`` failures are not.
Rows travel through a manager's queue, one request per put: a worker killed in the middle of one
(SIGKILL, the OOM killer) breaks only its own connection. A plain multiprocessing.Queue shares one
write lock between the workers, and a worker killed while holding it hangs the rest.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from indexer import tune_gc
from indexer.errors import IndexerError
from indexer.slices import (
    NOT_RETRIED,
    SLICE_ATTEMPTS,
    AttemptFailed,
    SliceFailed,
    SliceResult,
    SliceTask,
    failed,
    run_slice,
)

_POLL_SECONDS = 0.5  # how soon the runner notices a stop request


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
        raise AttemptFailed(text, isinstance(exc, NOT_RETRIED), code) from None


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
        todo = collections.deque(tasks)
        results: dict[int, SliceResult] = {}
        tries: collections.Counter[int] = collections.Counter()
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
                except AttemptFailed as exc:
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
            cause = AttemptFailed("its worker process died", True, 1)
        raise failed(task, cause, attempts)
    todo.appendleft(task)


