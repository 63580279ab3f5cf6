"""indexer.retry: the one retry policy. Backoff that grows with jitter and is capped; one ``Retry`` per
operation that waits, counts its attempts, logs each at WARNING, and gives up without sleeping once the
next wait would pass its deadline."""

import asyncio
import logging
import time

import pytest

from indexer.errors import EngineError
from indexer.retry import RetryPolicy

FAST = RetryPolicy(max_retry_time=2.0, initial=0.001, cap=0.005)


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(initial=0.5, cap=30.0)
    assert all(0.25 <= policy.delay(0) <= 0.5 for _ in range(50))
    assert all(2.0 <= policy.delay(3) <= 4.0 for _ in range(50))
    assert all(15.0 <= policy.delay(20) <= 30.0 for _ in range(50))


def test_a_retry_waits_the_backoff_counts_its_attempts_and_logs_each_at_warning(caplog):
    retry = FAST.start("renew job lock")

    async def twice():
        await retry.wait("HTTP 503 x: busy")
        await retry.wait("HTTP 503 x: busy")

    with caplog.at_level(logging.WARNING, logger="indexer.retry"):
        asyncio.run(twice())
    assert retry.attempts == 2
    assert [r.getMessage().split(" in ")[0] for r in caplog.records] == [
        "renew job lock failed (HTTP 503 x: busy); retry 1", "renew job lock failed (HTTP 503 x: busy); retry 2"]


def test_a_retry_past_its_deadline_raises_without_sleeping():
    retry = RetryPolicy(max_retry_time=0.0, initial=10.0, cap=10.0).start("bulk into sensors")
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        asyncio.run(retry.wait("3 item(s) still answered 429/5xx"))
    assert time.monotonic() - started < 0.5 and retry.attempts == 0
    assert str(caught.value) == "bulk into sensors: 3 item(s) still answered 429/5xx (gave up after retrying for 0s)"
