"""sink.load: errors in any stage end the run promptly, no thread outlives it, and back-pressure bounds memory.

The source is a generator standing in for ``extract.read_chunks`` (``load`` takes the
chunk source as an argument) and the engine a small fake whose ``bulk()`` fails or
stalls on demand: this tests the wiring between the reader thread, the bounded queue
and the senders, not the cluster.
"""

import asyncio
import threading
import time

import pytest

from indexer.config import DEFAULT_QUEUE_CHUNKS, Job
from indexer.deadletter import DeadLetters
from indexer.documents import Action, dumps, index_action
from indexer.engine import ApiStatusError, BulkAnswer
from indexer.retry import RetryPolicy
from indexer.errors import SourceError
from indexer.extract import Chunk
from indexer.counts import Counts
from indexer.sink import Sender, load

JOB = Job(source={"dbtype": "SQLITE", "filename": "unused.db"}, target={"max_retry_time": 1},
          job={"alias": "t", "key": ["id"], "query": "SELECT 1", "concurrency": 2})


class SourceBroke(SourceError):
    pass


def chunks(counter: dict, fail_after: int | None = None):
    """An endless source of one-document chunks; counts what it produced."""
    def make():
        seq = 0
        try:
            while True:
                if fail_after is not None and seq == fail_after:
                    raise SourceBroke("the database went away")
                line = index_action(str(seq), dumps({"id": seq}))
                counter["produced"] = seq + 1
                yield Chunk(seq, 1, [Action(str(seq), line, 0)], [])
                seq += 1
        finally:
            counter["closed"] = True
    return make


class Engine:
    policy = RetryPolicy(max_retry_time=1)

    def __init__(self, delay: float = 0.0, fail: Exception | None = None):
        self.delay, self.fail, self.requests = delay, fail, 0

    async def bulk(self, target, body):
        self.requests += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail
        return BulkAnswer([{"index": {"status": 201, "result": "created"}}], resent=False)


def reader_threads():
    return [t for t in threading.enumerate() if t.name == "indexer-source" and t.is_alive()]


def start_load(make, engine, dead_dir, stop=None):
    dead = DeadLetters(dead_dir / "dead.ndjson", "job", "t", ["id"], "run")
    return load(make, Sender(engine, "t", fresh_index=True), JOB.job, Counts(), dead_letters=dead, stop=stop)


def run_load(make, engine, dead_dir):
    asyncio.run(start_load(make, engine, dead_dir))


def test_a_failing_source_ends_the_run_with_its_error_and_no_thread_left(tmp_path):
    counter = {}
    started = time.monotonic()
    with pytest.raises(SourceBroke, match="the database went away"):
        run_load(chunks(counter, fail_after=5), Engine(), tmp_path)
    assert time.monotonic() - started < 5
    assert counter["produced"] == 5
    assert reader_threads() == []


def test_a_failing_sink_stops_the_endless_reader_promptly(tmp_path):
    counter = {}
    started = time.monotonic()
    with pytest.raises(ApiStatusError, match="mapper_parsing_exception"):
        run_load(chunks(counter), Engine(fail=ApiStatusError(400, "mapper_parsing_exception", "bad", "bulk")), tmp_path)
    assert time.monotonic() - started < 5
    assert counter.get("closed") is True        # the reader's cleanup ran
    assert reader_threads() == []


def test_a_slow_sink_holds_the_reader_back_and_a_stop_ends_the_run(tmp_path):
    counter = {}
    engine = Engine(delay=0.2)
    seen = {}

    async def main():
        event = asyncio.Event()
        task = asyncio.create_task(start_load(chunks(counter), engine, tmp_path, stop=event))
        await asyncio.sleep(1.0)
        seen["produced"], seen["requests"] = counter["produced"], engine.requests
        event.set()
        started = time.monotonic()
        await task
        seen["stop_took"] = time.monotonic() - started

    asyncio.run(main())
    # sent or in a sender's hands, plus a full queue, plus the one the reader waits to put
    assert seen["produced"] <= seen["requests"] + JOB.job.concurrency + DEFAULT_QUEUE_CHUNKS + 1
    assert seen["produced"] < 40          # an unbounded reader would have made thousands by now
    assert seen["stop_took"] < 2          # the chunks in flight finish, nothing more
    assert reader_threads() == []
