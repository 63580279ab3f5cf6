"""The file state store: its lock is a lease renewed in the background, never stolen back,
``record_run`` replaces only ``last_run``, and the typed state is stored in its one stored form.
Real files in tmp_path; no fakes."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from indexer.errors import ConfigError
from indexer.lease import LeaseLostError, LockedError
from indexer.state import FileState, JobState, RunRecord
from indexer.watermark import Mark

LEASE = 0.5
ALIAS = "sensors"
OTHER = {"host": "another-host", "pid": 4242, "token": "someone-else"}


@pytest.fixture
def path(tmp_path, monkeypatch):
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", str(LEASE))
    return tmp_path / "state" / "sensors.json"


def _lock_file(path) -> dict:
    return json.loads(path.with_name(path.name + ".lock").read_text())


def _write_lock(path, lock: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_name(path.name + ".lock").write_text(json.dumps(lock))


def test_a_lease_outlives_several_lease_lengths_and_refuses_every_other_run_meanwhile(path):
    async def scenario():
        refusals = 0
        async with FileState(path).lease(ALIAS) as lease:
            deadline = time.monotonic() + 3 * LEASE + 0.2
            while time.monotonic() < deadline:
                with pytest.raises(LockedError, match="another run of alias 'sensors' is in progress"):
                    await FileState(path).acquire(ALIAS)
                refusals += 1
                await asyncio.sleep(0.05)
            assert not lease.lost
            lease.check()
        await FileState(path).acquire(ALIAS)  # released on exit
        return refusals

    assert asyncio.run(scenario()) >= 20


def test_a_lease_whose_lock_another_owner_took_is_lost_and_its_lock_is_left_alone(path):
    async def scenario():
        async with FileState(path).lease(ALIAS) as lease:
            _write_lock(path, {**OTHER, "expires": time.time() + 60})
            await asyncio.sleep(LEASE)  # three renewal intervals
            assert lease.lost
            with pytest.raises(LeaseLostError) as caught:
                lease.check()
            return str(caught.value)

    message = asyncio.run(scenario())
    assert message == ("the lock on alias 'sensors' was lost (taken over by pid 4242 on host another-host "
                       "after it expired); stopped before moving the alias or the watermark")
    assert _lock_file(path)["token"] == "someone-else"  # not released, not renewed: not ours


def test_a_lease_past_its_expiry_counts_as_lost_even_before_the_renewal_notices(path):
    async def scenario():
        async with FileState(path).lease(ALIAS) as lease:
            time.sleep(LEASE + 0.2)  # the event loop blocked: no renewal could run
            with pytest.raises(LeaseLostError, match="could not be renewed before it expired"):
                lease.check()

    asyncio.run(scenario())


def test_an_expired_lock_of_another_host_is_taken_over_but_a_live_one_is_not(path):
    async def scenario():
        _write_lock(path, {**OTHER, "expires": time.time() + 60})
        with pytest.raises(LockedError, match=r"pid 4242 on another-host"):
            async with FileState(path).lease(ALIAS):
                pass
        _write_lock(path, {**OTHER, "expires": time.time() - 1})
        store = FileState(path)
        async with store.lease(ALIAS) as lease:
            assert _lock_file(path)["token"] == store.owner["token"]
            lease.check()

    asyncio.run(scenario())


def test_save_never_takes_back_a_lock_that_another_owner_holds(path):
    async def scenario():
        store = FileState(path)
        await store.acquire(ALIAS)
        _write_lock(path, {**OTHER, "expires": time.time() + 60})
        await store.save(ALIAS, JobState(watermark=7))
        await store.release(ALIAS)
        return await store.load(ALIAS)

    assert asyncio.run(scenario()) == JobState(watermark=7)
    assert _lock_file(path)["token"] == "someone-else"


def test_record_run_replaces_only_last_run_and_works_without_the_lock(path):
    state = JobState(watermark=7, marks=[Mark(7, "ab")], index="sensors-20250101000000",
                     last_run=RunRecord("sync", "2025-01-01T00:00:00", rows_read=5))
    record = RunRecord("sync", "2025-01-02T00:00:00", outcome="failed",
                       error="another run of alias 'sensors' is in progress")

    async def scenario():
        async with FileState(path).lease(ALIAS):
            await FileState(path).save(ALIAS, state)
            await FileState(path).record_run(ALIAS, record)  # a second store: no lock held
            await FileState(path).record_run("other", record)
        return await FileState(path).load(ALIAS), await FileState(path).load("other")

    stored, other = asyncio.run(scenario())
    assert stored == JobState(watermark=7, marks=[Mark(7, "ab")], index="sensors-20250101000000", last_run=record)
    assert other == JobState(last_run=record)
    raw = json.loads(path.read_text())
    assert raw["sensors"]["last_run"] == record.as_dict()  # no key of the earlier last_run survives
    assert raw["other"] == {"last_run": record.as_dict()}


def test_record_run_keeps_the_rest_of_the_stored_document_as_it_was(path):
    earlier = {"watermark": {"type": "int", "value": 7}, "marks": [[7, "ab"]], "from_a_later_version": [1],
               "last_run": {"command": "sync", "started": "2025-01-01T00:00:00", "extra": 1}}
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({ALIAS: earlier}))
    record = RunRecord("reindex", "2025-01-02T00:00:00", outcome="ok")
    asyncio.run(FileState(path).record_run(ALIAS, record))
    assert json.loads(path.read_text()) == {ALIAS: {**earlier, "last_run": record.as_dict()}}


def test_nothing_stored_loads_as_an_empty_state_and_a_saved_state_is_its_stored_form(path):
    state = JobState(watermark=7, marks=[Mark(6, "ab")], index="sensors-1", last_run=RunRecord("sync", "s"))

    async def scenario():
        empty = await FileState(path).load(ALIAS)
        await FileState(path).save(ALIAS, state)
        return empty, await FileState(path).load(ALIAS)

    empty, loaded = asyncio.run(scenario())
    assert empty == JobState() and loaded == state
    assert json.loads(path.read_text()) == {ALIAS: state.to_stored()}


def test_an_unreadable_state_file_is_a_config_error_that_keeps_its_cause(path):
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is unreadable: JSONDecodeError") as caught:
        asyncio.run(FileState(path).load(ALIAS))
    assert isinstance(caught.value.__cause__, ValueError)  # shown by --debug


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "10s"])
def test_an_invalid_lease_length_is_a_config_error_naming_the_variable(tmp_path, monkeypatch, value):
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", value)
    store = FileState(tmp_path / "state.json")
    with pytest.raises(ConfigError, match="INDEXER_LEASE_SECONDS must be a positive number of seconds") as caught:
        store.lease(ALIAS)
    assert caught.value.exit_code == 2
    with pytest.raises(ConfigError, match="INDEXER_LEASE_SECONDS"):
        asyncio.run(store.acquire(ALIAS))
    assert not os.path.exists(tmp_path / "state.json.lock")


def test_record_run_keeps_the_last_reconcile(path):
    reconciled = RunRecord("reconcile", "2025-01-01T00:00:00", outcome="ok", deleted=2)
    record = RunRecord("sync", "2025-01-02T00:00:00", outcome="failed", error="cluster down")

    async def scenario():
        async with FileState(path).lease(ALIAS):
            await FileState(path).save(ALIAS, JobState(watermark=7, last_run=reconciled, last_reconcile=reconciled))
            await FileState(path).record_run(ALIAS, record)
        return await FileState(path).load(ALIAS)

    assert asyncio.run(scenario()) == JobState(watermark=7, last_run=record, last_reconcile=reconciled)
