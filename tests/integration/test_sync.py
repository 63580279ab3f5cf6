"""`indexer sync`: the alias follows the source by watermark, never losing a row, never running past an unacknowledged one."""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import signal
import sqlite3
import time

from tests.support.harness import (
    CLIENT_ENGINE, bulk_index, document, documents, http, live_sensors, lock_of, pg_documents, readable, run_indexer,
    sensors_job, slow_transform, sql, sqlite_source, start_indexer, stored_state, wait_until, write_job,
)
from tests.support.httpproxy import ProxyServer

FMT = "%Y-%m-%d %H:%M:%S"
START = dt.datetime(2025, 1, 1)
# Every job here: the sensors table as examples/sensors.toml reads it (soft deletes, the date_updated
# watermark, a lookback of 5 minutes), in chunks of 200 so that a sync of 3,000 rows spans 15 of them.
sync_job = functools.partial(sensors_job, synced=True, lookback="5m", chunk_size=200)


def _run(*args, env=None):
    result = run_indexer(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _random_changes(rng, rows: list[str], clock: dt.datetime, execute) -> tuple[dt.datetime, list[str]]:
    """Inserts, updates, soft deletes and undeletes; some at the previous boundary second, some late (older)."""
    for _ in range(rng.randint(5, 30)):
        kind = rng.choice(["insert", "update", "update", "delete", "undelete", "late"])
        if kind != "late":
            clock += dt.timedelta(seconds=rng.choice([0, 0, 1, 7]))  # 0: same second as the previous change
        stamp = clock if kind != "late" else clock - dt.timedelta(seconds=rng.randint(1, 120))
        if kind == "insert":
            code = f"NEW{len(rows):06d}"
            rows.append(code)
            execute("INSERT INTO sensors VALUES (?, ?, ?, ?, ?, ?)", code, f"new {code}", "SYNC", rng.random(), stamp, False)
        else:
            code = rng.choice(rows)
            flag = {"delete": True, "undelete": False}.get(kind)
            if flag is None:
                execute("UPDATE sensors SET value = ?, date_updated = ? WHERE code = ?", rng.random(), stamp, code)
            else:
                execute("UPDATE sensors SET is_deleted = ?, date_updated = ? WHERE code = ?", flag, stamp, code)
    return clock, rows


def test_random_changes_with_a_sync_after_each_keep_the_index_equal_to_sqlite(tmp_path, target, alias, sqlite_sensors):
    db = sqlite_sensors
    job = sync_job(tmp_path, db, target, alias)
    _run("reindex", str(job))
    rng = random.Random(7)
    rows = [f"SEN{i:07d}" for i in range(1, 3001)]
    clock = START

    def execute(statement, *params):
        sql(db, statement, *[p.strftime(FMT) if isinstance(p, dt.datetime) else p for p in params])

    for _ in range(6):
        clock, rows = _random_changes(rng, rows, clock, execute)
        summary = _run("sync", str(job))
        assert summary["outcome"] == "ok"
        assert documents(alias) == live_sensors(db)


def test_random_changes_keep_the_index_equal_to_postgres(tmp_path, engine_url, alias, pg_table, pg_tables):
    job = sync_job(tmp_path, pg_table, {"url": engine_url}, alias, chunk_size=300)
    _run("reindex", str(job))
    rng = random.Random(11)
    rows = [f"SEN{i:07d}" for i in range(1, 3001)]
    clock = START

    def execute(statement, *params):
        pg_tables.execute(statement.replace("sensors", pg_table).replace("?", "%s"), *params)

    for _ in range(5):
        clock, rows = _random_changes(rng, rows, clock, execute)
        assert _run("sync", str(job))["outcome"] == "ok"
        assert documents(alias) == pg_documents(pg_tables.conn, pg_table, "WHERE NOT is_deleted")


def test_a_row_sharing_the_boundary_second_is_picked_up(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, lookback="0s")
    _run("reindex", str(job))
    boundary = "2025-06-01 12:00:00"
    for i in range(10):
        sql(sqlite_sensors, "INSERT INTO sensors VALUES (?, 'tie', 'B', 1.0, ?, 0)", f"TIE{i}", boundary)
    assert _run("sync", str(job))["watermark"] == boundary
    sql(sqlite_sensors, "INSERT INTO sensors VALUES ('TIE10', 'late tie', 'B', 2.0, ?, 0)", boundary)

    summary = _run("sync", str(job))
    assert summary["sent"] == 1 and summary["indexed"] == 1   # the ten already indexed are not resent
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_a_row_deleted_revived_and_deleted_again_inside_the_lookback_is_deleted(tmp_path, engine_url, alias, sqlite_sensors):
    """The chaos soak's finding (seed 1118303343): the second soft delete's action is byte for byte the first's, and
    the marks skipped it as already indexed, leaving the revived document. A mark now skips only its row's newest
    action at the very watermark it was written with."""
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _run("reindex", str(job))
    flag = "UPDATE sensors SET is_deleted = ?, date_updated = ? WHERE code = 'SEN0000003'"
    for deleted, stamp in [(1, "2025-06-01 12:00:00"), (0, "2025-06-01 12:00:10"), (1, "2025-06-01 12:00:20")]:
        sql(sqlite_sensors, flag, deleted, stamp)
        assert _run("sync", str(job))["outcome"] == "ok"
        assert ("SEN0000003" in documents(alias)) == (not deleted), (deleted, stamp)
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_a_value_changed_and_changed_back_within_one_watermark_second_is_indexed(tmp_path, engine_url, alias, sqlite_sensors):
    """A watermark with whole seconds (Oracle DATE): a row changed A -> B -> A inside one second, a sync after each.
    The last A is byte for byte the first, at the same watermark; only it being no longer the row's newest
    write tells them apart."""
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _run("reindex", str(job))
    change = "UPDATE sensors SET value = ?, date_updated = '2025-06-01 12:00:00' WHERE code = 'SEN0000003'"
    for value in (1.5, 2.5, 1.5):
        sql(sqlite_sensors, change, value)
        assert _run("sync", str(job))["outcome"] == "ok"
        assert document(alias, "SEN0000003")["value"] == value
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_marks_stored_for_another_index_skip_nothing(tmp_path, engine_url, alias, sqlite_sensors):
    """The alias moved by hand onto an index restored from a snapshot, one document in it older than what sync
    wrote: the marks speak of the index they were stored for, so the next sync skips nothing and mends it."""
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _run("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = 1.5, date_updated = '2025-06-01 12:00:00' WHERE code = 'SEN0000003'")
    _run("sync", str(job))
    index, restored = stored_state(alias)["index"], f"{alias}-restored"
    docs = documents(alias)  # copied by hand: the Elasticsearch nodes here have no reindex module (_reindex)
    docs["SEN0000003"] = dict(docs["SEN0000003"], value=0.25)
    bulk_index(restored, docs)
    assert http("POST", "/_aliases", {"actions": [{"remove": {"index": index, "alias": alias}},
                                                  {"add": {"index": restored, "alias": alias}}]})[0] == 200

    summary = _run("sync", str(job))
    assert summary["index"] == restored and summary["skipped"] == 0
    assert document(alias, "SEN0000003")["value"] == 1.5
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_a_row_restored_as_it_was_after_reconcile_deleted_it_is_indexed_again(tmp_path, engine_url, alias, sqlite_sensors):
    """Deleted from the table, its document deleted by reconcile, then put back unchanged (same watermark) inside
    the lookback window: sync's mark of it must not make the next sync skip it as still indexed."""
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _run("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = 1.5, date_updated = '2025-06-01 12:00:00' WHERE code = 'SEN0000003'")
    _run("sync", str(job))
    [row] = sqlite3.connect(sqlite_sensors).execute("SELECT * FROM sensors WHERE code = 'SEN0000003'").fetchall()
    sql(sqlite_sensors, "DELETE FROM sensors WHERE code = 'SEN0000003'")
    assert _run("reconcile", str(job))["deleted"] == 1
    sql(sqlite_sensors, "INSERT INTO sensors VALUES (?, ?, ?, ?, ?, ?)", *row)

    assert _run("sync", str(job))["indexed"] == 1
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_late_rows_inside_the_lookback_are_indexed_and_outside_it_wait_for_a_reindex(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, lookback="10m")
    _run("reindex", str(job))
    sql(sqlite_sensors, "INSERT INTO sensors VALUES ('NOW', 'n', 'B', 1.0, '2025-06-01 12:00:00', 0)")
    _run("sync", str(job))
    sql(sqlite_sensors, "INSERT INTO sensors VALUES ('LATE', 'l', 'B', 1.0, '2025-06-01 11:55:00', 0)")
    sql(sqlite_sensors, "INSERT INTO sensors VALUES ('TOOLATE', 't', 'B', 1.0, '2025-06-01 11:40:00', 0)")

    _run("sync", str(job))
    docs = documents(alias)
    assert "LATE" in docs
    assert "TOOLATE" not in docs      # the documented limit: older than the lookback window
    _run("reindex", str(job))
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_a_sync_with_nothing_new_sends_no_bulk_request_and_writes_no_state(tmp_path, engine_url, alias, sqlite_sensors):
    with ProxyServer(upstream=engine_url) as proxy:
        job = sync_job(tmp_path, sqlite_sensors, {"url": proxy.url, "engine": CLIENT_ENGINE}, alias)
        _run("reindex", str(job))
        sql(sqlite_sensors, "UPDATE sensors SET value = 0, date_updated = '2025-02-02 02:02:02' WHERE code = 'SEN0000003'")
        _run("sync", str(job))
        before = stored_state(alias)["watermark"]
        proxy.stats.reset()

        summary = _run("sync", str(job))
        assert summary["sent"] == 0 and summary["bulk_requests"] == 0
        assert proxy.stats.requests["_bulk"] == 0
        assert stored_state(alias)["watermark"] == before


def test_changes_made_during_a_reindex_are_caught_by_the_next_sync(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, chunk_size=100,
                   transform=slow_transform(tmp_path, 0.2))   # 30 chunks: about 6 s
    proc = start_indexer("reindex", str(job), "--json")
    wait_until(lambda: any(document(i, "SEN0000002") for i in readable(f"{alias}-*")),
               "the reindex wrote SEN0000002 (read in its first chunk)", proc)
    # the changes commit once the reindex has read its last row (SQLite lets no write in while it reads)
    sql(sqlite_sensors, "UPDATE sensors SET value = -1, date_updated = '2025-03-03 03:03:03' WHERE code = 'SEN0000002'")
    sql(sqlite_sensors, "INSERT INTO sensors VALUES ('DURING', 'd', 'B', 1.0, '2025-03-03 03:03:04', 0)")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr

    _run("sync", str(job))
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_a_killed_sync_never_stored_a_watermark_past_an_unacknowledged_row(tmp_path, engine_url, alias, sqlite_sensors):
    db = sqlite_sensors
    job = sync_job(tmp_path, db, {"url": engine_url}, alias, chunk_size=50, transform=slow_transform(tmp_path, 0.1))
    _run("reindex", str(job))
    stamps = {}
    conn = sqlite3.connect(db)
    for i in range(1, 2001):
        stamp = (START + dt.timedelta(seconds=i // 3)).strftime(FMT)  # three rows per second
        stamps[f"SEN{i:07d}"] = stamp
        conn.execute("UPDATE sensors SET value = ?, date_updated = ? WHERE code = ?", (i * 1000.0, stamp, f"SEN{i:07d}"))
    conn.commit()
    conn.close()

    proc = start_indexer("sync", str(job), "--json")
    observed = []
    deadline = time.monotonic() + 60
    while len(observed) < 6 and time.monotonic() < deadline and proc.poll() is None:
        status, body = http("GET", f"/indexer-state/_doc/{alias}")
        mark = body["_source"]["state"]["watermark"]["value"] if status == 200 else None
        if mark and mark >= START.strftime(FMT) and mark not in observed:
            observed.append(mark)
            acked = sorted(code for code, stamp in stamps.items() if stamp < mark)
            _, got = http("POST", f"/{alias}/_mget", {"ids": acked})   # realtime: no refresh needed
            assert all(d["found"] and d["_source"]["value"] == int(d["_id"][3:]) * 1000.0 for d in got["docs"])
        time.sleep(0.05)  # how often the stored watermark is sampled while the sync runs
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert len(observed) >= 2, "the sync finished before it could be observed mid-run"

    _run("sync", str(job))
    assert documents(alias) == live_sensors(db)


def test_watch_mode_syncs_each_cycle_and_stops_cleanly_on_sigterm(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _run("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = -1, date_updated = '2025-04-04 04:04:03' WHERE code = 'SEN0000004'")
    proc = start_indexer("sync", str(job), "--every", "1s", "--json")
    wait_until(lambda: document(alias, "SEN0000004")["value"] == -1, "a first cycle", proc)
    sql(sqlite_sensors, "INSERT INTO sensors VALUES ('WATCHED', 'w', 'B', 1.0, '2025-04-04 04:04:04', 0)")
    wait_until(lambda: document(alias, "WATCHED"), "a later cycle indexing the row inserted since", proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 0, stderr
    cycles = [json.loads(line) for line in stdout.splitlines()]
    assert len(cycles) >= 2 and all(c["outcome"] in ("ok", "stopped") for c in cycles)
    assert "WATCHED" in documents(alias)
    assert run_indexer("status", str(job), "--json").returncode == 0


def test_a_second_run_of_the_same_job_is_refused_while_one_is_running(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, chunk_size=100,
                   transform=slow_transform(tmp_path, 0.3))   # 30 chunks: about 9 s
    proc = start_indexer("reindex", str(job))
    wait_until(lambda: lock_of(alias), "the reindex took its lock", proc)
    second = run_indexer("sync", str(job))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    assert second.returncode == 1
    assert "another run of alias" in second.stderr and "in progress" in second.stderr
    # the killed run's lock names a dead process on this host: taken over at once
    assert run_indexer("reindex", str(job)).returncode == 0


def test_state_file_keeps_the_watermark_locally_and_status_reports_the_difference(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    state = tmp_path / "state" / "sensors.json"
    state.parent.mkdir()  # never made by indexer: a missing folder is refused before anything is read
    _run("reindex", str(job), "--state-file", str(state))
    sql(sqlite_sensors, "UPDATE sensors SET is_deleted = 1, date_updated = '2025-05-05 05:05:05' WHERE code = 'SEN0000010'")
    summary = _run("sync", str(job), "--state-file", str(state))
    assert summary["deleted"] == 1

    stored = json.loads(state.read_text())[alias]
    assert stored["watermark"] == {"type": "text", "value": "2025-05-05 05:05:05"}
    assert http("GET", f"/indexer-state/_doc/{alias}")[0] == 404     # nothing in the cluster
    info = _run("status", str(job), "--state-file", str(state))
    assert info["rows_in_source"] == 2999 and info["documents_in_alias"] == 2999 and info["difference"] == 0
    assert info["watermark"] == "2025-05-05 05:05:05"


def test_numeric_watermarks_with_a_numeric_lookback(tmp_path, engine_url, alias):
    db = tmp_path / "versions.db"
    sql(db, "CREATE TABLE items (id INTEGER, name TEXT, version INTEGER)")
    for i in range(20):
        sql(db, "INSERT INTO items VALUES (?, ?, ?)", i, f"item {i}", i)
    job = write_job(tmp_path / "job.toml", sqlite_source(db), {"url": engine_url}, {
        "alias": alias, "key": ["id"], "query": "SELECT id, name, version FROM items",
        "watermark": "version", "lookback": 2})
    assert _run("reindex", str(job))["watermark"] == 19
    sql(db, "UPDATE items SET name = 'renamed', version = 20 WHERE id = 3")
    sql(db, "INSERT INTO items VALUES (99, 'late', 18)")     # committed late, inside the lookback of 2

    summary = _run("sync", str(job))
    assert summary["watermark"] == 20
    docs = documents(alias)
    assert docs["3"]["name"] == "renamed" and "99" in docs


def test_a_watermark_value_holding_sql_is_bound_as_data(tmp_path, engine_url, alias):
    db = tmp_path / "codes.db"
    sql(db, "CREATE TABLE sensors (code TEXT, ver TEXT)")
    sql(db, "INSERT INTO sensors VALUES ('a', 'a1')")
    sql(db, "INSERT INTO sensors VALUES ('b', ?)", "b'; DROP TABLE sensors;--")
    job = write_job(tmp_path / "job.toml", sqlite_source(db), {"url": engine_url}, {
        "alias": alias, "key": ["code"], "query": "SELECT code, ver FROM sensors", "watermark": "ver", "lookback": "0s"})
    assert _run("reindex", str(job))["watermark"] == "b'; DROP TABLE sensors;--"
    sql(db, "INSERT INTO sensors VALUES ('c', 'c1')")

    summary = _run("sync", str(job))
    assert summary["outcome"] == "ok" and summary["indexed"] == 1
    assert sorted(documents(alias)) == ["a", "b", "c"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM sensors").fetchone()[0] == 3   # the table is still there
    conn.close()


def test_sync_before_any_reindex_is_a_clear_error(tmp_path, engine_url, alias, sqlite_sensors):
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    result = run_indexer("sync", str(job))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: alias '{alias}' does not exist: run `indexer reindex` first"


def test_a_sync_on_a_healthy_node_warns_of_nothing(tmp_path, engine_url, alias, sqlite_sensors):
    # Its first look at the write index (red or not: Engine.health) is one request answered at once on every
    # engine; it once sent a parameter opensearch-py took for its own timeout: a warning and a retry every run.
    job = sync_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _run("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = 1, date_updated = ? WHERE code = 'SEN0000001'",
        "2030-01-01T00:00:00")
    result = run_indexer("sync", str(job), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["indexed"] == 1, result.stderr
    assert result.stderr == ""
