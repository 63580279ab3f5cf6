"""indexer.local_runner: slices run by worker processes on this machine (``reindex --workers N``). Every slice
comes back in order with its rows reported as they are read; a slice failing on every attempt fails the run
naming the slice. The readings table, a real SQLite file; no engine."""

from __future__ import annotations

import pytest

from indexer.local_runner import run_local
from indexer.partitions import plan_slices
from indexer.slices import SLICE_ATTEMPTS, SliceFailed, SliceTask
from tests.support.builders import readings_job


def test_the_local_runner_returns_every_slice_in_order_and_reports_their_rows(readings):
    work = readings_job(readings)
    tasks = [SliceTask(work, s, None) for s in plan_slices(work, 3).slices]
    reported = []
    results = run_local(tasks, workers=2, on_rows=reported.append)
    assert [r.number for r in results] == [0, 1, 2, 3] and all(r.attempts == 1 for r in results)
    assert sum(r.counts.rows_read for r in results) == 50 == sum(reported)


def test_a_slice_failing_on_every_attempt_fails_the_run_naming_the_slice(readings):
    # SQLite raises "integer overflow" when it reads the row whose id is 1: only slice 2's reads fail
    query = ("SELECT id, site, at, code, CASE WHEN id = 1 THEN abs(-9223372036854775807 - 1 + 0 * id) END AS boom "
             "FROM readings WHERE site = :site")
    work = readings_job(readings, query=query)
    tasks = [SliceTask(work, s, None) for s in plan_slices(work, 3).slices]
    with pytest.raises(SliceFailed) as info:
        run_local(tasks, workers=2, on_rows=lambda n: None)
    assert str(info.value).startswith(f"slice 2 of 4 (id >= -6 and < 27) failed after {SLICE_ATTEMPTS} attempt(s): ")
    assert "integer overflow" in str(info.value) and info.value.exit_code == 1
