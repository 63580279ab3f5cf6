"""A reindex never disturbs the live alias: not while it runs, not when it is killed, not when it fails."""

from __future__ import annotations

import json
import signal
import time

from tests.support.harness import (
    alias_targets, count, documents, http, indices, run_indexer, slow_job, sqlite_rows, sqlite_source,
    start_indexer, write_job,
)

QUERY = "SELECT code, description, site, value, date_updated FROM sensors"


def _slow_job(tmp_path, target, alias, db):
    return slow_job(tmp_path, target, alias, db, pause=0.15)


def _wait_for_second_index(alias, first, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = [i for i in indices(f"{alias}-*") if i != first]
        if others and count(others[0]) > 0:
            return others[0]
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    raise AssertionError("the second reindex never started writing")


def test_alias_answers_from_the_old_index_while_a_reindex_runs_and_after_it_is_killed(tmp_path, target, alias, sqlite_sensors):
    job = _slow_job(tmp_path, target, alias, sqlite_sensors)
    first = json.loads(run_indexer("reindex", str(job), "--json").stdout)["index"]
    expected = sqlite_rows(sqlite_sensors)

    proc = start_indexer("reindex", str(job), "--json")
    partial = _wait_for_second_index(alias, first, proc)
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
    job = write_job(tmp_path / "job.toml", sqlite_source(sqlite_sensors), target,
                    {"alias": alias, "key": ["code"], "query": QUERY})
    first = json.loads(run_indexer("reindex", str(job), "--json").stdout)["index"]
    duplicated = write_job(tmp_path / "dup.toml", sqlite_source(sqlite_sensors), target, {
        "alias": alias, "key": ["code"],
        "query": QUERY + " UNION ALL " + QUERY + " WHERE code IN ('SEN0000007', 'SEN0000009')",
    })

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
        job = write_job(tmp_path / "job.toml", sqlite_source(sqlite_sensors), target,
                        {"alias": alias, "key": ["code"], "query": QUERY})
        result = run_indexer("reindex", str(job))
        assert result.returncode == 1
        assert f"'{alias}' is an index, not an alias" in result.stderr
        assert documents(alias) == {"keep-me": {"precious": True}}
        assert indices(f"{alias}-*") == []
    finally:
        http("DELETE", f"/{alias}")
