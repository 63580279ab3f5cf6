"""indexer.commands.reindex without a cluster: the coordinator's rows check after a partitioned reindex (the
slices must have read the rows the query returns; a count that moved is a source that changed). The
readings table, a real SQLite file."""

from __future__ import annotations

import asyncio

import pytest

from indexer.commands.reindex import _check_rows
from indexer.errors import VerificationError
from indexer.run import Summary
from tests.support.builders import readings_job


def test_slices_that_read_another_number_of_rows_than_the_query_returns_are_refused(readings):
    work = readings_job(readings)   # the query returns 50 rows (site eu)
    summary = Summary(command="reindex", started="", job="t", alias="t")
    asyncio.run(_check_rows(work, summary, 50, 50))
    with pytest.raises(VerificationError, match="the slices read 48 rows but job.query returns 50 .*alias not changed"):
        asyncio.run(_check_rows(work, summary, 48, 50))   # counted again: still 50, so two rows were lost
    assert summary.warnings == []
    # a count that moved between planning and now is a table that changed: no count can settle that
    asyncio.run(_check_rows(work, summary, 53, 52))
    assert summary.warnings == ["the slices read 53 rows while job.query returned 52 when they were planned "
                                "and 50 after: the source changed during the reindex (the next sync catches up)"]
