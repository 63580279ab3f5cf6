"""The load stage: chunks of pre-encoded actions in, counted outcomes out.

::

    Reader (worker thread) --ThreadFeed (bounded)--> N workers --Sender.send(actions)--> Engine.bulk
        --> Answers (per chunk) --Counts.add--> the run's counts (indexer.counts), dead letters, error budget
        --> Acks: chunks released in source order --> on_acked (the run advances its state)

Each item's outcome is counted from the bulk response (never assumed): indexed,
duplicate, deleted, not found (a delete of an absent document), retried, failed.
Items answered 429/502/503/504 are resent alone, with the engine's one retry
policy (whole requests are retried by ``Engine.request`` with the same policy);
past its deadline the run fails. A 413 for a whole request splits it in two, and a
single document over the limit fails alone.

A failure is a dead letter only when it is about the document itself (a mapping
error, a term too long). An item refused for a reason that would refuse every
document (no such index, no write index, a cluster block, authorisation) fails the
run with an EngineError instead: dead-lettering it would let a sync's watermark
move past rows that were never written.

Reasons are scrubbed of the row values the engine quotes in them (value previews,
term bytes, unparsable values) unless the caller asks for them (``scrub_reasons``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from indexer.bridge import ThreadFeed
from indexer.config import DEFAULT_QUEUE_CHUNKS, ERROR_RATE_MIN_ROWS, JobSettings
from indexer.counts import DUPLICATE_SAMPLE, Answers, Counts, Failure
from indexer.deadletter import DeadLetters
from indexer.documents import Action, Rejected, byte_batches
from indexer.engine import RETRY_STATUSES, ApiStatusError, BulkAnswer, Engine, Retry
from indexer.errors import EngineError, VerificationError
from indexer.extract import Chunk

log = logging.getLogger(__name__)
# Where the engine's reasons quote a document's values (OpenSearch 2 and Elasticsearch 7-9 wording).
_VALUE_ECHOES = (
    (re.compile(r"\.?\s*Preview of field's value: .*", re.S), ""),
    # OpenSearch goes on with ", original message: ..."; Elasticsearch's cause ends at the term.
    (re.compile(r"The prefix of the first immense term is: '.*?\]\.\.\.'(,\s*)?", re.S), ""),
    (re.compile(r"(failed to parse date field|Failed to parse value|in geohash) \[.*?\](?= with format| as only|$)",
                re.S), r"\1 [...]"),
    (re.compile(r'For input string: ".*"', re.S), 'For input string: "..."'),
    (re.compile(r"Numeric value \(.*?\) out of range", re.S), "Numeric value (...) out of range"),
    (re.compile(r"^'.*' is not an IP string literal", re.S), "the value is not an IP string literal"),
)
# Item errors that would refuse every document, not this one: they fail the run.
_RUN_FAILURES = frozenset({"index_not_found_exception", "index_closed_exception", "cluster_block_exception",
                           "security_exception"})
_NO_WRITE_INDEX = "no write index is defined for alias"
# The byte counts an indexing pressure rejection names ("primary_operation_bytes=1, max_primary_bytes=2").
_PRESSURE_BYTES = re.compile(r"(\w+_bytes)=(\d+)")


class Sender:
    """Sends chunks of actions to one index or alias; answers what happened to each action.

    Retries follow the engine's one policy (``engine.policy``): items answered
    429/5xx are resent alone until its deadline, then the run fails.
    """

    def __init__(self, engine: Engine, target: str, *, fresh_index: bool = False,
                 max_bytes: int = 8 * 1024 * 1024, scrub_reasons: bool = True, versioned: bool = False,
                 guard: Callable[[], None] | None = None) -> None:
        self.engine = engine
        # Called before every bulk request (a run's lease.check): a run that lost its lock while it held rows
        # (paused past its lease) must not send them over the newer ones another run has written since.
        self.guard = guard
        self.target = target
        self.max_bytes = max_bytes
        self.fresh_index = fresh_index  # an "updated" result then means a duplicate key
        self.scrub_reasons = scrub_reasons
        # Index actions carry versions growing in source order (``external_gte``): a 409 then
        # means an older row of a repeated key arrived after a newer one (a duplicate, not a failure).
        self.versioned = versioned

    @classmethod
    def for_job(cls, engine: Engine, target: str, settings: JobSettings, *, include_doc: bool = False,
                fresh_index: bool = False, versioned: bool = False, guard: Callable[[], None] | None = None) -> Sender:
        """The sender a run of ``settings`` uses: its byte limit; reasons scrubbed unless documents are kept."""
        return cls(engine, target, fresh_index=fresh_index, max_bytes=settings.chunk_bytes,
                   scrub_reasons=not include_doc, versioned=versioned, guard=guard)

    async def send(self, actions: Sequence[Action]) -> Answers:
        """Send one chunk's actions, in requests of at most ``max_bytes``; what happened to each."""
        sent = Answers()
        for batch in byte_batches(actions, self.max_bytes):
            await self._send(batch, self.engine.policy.start(f"bulk into {self.target}"), sent)
        return sent

    async def _send(self, batch: list[Action], retry: Retry, sent: Answers) -> None:
        while batch:
            if self.guard is not None:
                self.guard()
            try:
                sent.bulk_requests += 1
                answer = await self.engine.bulk(self.target, b"".join([a.line for a in batch]))
            except ApiStatusError as exc:
                if exc.status != 413:
                    raise
                if len(batch) > 1:
                    half = len(batch) // 2
                    await self._send(batch[:half], retry, sent)
                    await self._send(batch[half:], retry, sent)
                    return
                self._fail(sent, batch[0], 413, exc.error_type or "request_too_large",
                           "the document alone exceeds the cluster's request size limit")
                return
            batch = self._count(batch, answer, sent)
            if batch:
                sent.retried += len(batch)
                # The cluster's state, not the documents': past the deadline the run fails; never
                # dead-letter them (a sync would otherwise store a watermark past rows never written).
                await retry.wait(f"{len(batch)} item(s) still answered 429/5xx; the cluster is overloaded")

    def _count(self, batch: list[Action], answer: BulkAnswer, sent: Answers) -> list[Action]:
        """Count each item's outcome; return the actions to retry."""
        items = answer.items
        if len(items) != len(batch):
            raise EngineError(f"bulk response has {len(items)} items for {len(batch)} actions")
        retry: list[Action] = []
        refused: list[tuple[int, str, str]] = []
        # A body sent again after an unanswered attempt may have been applied twice:
        # its "updated" results are then its own echo, not a second row with the same key.
        updated_is_duplicate = self.fresh_index and not answer.resent
        for action, item in zip(batch, items, strict=True):
            (op, result), = item.items()
            status = result.get("status", 0)
            if status < 300:
                outcome = result.get("result")
                if outcome == "created" or (outcome == "updated" and not updated_is_duplicate):
                    sent.indexed += 1
                elif outcome == "updated":
                    self._duplicate(sent, action.id)
                elif outcome == "deleted":
                    sent.deleted += 1
                continue
            error = result.get("error") or {}
            type_, reason = error.get("type", ""), error.get("reason", "")
            if self.versioned and status == 409 and type_ == "version_conflict_engine_exception":
                # A newer row of this key is already in: this one lost, as it should. Never an
                # echo of a resend (an equal version is accepted), so a duplicate even when resent.
                self._duplicate(sent, action.id)
            elif _fails_the_run(status, type_, reason):
                refused.append((status, type_, reason))
            elif op == "delete" and status == 404:
                sent.not_found += 1  # already absent: the goal of a delete
            elif status in RETRY_STATUSES and _too_large_ever(type_, reason):
                self._fail(sent, action, status, type_, "the document alone is over the engine's indexing pressure "
                           f"limit (a larger heap or indexing_pressure.memory.limit takes it): {reason}")
            elif status in RETRY_STATUSES:
                retry.append(action)
            else:
                self._fail(sent, action, status, type_, _with_cause(reason, error.get("caused_by")))
        if refused:
            status, type_, reason = refused[0]
            raise EngineError(f"bulk into {self.target} refused {len(refused)} of {len(batch)} actions: "
                              f"HTTP {status} {type_}: {scrub(reason)[:300]}".rstrip(": "))
        return retry

    def _duplicate(self, sent: Answers, id_: str) -> None:
        sent.duplicates += 1
        if len(sent.duplicate_ids) < DUPLICATE_SAMPLE:
            sent.duplicate_ids.append(id_)

    def _fail(self, sent: Answers, action: Action, status: int, type_: str, reason: str) -> None:
        reason = scrub(reason)[:500] if self.scrub_reasons else reason
        sent.failed.append(Failure(action.id, status, type_, reason, action.line))


def scrub(reason: str) -> str:
    """The engine's reason without the document values it quotes (previews, term bytes, unparsable values)."""
    for pattern, replacement in _VALUE_ECHOES:
        reason = pattern.sub(replacement, reason)
    return reason


def _with_cause(reason: str, cause: dict | None) -> str:
    """The reason with its cause first: scrubbing cuts a value preview and all after it, and
    Elasticsearch 8/9 say what went wrong (an immense term...) only in the cause."""
    if not cause or not cause.get("reason"):
        return reason
    return f"{cause.get('type', '')}: {cause['reason']}; {reason}"


def _too_large_ever(type_: str, reason: str) -> bool:
    """A 429 no retry can cure: the engine's indexing pressure refused the operation as larger on its own than
    its limit (Elasticsearch 8.x/9 counts a document's expansion: ``primary_operation_bytes=67155884,
    max_primary_bytes=53687091``). That document is a dead letter naming the limit, never minutes of retries."""
    if type_ != "es_rejected_execution_exception":
        return False
    sizes = dict(_PRESSURE_BYTES.findall(reason))
    own = max((int(v) for k, v in sizes.items() if k.endswith("operation_bytes")), default=0)
    limit = min((int(v) for k, v in sizes.items() if k.startswith("max_")), default=0)
    return bool(own and limit and own > limit)


def _fails_the_run(status: int, type_: str, reason: str) -> bool:
    """An item error that is not about the document: every other document would get it too."""
    return (status in (401, 403) or type_ in _RUN_FAILURES
            or (type_ == "illegal_argument_exception" and _NO_WRITE_INDEX in reason))


# ------------------------------------------------------------------ the load loop (event loop)


class Progress:
    """Where a run reports how far it got; this default reports nowhere (the CLI draws a bar)."""

    counting = False  # ask the database for the row total first (one COUNT query) to report it

    def total(self, rows: int) -> None:
        """The rows the query returns, when counted before reading."""

    def rows(self, done: int) -> None:
        """Rows finished so far: sent, skipped or rejected."""

    def holding(self, held: bool) -> None:
        """The run took (True) or let go of (False) its alias's lock (``run.run`` says so)."""


class Acks:
    """Releases chunks in source order once each one is fully acknowledged."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.waiting: dict[int, Chunk] = {}

    def done(self, chunk: Chunk) -> list[Chunk]:
        self.waiting[chunk.seq] = chunk
        released = []
        while self.next_seq in self.waiting:
            released.append(self.waiting.pop(self.next_seq))
            self.next_seq += 1
        return released


async def load(
    chunks: Callable[[], Iterator[Chunk]], sender: Sender, settings: JobSettings, counts: Counts, *,
    dead_letters: DeadLetters | None, progress: Progress = Progress(),
    on_acked: Callable[[list[Chunk]], Awaitable[Any]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Stream ``chunks()`` (run in a worker thread) through ``sender`` with ``concurrency`` requests in flight.

    ``on_acked`` is awaited with the chunks that became acknowledged in source
    order: every action answered 2xx or written to the dead-letter file (``dead_letters``; None: kept
    in ``counts`` only, for a partitioned reindex's coordinator to write). When the
    dead letters exceed ``max_errors`` or ``max_error_rate`` the run stops with a
    VerificationError and the chunk that crossed the line is never released.
    """
    feed: ThreadFeed[Chunk] = ThreadFeed(chunks, maxsize=DEFAULT_QUEUE_CHUNKS)
    acks = Acks()
    ack_lock = asyncio.Lock()

    async def worker() -> None:
        while not (stop and stop.is_set()) and (chunk := await feed.get()) is not None:
            answers = await sender.send(chunk.actions) if chunk.actions else Answers()
            counts.add(chunk, answers)
            if dead_letters is not None:
                write_dead_letters(dead_letters, chunk.rejected, answers.failed)
            check_error_budget(settings, counts)
            progress.rows(counts.rows_read)
            async with ack_lock:
                released = acks.done(chunk)
                if released and on_acked is not None:
                    await on_acked(released)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(settings.concurrency):
                group.create_task(worker())
    except* Exception as eg:  # one failure ends the run; the first one is the story
        raise eg.exceptions[0] from None  # (it keeps its own traceback and cause; the group adds nothing)
    finally:
        await feed.close()


def write_dead_letters(dead_letters: DeadLetters, rejected: Sequence[Rejected], failed: Sequence[Failure]) -> None:
    for row in rejected:
        dead_letters.rejected(row.row, row.reason, row.doc)
    for failure in failed:
        dead_letters.failed(failure.id, failure.status, failure.type, failure.reason, failure.line)


def check_error_budget(settings: JobSettings, counts: Counts, *, final: bool = False) -> None:
    """Stop when the dead letters exceed ``max_errors`` or ``max_error_rate`` of the rows read.

    While the run streams, the rate is judged from ``ERROR_RATE_MIN_ROWS`` rows on (a bad
    first row must not stop a long run); at the end (``final``) it is judged on the
    totals, whatever the run's size: 49 dead letters in 49 rows never swap an alias.
    """
    dead, documents = counts.dead_lettered, counts.documents
    if not dead:
        return
    rate = dead / max(documents, 1)
    over_rate = (final or documents >= ERROR_RATE_MIN_ROWS) and rate > settings.max_error_rate
    if dead > settings.max_errors or over_rate:
        failed = counts.answers.failed
        first = (f"row {counts.rejected[0].row + 1}: {counts.rejected[0].reason}" if counts.rejected
                 else f"id {failed[0].id!r}: {failed[0].type}: {scrub(failed[0].reason)}")
        limit = (f"max_errors = {settings.max_errors}" if dead > settings.max_errors
                 else f"max_error_rate = {settings.max_error_rate:g}")
        within = (f"{counts.rows_read} rows" if documents == counts.rows_read
                  else f"{documents} documents (from {counts.rows_read} rows)")
        raise VerificationError(f"{dead} document(s) failed for good in {within}, over job.{limit} "
                                f"(first: {first}); stopped before any alias swap or watermark advance past them")
