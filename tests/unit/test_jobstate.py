"""The stored job state: ``JobState.from_stored`` reads exactly what ``to_stored`` writes (and what
earlier versions wrote), every watermark keeps its type, and marks take the watermark's type."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from indexer.errors import ConfigError
from indexer.state import JobState, RunRecord
from indexer.watermark import Mark

PLUS2 = dt.timezone(dt.timedelta(hours=2))
FINISHED = RunRecord("sync", "2025-01-01T00:00:00+00:00", ended="2025-01-01T00:00:09+00:00", outcome="ok",
                     counts={"rows_read": 3, "sent": 3, "indexed": 2, "deleted": 1, "failed": 0, "rejected": 0})


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
