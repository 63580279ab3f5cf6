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

What a mark may skip: a row re-read with the watermark and the action of its *newest* mark, the first
time the run meets that row. Fingerprints of the action alone skipped too much: a row soft-deleted,
revived and soft-deleted again inside the lookback window gives the first delete's action byte for
byte, and a value changed and changed back inside one watermark second (whole-second timestamps) the
first value's; both were skipped as already indexed and the index kept the revived document or the
changed value (found by the chaos soak, docs/soak.md). So a fingerprint starts with its row's hash (of
the document id) and only each row's newest mark counts. Keeping that true:

* a chunk sent without marks (rows rejected, or a transform changed their number) leaves a *tombstone*
  for each of its rows, a mark that never matches, so that an older mark does not become their newest;
* a row met twice in one run (two rows giving one id) is never skipped the second time, and the first
  time only if its newest mark says so: skipping the second alone would leave the first in the index;
* pruning keeps each row's newest mark or none of its marks (an older one left alone would be taken as
  the newest);
* marks of another form (an earlier version's) are not trusted: they, and every mark stored before the
  last of them (an earlier version may have written since, without marking our way), skip nothing; the
  lookback window is resent once;
* a sync of another index than the one the marks were stored for starts without them (``for_index``);
* reconcile forgets the marks of the documents it deleted.

Left open (docs/sync.md): a write nobody recorded (a run killed after it wrote, a zombie write) that
changes a row's document while its watermark stays the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from indexer import watermark as wm
from indexer.state import ChildState
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
    child_watermarks: dict[str, Any]
    child_marks: dict[str, list[Mark]]


MAX_MARKS = 20_000  # fingerprints kept for the lookback window; beyond this, rows are simply resent
ROW = 12            # hex digits of a fingerprint that name its row: BLAKE2b-48 of the document id (two rows
                    # colliding would share a newest mark: both resent on every pass, never wrongly skipped)
FINGERPRINT = ROW + 16
TOMBSTONE = "-" * 16  # the action part of a mark that never matches

Skip = dict[str, tuple[Any, str]]  # a row's hash -> the watermark key and fingerprint of its newest mark


def for_index(state: JobState, index: str) -> JobState:
    """The state a sync of ``index`` (the alias's write index) starts from: without marks when they were stored
    for another index (the alias moved by hand onto another, restored one), so that the run neither skips by them
    nor stores them again."""
    if state.index == index or not (state.marks or any(c.marks for c in state.children.values())):
        return state
    children = {path: ChildState(child.watermark) for path, child in state.children.items()}
    return dataclasses.replace(state, marks=[], children=children)


def since(state: JobState, lookback: Any) -> Any:
    """The smallest watermark a sync re-reads: the stored one minus the lookback."""
    return wm.minus(state.watermark, lookback)


def _row(mark: Mark) -> str | None:
    """The row a mark names; None for a mark of an earlier version's form."""
    return mark.fingerprint[:ROW] if len(mark.fingerprint) == FINGERPRINT else None


def _newest(marks: Iterable[Mark]) -> list[Mark]:
    """Each row's newest mark, in the order they were written; marks of an earlier version (no row part), and
    every mark before the last of them, left out."""
    newest: dict[str, Mark] = {}
    for mark in marks:
        row = _row(mark)
        if row is None:
            newest.clear()  # an earlier version wrote since: what came before may no longer be the newest
            continue
        newest.pop(row, None)
        newest[row] = mark
    return list(newest.values())


def skip(state: JobState, kind: Any = None) -> Skip:
    """Each marked row's newest mark, its watermark as a comparable key of the run's ``kind``."""
    return skip_of(state.marks, kind)


def skip_of(marks: list[Mark], kind: Any = None) -> Skip:
    """``skip`` of one list of marks (the parent's, or a child's: ``child_sync``)."""
    marks = [m for m in _newest(marks) if not m.fingerprint.endswith(TOMBSTONE)]
    try:
        keys = wm.keys_of([m.value for m in marks], kind)
    except wm.WatermarkValueError:  # marks that do not fit the run's kind: trust none, resend
        return {}
    return {m.fingerprint[:ROW]: (key, m.fingerprint) for m, key in zip(marks, keys, strict=True)}


def keep_from(source_max: Any, lookback: Any) -> Any:
    """The lowest watermark a reindex marks (its rows inside the lookback window below what it stores)."""
    return wm.minus(source_max, lookback) if source_max is not None else None


def row_hash(id_: str) -> str:
    return hashlib.blake2b(id_.encode(), digest_size=ROW // 2).hexdigest()


def fingerprint(id_: str, line: bytes) -> str:
    """A bulk action's fingerprint: its row's hash, then its line's; equal when the document a row gives did
    not change."""
    return row_hash(id_) + hashlib.blake2b(line, digest_size=8).hexdigest()


def settle(chunk: Chunk, values: list, keys: list, floor: Any, skip: Skip) -> None:
    """The boundary dedup of a chunk being read: drop the actions already indexed unchanged (the row's newest
    mark in ``skip`` has their watermark and fingerprint; counted as skipped), and mark the fresh ones whose
    watermark key is at or above ``floor`` (the lookback window), so that the next sync re-reading them can
    skip them too. ``skip`` is the run's own copy: a row met is taken out of it (never skipped again).

    A chunk whose actions do not pair with its rows (a transform changed their number, or rows were
    rejected) is resent whole: nothing is skipped or marked. A row sent unmarked (so, also, one whose
    watermark is no point in time) gets a tombstone when it has a stored mark, which must no longer count
    as its newest."""
    def unmarked(action: Any) -> None:
        if not skip:  # no stored mark to outdate (a reindex, a job whose transform changes the count)
            return
        row = row_hash(action.id)
        if skip.pop(row, None) is None:
            return
        own = action.at >= 0 and keys[action.at] is not None
        value = values[action.at] if own else chunk.watermark  # the chunk's largest: a point in time, or None
        if value is not None:
            chunk.marks.append(Mark(value, row + TOMBSTONE))

    if chunk.unpaired or chunk.rejected:
        for action in chunk.actions:
            unmarked(action)
        return
    kept = []
    for action in chunk.actions:
        k = keys[action.at]
        if k is None:
            unmarked(action)
            kept.append(action)
            continue
        marked = floor is None or k >= floor
        # A fingerprint only where it is used: a reindex skips nothing and marks only the rows
        # inside the lookback window, so most rows of a reindex need none.
        fp = fingerprint(action.id, action.line) if skip or marked else None
        if fp is not None and skip and skip.pop(fp[:ROW], None) == (k, fp):
            chunk.skipped += 1
            continue
        kept.append(action)
        if fp is not None and marked:
            chunk.marks.append(Mark(values[action.at], fp))
    chunk.actions = kept


def forget(marks: list[Mark], ids: Iterable[str]) -> list[Mark]:
    """``marks`` without those of the rows of ``ids`` (documents reconcile deleted: a row restored as it was,
    at the same watermark, must be sent again, not skipped as still indexed)."""
    marked = {_row(m) for m in marks} - {None}
    gone = {row for row in map(row_hash, ids) if row in marked}
    return [m for m in marks if _row(m) not in gone] if gone else marks


def kept_marks(marks: Iterable[Mark], floor: Any) -> list[Mark]:
    """Each row's newest mark when it is at or above ``floor``, the newest ``MAX_MARKS`` of them. The floor and
    the marks are compared as keys found in one pass (the floor's kind), not pair by pair: this runs after every
    acknowledged chunk of a sync."""
    kept = _newest(marks)
    if floor is not None and kept:
        floor_key, *keys = wm.keys_of([floor, *(m.value for m in kept)])
        kept = [m for m, key in zip(kept, keys, strict=True) if key >= floor_key]
    return kept[-MAX_MARKS:]


def after_reindex(state: JobState, index: str, source_max: Any, marks: list[Mark], keep_from: Any,
                  watermarked: bool, child_max: dict[str, Any] | None = None) -> JobState:
    """The state a successful reindex stores (its ``last_run`` is set by the caller); every field it does not
    own (``last_reconcile``...) as it was. ``child_max``: each child's MAX(watermark) read before the reindex
    (no marks: the first sync re-reads each child's lookback window once)."""
    if not watermarked:
        return dataclasses.replace(state, index=index)
    return dataclasses.replace(state, watermark=source_max, index=index,
                               marks=kept_marks(marks, keep_from) if source_max is not None else [],
                               children={path: ChildState(value) for path, value in (child_max or {}).items()})


class Advance:
    """A sync's watermark and marks, moved forward over acknowledged chunks."""

    def __init__(self, state: JobState, lookback: Any, child_lookbacks: dict[str, Any] | None = None) -> None:
        self.state = state
        self.lookback = lookback
        self.watermark = state.watermark
        self.marks = list(state.marks)
        self.child_lookbacks = child_lookbacks or {}
        self.children = {path: ChildState(c.watermark, list(c.marks)) for path, c in state.children.items()}

    def add(self, chunks: Sequence[Chunk]) -> JobState | None:
        """The state to store after these chunks (every field it does not own as it was); None when they
        brought nothing new."""
        moved = False
        for chunk in chunks:
            self.watermark = wm.newer(self.watermark, chunk.watermark)
            self.marks.extend(chunk.marks)
            for path, value in chunk.child_watermarks.items():
                child = self.children.setdefault(path, ChildState())
                newer = wm.newer(child.watermark, value)
                added = chunk.child_marks.get(path, [])
                moved = moved or newer != child.watermark or bool(added)
                child.watermark = newer
                child.marks.extend(added)
        if self.watermark == self.state.watermark and not any(c.actions for c in chunks) and not moved:
            return None
        floor = wm.minus(self.watermark, self.lookback)
        self.marks = kept_marks(self.marks, floor)
        for path, child in self.children.items():
            if child.watermark is not None:
                lookback = self.child_lookbacks.get(path, self.lookback)
                child.marks = kept_marks(child.marks, wm.minus(child.watermark, lookback))
        children = {path: ChildState(c.watermark, list(c.marks)) for path, c in self.children.items()}
        return dataclasses.replace(self.state, watermark=self.watermark, marks=list(self.marks), children=children)
