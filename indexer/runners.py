"""Where a partitioned reindex's slices run: local worker processes, or a Dask cluster (``job.cluster``).

::

    commands.reindex --run_slices(job, tasks)--> a daemon thread: local_runner.run_local | dask_runner.run_on_dask
        <-- [SliceResult] in slice order (awaited); cancelled: the slices are stopped before it returns

The runners block (process pools, Dask futures): they run in a thread of their own, whose result the
event loop awaits, so that the lease keeps being renewed meanwhile.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Callable

from indexer.config import Job
from indexer.errors import ConfigError
from indexer.local_runner import run_local
from indexer.slices import SliceResult, SliceTask


async def run_slices(job: Job, tasks: list[SliceTask], workers: int,
                     on_rows: Callable[[int], None]) -> list[SliceResult]:
    """The slices' results, run off the event loop: on the Dask scheduler at ``job.cluster``, else in
    ``workers`` local worker processes. Cancelled (Ctrl-C, SIGTERM), the slices are stopped before it returns."""
    stop = threading.Event()
    work: Callable[[], list[SliceResult]]
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
