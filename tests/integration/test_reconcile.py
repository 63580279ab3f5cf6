"""`reconcile` against the real node, SQLite and PostgreSQL (issue 11): hard deletes leave the index,
documents lost by hand come back equal to their rows, injected ones go; composite keys, a transform,
soft-deleted rows; the refusals and --force; --dry-run writes nothing; temporary files never stay.

Driven in-process (``indexer.commands.reconcile.reconcile``), to read its summary and its exceptions as
they are; every other step (reindex, the documents, the state) goes through the real CLI and the node's
HTTP API. The command line's own behaviour is in test_reconcile_cli.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys

import pytest

from indexer.commands.reconcile import reconcile
from indexer.errors import RefusedError, SourceError
from indexer.jobfile import load_job
from indexer.spill import PREFIX
from tests.support.harness import (
    REPO, SENSORS, SENSORS_QUERY, count, documents, http, live_sensors, pg_documents, run_indexer, sensors_job,
    slow_transform, sql, sql_many, sqlite_rows, sqlite_source, state_document, stored_state, wait_until, write_job,
)


def _reindex(job) -> dict:
    result = run_indexer("reindex", str(job), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _reconcile(job, **options):
    return asyncio.run(reconcile(load_job(job), **options))


def _by_hand(alias, deleted=(), injected=()):
    """Documents deleted from and injected into the alias's index behind the tool's back."""
    for id_ in deleted:
        status, body = http("DELETE", f"/{alias}/_doc/{id_}?refresh=true")
        assert status == 200, body
    for id_ in injected:
        status, body = http("PUT", f"/{alias}/_doc/{id_}?refresh=true", {"code": id_, "stray": True})
        assert status in (200, 201), body


def _adds_up(s) -> None:
    assert s.compared == s.unchanged + s.to_delete + s.to_index
    assert s.in_source == s.unchanged + s.to_index and s.in_index == s.unchanged + s.to_delete
    n = s.counts.numbers()
    assert n["rows_read"] == n["documents"] == n["skipped"] + n["rejected"] + n["sent"]
    assert n["sent"] == n["indexed"] + n["duplicates"] + n["deleted"] + n["not_found"] + n["failed"]


# ------------------------------------------------------------------ repairs


def test_hard_deletes_leave_lost_documents_come_back_and_strays_go_sqlite(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, chunk_size=700, watermark="date_updated")
    _reindex(job)
    watermark = stored_state(alias)["watermark"]
    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid % 30 = 0")             # 100 hard deletes
    lost = ["SEN0000001", "SEN0000002", "SEN0000003"]
    _by_hand(alias, deleted=lost, injected=["NOT-A-ROW-1", "NOT-A-ROW-2"])

    summary = _reconcile(job)

    n = summary.counts.numbers()
    assert summary.outcome == "ok" and summary.to_delete == 102 and summary.to_index == 3
    assert (n["deleted"], n["indexed"], n["not_found"], n["failed"]) == (102, 3, 0, 0)
    assert summary.in_source == 2900 and summary.in_index == 2999 and summary.unchanged == 2897
    assert summary.sample_to_index == lost and summary.sample_to_delete[:2] == ["NOT-A-ROW-1", "NOT-A-ROW-2"]
    _adds_up(summary)
    assert documents(alias) == sqlite_rows(sqlite_sensors)                        # every document, compared
    state = stored_state(alias)
    assert state["watermark"] == watermark                                         # sync's state untouched
    assert state["last_reconcile"]["outcome"] == "ok" and state["last_reconcile"]["deleted"] == 102
    assert state["last_run"] == state["last_reconcile"]

    again = _reconcile(job)
    assert (again.unchanged, again.to_delete, again.to_index, again.counts.numbers()["sent"]) == (2900, 0, 0, 0)


def test_hard_deletes_leave_lost_documents_come_back_and_strays_go_postgres(tmp_path, target, alias, pg_table,
                                                                             pg_tables):
    job = sensors_job(tmp_path, pg_table, target, alias, chunk_size=1000, params={"since": dt.datetime(2000, 1, 1)},
                      query=f"SELECT {SENSORS} FROM {pg_table} WHERE date_updated >= %(since)s AND code LIKE 'SEN%%'")
    _reindex(job)
    pg_tables.execute(f"DELETE FROM {pg_table} WHERE code IN (SELECT code FROM {pg_table} ORDER BY code DESC LIMIT 40)")
    _by_hand(alias, deleted=["SEN0000010"], injected=["STRAY"])

    summary = _reconcile(job)

    n = summary.counts.numbers()
    assert (n["deleted"], n["indexed"], summary.in_source) == (41, 1, 2960)
    _adds_up(summary)
    assert documents(alias) == pg_documents(pg_tables.conn, pg_table)


def test_composite_keys_and_a_transform_compare_the_ids_the_transform_gives(tmp_path, target, alias):
    db = tmp_path / "parts.db"
    sql(db, "CREATE TABLE parts (a TEXT, b TEXT, src TEXT)")
    sql_many(db, "INSERT INTO parts VALUES (?, ?, ?)",
             [(f"A{n % 7}|x", f"B{n}", f"s{n}") for n in range(200)] + [("a\\", "|c", "z")])
    (tmp_path / "shape.py").write_text(  # the ids come from the transform's "a", not the row's
        "def shape(docs):\n"
        "    return [{**d, 'a': d['a'].lower(), 'label': d['a'] + '/' + d['b']} for d in docs]\n")
    job = write_job(tmp_path / "job.toml", sqlite_source(db), target, {
        "alias": alias, "key": ["a", "b"], "transform": "shape:shape", "chunk_size": 50,
        "query": 'SELECT a, b, src AS "metadata.source" FROM parts'})
    _reindex(job)
    expected = documents(alias)
    assert "a0\\|x|B0" in expected and "a\\\\|\\|c" in expected
    sql(db, "DELETE FROM parts WHERE b IN ('B3', 'B4')")
    _by_hand(alias, deleted=["a0\\|x|B0", "a\\\\|\\|c"], injected=["A0|x|B0"])   # the raw row's id is a stray

    summary = _reconcile(job)

    n = summary.counts.numbers()
    assert (n["deleted"], n["indexed"]) == (3, 2)
    del expected["a3\\|x|B3"], expected["a4\\|x|B4"]
    assert documents(alias) == expected


def test_soft_deleted_rows_leave_the_index_as_a_reindex_would_leave_them_out(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, query=f"SELECT {SENSORS}, is_deleted FROM sensors",
                      deleted="is_deleted")
    _reindex(job)
    sql(sqlite_sensors, "UPDATE sensors SET is_deleted = 1 WHERE rowid % 100 = 0")   # no sync ran since

    summary = _reconcile(job)

    n = summary.counts.numbers()
    assert n["deleted"] == 30 and summary.in_source == 2970 and n["indexed"] == 0
    assert documents(alias) == live_sensors(sqlite_sensors)


# ------------------------------------------------------------------ refusals, --force, --dry-run


def test_an_empty_source_never_empties_the_index_unless_forced(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, query=SENSORS_QUERY + " WHERE site = :site", min_ratio=0,
                      params={"site": "NOWHERE"})
    sql(sqlite_sensors, "UPDATE sensors SET site = 'NOWHERE' WHERE rowid <= 10")
    _reindex(job)
    sql(sqlite_sensors, "UPDATE sensors SET site = 'ELSEWHERE'")
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()

    with pytest.raises(RefusedError) as refused:
        _reconcile(job, temp_dir=spill_dir)
    assert str(refused.value).startswith("reconcile refused: the source yields no ids while ")
    assert "holds 10 documents; nothing was written" in str(refused.value) and "\n" not in str(refused.value)
    assert count(alias) == 10
    assert list(spill_dir.iterdir()) == []                                         # a failed run leaves nothing
    state = stored_state(alias)
    assert state["last_reconcile"]["outcome"] == "refused"  # not "failed"
    assert state["last_run"]["outcome"] == "refused"

    forced = _reconcile(job, force=True, temp_dir=spill_dir)
    assert forced.counts.numbers()["deleted"] == 10 and any(w.startswith("--force:") for w in forced.warnings)
    assert count(alias) == 0 and list(spill_dir.iterdir()) == []


def test_deleting_more_than_half_of_the_index_is_refused_unless_forced(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    _reindex(job)
    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid > 1400")                 # 1600 of 3000 gone

    with pytest.raises(RefusedError, match=r"^reconcile refused: 1600 of the 3000 documents in .* would be "
                                                r"deleted, keeping fewer than job.min_ratio = 0.5 of them"):
        _reconcile(job)
    assert count(alias) == 3000

    assert _reconcile(job, force=True).counts.numbers()["deleted"] == 1600
    assert documents(alias) == sqlite_rows(sqlite_sensors)


def test_dry_run_reports_the_same_counts_and_writes_nothing(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    index = _reindex(job)["index"]
    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid > 1000")                 # too many: a refusal
    _by_hand(alias, deleted=["SEN0000005"], injected=["STRAY"])

    def seq_nos():
        http("POST", f"/{index}/_refresh")
        status, body = http("POST", f"/{index}/_search", {"size": 10000, "seq_no_primary_term": True, "_source": False})
        return {hit["_id"]: hit["_seq_no"] for hit in body["hits"]["hits"]}

    before, state_before = seq_nos(), state_document(alias)
    dry = _reconcile(job, dry_run=True)

    assert dry.outcome == "dry_run" and dry.dry_run and dry.counts.numbers()["sent"] == 0
    assert (dry.to_delete, dry.to_index, dry.unchanged) == (2001, 1, 999)
    assert dry.sample_to_delete == ["SEN0001001", "SEN0001002", "SEN0001003", "SEN0001004", "SEN0001005"]
    assert dry.sample_to_index == ["SEN0000005"]
    assert any(w.startswith("without --dry-run this would be refused: 2001 of the 3000") for w in dry.warnings)
    assert seq_nos() == before and count(alias) == 3000
    after = state_document(alias)
    assert (after["_seq_no"], after["_source"]) == (state_before["_seq_no"], state_before["_source"])


# ------------------------------------------------------------------ temporary files


def test_a_source_that_fails_mid_comparison_writes_nothing_and_leaves_no_files(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    _reindex(job)
    sql(sqlite_sensors, "DROP TABLE sensors")                                     # a broken view, say
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()

    with pytest.raises(SourceError, match="^job.query failed: no such table: sensors"):
        _reconcile(job, temp_dir=spill_dir, run_size=100)
    assert list(spill_dir.iterdir()) == [] and count(alias) == 3000


def test_a_killed_run_leaves_no_temporary_files_after_the_next_run_and_a_rerun_repairs(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, transform=slow_transform(tmp_path, 0.3), chunk_size=100)
    _reindex(job)
    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid % 10 = 0")
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    script = ("import asyncio, sys; from pathlib import Path; from indexer.jobfile import load_job; "
              "from indexer.commands.reconcile import reconcile; "
              "asyncio.run(reconcile(load_job(sys.argv[1]), temp_dir=Path(sys.argv[2]), run_size=100))")
    child = subprocess.Popen([sys.executable, "-c", script, str(job), str(spill_dir)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: any(p.name.startswith(PREFIX) and any(p.iterdir()) for p in spill_dir.iterdir()),
               "the reconcile writing its temporary files", child)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert [p.name for p in spill_dir.iterdir()][0].startswith(f"{PREFIX}{alias}-{child.pid}-")

    summary = _reconcile(job, temp_dir=spill_dir)

    assert list(spill_dir.iterdir()) == []
    assert summary.counts.numbers()["deleted"] == 300
    assert documents(alias) == sqlite_rows(sqlite_sensors)
