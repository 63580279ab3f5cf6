"""The run lock as a lease: taken, renewed in the background while the run lives, lost loudly.

::

    store.lease(alias) --> Lease: acquire (refuse a live lock: LockedError)
        --> renew every lease/3, compare-and-set (never takes back a lock another run holds)
        --> lost when taken over or unrenewable until it expired: Lease.check() raises LeaseLostError
        --> released on exit, only while still ours

A lock is taken over only once its expiry passed without renewal, or at once when its
owner process is gone on this very host. The lease length is ``INDEXER_LEASE_SECONDS``
(default 600), read at each use so that tests can shorten it. The stores (``state``)
provide the lock operations: ``_acquire``, ``_renew``, ``release``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from typing import Any

from indexer.errors import ConfigError, IndexerError, RefusedError

log = logging.getLogger(__name__)
LEASE_ENV = "INDEXER_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 600.0
RENEW_RETRY_SECONDS = 5.0  # after a failed renewal, try again this soon (or at the usual interval, if shorter)
RELEASE_SECONDS = 30.0     # the most a run waits at its end to delete its lock (it expires on its own anyway)


class LockedError(RefusedError):
    """Another run of the same job holds the lock."""


class LeaseLostError(IndexerError):
    """This run's lock was taken over or expired: it must not touch the alias or the watermark."""


def lease_seconds() -> float:
    """The lease length, read from the environment at each use (tests set it per process)."""
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{LEASE_ENV} must be a positive number of seconds, got {raw[:40]!r}")
    return value


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


class Lease:
    """The alias's lock, held and renewed in the background for as long as ``async with`` runs."""

    def __init__(self, store: _LockStore, alias: str) -> None:
        self.store = store
        self.alias = alias
        self.seconds = lease_seconds()
        self.expires = 0.0  # wall clock, as written in the lock
        self._held = False
        self._lost: str | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Lease:
        self.expires = await self.store._acquire(self.alias, self.seconds)
        self._held = True
        self._task = asyncio.create_task(self._keep(), name=f"lease {self.alias}")
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._held = False  # the renewal stops at its next look, even if a cancel below were lost
        task = self._task
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1)
        try:  # only deletes the lock while it is still ours; bounded: an unreleased lock expires anyway
            async with asyncio.timeout(RELEASE_SECONDS):
                await asyncio.shield(self.store.release(self.alias))
        except (IndexerError, OSError, TimeoutError) as exc:  # never hide the run's own outcome behind this
            log.warning("could not release the lock on alias %r (%s); it expires on its own", self.alias,
                        exc or "no answer in time")

    @property
    def lost(self) -> bool:
        # Past its expiry the lock may be someone else's even if the renewal task has not said so
        # yet (a busy event loop): count that as lost too.
        if self._held and self._lost is None and time.time() >= self.expires:
            self._lose("could not be renewed before it expired")
        return self._lost is not None

    def check(self) -> None:
        """Raise LeaseLostError if the lock is no longer this run's."""
        if self.lost:
            raise LeaseLostError(self.describe_loss())

    async def confirm_lost(self) -> bool:
        """Whether the lock is no longer this run's: known already, or asked of the store once more
        (best effort, a few seconds at most: the store may be what failed)."""
        if self.lost:
            return True
        try:
            async with asyncio.timeout(5):
                holder = await self.store._holder(self.alias)
        except Exception:  # noqa: BLE001 - unknown is not lost
            return False
        if holder.get("token") != self.store.owner["token"]:
            self._lose(f"taken over by pid {holder.get('pid')} on host {holder.get('host')} after it expired"
                       if holder else "its lock was deleted by someone else")
        return self.lost

    def describe_loss(self) -> str:
        """What happened to the lock, for the run's one error line."""
        return (f"the lock on alias {self.alias!r} was lost ({self._lost}); "
                "stopped before moving the alias or the watermark")

    def _lose(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
            log.debug("%s", self.describe_loss())  # the run reports it in its one error line

    async def _keep(self) -> None:
        interval = self.seconds / 3
        delay = interval
        while True:
            await asyncio.sleep(delay)
            left = self.expires - time.time()
            if left <= 0:
                self._lose("could not be renewed before it expired")
                return
            expires = time.time() + self.seconds
            # Bounded by the expiry: a renewal that answers later is no use. asyncio.timeout, not wait_for:
            # on Python 3.11 wait_for returns a result that arrives with a cancel and drops the cancel, and
            # __aexit__'s cancel was lost that way (a run that renewed its lock forever after its work).
            try:
                async with asyncio.timeout(left):
                    holder = await self.store._renew(self.alias, expires)
            except TimeoutError:
                self._lose("could not be renewed before it expired")
                return
            except (IndexerError, OSError) as exc:
                log.warning("could not renew the lock on alias %r (%s); trying again", self.alias, exc)
                delay = min(interval, RENEW_RETRY_SECONDS)
                continue
            if holder is not None:
                self._lose(f"taken over by pid {holder.get('pid')} on host {holder.get('host')} after it expired"
                           if holder else "its lock was deleted by someone else")
                return
            if not self._held:
                return
            self.expires, delay = expires, interval


class _LockStore:
    """What both stores share: the lease built on their ``_acquire``/``_renew``/``release``."""

    owner: dict

    def lease(self, alias: str) -> Lease:
        """``async with store.lease(alias) as lease:`` holds the lock for the block; see :class:`Lease`."""
        return Lease(self, alias)

    async def acquire(self, alias: str) -> None:
        """Take the lock once, without renewal (a lease is what a long run wants)."""
        await self._acquire(alias, lease_seconds())

    def _lock(self, expires: float) -> dict:
        return {**self.owner, "expires": expires}

    async def _acquire(self, alias: str, seconds: float) -> float:
        """Take the lock (or raise LockedError); the expiry written."""
        raise NotImplementedError

    async def _renew(self, alias: str, expires: float) -> dict | None:
        """Push our lock's expiry forward; None when done, else who holds it now ({} for nobody)."""
        raise NotImplementedError

    async def _holder(self, alias: str) -> dict:
        """Who holds the lock now ({} for nobody), read without writing."""
        raise NotImplementedError

    async def release(self, alias: str) -> None:
        raise NotImplementedError


