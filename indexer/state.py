"""Per-job run state and the run lock, in the cluster or in a local file.

::

    pipeline --load/save(state dict)--> ClusterState (index ``indexer-state``) | FileState (JSON, temp + rename)
             --acquire/release-------->  one lock per alias, with an expiry

The state document (one per alias) holds the watermark, the fingerprints of the
rows inside the lookback window (so a rerun does not resend them), the index the
alias pointed to, and the last run's start, end, outcome and counts. It is
written only after the chunks it describes were acknowledged.

The lock refuses a second run of the same alias. It expires (``LOCK_TTL``) and
is renewed with every save, so a killed run blocks others only until then; a
lock whose owner process is gone on this very host is taken over at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Protocol

from indexer.engine import ApiStatusError, Engine
from indexer.errors import ConfigError, IndexerError

STATE_INDEX = "indexer-state"
LOCK_TTL = 600.0


class LockedError(IndexerError):
    """Another run of the same job holds the lock."""


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex}


def _stale(lock: dict, now: float) -> bool:
    if lock.get("expires", 0) < now:
        return True
    if lock.get("host") == socket.gethostname():
        try:
            os.kill(int(lock["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            return False
    return False


def _locked_message(alias: str, lock: dict) -> str:
    left = max(0, int(lock.get("expires", 0) - time.time()))
    return (f"another run of alias {alias!r} is in progress (pid {lock.get('pid')} on {lock.get('host')}); "
            f"its lock expires in {left}s")


class StateStore(Protocol):
    async def load(self, alias: str) -> dict | None: ...
    async def save(self, alias: str, state: dict) -> None: ...
    async def acquire(self, alias: str) -> None: ...
    async def release(self, alias: str) -> None: ...


class FileState:
    """State in a local JSON file (``--state-file``): written atomically, locked with a sidecar file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.owner = _owner()

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"state file {self.path} is unreadable: {type(exc).__name__}") from None

    async def load(self, alias: str) -> dict | None:
        return self._read().get(alias)

    async def save(self, alias: str, state: dict) -> None:
        data = self._read()
        data[alias] = state
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._write_lock()

    def _write_lock(self) -> None:
        lock = {**self.owner, "expires": time.time() + LOCK_TTL}
        tmp = self.lock_path.with_name(self.lock_path.name + f".{os.getpid()}")
        tmp.write_text(json.dumps(lock))
        os.replace(tmp, self.lock_path)

    async def acquire(self, alias: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                try:
                    lock = json.loads(self.lock_path.read_text())
                except (OSError, ValueError):
                    lock = {}
                if lock and not _stale(lock, time.time()):
                    raise LockedError(_locked_message(alias, lock)) from None
                with contextlib.suppress(FileNotFoundError):
                    self.lock_path.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps({**self.owner, "expires": time.time() + LOCK_TTL}))
            return
        raise LockedError(f"could not take the lock {self.lock_path}")

    async def release(self, alias: str) -> None:
        try:
            lock = json.loads(self.lock_path.read_text())
        except (OSError, ValueError):
            return
        if lock.get("token") == self.owner["token"]:
            with contextlib.suppress(FileNotFoundError):
                self.lock_path.unlink()


class ClusterState:
    """State in the cluster, index ``indexer-state``: document ``<alias>`` and lock document ``lock:<alias>``."""

    def __init__(self, engine: Engine, index: str = STATE_INDEX) -> None:
        self.engine = engine
        self.index = index
        self.owner = _owner()

    async def _ensure_index(self) -> None:
        if not await self.engine.exists(self.index):
            with contextlib.suppress(ApiStatusError):  # created meanwhile by another run
                await self.engine.request("PUT", f"/{self.index}", body={
                    "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1"}},
                    "mappings": {"dynamic": False, "properties": {"alias": {"type": "keyword"}}},
                }, what=f"create state index {self.index}")

    async def load(self, alias: str) -> dict | None:
        body = await self.engine.request("GET", f"/{self.index}/_doc/{alias}", missing_ok=True, what="read job state")
        return body.get("_source", {}).get("state") if body and body.get("found") else None

    async def save(self, alias: str, state: dict) -> None:
        await self.engine.request("PUT", f"/{self.index}/_doc/{alias}", params={"refresh": "true"},
                                  body={"alias": alias, "state": state}, what="save job state")
        await self._renew(alias)

    async def _lock_doc(self, alias: str) -> dict | None:
        return await self.engine.request("GET", f"/{self.index}/_doc/lock:{alias}", missing_ok=True, what="read job lock")

    async def acquire(self, alias: str) -> None:
        await self._ensure_index()
        lock = {**self.owner, "expires": time.time() + LOCK_TTL}
        try:
            await self.engine.request("PUT", f"/{self.index}/_create/lock:{alias}", params={"refresh": "true"},
                                      body={"alias": alias, "lock": lock}, what="take job lock")
            return
        except ApiStatusError as exc:
            if exc.status != 409:
                raise
        current = await self._lock_doc(alias)
        held = (current or {}).get("_source", {}).get("lock", {})
        if current and not _stale(held, time.time()):
            raise LockedError(_locked_message(alias, held))
        try:  # take over a stale lock, unless someone else just did
            await self.engine.request(
                "PUT", f"/{self.index}/_doc/lock:{alias}",
                params={"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"], "refresh": "true"},
                body={"alias": alias, "lock": lock}, what="take over a stale job lock",
            )
        except ApiStatusError as exc:
            if exc.status == 409:
                raise LockedError(f"another run of alias {alias!r} just took the lock") from None
            raise

    async def _renew(self, alias: str) -> None:
        await self.engine.request("PUT", f"/{self.index}/_doc/lock:{alias}",
                                  body={"alias": alias, "lock": {**self.owner, "expires": time.time() + LOCK_TTL}},
                                  what="renew job lock")

    async def release(self, alias: str) -> None:
        current = await self._lock_doc(alias)
        held = (current or {}).get("_source", {}).get("lock", {})
        if held.get("token") == self.owner["token"]:
            with contextlib.suppress(ApiStatusError):
                await self.engine.request(
                    "DELETE", f"/{self.index}/_doc/lock:{alias}",
                    params={"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"], "refresh": "true"},
                    what="release job lock",
                )
