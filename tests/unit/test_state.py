"""indexer.state: the typed run state and its stores. ``JobState.from_stored`` reads exactly what ``to_stored``
writes (and what earlier versions wrote), every watermark keeps its type and marks take it; the file store:
``record_run`` replaces only ``last_run``, every field survives, the file is checked before a row is read.
Real files in tmp_path; the cluster store (and the lock, always the cluster's lease) is in
tests/integration/test_lease.py."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
from decimal import Decimal

import pytest

from indexer.errors import ConfigError
from indexer.state import FileState, JobState, RunRecord
from indexer.watermark import Mark
from tests.support.builders import every_field_set

PLUS2 = dt.timezone(dt.timedelta(hours=2))
FINISHED = RunRecord("sync", "2025-01-01T00:00:00+00:00", ended="2025-01-01T00:00:09+00:00", outcome="ok",
                     counts={"rows_read": 3, "sent": 3, "indexed": 2, "deleted": 1, "failed": 0, "rejected": 0})


# ---------------------------------------------------------------- the stored form


@pytest.mark.parametrize("older, newer", [
    (dt.datetime(2025, 1, 1, 0, 0, 4, 500000), dt.datetime(2025, 1, 1, 0, 0, 5)),
    (dt.datetime(2025, 1, 1, 2, 0, 4, tzinfo=PLUS2), dt.datetime(2025, 1, 1, 2, 0, 5, tzinfo=PLUS2)),
    (dt.date(2024, 12, 31), dt.date(2025, 1, 1)),
    (41, 2**62 + 1),
    (Decimal("1.10"), Decimal("12345678901234567890.000001")),
    (0.1, 2.5e300),
    ("2025-01-01 00:00:04", "2025-01-01 00:00:05"),
    ("2025-01-01T00:00:04.5+01:00", "2025-01-01T00:00:05Z"),
    ("v-0041", "v-0042"),
])
def test_every_watermark_type_and_its_marks_round_trip_exactly_through_json(older, newer):
    job_state = JobState(watermark=newer, marks=[Mark(older, "fp-old"), Mark(newer, "fp-new")],
                         index="sensors-20250101000000", last_run=FINISHED)
    back = JobState.from_stored(json.loads(json.dumps(job_state.to_stored())))
    assert back == job_state
    assert type(back.watermark) is type(newer) and [type(m.value) for m in back.marks] == [type(older), type(newer)]
    if isinstance(newer, dt.datetime):
        assert back.watermark.tzinfo == newer.tzinfo and back.marks[0].value.microsecond == older.microsecond


def test_the_stored_form_is_the_one_earlier_versions_wrote_and_read():
    stored = {
        "watermark": {"type": "datetime", "value": "2025-01-01T00:00:05"},
        "marks": [["2025-01-01T00:00:04", "a1"], ["2025-01-01T00:00:05", "b2"]],
        "index": "sensors-20250101000000",
        "last_run": FINISHED.as_dict(),
    }
    job_state = JobState.from_stored(stored)
    assert job_state == JobState(
        watermark=dt.datetime(2025, 1, 1, 0, 0, 5),
        marks=[Mark(dt.datetime(2025, 1, 1, 0, 0, 4), "a1"), Mark(dt.datetime(2025, 1, 1, 0, 0, 5), "b2")],
        index="sensors-20250101000000", last_run=FINISHED,
    )
    assert job_state.to_stored() == stored
    assert FINISHED.as_dict() == {
        "command": "sync", "started": "2025-01-01T00:00:00+00:00", "ended": "2025-01-01T00:00:09+00:00",
        "outcome": "ok", "rows_read": 3, "sent": 3, "indexed": 2, "deleted": 1, "failed": 0, "rejected": 0,
        "error": None,
    }


def test_a_mark_that_is_no_integer_under_an_integer_watermark_is_read_as_the_float_sqlite_gives():
    """A SQLite column holding 9 and 9.1: the watermark 10 is an int, the mark 9.1 is not; every sync was refused
    with "the stored watermark is not valid". Read as a Decimal it would never equal the row's 9.1 again."""
    stored = JobState(watermark=10, marks=[Mark(9.1, "ab"), Mark(9, "cd")]).to_stored()
    job_state = JobState.from_stored(stored)
    assert job_state.marks == [Mark(9.1, "ab"), Mark(9, "cd")] and type(job_state.marks[0].value) is float


def test_marks_are_read_in_the_watermarks_type_even_when_stored_as_json_numbers():
    job_state = JobState.from_stored({"watermark": {"type": "int", "value": 7}, "marks": [[7, "ab"], ["6", "cd"]]})
    assert job_state.watermark == 7 and job_state.marks == [Mark(7, "ab"), Mark(6, "cd")]
    assert JobState.from_stored({"watermark": {"type": "text", "value": "2025-01-01 00:00:05"},
                                 "marks": [["2025-01-01 00:00:05", "ab"]]}).marks == [Mark("2025-01-01 00:00:05", "ab")]


@pytest.mark.parametrize("stored, expected", [
    (None, JobState()),
    ({}, JobState()),
    ({"watermark": None, "marks": [], "index": None, "last_run": None}, JobState()),
    ({"index": "sensors-1"}, JobState(index="sensors-1")),
    ({"last_run": {"command": "reindex", "outcome": "ok"}},
     JobState(last_run=RunRecord("reindex", "", outcome="ok"))),
    ({"last_run": {"command": "sync", "started": "s", "outcome": "running"}},
     JobState(last_run=RunRecord("sync", "s"))),
    ({"last_run": {"command": "sync", "started": "s", "outcome": "ok", "from_a_later_version": 1, "note": "x"}},
     JobState(last_run=RunRecord("sync", "s", outcome="ok", counts={"from_a_later_version": 1}))),
    ({"watermark": {"type": "int", "value": "9"}, "index": "sensors-1"}, JobState(watermark=9, index="sensors-1")),
    ({"marks": [["5", "ab"]]}, JobState()),  # no watermark: the marks have no type (and sync could not run)
])
def test_older_and_partial_documents_are_read_with_defaults(stored, expected):
    assert JobState.from_stored(stored) == expected


def test_the_running_record_of_a_sync_is_stored_with_every_field():
    assert RunRecord("sync", "2025-01-01T00:00:00").as_dict() == {
        "command": "sync", "started": "2025-01-01T00:00:00", "ended": None, "outcome": "running", "error": None}
    counted = RunRecord("sync", "s", counts={"rows_read": 2, "indexed": 2})
    assert counted.as_dict() == {"command": "sync", "started": "s", "ended": None, "outcome": "running",
                                 "rows_read": 2, "indexed": 2, "error": None}  # flat, as earlier versions stored it


@pytest.mark.parametrize("stored, message", [
    ({"watermark": {"type": "int", "value": "seven"}}, "the stored watermark is not valid"),
    ({"watermark": {"type": "no-such-type", "value": "1"}}, "the stored watermark is not valid"),
    ({"watermark": {"type": "int", "value": "7"}, "marks": [["seven", "ab"]]}, "the stored watermark is not valid"),
    ({"watermark": {"type": "int", "value": "7"}, "marks": [["7"]]}, "the stored marks are not valid"),
    ({"watermark": {"type": "int", "value": "7"}, "marks": [7]}, "the stored marks are not valid"),
])
def test_a_stored_value_not_of_its_type_is_a_config_error_that_says_to_reindex(stored, message):
    with pytest.raises(ConfigError, match=f"{message}; run `indexer reindex`") as caught:
        JobState.from_stored(stored)
    assert caught.value.exit_code == 2


def test_the_last_reconcile_round_trips_and_is_absent_from_documents_until_one_ran():
    reconciled = RunRecord("reconcile", "2025-01-02T00:00:00+00:00", outcome="ok", counts={"sent": 4, "indexed": 1, "deleted": 3})
    job_state = JobState(watermark=7, last_run=FINISHED, last_reconcile=reconciled)
    stored = job_state.to_stored()
    assert stored["last_reconcile"] == reconciled.as_dict()
    assert JobState.from_stored(json.loads(json.dumps(stored))) == job_state
    assert "last_reconcile" not in JobState(watermark=7).to_stored()   # what earlier versions wrote, unchanged
    assert JobState.from_stored({"last_reconcile": None}) == JobState()
    # a counter of another version is kept as a counter; any other unknown key is dropped
    assert JobState.from_stored({"last_reconcile": {"command": "reconcile", "outcome": "failed", "new": 1,
                                                    "later": "x"}}) == \
        JobState(last_reconcile=RunRecord("reconcile", "", outcome="failed", counts={"new": 1}))


# ---------------------------------------------------------------- the file store


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


def test_record_run_keeps_the_last_reconcile(path):
    reconciled = RunRecord("reconcile", "2025-01-01T00:00:00", outcome="ok", counts={"deleted": 2})
    record = RunRecord("sync", "2025-01-02T00:00:00", outcome="failed", error="cluster down")

    async def scenario():
        await FileState(path).save(ALIAS, JobState(watermark=7, last_run=reconciled, last_reconcile=reconciled))
        await FileState(path).record_run(ALIAS, record)
        return await FileState(path).load(ALIAS)

    assert asyncio.run(scenario()) == JobState(watermark=7, last_run=record, last_reconcile=reconciled)


def test_every_field_survives_the_stored_form_and_record_run(path):
    state = every_field_set()
    record = RunRecord("sync", "2025-01-03T00:00:00", outcome="failed", error="down")

    async def scenario():
        await FileState(path).save(ALIAS, state)
        await FileState(path).record_run(ALIAS, record)
        return await FileState(path).load(ALIAS)

    assert JobState.from_stored(state.to_stored()) == state
    assert asyncio.run(scenario()) == dataclasses.replace(state, last_run=record)


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
