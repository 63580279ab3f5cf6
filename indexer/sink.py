"""Bulk sending: pre-encoded chunks in, counted outcomes out.

::

    ThreadFeed[Encoded] --> N sender tasks --> Engine.bulk(target, ndjson) --> Tally

Each item's outcome is counted from the bulk response (never assumed): created,
updated, deleted, retried, failed. Items answered 429/502/503/504 are resent
alone, with exponential backoff and jitter, until ``max_retry_time`` has passed
(whole requests are retried by ``Engine.request``); a 413 for a whole request
splits it in two, and a single document over the limit fails alone.
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
_VALUE_PREVIEW = re.compile(r"\.?\s*Preview of field's value: .*", re.S)
__all__ = ["Failure", "RetryPolicy", "Sender", "Tally"]


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
        max_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.max_bytes = max_bytes
        self.engine = engine
        self.target = target
        self.tally = tally
        self.policy = policy
        self.fresh_index = fresh_index  # an "updated" result then means a duplicate key
        self.on_progress = on_progress

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
                    self._fail(failures, ids, lines, 429, "retry_time_exceeded",
                               f"still rejected after retrying for {self.policy.max_retry_time:g}s")
                    return
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
        for id_, line, item in zip(ids, lines, items):
            (op, result), = item.items()
            status = result.get("status", 0)
            if status < 300:
                outcome = result.get("result")
                if outcome == "created":
                    tally.created += 1
                elif outcome == "updated" and self.fresh_index and resent:
                    tally.created += 1
                elif outcome == "updated":
                    tally.updated += 1
                    if self.fresh_index and len(tally.duplicate_ids) < DUPLICATE_SAMPLE:
                        tally.duplicate_ids.append(id_)
                elif outcome == "deleted":
                    tally.deleted += 1
            elif op == "delete" and status == 404:
                pass  # already absent: the goal of a delete
            elif status in RETRY_STATUSES:
                retry_ids.append(id_)
                retry_lines.append(line)
            else:
                error = result.get("error") or {}
                self._fail(failures, [id_], [line], status, error.get("type", ""), error.get("reason", ""))
        return retry_ids, retry_lines

    @staticmethod
    def _fail(failures: list[Failure], ids: Sequence[str], lines: Sequence[bytes], status: int, type_: str,
              reason: str) -> None:
        reason = _VALUE_PREVIEW.sub("", reason)[:500]  # the engine quotes row values there
        for id_, line in zip(ids, lines):
            failures.append(Failure(id_, status, type_, reason, line))
