"""Per-job run state (a typed ``JobState``), in the cluster or in a local file, and the run lock (a lease),
always in the cluster.

::

    commands --load(alias)--> JobState <--from_stored-- stored dict <-- ClusterState (index ``indexer-state``)
             --save(alias, JobState)--to_stored-->                       | FileState (JSON, temp + rename)
             --record_run(alias, RunRecord)--> only ``last_run`` replaced; safe without the lock
    ClusterState(engine).lease(alias) --> one lock per alias, whichever store keeps the state: taken, renewed
                                          every lease/3 in the background, released on exit;
                                          ``lease.check()`` before every irreversible step

The state (one per alias) holds the watermark, the marks (watermark and fingerprint, of row
then action, of the rows inside the lookback window, so a rerun does not resend them), the index
the alias pointed to, and the last run's start, end, outcome and counts. It is
written only after the chunks it describes were acknowledged. ``JobState.from_stored``
is the one reader of the stored form and ``JobState.to_stored`` its one writer::

    {"watermark": {"type": "datetime", "value": "2025-01-01T00:00:00"},   # watermark.to_state
     "marks": [["2025-01-01T00:00:00", "<fingerprint>"], ...],            # values in the watermark's type
     "index": "sensors-20250101000000",
     "last_run": {"command": "sync", "started": "...", "outcome": "ok", "sent": 12, ...},
     "last_reconcile": {"command": "reconcile", ...},                     # only once a reconcile ran
     "children": {"lines": {"watermark": {...}, "marks": [...]}, ...}}    # only with [[job.children]]

The lock refuses a second run of the same alias. It is a lease: it carries an
expiry (``INDEXER_LEASE_SECONDS``, default 600) that a background task pushes
forward every third of that time, always compare-and-set (the cluster's
``if_seq_no``/``if_primary_term``), so a renewal never takes back a lock that
another run holds. Another run takes the lock over only once its expiry passed
without renewal, or at once when its owner process is gone on this very host. A
run whose lease was taken over, or could not be renewed before it expired, finds
it *lost*: :meth:`Lease.check` raises :class:`LeaseLostError`, and the commands
call it before it moves the alias, saves a watermark or deletes an index.

The lease itself (renewal, loss, takeover rules) lives in ``lease``; ``ClusterState`` provides its
compare-and-set lock operations. There is one lock per alias, in the cluster, also with ``--state-file``:
runs that kept their locks in two places did not exclude each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from indexer import watermark as wm
from indexer.engine import ApiStatusError, Engine
from indexer.errors import ConfigError, EngineError
from indexer.lease import LockedError, _locked_message, _LockStore, _owner, _stale
from indexer.watermark import Mark

log = logging.getLogger(__name__)
STATE_INDEX = "indexer-state"


# ------------------------------------------------------------------ the stored state


class Outcome(StrEnum):
    """How a run ended (``last_run.outcome``, the summary's ``outcome``); stored and printed as its value."""

    RUNNING = "running"            # stored while a sync's chunks are acknowledged
    OK = "ok"
    DEAD_LETTERS = "dead_letters"  # finished, some documents in the dead-letter file (exit 3)
    STOPPED = "stopped"            # sync stopped by SIGINT/SIGTERM after the chunk in flight
    DRY_RUN = "dry_run"            # reconcile --dry-run: compared, wrote nothing
    FAILED = "failed"
    REFUSED = "refused"            # a guard said no (the swap guard, reconcile's, the lock held)
    INTERRUPTED = "interrupted"    # Ctrl-C or SIGTERM during a reindex or reconcile


@dataclass
class RunRecord:
    """What a run did, stored as ``last_run`` (``status`` shows it): flat, its counters beside the rest."""

    command: str
    started: str
    ended: str | None = None
    outcome: Outcome = Outcome.RUNNING
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)  # counts.Counts.numbers(): every counter by name

    def as_dict(self) -> dict:
        return {"command": self.command, "started": self.started, "ended": self.ended,
                "outcome": str(self.outcome), **self.counts, "error": self.error}

    @classmethod
    def from_dict(cls, stored: dict) -> RunRecord:
        """Tolerant of other versions' records: unknown keys are dropped, missing ones take defaults,
        an outcome this version does not know is kept as text."""
        named = {"command", "started", "ended", "outcome", "error"}
        outcome = stored.get("outcome", Outcome.RUNNING)
        with contextlib.suppress(ValueError):
            outcome = Outcome(outcome)
        return cls(command=stored.get("command", ""), started=stored.get("started", ""), ended=stored.get("ended"),
                   outcome=outcome, error=stored.get("error"),
                   counts={k: v for k, v in stored.items() if k not in named and type(v) is int})


def _mark_type(kind: str, value: Any) -> str:
    """The type a stored mark is read in: the watermark's, but a float where an integer watermark has a mark
    that is no integer (a SQLite column holding 9 and 9.1, a REAL among INTEGERs: every sync was refused as
    "not valid"; a float reads back equal to the value the driver gives)."""
    if kind == "int" and not (isinstance(value, int) or isinstance(value, str) and value.lstrip("-").isdigit()):
        return "float"
    return kind


def _marks_from(stored: dict, what: str) -> tuple[Any, list[Mark]]:
    """A watermark and its marks in their stored form (``what`` names them in the error)."""
    watermark = wm.from_state(stored.get("watermark"))
    if watermark is None:  # without it, marks have no type (and no use: sync needs a watermark)
        return None, []
    kind = stored["watermark"]["type"]
    try:
        return watermark, [Mark(wm.from_state({"type": _mark_type(kind, value), "value": value}), fp)
                           for value, fp in stored.get("marks") or []]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the stored marks{what} are not valid; run `indexer reindex` to record new ones") from exc


def _marks_to(watermark: Any, marks: list[Mark]) -> dict:
    return {"watermark": None if watermark is None else wm.to_state(watermark),
            "marks": [[wm.to_state(mark.value)["value"], mark.fingerprint] for mark in marks]}


@dataclass
class ChildState:
    """One child's (``[[job.children]]``, by path: ``lines``, ``lines.product``) watermark and marks: its rows
    inside its lookback window whose documents were rewritten (``child_sync``)."""

    watermark: Any = None
    marks: list[Mark] = field(default_factory=list)


@dataclass
class JobState:
    """One alias's state; see the module docstring for its stored form."""

    watermark: Any = None  # typed, as ``watermark`` reads it: datetime, date, ISO text, a number...
    marks: list[Mark] = field(default_factory=list)  # rows inside the lookback window, already indexed
    index: str | None = None
    last_run: RunRecord | None = None
    last_reconcile: RunRecord | None = None  # when the last ``reconcile`` ran (``sync --every`` spaces them)
    children: dict[str, ChildState] = field(default_factory=dict)  # nested documents: each child's, by path

    @classmethod
    def from_stored(cls, stored: dict | None) -> JobState:
        """The state in its stored form (None: nothing stored); ConfigError when a value is not of its type."""
        stored = stored or {}
        watermark, marks = _marks_from(stored, "")
        children = {path: ChildState(*_marks_from(child, f" of child {path!r}"))
                    for path, child in (stored.get("children") or {}).items() if isinstance(child, dict)}
        last, reconciled = stored.get("last_run"), stored.get("last_reconcile")
        return cls(watermark, marks, stored.get("index"), RunRecord.from_dict(last) if isinstance(last, dict) else None,
                   RunRecord.from_dict(reconciled) if isinstance(reconciled, dict) else None, children)

    def to_stored(self) -> dict:
        """The stored form: JSON types only, every value as ``watermark.to_state`` writes it."""
        stored = {
            **_marks_to(self.watermark, self.marks),
            "index": self.index,
            "last_run": self.last_run.as_dict() if self.last_run else None,
        }
        if self.last_reconcile is not None:  # absent until a reconcile ran: older readers see nothing new
            stored["last_reconcile"] = self.last_reconcile.as_dict()
        if self.children:  # absent without children: older readers see nothing new
            stored["children"] = {path: _marks_to(c.watermark, c.marks) for path, c in self.children.items()}
        return stored


# ------------------------------------------------------------------ the lock


class StateStore(Protocol):
    async def load(self, alias: str) -> JobState: ...
    async def save(self, alias: str, state: JobState) -> None: ...
    async def record_run(self, alias: str, record: RunRecord) -> None: ...


class FileState:
    """State in a local JSON file (``--state-file``). The run lock is never here: it is the cluster's lease
    (``ClusterState``), whichever store keeps the state, so runs with and without ``--state-file``
    exclude each other (two locks let a second reindex delete the first one's live index as an orphan).

    Every read-modify-write of the file runs under one exclusive ``flock`` on its folder, so a
    ``record_run`` never interleaves with another process's write; each write is a temp file renamed
    into place. The folder must exist: the run checks it can write there before it reads a row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def check(self) -> None:
        """ConfigError (one line) unless the state can be read and written here: checked before a run reads
        a row. The folder must exist (it is never created)."""
        if not self.path.parent.is_dir():
            raise ConfigError(f"state file {self.path}: its folder {self.path.parent} does not exist "
                              "(create it, or pass another --state-file)")
        data = self._read()
        with self._exclusive():
            probe = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
            try:
                probe.write_bytes(b"")
                probe.unlink()
            except OSError as exc:
                raise ConfigError(f"state file {self.path} cannot be written: "
                                  f"{exc.strerror or type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"state file {self.path} is not a state file (not a JSON object)")

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise ConfigError(f"state file {self.path}: cannot use its folder: {why}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"state file {self.path} is unreadable: {type(exc).__name__}") from exc

    def _write(self, path: Path, data: dict) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise ConfigError(f"state file {path} cannot be written: {exc.strerror or type(exc).__name__}") from exc

    async def load(self, alias: str) -> JobState:
        """The alias's state; an empty one when nothing is stored."""
        return JobState.from_stored(self._read().get(alias))

    async def save(self, alias: str, state: JobState) -> None:
        with self._exclusive():
            data = self._read()
            data[alias] = state.to_stored()
            self._write(self.path, data)

    async def record_run(self, alias: str, record: RunRecord) -> None:
        """Replace ``last_run`` only; the watermark and the rest stay as they are."""
        with self._exclusive():
            data = self._read()
            data[alias] = {**(data.get(alias) or {}), "last_run": record.as_dict()}
            self._write(self.path, data)


class ClusterState(_LockStore):
    """State in the cluster, index ``indexer-state``: document ``<alias>`` and lock document ``lock:<alias>``.

    Every write of the lock, and ``record_run``, is compare-and-set on the version read
    (``_version``); the engine percent-encodes ids into paths, so ``adv-é`` is stored as ``adv-é``.
    """

    def __init__(self, engine: Engine, index: str = STATE_INDEX) -> None:
        self.engine = engine
        self.index = index
        self.owner = _owner()

    async def _ensure_index(self) -> None:
        if not await self.engine.exists(self.index):
            with contextlib.suppress(ApiStatusError):  # created meanwhile by another run
                await self.engine.create_index(
                    self.index, {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}},
                    mappings={"dynamic": False, "properties": {"alias": {"type": "keyword"}}},
                    what=f"create state index {self.index}")

    async def _state_doc(self, alias: str) -> dict | None:
        return await self.engine.get_doc(self.index, alias, what="read job state")

    async def load(self, alias: str) -> JobState:
        """The alias's state; an empty one when nothing is stored."""
        doc = await self._state_doc(alias)
        return JobState.from_stored(doc.get("_source", {}).get("state") if doc else None)

    async def save(self, alias: str, state: JobState) -> None:
        await self.engine.put_doc(self.index, alias, {"alias": alias, "state": state.to_stored()},
                                  what="save job state")

    async def record_run(self, alias: str, record: RunRecord) -> None:
        """Replace ``last_run`` only, compare-and-set: a concurrent save by the lock's holder wins and we
        write again on top of it, so its watermark is never overwritten with an older one."""
        await self._ensure_index()
        for _ in range(5):
            current = await self._state_doc(alias)
            state = {**((current or {}).get("_source", {}).get("state") or {}), "last_run": record.as_dict()}
            try:
                await self.engine.put_doc(self.index, alias, {"alias": alias, "state": state},
                                          create=current is None, **_version(current), what="record the last run")
                return
            except ApiStatusError as exc:
                if exc.status != 409:
                    raise
        raise EngineError(f"record the last run of alias {alias!r}: its state document kept changing")

    async def _lock_doc(self, alias: str, retry: bool = True) -> dict | None:
        return await self.engine.get_doc(self.index, f"lock:{alias}", what="read job lock", retry=retry)

    async def _acquire(self, alias: str, seconds: float) -> float:
        await self._ensure_index()
        for _ in range(3):  # each round loses only to another run that just wrote the lock
            expires = time.time() + seconds
            body = {"alias": alias, "lock": self._lock(expires)}
            try:
                await self.engine.put_doc(self.index, f"lock:{alias}", body, create=True, what="take job lock")
                return expires
            except ApiStatusError as exc:
                if exc.status != 409:
                    raise
            current = await self._lock_doc(alias)
            if current is None:
                continue  # released meanwhile: create it again
            held = current.get("_source", {}).get("lock", {})
            if held.get("token") == self.owner["token"]:
                # Our own create, applied by an attempt whose answer was lost (a reset connection) and
                # refused when it was sent again: the lock is ours, never "another run".
                return float(held["expires"])
            if not _stale(held, time.time()):
                raise LockedError(_locked_message(alias, held))
            try:  # take over a stale lock, unless someone else just did
                await self.engine.put_doc(self.index, f"lock:{alias}", body, **_version(current),
                                          what="take over a stale job lock")
                return expires
            except ApiStatusError as exc:
                if exc.status != 409:
                    raise
        raise LockedError(f"another run of alias {alias!r} just took the lock")

    async def _holder(self, alias: str) -> dict:
        current = await self._lock_doc(alias, retry=False)
        return (current or {}).get("_source", {}).get("lock", {})

    async def _renew(self, alias: str, expires: float) -> dict | None:
        # Not retried here: the lease retries on its own schedule, bounded by its expiry.
        current = await self._lock_doc(alias, retry=False)
        held = (current or {}).get("_source", {}).get("lock", {})
        if held.get("token") != self.owner["token"]:
            return held
        try:
            await self.engine.put_doc(self.index, f"lock:{alias}", {"alias": alias, "lock": self._lock(expires)},
                                      **_version(current), refresh=False, what="renew job lock", retry=False)
        except ApiStatusError as exc:
            if exc.status != 409:
                raise
            now = await self._lock_doc(alias, retry=False)  # written meanwhile: by whom?
            return (now or {}).get("_source", {}).get("lock", {})
        return None

    async def release(self, alias: str) -> None:
        # Read again after a conflict: the renewal the lease cancelled may still land between our read and the
        # delete (its request already sent); the lock is then still ours, one version on, and was left behind
        # until it expired (a lease test on Elasticsearch 9 saw it once).
        for _ in range(3):
            current = await self._lock_doc(alias)
            held = (current or {}).get("_source", {}).get("lock", {})
            if held.get("token") != self.owner["token"]:
                return
            try:
                await self.engine.delete_doc(self.index, f"lock:{alias}", **_version(current),
                                             what="release job lock")
                return
            except ApiStatusError as exc:
                if exc.status != 409:
                    return


def _version(doc: dict | None) -> dict:
    """The compare-and-set condition for writing over ``doc`` as read (none for a missing one)."""
    return {"if_seq_no": doc["_seq_no"], "if_primary_term": doc["_primary_term"]} if doc else {}
