"""``indexer sync JOB.toml [JOB.toml ...] --every 60s``: the production daemon, several jobs in one process.

::

    jobs (checked: distinct names and aliases) --> one Watched per job: its period (job.every, else --every),
        its observers (the report, the metrics, readiness, the textfile) and its progress (the metrics)
      --> commands.watch.watch_all (one loop per job) ... until SIGINT/SIGTERM: every pass in flight ends
      beside it: serve.MetricsServer (--metrics-port: /metrics /healthz /readyz), Health.ticking (liveness)

The loops share nothing but the process: each job has its own lease, state, schedule offset and retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from indexer.commands.watch import Observer, Watched, watch_all
from indexer.config import Job
from indexer.errors import ConfigError, IndexerError
from indexer.metrics import SUCCESS, Metrics
from indexer.run import Summary
from indexer.serve import Health, MetricsServer
from indexer.sink import Progress
from indexer.watermark import parse_duration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Serving:
    """What the daemon serves and writes besides its passes."""

    port: int | None = None          # --metrics-port: /metrics, /healthz, /readyz
    address: str = "127.0.0.1"       # --metrics-address
    metrics_file: Path | None = None  # --metrics-file: rewritten after every pass
    ready_periods: float = 3.0       # --ready-periods: /readyz wants a success within this many periods
    count_pending: bool = False      # --count-pending: each pass counts its rows first (indexer_rows_pending)


def check_jobs(jobs: list[Job]) -> None:
    """Jobs one process can run side by side: distinct names (the metrics' ``job`` label) and aliases on one
    cluster (two loops on one alias would only take its lock from each other; one alias on two clusters is a
    dual write, and fine)."""
    names: set[str] = set()
    aliases: set[tuple[str, str]] = set()
    for job in jobs:
        if job.name in names:
            raise ConfigError(f"two jobs have the job file name {job.name!r}: each job needs its own")
        where = (job.target.cloud_id or ",".join(job.target.urls), job.job.alias)
        if where in aliases:
            raise ConfigError(f"two jobs write the alias {job.job.alias!r} on {job.target.where}: each job needs "
                              "its own")
        names.add(job.name)
        aliases.add(where)


def period_of(job: Job, every: float, every_text: str) -> tuple[float, str]:
    """A job's pause between passes: its own ``job.every``, else the option's."""
    if job.job.every is None:
        return every, every_text
    return parse_duration(job.job.every).total_seconds(), job.job.every


async def daemon(jobs: list[Job], every: float, every_text: str, *, stop: asyncio.Event,
                 report: Callable[[Job], Observer], serving: Serving = Serving(), state_file: Path | None = None,
                 dead_letter_file: Path | None = None, include_doc: bool = False) -> None:
    """Every job's loop until ``stop`` (``jobs`` as :func:`check_jobs` accepts them); the metrics served and
    written as asked. The first passes spread over the shortest period (job i of n, i/n of it late)."""
    metrics = (Metrics.to_file(serving.metrics_file) if serving.metrics_file
               else Metrics() if serving.port is not None else None)
    health = Health(serving.ready_periods) if serving.port is not None else None  # what the probes read
    watched = []
    periods = [period_of(job, every, every_text) for job in jobs]
    spread = min(period for period, _ in periods)
    for i, (job, (period, text)) in enumerate(zip(jobs, periods, strict=True)):
        # the report last: once a pass is in the log, /readyz and /metrics say so already
        observers: list[Observer] = []
        if health is not None:
            health.add(job.name, period)
            observers.append(_Ready(health, job.name))
        progress = Progress()
        if metrics is not None:
            progress = metrics.job(job.name, job.job.alias, period, count=serving.count_pending)
            observers.append(progress)
            if serving.metrics_file:
                observers.append(_Textfile(metrics))
        observers.append(report(job))
        watched.append(Watched(job, period, text, _All(observers), progress, offset=i * spread / len(jobs)))
    # Every job's blocking calls (a row count, reconcile's id reads) get a thread without waiting for another
    # job's: the default pool (at most 6 threads on 2 cores) sized for the jobs; threads start only when used.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=4 + 2 * len(jobs)))
    run = watch_all(watched, stop=stop, state_file=state_file, dead_letter_file=dead_letter_file,
                    include_doc=include_doc)
    if health is None or metrics is None or serving.port is None:
        await run
        return
    server = MetricsServer(metrics, health, serving.address, serving.port)
    ticking = asyncio.Event()
    ticker = asyncio.create_task(health.ticking(ticking))
    try:
        await run
    finally:
        ticking.set()
        await ticker
        server.close()


class _All:
    """Tells every observer, in order."""

    def __init__(self, observers: list[Observer]) -> None:
        self.observers = observers

    def passed(self, command: str, summary: Summary) -> None:
        for o in self.observers:
            o.passed(command, summary)

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        for o in self.observers:
            o.failed(command, exc, then)


class _Ready:
    """Readiness: a sync pass that finished (its watermark moved) makes the job ready for its next periods."""

    def __init__(self, health: Health, name: str) -> None:
        self.health, self.name = health, name

    def passed(self, command: str, summary: Summary) -> None:
        if command == "sync" and summary.outcome in SUCCESS:
            self.health.succeeded(self.name)

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        pass


class _Textfile:
    """``--metrics-file`` in a daemon: the file rewritten after every pass (the textfile collector reads it);
    a write that fails then is a warning, never the end of the loops."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def passed(self, command: str, summary: Summary) -> None:
        self._write()

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        self._write()

    def _write(self) -> None:
        try:
            self.metrics.write_textfile()
        except ConfigError as exc:
            log.warning("%s", exc)
