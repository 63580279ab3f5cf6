"""Bulk sending: pre-encoded chunks in, counted outcomes out.

::

    ThreadFeed[Encoded] --> N sender tasks --> Engine.bulk(target, ndjson) --> Tally

Each item's outcome is counted from the bulk response (never assumed): created,
updated, deleted, not found (a delete of an absent document), retried, failed.
Items answered 429/502/503/504 are resent alone, with exponential backoff and
jitter, until ``max_retry_time`` has passed (whole requests are retried by
``Engine.request``); a 413 for a whole request splits it in two, and a single
document over the limit fails alone.

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
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from indexer.documents import byte_batches
from indexer.engine import RETRY_STATUSES, ApiStatusError, Engine, RetryPolicy
from indexer.errors import EngineError

log = logging.getLogger(__name__)
DUPLICATE_SAMPLE = 5
# Where the engine's reasons quote a document's values (OpenSearch 2 and Elasticsearch 7-9 wording).
_VALUE_ECHOES = (
    (re.compile(r"\.?\s*Preview of field's value: .*", re.S), ""),
    (re.compile(r"The prefix of the first immense term is: '.*?\]\.\.\.',\s*", re.S), ""),
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
__all__ = ["Failure", "RetryPolicy", "Sender", "Tally", "scrub"]


@dataclass
class Failure:
    """A document that failed for good; ``line`` is its bulk action (for the dead-letter file)."""

    id: str
    status: int
    type: str
    reason: str
    line: bytes = b""


@dataclass
class Tally:
    rows_read: int = 0
    sent: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    not_found: int = 0  # deletes of documents that were already absent
    retried: int = 0
    bulk_requests: int = 0
    skipped: int = 0
    failed: list[Failure] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)

    @property
    def indexed(self) -> int:
        return self.created + self.updated


class Sender:
    """Sends chunks of actions to one index or alias and counts every item's outcome."""

    def __init__(
        self, engine: Engine, target: str, tally: Tally, policy: RetryPolicy = RetryPolicy(),
        fresh_index: bool = False, on_progress: Callable[[Tally], None] | None = None,
        max_bytes: int = 8 * 1024 * 1024, scrub_reasons: bool = True, versioned: bool = False,
    ) -> None:
        self.max_bytes = max_bytes
        self.engine = engine
        self.target = target
        self.tally = tally
        self.policy = policy
        self.fresh_index = fresh_index  # an "updated" result then means a duplicate key
        self.on_progress = on_progress
        self.scrub_reasons = scrub_reasons
        # Index actions carry versions growing in source order (``external_gte``): a 409 then
        # means an older row of a repeated key arrived after a newer one (a duplicate, not a failure).
        self.versioned = versioned

    async def send(self, ids: Sequence[str], lines: Sequence[bytes]) -> list[Failure]:
        """Send one chunk's actions (in requests of at most ``max_bytes``), count every outcome; its failures."""
        self.tally.sent += len(lines)
        failures: list[Failure] = []
        for batch_ids, batch_lines in byte_batches(ids, lines, self.max_bytes):
            await self._send(batch_ids, batch_lines, time.monotonic() + self.policy.max_retry_time, failures)
        self.tally.failed.extend(failures)
        if self.on_progress:
            self.on_progress(self.tally)
        return failures

    async def _send(self, ids: list[str], lines: list[bytes], deadline: float, failures: list[Failure]) -> None:
        attempt = 0
        while ids:
            try:
                self.tally.bulk_requests += 1
                response = await self.engine.bulk(self.target, b"".join(lines))
            except ApiStatusError as exc:
                if exc.status != 413:
                    raise
                if len(lines) > 1:
                    half = len(lines) // 2
                    await self._send(ids[:half], lines[:half], deadline, failures)
                    await self._send(ids[half:], lines[half:], deadline, failures)
                    return
                self._fail(failures, ids, lines, 413, exc.error_type or "request_too_large",
                           "the document alone exceeds the cluster's request size limit")
                return
            ids, lines = self._count(ids, lines, response, failures)
            if ids:
                self.tally.retried += len(ids)
                delay = self.policy.delay(attempt)
                log.debug("%d item(s) answered 429/5xx; retry %d in %.3fs", len(ids), attempt + 1, delay)
                if time.monotonic() + delay > deadline:
                    # The cluster's state, not the documents': fail the run, never dead-letter
                    # them (a sync would otherwise store a watermark past rows never written).
                    raise EngineError(
                        f"bulk into {self.target}: {len(ids)} item(s) still answered 429/5xx after retrying for "
                        f"{self.policy.max_retry_time:g}s (target.max_retry_time); the cluster is overloaded")
                await asyncio.sleep(delay)
                attempt += 1

    def _count(self, ids: list[str], lines: list[bytes], response: dict,
               failures: list[Failure]) -> tuple[list[str], list[bytes]]:
        """Count each item's outcome; return the items to retry."""
        items = response.get("items") or []
        if len(items) != len(ids):
            raise EngineError(f"bulk response has {len(items)} items for {len(ids)} actions")
        retry_ids: list[str] = []
        retry_lines: list[bytes] = []
        tally = self.tally
        # A body sent again after an unanswered attempt may have been applied twice:
        # its "updated" results are its own echo, not a second row with the same key.
        resent = bool(response.get("resent"))
        refused: list[tuple[int, str, str]] = []
        for id_, line, item in zip(ids, lines, items):
            (op, result), = item.items()
            status = result.get("status", 0)
            error = result.get("error") or {}
            type_, reason = error.get("type", ""), error.get("reason", "")
            if status < 300:
                outcome = result.get("result")
                if outcome == "created":
                    tally.created += 1
                elif outcome == "updated" and self.fresh_index and resent:
                    tally.created += 1
                elif outcome == "updated":
                    self._duplicate(id_)
                elif outcome == "deleted":
                    tally.deleted += 1
            elif self.versioned and status == 409 and type_ == "version_conflict_engine_exception":
                # A newer row of this key is already in: this one lost, as it should. Never an
                # echo of a resend (an equal version is accepted), so a duplicate even when resent.
                self._duplicate(id_)
            elif _fails_the_run(status, type_, reason):
                refused.append((status, type_, reason))
            elif op == "delete" and status == 404:
                tally.not_found += 1  # already absent: the goal of a delete
            elif status in RETRY_STATUSES:
                retry_ids.append(id_)
                retry_lines.append(line)
            else:
                self._fail(failures, [id_], [line], status, type_, reason)
        if refused:
            status, type_, reason = refused[0]
            raise EngineError(f"bulk into {self.target} refused {len(refused)} of {len(ids)} actions: "
                              f"HTTP {status} {type_}: {scrub(reason)[:300]}".rstrip(": "))
        return retry_ids, retry_lines

    def _duplicate(self, id_: str) -> None:
        """Another row with this key was indexed too (a duplicate key only in a fresh index)."""
        self.tally.updated += 1
        if self.fresh_index and len(self.tally.duplicate_ids) < DUPLICATE_SAMPLE:
            self.tally.duplicate_ids.append(id_)

    def _fail(self, failures: list[Failure], ids: Sequence[str], lines: Sequence[bytes], status: int, type_: str,
              reason: str) -> None:
        reason = scrub(reason)[:500] if self.scrub_reasons else reason
        for id_, line in zip(ids, lines):
            failures.append(Failure(id_, status, type_, reason, line))


def scrub(reason: str) -> str:
    """The engine's reason without the document values it quotes (previews, term bytes, unparsable values)."""
    for pattern, replacement in _VALUE_ECHOES:
        reason = pattern.sub(replacement, reason)
    return reason


def _fails_the_run(status: int, type_: str, reason: str) -> bool:
    """An item error that is not about the document: every other document would get it too."""
    return (status in (401, 403) or type_ in _RUN_FAILURES
            or (type_ == "illegal_argument_exception" and _NO_WRITE_INDEX in reason))
