"""The one retry policy: exponential backoff with jitter, bounded in total time (``target.max_retry_time``).

::

    RetryPolicy --start(what)--> Retry (one operation's deadline and attempts) --wait(why)--> sleep | EngineError
                                                                              --failover(why)--> counted, no sleep

Who retries what (docs/failures.md): ``Engine.request`` retries a whole request answered
429/502/503/504 or not answered at all (unanswered, first at once on another node: ``failover``);
``sink.Sender`` retries single bulk items answered so; the clients' transports retry nothing. Both
go through one ``Retry`` per operation from here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass

from indexer.errors import EngineError

log = logging.getLogger(__name__)
RETRY_STATUSES = (429, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in total time."""

    max_retry_time: float = 300.0
    initial: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        # bandit B311 accepted: jitter, not a secret
        return min(self.cap, self.initial * 2**attempt) * random.uniform(0.5, 1.0)  # nosec B311

    def start(self, what: str) -> Retry:
        """The retries of one operation (``what``: how errors name it), its deadline counted from now."""
        return Retry(self, what)


class Retry:
    """One operation's retries: the deadline (now + max_retry_time) and the attempt count."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy = policy
        self.what = what
        self.deadline = time.monotonic() + policy.max_retry_time
        self.attempts = 0  # retries done so far, failovers included (any of them: the operation was sent again)
        self.failovers = 0  # of which sent again at once to another node

    async def wait(self, why: str) -> None:
        """Sleep the next backoff delay; EngineError when that sleep would pass the deadline.

        Called from an ``except`` block, the error raised keeps the one caught as its context.
        """
        delay = self.policy.delay(self.attempts - self.failovers)  # failovers do not lengthen the backoff
        if time.monotonic() + delay > self.deadline:
            raise EngineError(f"{self.what}: {why} (gave up after retrying for {self.policy.max_retry_time:g}s)")
        self.attempts += 1
        log.warning("%s failed (%s); retry %d in %.1fs", self.what, why, self.attempts, delay)
        await asyncio.sleep(delay)

    def failover(self, why: str) -> None:
        """Count a retry sent at once to another node (a node did not answer: ``why``); no sleep, and
        not bounded by the deadline (``Engine`` allows one per other node)."""
        self.attempts += 1
        self.failovers += 1
        log.warning("%s: a node did not answer (%s); retry %d at once on another node", self.what, why,
                    self.attempts)
