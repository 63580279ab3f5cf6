"""Counting bulk outcomes (indexer.sink.Sender).

These are unit tests of the counting and retry logic only: the Engine is a small
fake whose ``bulk()`` answers from a script, so no cluster is involved. What a real
cluster answers is covered by the integration tests.
"""

import asyncio
import time

import pytest

from indexer.documents import delete_action, dumps, index_action
from indexer.engine import ApiStatusError
from indexer.errors import EngineError
from indexer.sink import Failure, RetryPolicy, Sender, Tally

FAST = RetryPolicy(max_retry_time=2.0, initial=0.001, cap=0.005)


class ScriptedEngine:
    """Answers each ``bulk()`` with the next scripted answer: a response, an exception, or f(body)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.bodies: list[bytes] = []
        self.targets: list[str] = []

    async def bulk(self, target: str, body: bytes) -> dict:
        self.targets.append(target)
        self.bodies.append(body)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, Exception):
            raise answer
        return answer


def engine_line(engine, n: int) -> bytes:
    """The n-th action (two lines) of the first body the engine received."""
    lines = engine.bodies[0].splitlines(keepends=True)
    return lines[2 * n] + lines[2 * n + 1]


def actions(*ids: str) -> tuple[list[str], list[bytes]]:
    return list(ids), [index_action(i, dumps({"id": i})) for i in ids]


def ok(result: str = "created", status: int = 201, op: str = "index") -> dict:
    return {op: {"status": status, "result": result}}


def error(status: int, type_: str = "", reason: str = "", op: str = "index") -> dict:
    return {op: {"status": status, "error": {"type": type_, "reason": reason}}}


def response(*items: dict) -> dict:
    return {"errors": any("error" in next(iter(i.values())) for i in items), "items": list(items)}


def all_created(body: bytes) -> dict:
    return response(*[ok() for line in body.splitlines() if line.startswith(b'{"index"')])


def send(engine, ids, lines, *, fresh_index=False, policy=FAST) -> Tally:
    tally = Tally()
    sender = Sender(engine, "sensors-20260101000000", tally, policy=policy, fresh_index=fresh_index)
    asyncio.run(sender.send(ids, lines))
    return tally


# ---------------------------------------------------------------- counting


def test_created_updated_and_deleted_are_counted_from_the_items():
    ids, lines = actions("a", "b", "c")
    ids.append("d")
    lines.append(delete_action("d"))
    engine = ScriptedEngine(response(ok(), ok("updated", 200), ok(), ok("deleted", 200, op="delete")))
    tally = send(engine, ids, lines)
    assert (tally.sent, tally.created, tally.updated, tally.deleted) == (4, 2, 1, 1)
    assert tally.indexed == 3 and tally.failed == [] and tally.bulk_requests == 1
    assert engine.bodies == [b"".join(lines)] and engine.targets == ["sensors-20260101000000"]


def test_deleting_a_document_that_is_already_gone_is_not_a_failure():
    engine = ScriptedEngine(response({"delete": {"status": 404, "result": "not_found"}}))
    tally = send(engine, ["gone"], [delete_action("gone")])
    assert tally.failed == [] and tally.retried == 0 and tally.bulk_requests == 1


def test_indexing_answered_404_is_a_failure():
    engine = ScriptedEngine(response(error(404, "index_not_found_exception", "no such index")))
    tally = send(engine, *actions("a"))
    assert tally.failed == [Failure("a", 404, "index_not_found_exception", "no such index", engine_line(engine, 0))]


def test_items_answered_429_are_resent_alone_in_order_and_then_counted():
    ids, lines = actions("a", "b", "c", "d")
    engine = ScriptedEngine(
        response(ok(), error(429, "es_rejected_execution_exception"), ok(), error(429, "es_rejected_execution_exception")),
        response(ok(), ok()),
    )
    tally = send(engine, ids, lines)
    assert engine.bodies[1] == lines[1] + lines[3]
    assert (tally.created, tally.retried, tally.bulk_requests, tally.failed) == (4, 2, 2, [])


def test_items_still_rejected_when_the_retry_time_is_over_become_failures():
    engine = ScriptedEngine(response(ok(), error(429)), response(error(429)))
    tally = send(engine, *actions("a", "b"), policy=RetryPolicy(max_retry_time=0.05, initial=0.001, cap=0.005))
    assert tally.created == 1
    assert [(f.id, f.type) for f in tally.failed] == [("b", "retry_time_exceeded")]
    assert tally.bulk_requests > 2


def test_a_mapping_error_becomes_a_failure_with_its_reason_and_is_not_retried():
    engine = ScriptedEngine(response(ok(), error(400, "mapper_parsing_exception", "failed to parse field [reading]")))
    tally = send(engine, *actions("a", "b"))
    assert tally.failed == [Failure("b", 400, "mapper_parsing_exception", "failed to parse field [reading]",
                                    engine_line(engine, 1))]
    assert (tally.created, tally.retried, tally.bulk_requests) == (1, 0, 1)


def test_updated_in_a_fresh_index_records_the_duplicate_key():
    engine = ScriptedEngine(response(ok(), ok("updated", 200)))
    tally = send(engine, *actions("a", "b"), fresh_index=True)
    assert tally.updated == 1 and tally.duplicate_ids == ["b"]


def test_updated_in_a_live_index_is_not_a_duplicate():
    engine = ScriptedEngine(response(ok("updated", 200)))
    tally = send(engine, *actions("a"), fresh_index=False)
    assert tally.updated == 1 and tally.duplicate_ids == []


def test_a_response_with_the_wrong_number_of_items_is_an_engine_error():
    engine = ScriptedEngine(response(ok()))
    with pytest.raises(EngineError, match="1 items for 2 actions"):
        send(engine, *actions("a", "b"))


# ---------------------------------------------------------------- whole-request errors


def test_a_request_too_large_is_split_in_halves():
    def too_large_over_two(body: bytes):
        if body.count(b'{"index"') > 2:
            return ApiStatusError(413, "", "", "bulk into sensors")
        return all_created(body)

    ids, lines = actions("a", "b", "c", "d")
    engine = ScriptedEngine(too_large_over_two)
    tally = send(engine, ids, lines)
    assert engine.bodies == [b"".join(lines), lines[0] + lines[1], lines[2] + lines[3]]
    assert (tally.created, tally.failed) == (4, [])


def test_a_single_document_too_large_fails_alone_and_its_neighbours_are_indexed():
    ids, lines = actions("a", "b", "c")
    huge_id, huge_line = "huge", index_action("huge", dumps({"id": "huge", "text": "x" * 10_000}))
    ids.insert(1, huge_id)
    lines.insert(1, huge_line)

    def too_large_with_huge(body: bytes):
        return ApiStatusError(413, "", "", "bulk") if huge_line in body else all_created(body)

    tally = send(ScriptedEngine(too_large_with_huge), ids, lines)
    assert tally.created == 3
    assert [(f.id, f.status, f.type) for f in tally.failed] == [("huge", 413, "request_too_large")]


def test_a_request_refused_for_good_is_raised_at_once():
    engine = ScriptedEngine(ApiStatusError(401, "security_exception", "missing authentication", "bulk"), response(ok()))
    with pytest.raises(ApiStatusError, match="401 security_exception"):
        send(engine, *actions("a"))
    assert len(engine.bodies) == 1
