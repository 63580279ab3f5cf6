"""A partitioned reindex's slices on a Dask distributed cluster (``--cluster`` / ``job.cluster``).

::

    coordinator: run_on_dask -> Client(address) -> one task per slice -> results in slice order
    worker:      _run(task, report) -> slices.run_slice(task, report) -> SliceResult
    progress:    report(n) -> Worker.log_event(ROWS_TOPIC) -> scheduler -> _Rows (this run's) -> on_rows
    failure:     the first slice that fails for good -> _stop on every worker -> running slices raise at
                 their next report, queued ones before they read -> wait for them -> SliceFailed, one line

Only the task travels: a ``SliceTask`` holds the job, whose passwords are variable *names*; each
worker reads the values from its own environment. Retries: Dask reruns a slice whose worker died
(up to ``distributed.scheduler.allowed-failures`` deaths) and retries one that raised
(``retries=SLICE_ATTEMPTS - 1``); a ConfigError or VerificationError comes back as the task's value
instead, so it is not retried (the local runner's rule: it would fail the same way again). A rerun
resends the same deterministic ids. ``distributed`` is imported only here, only for a cluster run.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.metadata
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from indexer.errors import ConfigError, IndexerError
from indexer.slices import NOT_RETRIED, SLICE_ATTEMPTS, SliceFailed, SliceResult, SliceTask, failed, run_slice

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler before the run gives up (nothing sent yet)
STOP_WAIT = 25.0  # seconds the slices still running get to notice a failure before they are cancelled
POLL_SECONDS = 0.2  # how soon a set ``stop`` is noticed
# One topic for every run: the scheduler keeps a bounded log per topic and never drops a topic.
ROWS_TOPIC = "indexer-rows"

# In each worker process: the runs whose slices must stop (set by the coordinator through Client.run).
_stopped: set[str] = set()


class _Stopped(IndexerError):
    """A slice of a run that already failed: it stops instead of reading or sending on."""


_NOT_RETRIED = (*NOT_RETRIED, _Stopped)


class Report:
    """The ``report`` a slice calls on its worker: rows finished go to the coordinator as an event
    (``log_event`` only queues a message: it never waits), and a stopped run raises here."""

    def __init__(self, run_id: str, number: int) -> None:
        self.run_id, self.number = run_id, number

    def __call__(self, rows: int | None) -> None:
        from distributed import get_worker

        if self.run_id in _stopped:
            raise _Stopped("stopped: another slice of this run failed")
        get_worker().log_event(ROWS_TOPIC, [self.run_id, self.number, rows])


def _run(task: SliceTask, report: Report) -> SliceResult | IndexerError:
    """The task Dask runs: one slice. A failure that another attempt would repeat is returned, not raised."""
    try:
        report(None)  # an attempt starts (raises when the run already stopped)
        return run_slice(task, report)
    except _NOT_RETRIED as exc:
        return exc


def _stop(run_id: str) -> None:
    _stopped.add(run_id)


def _forget(run_id: str) -> None:
    _stopped.discard(run_id)


def _attempts(keys: list[str], dask_scheduler: Any = None) -> dict[str, int]:
    """On the scheduler: how many times each task ran, its retries used and its workers' deaths."""
    tasks = (dask_scheduler.tasks.get(key) for key in keys)
    return {ts.key: 1 + (SLICE_ATTEMPTS - 1 - ts.retries) + ts.suspicious for ts in tasks if ts is not None}


class _Rows:
    """One run's row events (``[run id, slice number, rows]``), forwarded to ``on_rows``; a rerun
    slice first takes back what its earlier attempt reported. Events come on the client's thread and
    may lag the results: :meth:`settle` makes the total the slices' rows read, and drops later ones."""

    def __init__(self, run_id: str, on_rows: Callable[[int], None]) -> None:
        self.run_id, self.on_rows, self.lock, self.settled = run_id, on_rows, threading.Lock(), False
        self.reported: collections.Counter[int] = collections.Counter()

    def __call__(self, event: tuple[float, list]) -> None:
        run_id, number, rows = event[1]
        with self.lock:
            if self.settled or run_id != self.run_id:
                return
            if rows is None:  # an attempt starts
                rows = -self.reported.pop(number, 0)
            else:
                self.reported[number] += rows
        if rows:
            self.on_rows(rows)

    def settle(self, results: list[SliceResult]) -> None:
        with self.lock:
            self.settled = True
            missing = sum(r.counts.rows_read - self.reported[r.number] for r in results)
        if missing:
            self.on_rows(missing)


def run_on_dask(tasks: list[SliceTask], *, address: str, on_rows: Callable[[int], None],
                stop: threading.Event | None = None) -> list[SliceResult]:
    """Run every slice on the scheduler at ``address``; their results in slice order.

    Blocking. Raises SliceFailed (one line naming the slice) when a slice fails for good, or when
    ``stop`` is set (Ctrl-C in the coordinator), once the other slices have stopped; IndexerError
    when the scheduler cannot be reached; ConfigError when Dask is not installed, or a worker does
    not run this version of indexer.
    """
    distributed = _import_distributed()
    client = _connect(distributed, address)
    run_id = uuid.uuid4().hex[:12]
    try:
        _check_workers(client)
        rows = _Rows(run_id, on_rows)
        client.subscribe_topic(ROWS_TOPIC, rows)
        futures = [
            client.submit(_run, task, Report(run_id, task.slice.number), retries=SLICE_ATTEMPTS - 1, pure=False,
                          key=f"indexer-slice-{task.slice.number}-{run_id}")
            for task in tasks
        ]
        try:
            results = _results(distributed, client, futures, tasks, stop or threading.Event())
            rows.settle(results)
            return results
        except BaseException:  # a failed slice, or Ctrl-C in the coordinator: no slice goes on writing
            _wind_down(distributed, client, futures, run_id)
            raise
        finally:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(ROWS_TOPIC)
    finally:
        client.close()


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError("--cluster needs Dask: pip install 'indexer[dask]'") from None
    return distributed


def _connect(distributed: Any, address: str) -> Any:
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise IndexerError(f"cannot reach the Dask scheduler at {address} within {CONNECT_TIMEOUT:.0f} s "
                           f"({type(exc).__name__}); nothing was run") from None


def _check_workers(client: Any) -> None:
    """Every worker connected now runs this version of indexer (one that joins later is not checked)."""
    try:
        here = importlib.metadata.version("indexer")
    except importlib.metadata.PackageNotFoundError:
        return  # run from a source tree, not installed: no version to compare with
    found = client.run(importlib.metadata.version, "indexer", on_error="return")
    for worker, version in sorted(found.items()):
        if isinstance(version, BaseException):
            raise ConfigError(f"Dask worker {worker} cannot run indexer ({type(version).__name__}: {version}): "
                              "install indexer on every worker")
        if version != here:
            raise ConfigError(f"Dask worker {worker} runs indexer {version}, this is {here}: "
                              "install the same version on every worker")


def _results(distributed: Any, client: Any, futures: list, tasks: list[SliceTask],
             stop: threading.Event) -> list[SliceResult]:
    """Every slice's result once all have finished, in slice order; SliceFailed for the first that
    failed for good, or when ``stop`` is set."""
    by_key = {future.key: (position, task) for position, (future, task) in enumerate(zip(futures, tasks, strict=True))}
    results: list[Any] = [None] * len(futures)
    pending = distributed.as_completed(futures, loop=client.loop)
    while True:
        for future in pending.next_batch(block=False):
            position, task = by_key[future.key]
            value = future.result() if future.status == "finished" else None
            if not isinstance(value, SliceResult):
                raise _failure(distributed, client, future, task, value)
            results[position] = value
        if pending.is_empty():
            break
        if stop.wait(POLL_SECONDS):
            raise SliceFailed("the run was stopped")
    attempts = client.run_on_scheduler(_attempts, [future.key for future in futures])
    for future, result in zip(futures, results, strict=True):
        result.attempts = attempts.get(future.key, 1)
    return results


def _failure(distributed: Any, client: Any, future: Any, task: SliceTask, value: Any) -> SliceFailed:
    """The run's one line for a task that failed for good (slices.failed names the slice)."""
    attempts = client.run_on_scheduler(_attempts, [future.key]).get(future.key, SLICE_ATTEMPTS)
    if isinstance(value, IndexerError):
        return failed(task, value, attempts)
    if future.status != "error":
        return failed(task, IndexerError(f"its Dask task was {future.status}"), attempts)
    exc = future.exception()
    if isinstance(exc, distributed.KilledWorker):  # its last attempt died too: none ran after it
        return failed(task, IndexerError("the worker processes running it died"), attempts - 1)
    return failed(task, exc, attempts)


def _wind_down(distributed: Any, client: Any, futures: list, run_id: str) -> None:
    """Tell every worker this run stopped, and wait until no slice of it runs any more, so the
    coordinator deletes the new index only once nothing writes into it."""
    try:
        client.run(_stop, run_id, on_error="ignore")
        for _ in distributed.as_completed(futures, loop=client.loop, timeout=STOP_WAIT):
            pass
    except Exception as exc:  # noqa: BLE001 - the scheduler gone, or STOP_WAIT passed: cancel what is left
        log.warning("the slices of a failed run did not all stop (%s); cancelling them", type(exc).__name__)
    with contextlib.suppress(Exception):  # the run's own error is the one to report
        client.cancel(futures)
        client.run(_forget, run_id, on_error="ignore")
