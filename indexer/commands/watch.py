"""``indexer sync --every``: sync passes one after another until SIGINT/SIGTERM, a reconcile when one is due;
one such loop per job, side by side, in one process.

::

    watch_all(jobs): one task per job, job i starting i/n of its period late (the passes spread out)
      loop: [reconcile when job.reconcile_every has passed] -> a sync pass -> the observer told
            -> wait the job's period (or until stop) -> again
    observer: passed(command, summary) | failed(command, exc, then) -- the terminal or the JSON log prints
              them, the metrics count them (``daemon``); progress: the pass's rows and its lock

Which failures the loop outlives: a failed pass (the cluster or the database down, the lock held by a
reindex, the SQLite file moved away by a backup for a moment) is reported, recorded by the pass's run
frame, and retried at the next tick. A ConfigError before any pass succeeded ends a lone job's loop (exit
2): the job file or the options are wrong. Once a pass succeeded, the same job against the same sources
worked, so a ConfigError then is the world changing under it: an outage too. With several jobs, no job's
failure ends the loops: each goes on failing and retrying, and the others never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from indexer.commands import reconcile as reconciling
from indexer.commands.sync import sync
from indexer.config import Job
from indexer.errors import ConfigError, IndexerError
from indexer.run import Summary
from indexer.sink import Progress

log = logging.getLogger(__name__)


class Observer(Protocol):
    """Told of every pass of a watch loop, as it ends."""

    def passed(self, command: str, summary: Summary) -> None:
        """A pass that finished (ok, with dead letters, or stopped)."""

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        """A pass that failed or was refused; ``then``: what the loop does next."""


class Silent:
    """An observer that tells nobody (the default)."""

    def passed(self, command: str, summary: Summary) -> None:
        pass

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        pass


SILENT = Silent()


@dataclass
class Watched:
    """One job of a watch: its period (``every_text`` as the user wrote it), who is told of its passes and
    who follows its sync passes' rows and lock."""

    job: Job
    every: float
    every_text: str
    observer: Observer = SILENT
    progress: Progress = Progress()
    offset: float = 0.0  # seconds before its first pass


async def watch_all(jobs: list[Watched], *, stop: asyncio.Event, state_file: Path | None = None,
                    dead_letter_file: Path | None = None, include_doc: bool = False) -> None:
    """Every job's loop at once until ``stop``; a lone job's ConfigError before its first success ends it
    (raised), with several jobs nothing does. Each job's first pass waits ``offset``."""
    lone = len(jobs) == 1

    async def one(w: Watched) -> None:
        if w.offset and await _stopped(stop, w.offset):
            return
        await watch(w.job, w.every, w.every_text, stop=stop, observer=w.observer, progress=w.progress,
                    give_up=lone, state_file=state_file, dead_letter_file=dead_letter_file, include_doc=include_doc)

    try:
        async with asyncio.TaskGroup() as group:
            for w in jobs:
                group.create_task(one(w))
    except ExceptionGroup as failed:  # the lone job's ConfigError, or a defect: raised as itself, for the CLI
        raise failed.exceptions[0] from None


async def watch(job: Job, every: float, every_text: str, *, stop: asyncio.Event, observer: Observer = SILENT,
                progress: Progress = Progress(), give_up: bool = True, state_file: Path | None = None,
                dead_letter_file: Path | None = None, include_doc: bool = False) -> None:
    """Sync passes every ``every`` seconds (``every_text`` as the user wrote it) until ``stop`` is set;
    returns after the pass in flight finished (a reconcile in flight is cancelled: it records itself as
    interrupted). With ``give_up``, raises a ConfigError met before any pass succeeded, and a defect of ours;
    without (one job of several), reports both as failed passes and tries again: no job ends the others."""
    succeeded = False

    async def attempt(command: str, run: Callable[[], Awaitable[Summary]], then: str) -> bool:
        """One pass, its observer told; whether it finished."""
        try:
            observer.passed(command, await run())
            return True
        except _NothingToTell:
            raise
        except IndexerError as exc:
            if give_up and not succeeded and isinstance(exc, ConfigError):
                raise
            observer.failed(command, exc, then)
        except Exception as exc:
            if give_up:
                raise
            log.debug("%s of job %s failed", command, job.name, exc_info=True)  # the traceback, with --debug
            observer.failed(command, _defect(exc), then)
        return False

    async def reconcile() -> Summary:
        if not await reconciling.due(job, state_file=state_file):
            raise _NothingToTell
        return await _unless_stopped(stop, reconciling.reconcile(
            job, progress=_Holding(progress), state_file=state_file, dead_letter_file=dead_letter_file,
            include_doc=include_doc))

    while not stop.is_set():
        if job.job.reconcile_every is not None:
            with contextlib.suppress(_NothingToTell):
                await attempt("reconcile", reconcile,
                              f"sync --every: reconcile runs again in {job.job.reconcile_every}")
        if stop.is_set():
            break
        succeeded = await attempt("sync", lambda: sync(
            job, stop=stop, progress=progress, state_file=state_file, dead_letter_file=dead_letter_file,
            include_doc=include_doc), f"sync --every: trying again in {every_text}") or succeeded
        if not stop.is_set():
            await _stopped(stop, every)


class _NothingToTell(Exception):
    """No reconcile ran to its end (none was due, or the stop cancelled it): nothing to tell the observer."""


async def _unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, Summary]) -> Summary:
    """``work`` run to its end, or cancelled once ``stop`` is set (then _NothingToTell)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, IndexerError):
            await task
        raise _NothingToTell
    return task.result()


def _defect(exc: Exception) -> IndexerError:
    """A defect of ours in one job's pass, as the failure its observer reports (the type only: its text may
    quote anything); the run frame's summary so far goes with it."""
    error = IndexerError(f"unexpected {type(exc).__name__}: this is a bug in indexer (run again with --debug for "
                         "the traceback)")
    error.summary = getattr(exc, "summary", None)  # type: ignore[attr-defined]
    return error


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop``; whether it was the stop."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    return stop.is_set()


class _Holding(Progress):
    """A reconcile's progress: only its lock goes on to the sync's progress (its rows are no sync's)."""

    def __init__(self, inner: Progress) -> None:
        self.inner = inner

    def holding(self, held: bool) -> None:
        self.inner.holding(held)
