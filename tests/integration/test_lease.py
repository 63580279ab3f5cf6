"""The job lock is a lease on the real node: renewed while its run lives, never stolen back, taken
over only once expired, and found lost when another run took it. Also ``record_run`` without the
lock, and a non-ASCII alias stored under its own name."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time
import uuid
from urllib.parse import quote

import pytest

from indexer.cluster import open_engine
from indexer.config import TargetConfig
from indexer.lease import LeaseLostError, LockedError
from indexer.state import ClusterState, JobState, RunRecord
from indexer.watermark import Mark
from tests.support.harness import (
    alias_targets, count, document, http, indices, lock_of, put_lock, readable, run_indexer, sensors_job, slow_job,
    stacks_of, stalling_transform, start_indexer, wait_until,
)
from tests.support.httpproxy import ProxyServer

LEASE = 1.0
OTHER = {"host": "another-host", "pid": 4242, "token": "someone-else"}


@pytest.fixture
def lock_alias(alias, monkeypatch):
    """A fresh alias with a lease of LEASE seconds; its state and lock documents are deleted afterwards."""
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", str(LEASE))
    yield alias
    _forget(alias)


def _forget(alias: str) -> None:
    for doc_id in (alias, f"lock:{alias}"):
        http("DELETE", f"/indexer-state/_doc/{quote(doc_id, safe='')}?refresh=true")


@contextlib.asynccontextmanager
async def _store(target: dict, url: str | None = None):
    """A ClusterState on the node under test (through ``url`` when given: a proxy)."""
    connected = await open_engine(TargetConfig(**{**target, **({"url": url} if url else {})}))
    try:
        yield ClusterState(connected)
    finally:
        await connected.close()


def test_a_lease_outlives_several_lease_lengths_while_a_second_run_is_refused(target, lock_alias):
    async def scenario():
        refusals = 0
        async with _store(target) as store, _store(target) as second:
            async with store.lease(lock_alias) as lease:
                deadline = time.monotonic() + 3.5 * LEASE
                while time.monotonic() < deadline:
                    with pytest.raises(LockedError, match=f"another run of alias '{lock_alias}' is in progress"):
                        await second.acquire(lock_alias)
                    refusals += 1
                    await asyncio.sleep(0.1)  # the scenario: a second run trying again, for 3.5 lease lengths
                lease.check()
                held = lock_of(lock_alias)
            await second.acquire(lock_alias)  # released on exit
        return refusals, held, store.owner

    refusals, held, owner = asyncio.run(scenario())
    assert refusals >= 10
    assert held["token"] == owner["token"] and held["expires"] > time.time() - LEASE


def test_an_expired_lock_of_another_host_is_taken_over_but_a_live_one_is_not(target, lock_alias):
    async def scenario():
        async with _store(target) as store:
            put_lock(lock_alias, {**OTHER, "expires": time.time() + 60})
            with pytest.raises(LockedError, match="pid 4242 on another-host"):
                async with store.lease(lock_alias):
                    pass
            put_lock(lock_alias, {**OTHER, "expires": time.time() - 1})
            async with store.lease(lock_alias) as lease:
                held = lock_of(lock_alias)
                lease.check()
            return held, store.owner

    held, owner = asyncio.run(scenario())
    assert held["token"] == owner["token"]
    assert lock_of(lock_alias) is None


def test_a_lease_whose_lock_another_owner_overwrote_is_lost_within_a_renew_interval(target, lock_alias):
    async def scenario():
        async with _store(target) as store:
            async with store.lease(lock_alias) as lease:
                put_lock(lock_alias, {**OTHER, "expires": time.time() + 60})
                taken = time.monotonic()
                while not lease.lost and time.monotonic() < taken + 3 * LEASE:
                    await asyncio.sleep(0.02)  # polled: how soon the loss is noticed is what is measured
                noticed = time.monotonic() - taken
                with pytest.raises(LeaseLostError) as caught:
                    lease.check()
        return noticed, str(caught.value)

    noticed, message = asyncio.run(scenario())
    assert noticed < LEASE / 3 + 0.4, noticed
    assert message == (f"the lock on alias '{lock_alias}' was lost (taken over by pid 4242 on host another-host "
                       "after it expired); stopped before moving the alias or the watermark")
    assert lock_of(lock_alias)["token"] == "someone-else"  # the exit released nothing of theirs


def test_a_lease_that_cannot_be_renewed_is_lost_once_it_expires(engine_url, target, lock_alias, monkeypatch):
    lease_seconds = 1.5
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", str(lease_seconds))

    async def scenario(proxy):
        async with _store(target, proxy.url) as store:
            async with store.lease(lock_alias) as lease:
                proxy.faults.request_status_match = lambda method, path: True
                proxy.faults.request_status = 503
                # the scenario: time passes in which a renewal failed (every 0.5 s) but the lease has not expired
                await asyncio.sleep(0.7)
                alive_after_a_failure = not lease.lost
                deadline = time.monotonic() + 2 * lease_seconds
                while not lease.lost and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # polled until the lease is found lost
                with pytest.raises(LeaseLostError) as caught:
                    lease.check()
                proxy.faults.clear()
            return alive_after_a_failure, str(caught.value), proxy.stats.status_injected

    with ProxyServer(upstream=engine_url) as proxy:
        alive, message, refused = asyncio.run(scenario(proxy))
    assert alive and refused >= 2
    assert message == (f"the lock on alias '{lock_alias}' was lost (could not be renewed before it expired); "
                       "stopped before moving the alias or the watermark")
    assert lock_of(lock_alias) is None  # still ours at the exit, so released


def test_save_never_takes_back_a_lock_that_another_owner_holds(target, lock_alias):
    async def scenario():
        async with _store(target) as store:
            await store.acquire(lock_alias)
            put_lock(lock_alias, {**OTHER, "expires": time.time() + 60})
            await store.save(lock_alias, JobState(watermark=7))
            await store.release(lock_alias)
            return await store.load(lock_alias)

    assert asyncio.run(scenario()) == JobState(watermark=7)
    assert lock_of(lock_alias)["token"] == "someone-else"


def test_record_run_without_the_lock_replaces_only_last_run(target, lock_alias):
    state = JobState(watermark=7, marks=[Mark(7, "ab")], index=f"{lock_alias}-20250101000000",
                     last_run=RunRecord("sync", "2025-01-01T00:00:00", counts={"rows_read": 5}))
    record = RunRecord("sync", "2025-01-02T00:00:00", outcome="failed",
                       error=f"another run of alias '{lock_alias}' is in progress")
    fresh = f"{lock_alias}-new"

    async def scenario():
        async with _store(target) as holder, _store(target) as refused:
            async with holder.lease(lock_alias):
                await holder.save(lock_alias, state)
                await refused.record_run(lock_alias, record)
                await refused.record_run(fresh, record)
                return await holder.load(lock_alias), await holder.load(fresh)

    try:
        stored, created = asyncio.run(scenario())
        raw = {name: http("GET", f"/indexer-state/_doc/{name}")[1]["_source"]["state"] for name in (lock_alias, fresh)}
    finally:
        _forget(fresh)
    assert stored == JobState(watermark=7, marks=[Mark(7, "ab")], index=f"{lock_alias}-20250101000000",
                              last_run=record)
    assert created == JobState(last_run=record)
    assert raw[lock_alias] == {**state.to_stored(), "last_run": record.as_dict()}  # no key of the earlier survives
    assert raw[fresh] == {"last_run": record.as_dict()}


def test_a_non_ascii_alias_keeps_its_own_name_in_the_state_and_lock_documents(target):
    name = f"adv-é-{uuid.uuid4().hex[:8]}"
    state = JobState(watermark="2025-01-01 00:00:00", index=f"{name}-20250101000000")
    record = RunRecord("reindex", "2025-01-01T00:00:00", outcome="ok")

    async def scenario():
        async with _store(target) as store:
            async with store.lease(name):
                lock = http("GET", f"/indexer-state/_doc/{quote('lock:' + name, safe='')}")
                await store.save(name, state)
                await store.record_run(name, record)
                return lock, await store.load(name)

    try:
        (lock_status, lock_body), loaded = asyncio.run(scenario())
        status, body = http("GET", f"/indexer-state/_doc/{quote(name)}")
    finally:
        _forget(name)
    assert quote(name) == name.replace("é", "%C3%A9")
    assert status == 200 and body["_id"] == name and body["_source"]["alias"] == name
    assert lock_status == 200 and lock_body["_id"] == f"lock:{name}"
    assert loaded == JobState(watermark="2025-01-01 00:00:00", index=f"{name}-20250101000000", last_run=record)


# ------------------------------------------------------------------ the CLI, end to end


def _took_its_lock(alias: str, proc) -> dict:
    return wait_until(lambda: lock_of(alias), "the reindex took its lock", proc, timeout=30)


def test_cli_a_reindex_lasting_several_lease_lengths_keeps_its_lock_against_a_second_reindex(
        tmp_path, target, lock_alias, sqlite_sensors):
    job = slow_job(tmp_path, sqlite_sensors, target, lock_alias, pause=0.3)  # 30 chunks of 0.3 s: about 9 s
    env = {"INDEXER_LEASE_SECONDS": str(LEASE)}
    first = start_indexer("reindex", str(job), "--json", env=env)
    try:
        _took_its_lock(lock_alias, first)
        started = time.monotonic()
        refusals = []
        while time.monotonic() < started + 4 * LEASE:
            refusals.append(run_indexer("reindex", str(job), env=env))
        still_running = first.poll() is None
        try:
            stdout, stderr = first.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # it hung once in a full run, cause unknown: where each thread is
            lock = lock_of(lock_alias)
            pytest.fail(f"the first reindex never ended; the lock: {lock}; its stderr and stacks: "
                        f"{stacks_of(first)[-6000:]}")
    finally:
        if first.poll() is None:
            first.kill()
    assert still_running, "the first reindex ended too soon to show anything"
    for second in refusals:
        assert second.returncode == 1, (second.stdout, second.stderr)
        assert f"another run of alias '{lock_alias}' is in progress" in second.stderr, second.stderr
    assert first.returncode == 0, stderr
    index = json.loads(stdout)["index"]
    assert alias_targets(lock_alias) == [index] and count(lock_alias) == 3000
    assert lock_of(lock_alias) is None


def test_cli_a_killed_reindex_is_taken_over_once_its_lease_expired(tmp_path, target, lock_alias, sqlite_sensors):
    job = slow_job(tmp_path, sqlite_sensors, target, lock_alias, pause=0.3)
    env = {"INDEXER_LEASE_SECONDS": str(LEASE)}
    killed = start_indexer("reindex", str(job), env=env)
    lock = _took_its_lock(lock_alias, killed)
    wait_until(lambda: any(count(i) for i in readable(f"{lock_alias}-*")), "the reindex writing", killed, timeout=30)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    orphan = indices(f"{lock_alias}-*")
    assert len(orphan) == 1
    # As if the killed run lived on another host (its pid cannot be checked) with time left on its lease.
    expires = time.time() + 4
    put_lock(lock_alias, {**lock, "host": "another-host", "expires": expires})

    refused = run_indexer("reindex", str(job), env=env)
    assert time.time() < expires, "the refusal must be checked while the lease is still valid"
    assert refused.returncode == 1 and "is in progress (pid" in refused.stderr, refused.stderr

    time.sleep(max(0.0, expires - time.time()) + 0.2)  # the scenario: the lease runs out
    taken = run_indexer("reindex", str(job), "--json", env=env)
    assert taken.returncode == 0, taken.stderr
    index = json.loads(taken.stdout)["index"]
    assert indices(f"{lock_alias}-*") == [index] and count(lock_alias) == 3000  # the orphan is gone


def test_a_lease_past_its_expiry_counts_as_lost_even_before_the_renewal_notices(target, lock_alias):
    async def scenario():
        async with _store(target) as store:
            async with store.lease(lock_alias) as lease:
                time.sleep(LEASE + 0.2)  # the scenario: the event loop blocked, so no renewal could run
                with pytest.raises(LeaseLostError, match="could not be renewed before it expired"):
                    lease.check()

    asyncio.run(scenario())


def test_cli_runs_with_and_without_a_state_file_share_one_lock(tmp_path, target, lock_alias, sqlite_sensors):
    """Two locks (a file's and the cluster's) let a second reindex delete the first one's live index as
    "left by an earlier run". The lock is the cluster's lease, whichever store keeps the state."""
    job = slow_job(tmp_path, sqlite_sensors, target, lock_alias, pause=0.3)
    env = {"INDEXER_LEASE_SECONDS": "30"}
    first = start_indexer("reindex", str(job), "--json", "--state-file", str(tmp_path / "state.json"), env=env)
    try:
        _took_its_lock(lock_alias, first)
        building = wait_until(lambda: indices(f"{lock_alias}-*"), "the reindex's new index", first)
        second = run_indexer("reindex", str(job), env=env)                  # the cluster's state this time
        also = run_indexer("reconcile", str(job), "--state-file", str(tmp_path / "other.json"), env=env)
        assert indices(f"{lock_alias}-*") == building                     # the live index was not deleted
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    for refused in (second, also):
        assert refused.returncode == 1, (refused.stdout, refused.stderr)
        assert f"another run of alias '{lock_alias}' is in progress" in refused.stderr, refused.stderr
    assert first.returncode == 0, stderr
    assert alias_targets(lock_alias) == [json.loads(stdout)["index"]] == building and count(lock_alias) == 3000


def test_cli_a_run_that_lost_its_lock_names_the_lost_lock_not_what_failed_next(tmp_path, target, lock_alias, sqlite_sensors):
    """The run that took over deleted this one's index as an orphan; it then reported a count mismatch."""
    job = slow_job(tmp_path, sqlite_sensors, target, lock_alias, pause=0.3)
    first = start_indexer("reindex", str(job), env={"INDEXER_LEASE_SECONDS": str(3 * LEASE)})
    try:
        lock = _took_its_lock(lock_alias, first)
        wait_until(lambda: indices(f"{lock_alias}-*"), "the reindex's new index", first)
        # what a run taking over an expired lease does: its lock, then the orphan deleted (the run finds the
        # lock taken at its next renewal, or when it fails and asks the cluster once more)
        put_lock(lock_alias, {**OTHER, "expires": time.time() + 60})
        for name in indices(f"{lock_alias}-*"):
            http("DELETE", f"/{name}")
        _, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert lock["token"] != OTHER["token"]
    assert first.returncode == 1 and stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"error: the lock on alias '{lock_alias}' was lost (taken over by pid 4242 on host "
                             "another-host after it expired)"), stderr
    # whichever came first, the renewal finding the lock taken or the failure it caused: the lost lock is named
    assert alias_targets(lock_alias) == []


def test_a_sync_paused_past_its_lease_never_writes_its_old_rows_over_the_newer_ones(tmp_path, target, lock_alias,
                                                                                   pg_table, pg_tables):
    # Found while soaking (tests/soak): sync A reads a row, then stalls past its lease (a GC pause, a frozen VM;
    # here SIGSTOP) while the row changes and sync B takes the lock over and indexes the new version. When A
    # wakes up it must not send what it read: the old version would replace the new one, and later syncs skip
    # the row (its fingerprint is stored) until it changes again.
    reindex = sensors_job(tmp_path, pg_table, target, lock_alias, synced=True, name="reindex.toml")
    assert run_indexer("reindex", str(reindex)).returncode == 0
    pg_tables.execute(f"UPDATE {pg_table} SET value = -1, date_updated = now()::timestamp WHERE code = 'SEN0000001'")
    folder = tmp_path / "a"
    folder.mkdir()
    stalled = sensors_job(folder, pg_table, target, lock_alias, synced=True, name="a.toml",
                          transform=stalling_transform(folder, timeout=60))
    env = {"INDEXER_LEASE_SECONDS": "2"}
    a = start_indexer("sync", str(stalled), "--json", env=env)
    wait_until(lambda: list(folder.glob("running-*")), "sync A holding the old row in its transform", a)
    a.send_signal(signal.SIGSTOP)
    try:
        pg_tables.execute(f"UPDATE {pg_table} SET value = -2, date_updated = now()::timestamp + interval '1 second' "
                          "WHERE code = 'SEN0000001'")
        time.sleep(3)  # A's lease expires unrenewed
        b = run_indexer("sync", str(reindex), "--json", env=env)
        assert b.returncode == 0, b.stderr
        http("POST", f"/{lock_alias}/_refresh")
        assert document(lock_alias, "SEN0000001")["value"] == -2
    finally:
        (folder / "go").touch()
        a.send_signal(signal.SIGCONT)
    out, err = a.communicate(timeout=60)

    assert a.returncode == 1 and "was lost" in err, err
    assert document(lock_alias, "SEN0000001")["value"] == -2  # not the -1 A had read
    c = run_indexer("sync", str(reindex), "--json", env=env)
    assert c.returncode == 0, c.stderr
    assert document(lock_alias, "SEN0000001")["value"] == -2
