"""indexer.sink: the load stage. ``Sender`` counts every bulk outcome and retries what may be retried;
``load`` ends the run promptly on an error in any stage and bounds memory; ``Acks`` release chunks in source
order; the error budget.

The Engine is a small fake whose ``bulk()`` answers from a script (or stalls, or fails), and the chunk
source a generator standing in for ``extract.read_chunks``: this tests the counting, the retry logic and the
wiring between the reader thread, the bounded queue and the senders, not the cluster. What a real cluster
answers is covered by the integration and fault tests.
"""

import asyncio
import threading
import time

import pytest

from indexer.config import DEFAULT_QUEUE_CHUNKS, Job, JobSettings
from indexer.counts import Answers, Counts, Failure
from indexer.deadletter import DeadLetters
from indexer.documents import Action, delete_action, dumps, index_action
from indexer.engine import ApiStatusError, BulkAnswer, Engine
from indexer.errors import EngineError, SourceError, VerificationError
from indexer.extract import Chunk
from indexer.retry import RetryPolicy
from indexer.sink import Acks, Sender, check_error_budget, load
from tests.support.builders import chunk, doubled_chunk
from tests.support.fakes import ScriptedClient, Transport, pressure

FAST = RetryPolicy(max_retry_time=2.0, initial=0.001, cap=0.005)


class ScriptedEngine:
    """Answers each ``bulk()`` with the next scripted answer: a response, an exception, or f(body)."""

    def __init__(self, *answers, policy=None):
        self.answers = list(answers)
        self.policy = policy or FAST
        self.bodies: list[bytes] = []
        self.targets: list[str] = []

    async def bulk(self, target: str, body: bytes) -> BulkAnswer:
        self.targets.append(target)
        self.bodies.append(body)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if callable(answer):
            answer = answer(body)
        if isinstance(answer, Exception):
            raise answer
        return BulkAnswer(answer["items"], bool(answer.get("resent")))


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


def as_actions(ids, lines) -> list[Action]:
    return [Action(i, line, n) for n, (i, line) in enumerate(zip(ids, lines))]


def send(engine, ids, lines, *, fresh_index=False, policy=FAST, **options) -> Answers:
    engine.policy = policy
    sender = Sender(engine, "sensors-20260101000000", fresh_index=fresh_index, **options)
    return asyncio.run(sender.send(as_actions(ids, lines)))


# ---------------------------------------------------------------- counting


def test_created_updated_and_deleted_are_counted_from_the_items():
    ids, lines = actions("a", "b", "c")
    ids.append("d")
    lines.append(delete_action("d"))
    engine = ScriptedEngine(response(ok(), ok("updated", 200), ok(), ok("deleted", 200, op="delete")))
    sent = send(engine, ids, lines)
    assert (len(lines), sent.indexed, sent.duplicates, sent.deleted) == (4, 3, 0, 1)  # updated in a live index: indexed
    assert sent.failed == [] and sent.bulk_requests == 1
    assert engine.bodies == [b"".join(lines)] and engine.targets == ["sensors-20260101000000"]


def test_deleting_a_document_that_is_already_gone_is_not_a_failure():
    engine = ScriptedEngine(response({"delete": {"status": 404, "result": "not_found"}}))
    sent = send(engine, ["gone"], [delete_action("gone")])
    assert sent.failed == [] and sent.retried == 0 and sent.bulk_requests == 1
    assert sent.not_found == 1 and sent.deleted == 0


def test_deleting_a_document_that_is_already_gone_is_counted_as_not_found():
    ids, lines = actions("a")
    engine = ScriptedEngine(response(ok(), {"delete": {"status": 404, "result": "not_found"}},
                                     ok("deleted", 200, op="delete")))
    sent = send(engine, ids + ["gone", "here"], lines + [delete_action("gone"), delete_action("here")])
    assert (sent.indexed, sent.deleted, sent.not_found, sent.failed) == (1, 1, 1, [])
    assert 3 == sent.indexed + sent.duplicates + sent.deleted + sent.not_found + len(sent.failed)


def test_indexing_into_an_index_that_does_not_exist_fails_the_run_instead_of_dead_lettering():
    # Issue 8 changed this: it used to be one dead letter per document.
    engine = ScriptedEngine(response(error(404, "index_not_found_exception", "no such index [sensors]")))
    sender = Sender(engine, "sensors")
    with pytest.raises(EngineError, match=r"^bulk into sensors refused 1 of 1 actions: "
                                          r"HTTP 404 index_not_found_exception: no such index \[sensors\]$"):
        asyncio.run(sender.send(as_actions(*actions("a"))))


def test_items_answered_429_are_resent_alone_in_order_and_then_counted():
    ids, lines = actions("a", "b", "c", "d")
    engine = ScriptedEngine(
        response(ok(), error(429, "es_rejected_execution_exception"), ok(), error(429, "es_rejected_execution_exception")),
        response(ok(), ok()),
    )
    sent = send(engine, ids, lines)
    assert engine.bodies[1] == lines[1] + lines[3]
    assert (sent.indexed, sent.retried, sent.bulk_requests, sent.failed) == (4, 2, 2, [])


def test_items_still_rejected_when_the_retry_time_is_over_fail_the_run_instead_of_dead_lettering():
    engine = ScriptedEngine(response(ok(), error(429)), response(error(429)))
    with pytest.raises(EngineError, match=r"1 item\(s\) still answered 429/5xx; the cluster is overloaded "
                                          r"\(gave up after retrying for 0.05s\)"):
        send(engine, *actions("a", "b"), policy=RetryPolicy(max_retry_time=0.05, initial=0.001, cap=0.005))
    assert len(engine.bodies) > 2 and all(b'"b"' in body for body in engine.bodies[1:])


def test_a_mapping_error_becomes_a_failure_with_its_reason_and_is_not_retried():
    engine = ScriptedEngine(response(ok(), error(400, "mapper_parsing_exception", "failed to parse field [reading]")))
    sent = send(engine, *actions("a", "b"))
    assert sent.failed == [Failure("b", 400, "mapper_parsing_exception", "failed to parse field [reading]",
                                    engine_line(engine, 1))]
    assert (sent.indexed, sent.retried, sent.bulk_requests) == (1, 0, 1)


def test_updated_in_a_fresh_index_records_the_duplicate_key():
    engine = ScriptedEngine(response(ok(), ok("updated", 200)))
    sent = send(engine, *actions("a", "b"), fresh_index=True)
    assert (sent.indexed, sent.duplicates, sent.duplicate_ids) == (1, 1, ["b"])


def test_updated_in_a_live_index_is_not_a_duplicate():
    engine = ScriptedEngine(response(ok("updated", 200)))
    sent = send(engine, *actions("a"), fresh_index=False)
    assert (sent.indexed, sent.duplicates, sent.duplicate_ids) == (1, 0, [])


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
    sent = send(engine, ids, lines)
    assert engine.bodies == [b"".join(lines), lines[0] + lines[1], lines[2] + lines[3]]
    assert (sent.indexed, sent.failed) == (4, [])


def test_a_single_document_too_large_fails_alone_and_its_neighbours_are_indexed():
    ids, lines = actions("a", "b", "c")
    huge_id, huge_line = "huge", index_action("huge", dumps({"id": "huge", "text": "x" * 10_000}))
    ids.insert(1, huge_id)
    lines.insert(1, huge_line)

    def too_large_with_huge(body: bytes):
        return ApiStatusError(413, "", "", "bulk") if huge_line in body else all_created(body)

    sent = send(ScriptedEngine(too_large_with_huge), ids, lines)
    assert sent.indexed == 3
    assert [(f.id, f.status, f.type) for f in sent.failed] == [("huge", 413, "request_too_large")]


def test_a_request_refused_for_good_is_raised_at_once():
    engine = ScriptedEngine(ApiStatusError(401, "security_exception", "missing authentication", "bulk"), response(ok()))
    with pytest.raises(ApiStatusError, match="401 security_exception"):
        send(engine, *actions("a"))
    assert len(engine.bodies) == 1


# ---------------------------------------------------------------- failures that are not about the document

NO_WRITE_INDEX = ("no write index is defined for alias [sensors]. The write index may be explicitly disabled using "
                  "is_write_index=false or the alias points to multiple indices without one being designated as a "
                  "write index")


@pytest.mark.parametrize("status, type_, reason", [
    (404, "index_not_found_exception", "no such index [sensors-20260101000000]"),
    (400, "illegal_argument_exception", NO_WRITE_INDEX),
    (403, "cluster_block_exception", "index [sensors] blocked by: [FORBIDDEN/8/index write (api)];"),
    (429, "cluster_block_exception", "index [sensors] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded "
                                     "flood-stage watermark, index has read-only-allow-delete block];"),
    (400, "index_closed_exception", "closed"),
    (403, "security_exception", "action [indices:data/write/bulk[s]] is unauthorized for user [indexer]"),
    (401, "", ""),
])
def test_an_item_refused_for_a_reason_every_document_would_share_fails_the_run_once(status, type_, reason):
    ids, lines = actions("a", "b", "c")
    engine = ScriptedEngine(response(ok(), error(status, type_, reason), error(status, type_, reason)))
    sender = Sender(engine, "sensors")
    with pytest.raises(EngineError) as raised:
        asyncio.run(sender.send(as_actions(ids, lines)))
    message = str(raised.value)
    assert message.startswith(f"bulk into sensors refused 2 of 3 actions: HTTP {status} {type_}".rstrip())
    assert reason[:100] in message and "\n" not in message
    assert len(engine.bodies) == 1  # not retried; nothing to dead-letter: the run fails


def test_a_delete_refused_because_the_index_is_missing_is_not_an_absent_document():
    engine = ScriptedEngine(response(error(404, "index_not_found_exception", "no such index [x]", op="delete")))
    with pytest.raises(EngineError, match="index_not_found_exception"):
        send(engine, ["gone"], [delete_action("gone")])


def test_an_illegal_argument_about_the_document_is_still_a_dead_letter():
    engine = ScriptedEngine(response(error(400, "illegal_argument_exception", "Limit of total fields [1000] exceeded")))
    sent = send(engine, *actions("a"))
    assert [(f.id, f.type, f.reason) for f in sent.failed] == [
        ("a", "illegal_argument_exception", "Limit of total fields [1000] exceeded")]


def test_a_rejected_execution_429_is_still_retried():
    engine = ScriptedEngine(response(error(429, "es_rejected_execution_exception", "rejected execution")),
                            response(ok()))
    sent = send(engine, *actions("a"))
    assert (sent.indexed, sent.retried, sent.failed) == (1, 1, [])



def test_a_document_larger_on_its_own_than_the_indexing_pressure_limit_is_a_dead_letter_not_minutes_of_retries():
    """Elasticsearch 9 counts a document's expansion (a 16 MB document: 67 MB) against indexing_pressure: over the
    limit alone, no retry can cure it. Over it only with the others in flight, it is retried as before."""
    never = ("rejected execution of primary operation [coordinating_and_primary_bytes=16789163, replica_bytes=0, "
             "all_bytes=16789163, primary_operation_bytes=67155884, max_primary_bytes=53687091]")
    busy = never.replace("primary_operation_bytes=67155884", "primary_operation_bytes=1000")
    engine = ScriptedEngine(response(error(429, "es_rejected_execution_exception", never),
                                     error(429, "es_rejected_execution_exception", busy)), response(ok()))
    sent = send(engine, *actions("big", "small"))
    assert (sent.indexed, sent.retried, [f.id for f in sent.failed]) == (1, 1, ["big"])
    assert sent.failed[0].reason.startswith("the document alone is over the engine's indexing pressure limit")


# ---------------------------------------------------------------- reasons without row values

# Reasons as OpenSearch 2.19 answers them (items.*.error.reason), for the values SECRET...
IMMENSE = ("Document contains at least one immense term in field=\"k\" (whose UTF8 encoding is longer than the max "
           "length 32766), all of which were skipped.  Please correct the analyzer to not produce such terms.  The "
           "prefix of the first immense term is: '[83, 69, 67, 82, 69, 84, 83, 69, 67, 82, 69, 84, 83, 69, 67, 82, 69, "
           "84, 83, 69, 67, 82, 69, 84, 83, 69, 67, 82, 69, 84]...', original message: bytes can be at most 32766 in "
           "length; got 42000")
PREVIEW = ("failed to parse field [d] of type [date] in document with id '2'. Preview of field's value: "
           "'SECRET-date'")
ECHOES = [
    (IMMENSE, "Document contains at least one immense term in field=\"k\" (whose UTF8 encoding is longer than the "
              "max length 32766), all of which were skipped.  Please correct the analyzer to not produce such terms.  "
              "original message: bytes can be at most 32766 in length; got 42000"),
    (PREVIEW, "failed to parse field [d] of type [date] in document with id '2'"),
    ("failed to parse date field [SECRET [x]] with format [strict_date_optional_time||epoch_millis]",
     "failed to parse date field [...] with format [strict_date_optional_time||epoch_millis]"),
    ('For input string: "SECRETnum"', 'For input string: "..."'),
    ("Failed to parse value [SECRETbool] as only [true] or [false] are allowed.",
     "Failed to parse value [...] as only [true] or [false] are allowed."),
    ("'SECRETip' is not an IP string literal.", "the value is not an IP string literal."),
    ("unsupported symbol [S] in geohash [SECRETgeo]", "unsupported symbol [S] in geohash [...]"),
    ("Numeric value (99999999) out of range of Java short", "Numeric value (...) out of range of Java short"),
    # Elasticsearch 8/9: the immense term is in the cause, put first (sink._with_cause), and ends there
    ("illegal_argument_exception: Document contains at least one immense term in field=\"k\" (whose UTF8 "
     "encoding is longer than the max length 32766), all of which were skipped. Please correct the analyzer to not "
     "produce such terms. The prefix of the first immense term is: '[83, 69, 67, 82, 69, 84, 83, 69]...'; "
     "[1:6] failed to parse field [k] of type [keyword] in document with id 'a'. Preview of field's value: 'SECRET'",
     "illegal_argument_exception: Document contains at least one immense term in field=\"k\" (whose UTF8 "
     "encoding is longer than the max length 32766), all of which were skipped. Please correct the analyzer to not "
     "produce such terms. ; [1:6] failed to parse field [k] of type [keyword] in document with id 'a'"),
]


@pytest.mark.parametrize("reason, scrubbed", ECHOES)
def test_a_dead_letter_reason_is_scrubbed_of_the_values_the_engine_quotes(reason, scrubbed):
    engine = ScriptedEngine(response(error(400, "mapper_parsing_exception", reason)))
    sent = send(engine, *actions("a"))
    assert sent.failed[0].reason == scrubbed
    assert "SECRET" not in scrubbed and "83, 69, 67" not in scrubbed and "99999999" not in scrubbed


def test_with_scrubbing_off_the_reason_is_kept_whole():
    engine = ScriptedEngine(response(error(400, "illegal_argument_exception", IMMENSE),
                                     error(400, "mapper_parsing_exception", PREVIEW)))
    sent = send(engine, *actions("a", "b"), scrub_reasons=False)
    assert [f.reason for f in sent.failed] == [IMMENSE, PREVIEW]


# ---------------------------------------------------------------- external versions (--allow-duplicates)

CONFLICT = "[same]: version conflict, current version [4000] is higher or equal to the one provided [3990]"


def test_versioned_a_conflict_is_an_older_row_of_a_repeated_key_counted_as_a_duplicate():
    ids, lines = actions("a", "same", "same")
    engine = ScriptedEngine(response(ok(), ok(), error(409, "version_conflict_engine_exception", CONFLICT)))
    sent = send(engine, ids, lines, fresh_index=True, versioned=True)
    assert (sent.indexed, sent.duplicates, sent.duplicate_ids, sent.failed) == (2, 1, ["same"], [])


def test_versioned_the_duplicate_count_does_not_depend_on_which_row_arrived_first():
    newer_first = response(ok(), error(409, "version_conflict_engine_exception", CONFLICT))
    older_first = response(ok(), ok("updated", 200))
    for answer in (newer_first, older_first):
        sent = send(ScriptedEngine(answer), *actions("same", "same"), fresh_index=True, versioned=True)
        assert (sent.indexed, sent.duplicates, sent.duplicate_ids, sent.failed) == (1, 1, ["same"], [])


def test_unversioned_a_conflict_is_a_failure():
    engine = ScriptedEngine(response(error(409, "version_conflict_engine_exception", CONFLICT)))
    sent = send(engine, *actions("same"), fresh_index=True)
    assert [(f.id, f.status) for f in sent.failed] == [("same", 409)] and sent.duplicates == 0


def test_versioned_a_conflict_in_a_resent_body_is_still_a_duplicate():
    # The first attempt applied both rows (v2 won) but its answer was lost: the resend of v1 is
    # refused, v2's is accepted as "updated" (equal version); one created, one duplicate, as unsent.
    answer = {**response(error(409, "version_conflict_engine_exception", CONFLICT), ok("updated", 200)), "resent": True}
    sent = send(ScriptedEngine(answer), *actions("same", "same"), fresh_index=True, versioned=True)
    assert (sent.indexed, sent.duplicates, sent.failed) == (1, 1, [])


# ---------------------------------------------------------------- a request the node can never take


def test_the_sender_splits_a_request_the_node_can_never_take_instead_of_retrying_it():
    class Sized(Transport):
        async def perform_request(self, method, path, params=None, body=None, headers=None):
            self.calls += 1
            lines = body.count(b"\n") // 2
            if lines > 1:  # more than one document: over the node's whole budget
                raise pressure(60_918_088, 53_687_091)
            return {"items": [{"index": {"status": 201, "result": "created"}}]}

    client = ScriptedClient(transport=Sized({}))
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", RetryPolicy(max_retry_time=60))
    batch = [Action(i, index_action(i, dumps({"id": i})), n) for n, i in enumerate(["a", "b", "c"])]
    sent = asyncio.run(Sender(engine, "x").send(batch))
    assert sent.indexed == 3 and not sent.failed and engine.retries == 0
    assert client.transport.calls == 5  # abc -> a | bc -> b, c: split at once, never waited on


# ---------------------------------------------------------------- acknowledgement in source order, the error budget


def settings(**extra) -> JobSettings:
    return JobSettings(alias="t", key=["id"], query="SELECT 1", **extra)


def test_acks_release_chunks_in_source_order_only():
    acks = Acks()
    assert acks.done(chunk(1)) == [] and acks.done(chunk(2)) == []
    assert [c.seq for c in acks.done(chunk(0))] == [0, 1, 2]
    assert [c.seq for c in acks.done(chunk(3))] == [3]


def test_while_streaming_the_rate_waits_for_a_thousand_rows_but_max_errors_does_not():
    counts = Counts()
    counts.add(chunk(0, actions=0, rejected=5), Answers())
    check_error_budget(settings(), counts)                     # 5 of 5 rows, but only 5 rows read so far
    with pytest.raises(VerificationError, match=r"5 document\(s\) failed for good in 5 rows, over job.max_error_rate"):
        check_error_budget(settings(), counts, final=True)      # at the end the rate counts, whatever the size
    with pytest.raises(VerificationError, match=r"over job.max_errors = 4 \(first: row 1: NULL key\)"):
        check_error_budget(settings(max_errors=4), counts)


def test_a_run_within_budget_passes_at_the_end_too():
    counts = Counts()
    counts.add(chunk(0, actions=999, rejected=1), Answers(indexed=999))
    check_error_budget(settings(max_error_rate=0.01), counts, final=True)


def test_the_error_budget_names_documents_and_rows_apart_when_a_transform_changes_their_number():
    """A transform returning two documents a row broke the sums ("3430 documents failed in 1715 rows")."""
    counts = Counts()
    counts.add(doubled_chunk(), Answers(indexed=5))
    with pytest.raises(VerificationError, match=r"^1 document\(s\) failed for good in 6 documents \(from 3 rows\)"):
        check_error_budget(settings(max_error_rate=0.1), counts, final=True)


# ---------------------------------------------------------------- load: errors end the run, back-pressure bounds memory


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


class PacedEngine:
    """Answers every bulk after ``delay`` seconds (the scenario: a slow cluster), or raises ``fail``."""

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
        run_load(chunks(counter, fail_after=5), PacedEngine(), tmp_path)
    assert time.monotonic() - started < 5
    assert counter["produced"] == 5
    assert reader_threads() == []


def test_a_failing_sink_stops_the_endless_reader_promptly(tmp_path):
    counter = {}
    started = time.monotonic()
    with pytest.raises(ApiStatusError, match="mapper_parsing_exception"):
        run_load(chunks(counter), PacedEngine(fail=ApiStatusError(400, "mapper_parsing_exception", "bad", "bulk")),
                 tmp_path)
    assert time.monotonic() - started < 5
    assert counter.get("closed") is True        # the reader's cleanup ran
    assert reader_threads() == []


def test_a_slow_sink_holds_the_reader_back_and_a_stop_ends_the_run(tmp_path):
    counter = {}
    engine = PacedEngine(delay=0.2)
    seen = {}

    async def main():
        event = asyncio.Event()
        task = asyncio.create_task(start_load(chunks(counter), engine, tmp_path, stop=event))
        await asyncio.sleep(1.0)  # the scenario: time for an unbounded reader to run far ahead (nothing to wait for)
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
