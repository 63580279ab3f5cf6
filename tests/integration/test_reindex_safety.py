"""A reindex never disturbs the live alias: not while it runs, not when it is killed, not when it fails."""

from __future__ import annotations

import json
import signal

from tests.support.harness import (
    SENSORS_QUERY, alias_targets, count, documents, http, indices, readable, run_indexer, sensors_job, slow_job, sqlite_rows,
    start_indexer, wait_until,
)


def _writing(alias, first) -> str | None:
    """The index a second reindex is writing into, once it holds documents."""
    others = [i for i in readable(f"{alias}-*") if i != first]
    return others[0] if others and count(others[0]) > 0 else None


def test_alias_answers_from_the_old_index_while_a_reindex_runs_and_after_it_is_killed(tmp_path, target, alias, sqlite_sensors):
    job = slow_job(tmp_path, sqlite_sensors, target, alias, pause=0.15)   # 30 chunks: about 4.5 s
    first = json.loads(run_indexer("reindex", str(job), "--json").stdout)["index"]
    expected = sqlite_rows(sqlite_sensors)

    proc = start_indexer("reindex", str(job), "--json")
    partial = wait_until(lambda: _writing(alias, first), "the second reindex writing", proc)
    assert alias_targets(alias) == [first]
    assert documents(alias) == expected          # every query still served by the complete index
    assert count(partial) < 3000

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert alias_targets(alias) == [first]
    assert partial in indices(f"{alias}-*")      # the orphan waits for the next run

    result = run_indexer("reindex", str(job), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert partial in summary["deleted_indices"]
    assert partial not in indices(f"{alias}-*")
    assert alias_targets(alias) == [summary["index"]]
    assert documents(alias) == expected


def test_a_failed_reindex_removes_its_index_and_leaves_the_alias(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    first = json.loads(run_indexer("reindex", str(job), "--json").stdout)["index"]
    duplicated = sensors_job(tmp_path, sqlite_sensors, target, alias, name="dup.toml",
                             query=SENSORS_QUERY + " UNION ALL " + SENSORS_QUERY +
                             " WHERE code IN ('SEN0000007', 'SEN0000009')")

    result = run_indexer("reindex", str(duplicated))
    assert result.returncode == 1
    assert "2 duplicate key(s)" in result.stderr and "'SEN0000007'" in result.stderr
    assert alias_targets(alias) == [first]
    assert indices(f"{alias}-*") == [first]
    assert count(alias) == 3000


def test_an_index_named_like_the_alias_is_never_replaced(tmp_path, target, alias, sqlite_sensors):
    http("PUT", f"/{alias}")
    http("PUT", f"/{alias}/_doc/keep-me?refresh=true", {"precious": True})
    try:
        job = sensors_job(tmp_path, sqlite_sensors, target, alias)
        result = run_indexer("reindex", str(job))
        assert result.returncode == 1
        assert f"'{alias}' is an index, not an alias" in result.stderr
        assert documents(alias) == {"keep-me": {"precious": True}}
        assert indices(f"{alias}-*") == []
    finally:
        http("DELETE", f"/{alias}")
