"""indexer.bridge: a blocking iterator feeding coroutines through a bounded queue (``ThreadFeed``)."""

import asyncio
import threading
import time

import pytest

from indexer.bridge import ThreadFeed


class SourceFailed(Exception):
    pass


def source_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "indexer-source" and t.is_alive()]


async def drain(feed: ThreadFeed) -> list:
    items = []
    while (item := await feed.get()) is not None:
        items.append(item)
    return items


def run(main, within: float = 5.0):
    """asyncio.run(main()) in a helper thread, so a feed that never stops fails the test instead of hanging it."""
    outcome = {}

    def target():
        try:
            outcome["value"] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="test-loop", daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"the feed did not finish within {within}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def wait_until(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_items_arrive_in_order_then_none():
    async def main():
        feed = ThreadFeed(lambda: iter(range(20)), maxsize=2)
        items = await drain(feed)
        after_end = await feed.get()
        await feed.close()
        return items, after_end

    assert run(main) == (list(range(20)), None)


def test_every_consumer_sees_the_end():
    async def main():
        feed = ThreadFeed(lambda: iter(["a", "b", "c"]), maxsize=1)
        results = await asyncio.gather(drain(feed), drain(feed), drain(feed))
        await feed.close()
        return results

    results = run(main)
    assert sorted(item for items in results for item in items) == ["a", "b", "c"]


def test_an_exception_from_the_source_is_raised_by_get_after_the_items_before_it():
    def rows():
        yield 1
        yield 2
        raise SourceFailed("connection lost")

    async def main():
        feed = ThreadFeed(rows, maxsize=4)
        got = [await feed.get(), await feed.get()]
        try:
            with pytest.raises(SourceFailed, match="connection lost"):
                await feed.get()
            with pytest.raises(SourceFailed):  # a second consumer sees it too
                await feed.get()
        finally:
            await feed.close()
        return got

    assert run(main) == [1, 2]


def test_an_exception_while_starting_the_source_is_raised_by_get():
    def make_iter():
        raise SourceFailed("cannot connect")

    async def main():
        feed = ThreadFeed(make_iter, maxsize=2)
        try:
            with pytest.raises(SourceFailed, match="cannot connect"):
                await feed.get()
        finally:
            await feed.close()

    run(main)


def test_a_full_queue_stops_the_producer():
    produced = 0

    def endless():
        nonlocal produced
        while True:
            produced += 1
            yield produced

    async def main():
        feed = ThreadFeed(endless, maxsize=2)
        await wait_until(lambda: produced >= 3)
        await asyncio.sleep(0.3)  # a producer that ignored the bound would be far ahead by now
        seen = produced
        await feed.close()
        return seen

    assert run(main) == 3  # two in the queue, one waiting to be put


def test_close_while_the_producer_is_blocked_returns_promptly_and_leaves_no_thread():
    produced = 0
    cleaned_up = threading.Event()

    def endless():
        nonlocal produced
        try:
            while True:
                produced += 1
                yield produced
        finally:
            cleaned_up.set()  # e.g. the cursor and connection are closed

    async def main():
        feed = ThreadFeed(endless, maxsize=2)
        await wait_until(lambda: produced >= 3)
        started = time.monotonic()
        await feed.close()
        return feed, time.monotonic() - started

    feed, took = run(main)
    assert took < 2.0
    assert feed.alive is False
    assert source_threads_alive() == []
    assert cleaned_up.is_set()


def test_close_after_the_consumer_stops_early_runs_the_source_cleanup():
    cleaned_up = threading.Event()

    def rows():
        try:
            yield from range(1000)
        finally:
            cleaned_up.set()

    async def main():
        feed = ThreadFeed(rows, maxsize=2)
        first = await feed.get()
        await feed.close()
        return first, feed.alive

    assert run(main) == (0, False)
    assert cleaned_up.is_set()
