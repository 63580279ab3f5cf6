"""The one place where threads meet asyncio.

::

    worker thread: make_iter() -> item, item, ... --(bounded asyncio.Queue)--> get() in any task

Database drivers block, so extraction and encoding run in a worker thread while
the event loop keeps several bulk requests in flight. The queue is bounded, so a
slow cluster stops the reader (back-pressure) instead of growing memory. The
worker's exception is re-raised by ``get()`` in the event loop; ``close()`` asks
the worker to stop after its current item and waits for it, so no thread
outlives a run.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ThreadFeed(Generic[T]):
    """Run ``make_iter()`` in a thread; hand its items to coroutines through a bounded queue."""

    def __init__(self, make_iter: Callable[[], Iterator[T]], maxsize: int) -> None:
        self._make_iter = make_iter
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)
        self._stop = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="indexer-source", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Blocking put from the worker; False when asked to stop while waiting."""
        future = asyncio.run_coroutine_threadsafe(self._queue.put(item), self._loop)
        while True:
            try:
                future.result(timeout=0.05)
                return True
            except concurrent.futures.TimeoutError:
                if self._stop.is_set():
                    future.cancel()
                    return False
            except (concurrent.futures.CancelledError, RuntimeError):
                return False  # the loop is gone or the put was cancelled

    def _run(self) -> None:
        try:
            iterator = self._make_iter()
            try:
                for item in iterator:
                    if self._stop.is_set() or not self._put(item):
                        return
            finally:
                close = getattr(iterator, "close", None)
                if close:
                    close()
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, not swallowed
            if not self._stop.is_set():
                self._put(_Failed(exc))
            return
        if not self._stop.is_set():
            self._put(_END)

    async def get(self) -> T | None:
        """The next item, None at the end; re-raises the worker's exception. Safe for many consumers."""
        item = await self._queue.get()
        if item is _END or isinstance(item, _Failed):
            self._queue.put_nowait(item)  # let every other consumer see it too
            if isinstance(item, _Failed):
                raise item.exc
            return None
        return item

    async def close(self) -> None:
        """Stop the worker after its current item and wait for it to finish."""
        self._stop.set()
        while not self._queue.empty():  # unblock a worker waiting on a full queue
            self._queue.get_nowait()
        await asyncio.to_thread(self._thread.join)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
