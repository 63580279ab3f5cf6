"""The file state store (the lock is always the cluster's lease: tests/integration/test_lease.py):
``record_run`` replaces only ``last_run``, the typed state is stored in its one stored form, every writer
keeps the fields it does not own, and the files a run writes are checked before it reads a row.
Real files in tmp_path; no fakes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os

import pytest

from indexer import incremental
from indexer.deadletter import DeadLetters
from indexer.errors import ConfigError
from indexer.extract import Chunk
from indexer.lease import lease_seconds
from indexer.state import FileState, JobState, RunRecord
from indexer.watermark import Mark

ALIAS = "sensors"


@pytest.fixture
def path(tmp_path):
    (tmp_path / "state").mkdir()
    return tmp_path / "state" / "sensors.json"


def test_record_run_replaces_only_last_run_and_works_without_the_lock(path):
    state = JobState(watermark=7, marks=[Mark(7, "ab")], index="sensors-20250101000000",
                     last_run=RunRecord("sync", "2025-01-01T00:00:00", counts={"rows_read": 5}))
    record = RunRecord("sync", "2025-01-02T00:00:00", outcome="failed",
                       error="another run of alias 'sensors' is in progress")

    async def scenario():
        await FileState(path).save(ALIAS, state)
        await FileState(path).record_run(ALIAS, record)  # a second store object, as another process would
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
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is unreadable: JSONDecodeError") as caught:
        asyncio.run(FileState(path).load(ALIAS))
    assert isinstance(caught.value.__cause__, ValueError)  # shown by --debug


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "10s"])
def test_an_invalid_lease_length_is_a_config_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("INDEXER_LEASE_SECONDS", value)
    with pytest.raises(ConfigError, match="INDEXER_LEASE_SECONDS must be a positive number of seconds") as caught:
        lease_seconds()
    assert caught.value.exit_code == 2


def test_record_run_keeps_the_last_reconcile(path):
    reconciled = RunRecord("reconcile", "2025-01-01T00:00:00", outcome="ok", counts={"deleted": 2})
    record = RunRecord("sync", "2025-01-02T00:00:00", outcome="failed", error="cluster down")

    async def scenario():
        await FileState(path).save(ALIAS, JobState(watermark=7, last_run=reconciled, last_reconcile=reconciled))
        await FileState(path).record_run(ALIAS, record)
        return await FileState(path).load(ALIAS)

    assert asyncio.run(scenario()) == JobState(watermark=7, last_run=record, last_reconcile=reconciled)


# ---------------------------------------------------------------- every writer keeps what it does not own


def _every_field_set() -> JobState:
    """A state with every field holding something (a new field of JobState must be added here: checked)."""
    state = JobState(watermark=10, marks=[Mark(9, "f9")], index="sensors-20250101000000",
                     last_run=RunRecord("sync", "2025-01-01T00:00:00", outcome="ok", counts={"sent": 3}),
                     last_reconcile=RunRecord("reconcile", "2025-01-01T01:00:00", outcome="ok", counts={"deleted": 2}))
    unset = [f.name for f in dataclasses.fields(JobState) if getattr(state, f.name) in (None, [])]
    assert not unset, f"set these fields in _every_field_set: {unset}"
    return state


def _chunk(watermark, marks=(), actions=1) -> Chunk:
    return Chunk(0, actions, [object()] * actions, [], watermark=watermark, marks=list(marks))


@pytest.mark.parametrize("writer, owns", [
    (lambda s: incremental.Advance(s, 2).add([_chunk(12, [Mark(12, "f12")])]), {"watermark", "marks"}),
    (lambda s: incremental.after_reindex(s, "sensors-20250202000000", 20, [Mark(20, "f20")], 18, True),
     {"watermark", "marks", "index"}),
    (lambda s: incremental.after_reindex(s, "sensors-20250202000000", None, [], None, False), {"index"}),
])
def test_every_state_writer_keeps_every_field_it_does_not_own(writer, owns):
    """sync dropped last_reconcile on every state write, so reconcile_every never saw a reconcile."""
    before = _every_field_set()
    after = writer(before)
    for field in dataclasses.fields(JobState):
        if field.name not in owns:
            assert getattr(after, field.name) == getattr(before, field.name), field.name
    assert all(getattr(after, name) != getattr(before, name) for name in owns), "each writer changes what it owns"


def test_every_field_survives_the_stored_form_and_record_run(path):
    state = _every_field_set()
    record = RunRecord("sync", "2025-01-03T00:00:00", outcome="failed", error="down")

    async def scenario():
        await FileState(path).save(ALIAS, state)
        await FileState(path).record_run(ALIAS, record)
        return await FileState(path).load(ALIAS)

    assert JobState.from_stored(state.to_stored()) == state
    assert asyncio.run(scenario()) == dataclasses.replace(state, last_run=record)


# ---------------------------------------------------------------- files checked before a row is read


def _dead(path) -> DeadLetters:
    return DeadLetters(path, "job", ALIAS, ["code"], "2025-01-01T00:00:00")


def test_a_dead_letter_file_that_cannot_be_written_is_one_config_error_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match=r"dead-letter file /proc/x cannot be written: ") as caught:
        _dead(tmp_path.__class__("/proc/x")).check()
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    with pytest.raises(ConfigError, match=r"its folder .*missing does not exist"):
        _dead(tmp_path / "missing" / "dead.ndjson").check()
    assert not (tmp_path / "missing").exists()  # never created behind the user's back
    (tmp_path / "a-folder.ndjson").mkdir()
    with pytest.raises(ConfigError, match="cannot be written: Is a directory"):
        _dead(tmp_path / "a-folder.ndjson").check()


def test_a_writable_dead_letter_file_is_checked_without_leaving_a_file_behind(tmp_path):
    _dead(tmp_path / "dead.ndjson").check()
    assert not (tmp_path / "dead.ndjson").exists()
    (tmp_path / "kept.ndjson").write_text('{"earlier": 1}\n')
    _dead(tmp_path / "kept.ndjson").check()
    assert (tmp_path / "kept.ndjson").read_text() == '{"earlier": 1}\n'


def test_a_state_file_in_a_missing_or_unusable_place_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"its folder .*nowhere does not exist"):
        FileState(tmp_path / "nowhere" / "state.json").check()
    assert not (tmp_path / "nowhere").exists()
    with pytest.raises(ConfigError, match="state file /proc/self/state.json cannot be written"):
        FileState(tmp_path.__class__("/proc/self/state.json")).check()
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="not a state file"):
        FileState(tmp_path / "list.json").check()
    FileState(tmp_path / "fine.json").check()
    assert sorted(os.listdir(tmp_path)) == ["list.json"]  # the checks leave nothing behind
