"""Under every fault, indexer loses nothing, duplicates nothing, and says exactly what happened.

A fault-injecting proxy (tests/support/httpproxy.py) sits between the CLI and
the real node (OpenSearch, Elasticsearch 8 or 9: `make test` runs every engine), spoken to with the
client the indexer uses for it; every check reads the real index and compares every
document with the source.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time

import pytest

from tests.support.harness import (
    CLIENT_ENGINE, PARSING_EXCEPTION, alias_targets, count, documents, http, indices, live_sensors, pg_documents,
    lock_of, run_indexer, sensors_job, slow_transform, sql, sql_many, sqlite_rows, sqlite_source, start_indexer,
    stored_state, wait_until, write_job,
)
from tests.support.httpproxy import ProxyServer


@pytest.fixture
def proxy(engine_url):
    with ProxyServer(upstream=engine_url) as p:
        yield p


@pytest.fixture
def via_proxy(proxy) -> dict:
    """The [target] table of a job that reaches the node through the proxy."""
    return {"url": proxy.url, "engine": CLIENT_ENGINE}


def _json(result, code=0):
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout)


def _wait_for_bulk(proxy, proc):
    wait_until(lambda: proxy.stats.requests["_bulk"], "a bulk request", proc, timeout=30)


def test_items_answered_429_are_retried_with_backoff_until_the_index_is_exact(tmp_path, proxy, via_proxy, alias,
                                                                               sqlite_sensors):
    proxy.faults.bulk_item_429_fraction = 0.3
    proxy.faults.bulk_item_429_attempts = 2
    job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=300)

    result = run_indexer("reindex", str(job), "--json", "--debug")
    summary = _json(result)
    assert summary["outcome"] == "ok" and summary["indexed"] == 3000
    assert summary["retried"] == proxy.stats.bulk_items_rejected > 0.3 * 3000
    delays = [float(d) for d in re.findall(r"retry \d+ in ([\d.]+)s", result.stderr)]
    assert delays and min(delays) > 0                 # every resend waited
    assert max(int(n) for n in re.findall(r"retry (\d+) in", result.stderr)) == 2   # two rounds per item
    assert documents(alias) == sqlite_rows(sqlite_sensors)


def test_503_for_ten_seconds_mid_run_then_healthy(tmp_path, proxy, via_proxy, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=100,
                      transform=slow_transform(tmp_path, 0.05))
    proc = start_indexer("reindex", str(job), "--json")
    _wait_for_bulk(proxy, proc)
    proxy.faults.request_status = 503
    time.sleep(10)  # the scenario: an outage of ten seconds
    injected = proxy.stats.status_injected
    proxy.faults.request_status = None
    stdout, stderr = proc.communicate(timeout=120)

    assert proc.returncode == 0, stderr
    assert injected >= 3                               # it kept retrying through the outage
    assert json.loads(stdout)["indexed"] == 3000
    assert documents(alias) == sqlite_rows(sqlite_sensors)


def test_503_forever_fails_within_max_retry_time_and_moves_nothing(tmp_path, proxy, via_proxy, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, {**via_proxy, "max_retry_time": 4}, alias, chunk_size=300,
                      watermark="date_updated", lookback="0s")
    first = _json(run_indexer("reindex", str(job), "--json"))
    watermark_before = stored_state(alias)["watermark"]
    sql(sqlite_sensors, "UPDATE sensors SET value = -5, date_updated = '2030-01-01 00:00:00' WHERE code = 'SEN0000001'")
    proxy.faults.request_status = 503

    for command in ("reindex", "sync"):
        started = time.monotonic()
        result = run_indexer(command, str(job))
        assert result.returncode == 1, result.stderr
        assert time.monotonic() - started < 4 + 15
        assert "HTTP 503" in result.stderr and "gave up after retrying for 4s" in result.stderr

    proxy.faults.request_status = None
    assert alias_targets(alias) == [first["index"]]
    state_after = stored_state(alias)
    assert state_after["watermark"] == watermark_before
    last_run = state_after["last_run"]   # the failed sync is on record for `status`
    assert last_run["command"] == "sync" and last_run["outcome"] == "failed" and "HTTP 503" in last_run["error"]
    assert documents(alias)["SEN0000001"]["value"] != -5


@pytest.mark.parametrize("fault", ["reset_before_forward", "reset_connection_after_forward"])
def test_connection_reset_and_lost_responses_neither_lose_nor_duplicate(tmp_path, proxy, via_proxy, alias,
                                                                       sqlite_sensors, fault):
    job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=100,
                      transform=slow_transform(tmp_path, 0.05))
    proc = start_indexer("reindex", str(job), "--json")
    _wait_for_bulk(proxy, proc)                        # the bulk phase, not the first hello
    setattr(proxy.faults, fault, 3)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)

    assert getattr(proxy.stats, "resets_before_forward" if fault == "reset_before_forward" else "resets_after_forward") == 3
    assert summary["indexed"] == 3000 and count(summary["index"]) == 3000
    assert documents(alias) == sqlite_rows(sqlite_sensors)


def test_a_lock_taken_by_a_request_whose_answer_was_lost_is_the_runs_own(tmp_path, proxy, via_proxy, alias,
                                                                        sqlite_sensors):
    # The create of the lock is applied, then its connection reset: the client sends it again and is answered
    # 409. The lock found there is this run's own (its token): the run goes on (it used to refuse itself,
    # "another run ... (pid <its own>)", and the lock then blocked every run of the alias until it expired).
    job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias)
    proxy.faults.reset_match = lambda method, path: "/_create/lock" in path
    proxy.faults.reset_connection_after_forward = 1
    result = run_indexer("reindex", str(job), "--json")

    assert proxy.stats.resets_after_forward == 1
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["indexed"] == 3000
    assert documents(alias) == sqlite_rows(sqlite_sensors)
    assert lock_of(alias) is None  # released at the end, as any run's


def _strict_template(alias):
    http("PUT", f"/_index_template/{alias}", {
        "index_patterns": [f"{alias}-*"], "priority": 500,
        "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                     "mappings": {"properties": {"value": {"type": "double"}, "code": {"type": "keyword"}}}}})


def _poison(db, every):
    sql(db, f"UPDATE sensors SET value = 'not a number' WHERE CAST(substr(code, 4) AS INTEGER) % {every} = 0")


def test_one_row_in_a_thousand_conflicting_with_the_mapping_is_dead_lettered(tmp_path, via_proxy, alias,
                                                                             sqlite_sensors):
    _strict_template(alias)
    try:
        _poison(sqlite_sensors, 1000)
        job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=300)
        result = run_indexer("reindex", str(job), "--json")
        summary = _json(result, code=3)

        assert summary["outcome"] == "dead_letters" and summary["dead_lettered"] == 3
        assert summary["indexed"] == 2997 and summary["sent"] == 3000
        assert alias_targets(alias) == [summary["index"]]
        lines = [json.loads(x) for x in (tmp_path / "job.dead-letters.ndjson").read_text().splitlines()]
        assert sorted(x["_id"] for x in lines) == ["SEN0001000", "SEN0002000", "SEN0003000"]
        assert all(x["error"]["type"] == PARSING_EXCEPTION and x["key"] == {"code": x["_id"]} for x in lines)
        assert all("document" not in x for x in lines)
        expected = {k: v for k, v in sqlite_rows(sqlite_sensors).items() if v["value"] != "not a number"}
        assert documents(alias) == expected
    finally:
        http("DELETE", f"/_index_template/{alias}")


def test_dead_letters_over_the_threshold_fail_before_the_swap(tmp_path, via_proxy, alias, sqlite_sensors):
    _strict_template(alias)
    try:
        job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=300)
        first = _json(run_indexer("reindex", str(job), "--json"))
        _poison(sqlite_sensors, 500)                      # 6 bad rows
        job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=300, max_errors=2)

        result = run_indexer("reindex", str(job), "--dead-letter-include-doc")
        assert result.returncode == 1
        assert "over job.max_errors = 2" in result.stderr and "not a number" not in result.stderr
        assert alias_targets(alias) == [first["index"]] and indices(f"{alias}-*") == [first["index"]]
        lines = [json.loads(x) for x in (tmp_path / "job.dead-letters.ndjson").read_text().splitlines()]
        assert len(lines) >= 3 and all(x["document"]["value"] == "not a number" for x in lines)
    finally:
        http("DELETE", f"/_index_template/{alias}")


def test_requests_over_the_size_cap_are_split_and_a_lone_giant_is_dead_lettered(tmp_path, proxy, via_proxy, alias,
                                                                                  sqlite_sensors):
    sql(sqlite_sensors, "UPDATE sensors SET description = description || ' ' || printf('%.800c', 'x')")
    sql(sqlite_sensors, "UPDATE sensors SET description = printf('%.1500000c', 'y') WHERE code = 'SEN0000777'")
    proxy.faults.max_request_bytes = 1024 * 1024
    job = sensors_job(tmp_path, sqlite_sensors, via_proxy, alias, chunk_size=3000)

    summary = _json(run_indexer("reindex", str(job), "--json"), code=3)
    assert proxy.stats.too_large >= 3                     # whole chunks were refused, then split
    assert summary["indexed"] == 2999 and summary["dead_lettered"] == 1
    dead = [json.loads(x) for x in (tmp_path / "job.dead-letters.ndjson").read_text().splitlines()]
    assert [(d["_id"], d["status"]) for d in dead] == [("SEN0000777", 413)]
    expected = sqlite_rows(sqlite_sensors)
    del expected["SEN0000777"]
    assert documents(alias) == expected


def _kill_reader(pg_tables, table, proc):
    """Terminate the indexer's database session once it is streaming chunks (FETCH FORWARD <chunk_size>) from
    ``table``: only that session, as the suites of other engines may be reading their own tables from this server."""
    def terminated() -> list:
        with pg_tables.conn, pg_tables.conn.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                        "WHERE a.application_name = 'indexer' AND a.query LIKE 'FETCH FORWARD 100 %%' "
                        "AND l.relation = %s::regclass", (table,))
            return cur.fetchall()

    wait_until(terminated, "the indexer reading from PostgreSQL", proc, timeout=30)


def test_a_database_connection_killed_mid_run_fails_cleanly_and_a_rerun_is_exact(tmp_path, engine_url, alias, pg_table,
                                                                                 pg_tables):
    job = sensors_job(tmp_path, pg_table, {"url": engine_url}, alias, chunk_size=100,
                      transform=slow_transform(tmp_path, 0.1), watermark="date_updated", lookback="0s")
    first = _json(run_indexer("reindex", str(job), "--json"))
    watermark_before = stored_state(alias)["watermark"]
    pg_tables.execute(f"UPDATE {pg_table} SET value = -value, date_updated = date_updated + interval '10 years'")

    for command in ("reindex", "sync"):
        proc = start_indexer(command, str(job))
        _kill_reader(pg_tables, pg_table, proc)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 1, stderr
        assert stderr.startswith("error: reading rows failed") and "Traceback" not in stderr
        assert alias_targets(alias) == [first["index"]]
        if command == "reindex":
            assert stored_state(alias)["watermark"] == watermark_before
        else:  # sync stores its progress over acknowledged chunks (it asserted "unmoved": failed in a CI run whose
            # kill landed after the first chunk's answer): never past a row not indexed as it is now
            stored = stored_state(alias)["watermark"]["value"]
            covered = pg_documents(pg_tables.conn, pg_table, f"WHERE date_updated < '{stored}'")
            indexed = documents(alias)
            assert {code: indexed.get(code) for code in covered} == covered

    _json(run_indexer("sync", str(job), "--json"))
    assert documents(alias) == pg_documents(pg_tables.conn, pg_table)


@pytest.mark.parametrize("command", ["reindex", "sync"])
def test_sigkill_at_random_points_then_a_rerun_is_exact(tmp_path, engine_url, alias, sqlite_sensors, command):
    job = sensors_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, synced=True, chunk_size=100,
                      transform=slow_transform(tmp_path, 0.05), lookback="1m")
    _json(run_indexer("reindex", str(job), "--json"))
    rng = random.Random(command)
    for round_ in range(3):
        sql(sqlite_sensors, "UPDATE sensors SET value = value + 1, date_updated = ? WHERE abs(random()) % 3 = 0",
            f"2030-01-0{round_ + 1} 00:00:00")
        sql(sqlite_sensors, "UPDATE sensors SET is_deleted = 1 - is_deleted, date_updated = ? "
                            "WHERE abs(random()) % 50 = 0", f"2030-01-0{round_ + 1} 00:00:01")
        proc = start_indexer(command, str(job))
        time.sleep(rng.uniform(0.3, 2.0))  # the scenario: killed at a random point of its run
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    _json(run_indexer(command, str(job), "--json"))
    if command == "reindex":
        assert len(indices(f"{alias}-*")) == 2           # orphans of the killed runs are gone
    assert documents(alias) == live_sensors(sqlite_sensors)


def test_bad_values_are_converted_or_dead_lettered_per_row(tmp_path, via_proxy, alias):
    db = tmp_path / "bad.db"
    sql(db, "CREATE TABLE sensors (code TEXT, reading REAL, taken TEXT, blob BLOB, notes TEXT)")
    rows = [
        ("ok", 1.5, "2024-01-01T00:00:00", b"\x00\xff", "fine"),
        ("nan", float("nan"), "2024-01-01T00:00:00", None, "nan"),     # SQLite itself stores NaN as NULL
        ("inf", float("inf"), "2024-01-01T00:00:00", None, "inf"),
        ("future", 2.0, "99999-01-01T00:00:00", None, "year 99999"),
        ("lob", 3.0, "2024-01-01T00:00:00", b"\x01" * 1000, "n" * 2_000_000),
    ]
    sql_many(db, "INSERT INTO sensors VALUES (?, ?, ?, ?, ?)", rows)
    http("PUT", f"/_index_template/{alias}", {"index_patterns": [f"{alias}-*"], "priority": 500, "template": {
        "mappings": {"properties": {"taken": {"type": "date"}, "blob": {"type": "binary"}, "notes": {"type": "text", "index": False}}}}})
    try:
        job = write_job(tmp_path / "job.toml", sqlite_source(db), via_proxy,
                        {"alias": alias, "key": ["code"], "query": "SELECT code, reading, taken, blob, notes FROM sensors",
                         # 2 dead letters in 5 rows: within budget only with a rate allowed for a run this small
                         # (issue 8: the rate is judged on the totals at the end of every reindex)
                         "max_error_rate": 0.5})
        summary = _json(run_indexer("reindex", str(job), "--json"), code=3)
        dead = {json.loads(x)["key"]["code"]: json.loads(x) for x in (tmp_path / "job.dead-letters.ndjson").read_text().splitlines()}

        assert sorted(dead) == ["future", "inf"]
        assert dead["inf"]["stage"] == "convert" and "NaN or Infinity" in dead["inf"]["error"]["reason"]
        assert dead["future"]["stage"] == "index" and dead["future"]["error"]["type"] == PARSING_EXCEPTION
        docs = documents(alias)
        assert docs["ok"]["blob"] == "AP8=" and docs["ok"]["reading"] == 1.5
        assert docs["nan"]["reading"] is None
        assert len(docs["lob"]["notes"]) == 2_000_000
        assert summary["indexed"] == 3 and summary["dead_lettered"] == 2
    finally:
        http("DELETE", f"/_index_template/{alias}")
