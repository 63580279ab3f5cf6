"""indexer.lease without a cluster: the lease length read from the environment, and the lease's end when a
renewal answers as the run ends. The lease against a cluster (taken, renewed, lost, taken over) needs the
node: tests/integration/test_lease.py."""

import asyncio
import time

import pytest

from indexer.errors import ConfigError
from indexer.lease import Lease, _LockStore, lease_seconds


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "10s"])
def test_an_invalid_lease_length_is_a_config_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", value)
    with pytest.raises(ConfigError, match="INDEXER_LEASE_SECONDS must be a positive number of seconds") as caught:
        lease_seconds()
    assert caught.value.exit_code == 2


class _AnsweringStore(_LockStore):
    """A lock store whose renewals answer when the test says so (as a cluster answers, later)."""

    def __init__(self) -> None:
        self.owner = {"token": "me"}
        self.renewals = 0
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()  # a renewal is waiting for its answer
        self.released = False

    async def _acquire(self, alias, seconds):
        return time.time() + seconds

    async def _renew(self, alias, expires):
        self.asked.set()
        await self.answer.wait()
        self.answer.clear()
        self.renewals += 1
        return None

    async def release(self, alias):
        self.released = True


def test_a_lease_ends_when_a_renewal_answers_just_as_the_run_ends(monkeypatch):
    """The run's end cancels the renewal task in the very loop turn its renewal's answer arrives. On
    Python 3.11, asyncio.wait_for around the renewal dropped that cancel: the task renewed forever and
    the run never ended (seen in the lease integration test). Now the lease ends and releases its lock."""
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", "0.3")

    async def scenario():
        store = _AnsweringStore()
        lease = Lease(store, "a")
        await lease.__aenter__()
        await asyncio.wait_for(store.asked.wait(), 5)  # a renewal is in flight (one every 0.1 s)
        store.answer.set()         # its answer arrives...
        await asyncio.sleep(0)     # ...and is handled in the same turn as the run's end
        ending = asyncio.create_task(lease.__aexit__(None, None, None))
        for _ in range(20):        # the cluster goes on answering any renewal asked
            if ending.done():
                break
            await asyncio.sleep(0.1)
            store.answer.set()
        return ending.done(), lease._task.done(), store

    ended, renewal_ended, store = asyncio.run(scenario())
    assert ended and renewal_ended and store.released
    assert store.renewals <= 1  # at most the renewal that was answering as the run ended
