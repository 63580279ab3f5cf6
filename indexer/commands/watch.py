"""``indexer sync --every``: sync passes one after another until SIGINT/SIGTERM, a reconcile when one is due.

::

    loop: [reconcile when job.reconcile_every has passed] -> a sync pass -> the observer told
          -> wait ``every`` (or until stop) -> again
    observer: passed(command, summary) | failed(command, exc, then) -- the terminal prints them;
              the production daemon's metrics plug in here too

Which failures the loop outlives: a failed pass (the cluster or the database down, the lock held by a
reindex, the SQLite file moved away by a backup for a moment) is reported, recorded by the pass's run
frame, and retried at the next tick. Only a ConfigError before any pass succeeded ends the loop (exit 2):
the job file or the options are wrong. Once a pass succeeded, the same job against the same sources
worked, so a ConfigError then is the world changing under it: an outage too.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from indexer.commands import reconcile as reconciling
from indexer.commands.sync import sync
from indexer.config import Job
from indexer.errors import ConfigError, IndexerError
from indexer.run import Summary


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


async def watch(job: Job, every: float, every_text: str, *, stop: asyncio.Event, observer: Observer = SILENT,
                state_file: Path | None = None, dead_letter_file: Path | None = None,
                include_doc: bool = False) -> None:
    """Sync passes every ``every`` seconds (``every_text`` as the user wrote it) until ``stop`` is set;
    returns after the pass in flight finished. Raises only a ConfigError before any pass succeeded."""
    succeeded = False

    def outlived(exc: IndexerError) -> bool:
        return succeeded or not isinstance(exc, ConfigError)

    while not stop.is_set():
        if job.job.reconcile_every is not None:
            try:
                if await reconciling.due(job, state_file=state_file):
                    observer.passed("reconcile", await reconciling.reconcile(
                        job, state_file=state_file, dead_letter_file=dead_letter_file, include_doc=include_doc))
            except IndexerError as exc:
                if not outlived(exc):
                    raise
                observer.failed("reconcile", exc, f"sync --every: reconcile runs again in {job.job.reconcile_every}")
        try:
            summary = await sync(job, stop=stop, state_file=state_file, dead_letter_file=dead_letter_file,
                                 include_doc=include_doc)
        except IndexerError as exc:
            if not outlived(exc):
                raise
            observer.failed("sync", exc, f"sync --every: trying again in {every_text}")
        else:
            succeeded = True
            observer.passed("sync", summary)
        if not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await stop.wait()
