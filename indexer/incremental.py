"""Sync bookkeeping: where a sync starts, what it may skip, what it stores as it goes.

::

    JobState (stored) --since()--> the sync query's bound parameter (watermark - lookback)
                      --skip()---> fingerprints of rows already indexed unchanged
    acknowledged chunks --Advance.add()--> the next JobState to store (watermark, marks), or None

A reindex starts the same bookkeeping: :func:`after_reindex` stores MAX(watermark) as
read before the reindex and the marks of the rows inside the lookback window below it.
The watermark only moves over chunks whose every action was acknowledged, in source
order (``sink.Acks`` releases them that way).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from indexer import watermark as wm
from indexer.extract import Chunk
from indexer.state import JobState
from indexer.watermark import Mark

MAX_MARKS = 20_000  # fingerprints kept for the lookback window; beyond this, rows are simply resent


def since(state: JobState, lookback: Any) -> Any:
    """The smallest watermark a sync re-reads: the stored one minus the lookback."""
    return wm.minus(state.watermark, lookback)


def skip(state: JobState) -> frozenset[str]:
    return frozenset(m.fingerprint for m in state.marks)


def kept_marks(marks: Iterable[Mark], floor: Any) -> list[Mark]:
    """The marks at or above ``floor``, the newest ``MAX_MARKS`` of them."""
    kept = [m for m in marks if floor is None or wm.at_least(m.value, floor)]
    return kept[-MAX_MARKS:]


def after_reindex(state: JobState, index: str, source_max: Any, marks: list[Mark], keep_from: Any,
                  watermarked: bool) -> JobState:
    """The state a successful reindex stores (its ``last_run`` is set by the caller); every field it does not
    own (``last_reconcile``...) as it was."""
    if not watermarked:
        return dataclasses.replace(state, index=index)
    return dataclasses.replace(state, watermark=source_max, index=index,
                               marks=kept_marks(marks, keep_from) if source_max is not None else [])


class Advance:
    """A sync's watermark and marks, moved forward over acknowledged chunks."""

    def __init__(self, state: JobState, lookback: Any) -> None:
        self.state = state
        self.lookback = lookback
        self.watermark = state.watermark
        self.marks = list(state.marks)

    def add(self, chunks: list[Chunk]) -> JobState | None:
        """The state to store after these chunks (every field it does not own as it was); None when they
        brought nothing new."""
        for chunk in chunks:
            self.watermark = wm.newer(self.watermark, chunk.watermark)
            self.marks.extend(chunk.marks)
        if self.watermark == self.state.watermark and not any(c.actions for c in chunks):
            return None
        floor = wm.minus(self.watermark, self.lookback)
        self.marks = kept_marks(self.marks, floor)
        return dataclasses.replace(self.state, watermark=self.watermark, marks=list(self.marks))
