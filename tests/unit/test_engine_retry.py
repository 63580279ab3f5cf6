"""Engine.request is the one place whole requests are retried: which answers, how long, and which not.

The client is a small fake standing in for opensearch-py's transport (it raises
the library's real exception types); the real node is used by the fault tests.
"""

import asyncio
import time

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from indexer.engine import ApiStatusError, Engine, RetryPolicy
from indexer.errors import EngineError

FAST = RetryPolicy(max_retry_time=2.0, initial=0.001, cap=0.005)


class Transport:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    async def perform_request(self, method, path, params=None, body=None, headers=None):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class Client:
    def __init__(self, *answers):
        self.transport = Transport(*answers)

    async def close(self):
        pass


def unavailable():
    return TransportError(503, "unavailable", {"error": {"type": "unavailable_shards_exception", "reason": "busy"}})


def request(client, policy=FAST, **kwargs):
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", policy)
    return asyncio.run(engine.request("POST", "/x/_bulk", body=b"{}\n", **kwargs)), engine


def test_a_request_answered_503_is_retried_until_it_succeeds():
    client = Client(unavailable(), unavailable(), {"items": []})
    body, engine = request(client)
    assert body == {"items": []}
    assert client.transport.calls == 3 and engine.retries == 2


def test_a_request_that_got_no_answer_is_retried():
    client = Client(OSConnectionError("N/A", "Connection reset by peer", None), {"ok": True})
    body, _ = request(client)
    assert body == {"ok": True} and client.transport.calls == 2


def test_a_request_answered_503_past_the_retry_time_is_an_engine_error():
    client = Client(unavailable())
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"HTTP 503 unavailable_shards_exception.*gave up after retrying for 0\.1s"):
        request(client, RetryPolicy(max_retry_time=0.1, initial=0.001, cap=0.01))
    assert time.monotonic() - started < 1.0
    assert client.transport.calls > 2


def test_a_request_refused_for_good_is_raised_at_once():
    client = Client(TransportError(401, "security_exception", {"error": {"type": "security_exception", "reason": "no"}}))
    with pytest.raises(ApiStatusError, match="401 security_exception"):
        request(client)
    assert client.transport.calls == 1


def test_no_retry_when_asked_not_to():
    client = Client(OSConnectionError("N/A", "Connection refused", None), {"ok": True})
    with pytest.raises(EngineError, match="connection refused"):
        request(client, retry=False)
    assert client.transport.calls == 1


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(initial=0.5, cap=30.0)
    assert all(0.25 <= policy.delay(0) <= 0.5 for _ in range(50))
    assert all(2.0 <= policy.delay(3) <= 4.0 for _ in range(50))
    assert all(15.0 <= policy.delay(20) <= 30.0 for _ in range(50))
