"""Sync bookkeeping: where a sync starts (the lookback), what it may skip (the boundary dedup), what it
stores as it goes. Pure: no I/O, no clock; the stored state's type only for annotations.

::

    JobState (stored) --since()--> the sync query's bound parameter (watermark - lookback)
                      --skip()---> each marked row's newest write: its watermark and fingerprint
    a chunk being read (extract.Reader) --settle()--> actions already indexed unchanged dropped,
                                                      the fresh ones inside the lookback window marked
    acknowledged chunks --Advance.add()--> the next JobState to store (watermark, marks), or None

A reindex starts the same bookkeeping: :func:`after_reindex` stores MAX(watermark) as
read before the reindex and the marks of the rows inside the lookback window below it.
The watermark only moves over chunks whose every action was acknowledged, in source
order (``sink.Acks`` releases them that way).

What a mark may skip: a row re-read with the watermark and the action of its *newest* mark. Fingerprints
of the action alone skipped too much: a row soft-deleted, revived and soft-deleted again inside the
lookback window gives the first delete's action byte for byte, and a value changed and changed back
inside one watermark second (whole-second timestamps) the first value's; both were skipped as already
indexed and the index kept the revived document or the changed value (found by the chaos soak,
docs/soak.md). A fingerprint therefore starts with its row's (the document id's) hash, so that the
marks of one row can be told apart from the others'; marks stored by an earlier version, without it,
skip nothing (the lookback window is resent once).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from indexer import watermark as wm
from indexer.watermark import Mark

if TYPE_CHECKING:  # the state store keeps what Advance makes
    from indexer.state import JobState


class Chunk(Protocol):
    """What this module reads and settles of a chunk (``extract.Chunk``, which calls in here)."""

    actions: list
    rejected: list
    marks: list[Mark]
    skipped: int
    unpaired: bool
    watermark: Any


MAX_MARKS = 20_000  # fingerprints kept for the lookback window; beyond this, rows are simply resent
ROW = 12            # hex digits of a fingerprint that name its row (the document id's hash)
FINGERPRINT = ROW + 16

Skip = Mapping[str, tuple[Any, str]]  # a row's hash -> the watermark key and fingerprint of its newest mark


def since(state: JobState, lookback: Any) -> Any:
    """The smallest watermark a sync re-reads: the stored one minus the lookback."""
    return wm.minus(state.watermark, lookback)


def skip(state: JobState) -> Skip:
    """Each marked row's newest mark (marks are kept in the order they were written), its watermark as a
    comparable key. Marks without a row part (stored by an earlier version) are left out."""
    marks = [m for m in state.marks if len(m.fingerprint) == FINGERPRINT]
    try:
        keys = wm.keys_of([m.value for m in marks])
    except wm.WatermarkValueError:  # marks of mixed kinds cannot come from one run: trust none, resend
        return {}
    return {m.fingerprint[:ROW]: (key, m.fingerprint) for m, key in zip(marks, keys, strict=True)}


def keep_from(source_max: Any, lookback: Any) -> Any:
    """The lowest watermark a reindex marks (its rows inside the lookback window below what it stores)."""
    return wm.minus(source_max, lookback) if source_max is not None else None


def fingerprint(id_: str, line: bytes) -> str:
    """A bulk action's fingerprint: its row's hash (``ROW`` digits, from the document id), then its line's;
    equal when the document a row gives did not change."""
    return (hashlib.blake2b(id_.encode(), digest_size=ROW // 2).hexdigest()
            + hashlib.blake2b(line, digest_size=8).hexdigest())


def settle(chunk: Chunk, values: list, keys: list, floor: Any, skip: Skip) -> None:
    """The boundary dedup of a chunk being read: drop the actions already indexed unchanged (the row's newest
    mark in ``skip`` has their watermark and fingerprint; counted as skipped), and mark the fresh ones whose
    watermark key is at or above ``floor`` (the lookback window), so that the next sync re-reading them can
    skip them too.

    A chunk whose actions do not pair with its rows (a transform changed their number, or rows were
    rejected) is resent whole: nothing is skipped or marked."""
    if chunk.unpaired or chunk.rejected:
        return
    kept = []
    for action in chunk.actions:
        k = keys[action.at]
        marked = k is not None and (floor is None or k >= floor)
        # A fingerprint only where it is used: a reindex skips nothing and marks only the rows
        # inside the lookback window, so most rows of a reindex need none.
        fp = fingerprint(action.id, action.line) if skip or marked else None
        if skip and fp is not None and skip.get(fp[:ROW]) == (k, fp):
            chunk.skipped += 1
            continue
        kept.append(action)
        if fp is not None and marked:
            chunk.marks.append(Mark(values[action.at], fp))
    chunk.actions = kept


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

    def add(self, chunks: Sequence[Chunk]) -> JobState | None:
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
