"""One retry loop (``RetryPolicy.start`` -> ``Retry.wait``) that Engine.request retries whole requests
with: which answers, how long, which not, and what a bulk answer says about it.

The client is a small fake standing in for opensearch-py's transport (it raises
the library's real exception types); the real node is used by the fault tests.
"""

import asyncio
import logging
import time

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from indexer.engine import ApiStatusError, BulkAnswer, Engine
from indexer.retry import RetryPolicy
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


def test_the_error_after_the_retry_time_names_the_request_once_and_keeps_the_last_failure_for_debug():
    client = Client(unavailable())
    with pytest.raises(EngineError) as caught:
        request(client, RetryPolicy(max_retry_time=0.05, initial=0.001, cap=0.01), what="bulk into sensors")
    assert str(caught.value) == ("bulk into sensors: HTTP 503 unavailable_shards_exception: busy "
                                 "(gave up after retrying for 0.05s)")
    last = caught.value.__context__
    assert isinstance(last, ApiStatusError) and last.status == 503
    assert isinstance(last.__cause__, TransportError)  # the client's own exception, for --debug


def test_an_unanswered_request_keeps_the_clients_exception_as_its_cause():
    client = Client(OSConnectionError("N/A", "Connection refused", None))
    with pytest.raises(EngineError) as caught:
        request(client, retry=False)
    assert str(caught.value) == "POST /x/_bulk: cannot reach the cluster at http://127.0.0.1:9200: connection refused"
    assert isinstance(caught.value.__cause__, OSConnectionError)


def test_a_retry_waits_the_backoff_counts_its_attempts_and_logs_each_at_warning(caplog):
    retry = FAST.start("renew job lock")

    async def twice():
        await retry.wait("HTTP 503 x: busy")
        await retry.wait("HTTP 503 x: busy")

    with caplog.at_level(logging.WARNING, logger="indexer.engine"):
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


ITEMS = [{"index": {"status": 201, "result": "created"}}]


def bulk(client):
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", FAST)
    return asyncio.run(engine.bulk("sensors", b'{"index":{}}\n{}\n')), engine


def test_a_bulk_answered_at_once_was_not_resent_and_carries_only_its_items():
    answer, engine = bulk(Client({"took": 3, "errors": False, "items": ITEMS}))
    assert answer == BulkAnswer(items=ITEMS, resent=False) and engine.retries == 0


def test_a_bulk_sent_again_after_a_failed_attempt_says_it_was_resent():
    client = Client(OSConnectionError("N/A", "Connection reset by peer", None), {"errors": False, "items": ITEMS})
    answer, engine = bulk(client)
    assert answer == BulkAnswer(items=ITEMS, resent=True)
    assert client.transport.calls == 2 and engine.retries == 1


def pressure(operation_bytes: int, limit: int) -> TransportError:
    reason = ("rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
              f"all_bytes=0, coordinating_operation_bytes={operation_bytes}, max_coordinating_bytes={limit}]")
    return TransportError(429, "es_rejected_execution_exception",
                          {"error": {"type": "es_rejected_execution_exception", "reason": reason}})


def test_a_429_for_a_request_larger_than_the_nodes_whole_budget_is_a_413_at_once():
    """It was retried for max_retry_time (5 minutes) though it could never succeed: sink splits a 413."""
    client = Client(pressure(60_918_088, 53_687_091), {"items": []})
    with pytest.raises(ApiStatusError) as caught:
        request(client, RetryPolicy(max_retry_time=60, initial=0.001, cap=0.005))
    assert caught.value.status == 413 and client.transport.calls == 1
    assert "exceeds the node's indexing pressure limit" in str(caught.value)


def test_a_429_from_pressure_that_can_pass_is_retried_as_before():
    client = Client(pressure(1_000, 53_687_091), {"items": []})
    body, engine = request(client)
    assert body == {"items": []} and engine.retries == 1


def test_the_sender_splits_a_request_the_node_can_never_take_instead_of_retrying_it():
    from indexer.documents import Action, dumps, index_action
    from indexer.sink import Sender

    class Sized(Transport):
        async def perform_request(self, method, path, params=None, body=None, headers=None):
            self.calls += 1
            lines = body.count(b"\n") // 2
            if lines > 1:  # more than one document: over the node's whole budget
                raise pressure(60_918_088, 53_687_091)
            return {"items": [{"index": {"status": 201, "result": "created"}}]}

    client = Client()
    client.transport = Sized({})
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", RetryPolicy(max_retry_time=60))
    batch = [Action(i, index_action(i, dumps({"id": i})), n) for n, i in enumerate(["a", "b", "c"])]
    sent = asyncio.run(Sender(engine, "x").send(batch))
    assert sent.indexed == 3 and not sent.failed and engine.retries == 0
    assert client.transport.calls == 5  # abc -> a | bc -> b, c: split at once, never waited on
