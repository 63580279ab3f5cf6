"""Safe when unattended and when the operator errs (issue 8): the swap guard, the error budget on
totals, deterministic duplicates, a watch loop that survives, runs recorded however they end,
watermarks that are NULL or odd, the user's own SQL, non-ASCII names, counts that add up."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import signal
import time

from tests.support.harness import (
    CLIENT_ENGINE, SENSORS, alias_targets, count, document, documents, http, indices, put_lock, readable, run_indexer,
    sensors_job, slow_transform, sql, sql_many, sqlite_source, start_indexer, state_document, stored_state, wait_until,
    write_job,
)
from tests.support.httpproxy import ProxyServer

QUERY = f"SELECT {SENSORS}, is_deleted FROM sensors"
# Every job here: the sensors table as examples/sensors.toml reads it, in chunks of 500.
watched_job = functools.partial(sensors_job, synced=True, chunk_size=500)


def _ok(*args, env=None) -> dict:
    result = run_indexer(*args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _last_error(alias) -> str:
    """The error of the last run recorded for ``alias`` ("" when it had none)."""
    return (stored_state(alias)["last_run"] or {}).get("error") or ""


def _adds_up(s: dict) -> None:
    assert s["documents"] == s["skipped"] + s["rejected"] + s["sent"], s
    assert s["sent"] == s["indexed"] + s["duplicates"] + s["deleted"] + s["not_found"] + s["failed"], s
    assert s["dead_lettered"] == s["rejected"] + s["failed"], s


# ------------------------------------------------------------------ 1. the swap guard and the error budget


def test_a_query_that_returns_nothing_never_swaps_an_alias_that_serves_documents(tmp_path, target, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, target, alias, query=f"{QUERY} WHERE date_updated >= :startdate",
                      params={"startdate": "2000-01-01"}, keep=0)
    first = _ok("reindex", str(job))["index"]
    assert count(alias) == 3000

    refused = run_indexer("reindex", str(job), "--param", "startdate='2099-01-01'")
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "swap refused" in refused.stderr and "holds 0 documents" in refused.stderr and "serves 3000" in refused.stderr
    assert alias_targets(alias) == [first] and count(alias) == 3000
    assert indices(f"{alias}-*") == [first]          # keep = 0 deleted nothing: the refused index went, not the good one
    assert stored_state(alias)["last_run"]["outcome"] == "refused"

    forced = _ok("reindex", str(job), "--param", "startdate='2099-01-01'", "--force-swap")
    assert forced["force_swap"] is True and forced["documents_in_alias_before"] == 3000
    assert count(alias) == 0


def test_an_index_with_fewer_than_min_ratio_of_the_documents_is_refused(tmp_path, target, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, target, alias, query=f"{QUERY} WHERE date_updated >= :startdate",
                      params={"startdate": "2000-01-01"})
    first = _ok("reindex", str(job))["index"]
    small = run_indexer("reindex", str(job), "--param", "startdate='2024-01-01'")
    assert small.returncode == 1 and "swap refused" in small.stderr and "min_ratio = 0.5" in small.stderr, small.stderr
    assert alias_targets(alias) == [first]
    lower = watched_job(tmp_path, sqlite_sensors, target, alias, name="lower.toml", min_ratio=0.05,
                        query=f"{QUERY} WHERE date_updated >= :startdate", params={"startdate": "2024-01-01"})
    assert 0 < _ok("reindex", str(lower))["documents_in_index"] < 1500


def test_a_small_run_whose_rows_all_fail_never_swaps(tmp_path, target, alias):
    db = tmp_path / "few.db"
    sql(db, "CREATE TABLE sensors (code TEXT PRIMARY KEY, description TEXT, site TEXT, value REAL, "
            "date_updated TEXT, is_deleted INTEGER)")
    sql_many(db, "INSERT INTO sensors VALUES (?, 'd', 's', ?, '2025-01-01 00:00:00', 0)",
             [(f"S{i:03d}", i) for i in range(49)])
    good = watched_job(tmp_path, db, target, alias, keep=0)
    first = _ok("reindex", str(good))["index"]
    (tmp_path / "poison.py").write_text("def nan(docs):\n    return [{**d, 'value': float('nan')} for d in docs]\n")
    bad = watched_job(tmp_path, db, target, alias, name="bad.toml", keep=0, transform="poison:nan")

    result = run_indexer("reindex", str(bad), "--json")
    assert result.returncode == 1, result.stderr
    assert "49 document(s) failed for good in 49 rows" in result.stderr and "max_error_rate" in result.stderr
    assert alias_targets(alias) == [first] and count(alias) == 49
    assert indices(f"{alias}-*") == [first]


# ------------------------------------------------------------------ 6. deterministic duplicates


class _SlowBodies(ProxyServer):
    """The real node behind a proxy that holds back bulk bodies holding a marker (one slow chunk)."""

    marker = b'"n":3990,'

    async def _dispatch(self, request):
        if self.marker in await request.read():
            await asyncio.sleep(2.0)  # the scenario: this chunk's answer arrives after later chunks' answers
        return await super()._dispatch(request)


def test_allow_duplicates_keeps_the_row_latest_in_source_order_whatever_the_timing(tmp_path, engine_url, alias):
    db = tmp_path / "dupes.db"
    sql(db, "CREATE TABLE t (n INTEGER PRIMARY KEY, k TEXT)")
    sql_many(db, "INSERT INTO t VALUES (?, ?)", ((n, "same" if n % 10 == 0 else f"k{n}") for n in range(1, 4001)))
    with _SlowBodies(upstream=engine_url) as proxy:
        job = write_job(tmp_path / "job.toml", sqlite_source(db), {"url": proxy.url}, {
            "alias": alias, "key": ["k"], "query": "SELECT k, n FROM t ORDER BY n", "chunk_size": 10, "concurrency": 8})
        for _ in range(2):
            summary = _ok("reindex", str(job), "--allow-duplicates")
            assert documents(alias)["same"]["n"] == 4000
            assert summary["indexed"] == 3601 and summary["duplicates"] == 399 and summary["failed"] == 0
            _adds_up(summary)


# ------------------------------------------------------------------ 3. a watch loop that survives


def test_a_watch_loop_survives_a_held_lock_records_it_and_goes_on(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _ok("reindex", str(job))
    put_lock(alias, {"host": "another-host", "pid": 1, "token": "theirs", "expires": time.time() + 600})
    refused = set()

    def refused_passes() -> int:
        """How many passes were refused so far (each records its own start)."""
        last = stored_state(alias)["last_run"] or {}
        if "another run of alias" in (last.get("error") or ""):
            assert last["outcome"] == "refused", last
            refused.add(last["started"])
        return len(refused)

    proc = start_indexer("sync", str(job), "--every", "1s")
    try:
        wait_until(refused_passes, "a refused pass recorded", proc)
        wait_until(lambda: refused_passes() >= 3, "two more refused passes recorded", proc)
        assert proc.poll() is None                    # still looping after several refused passes
        http("DELETE", f"/indexer-state/_doc/lock:{alias}?refresh=true")
        sql(sqlite_sensors, "UPDATE sensors SET value = -1, date_updated = '2025-03-03 03:03:03' WHERE code = 'SEN0000007'")
        wait_until(lambda: document(alias, "SEN0000007")["value"] == -1, "a sync once the lock was released", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err.count("error: another run of alias") >= 2 and "Traceback" not in err


def test_every_under_one_second_is_refused(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    result = run_indexer("sync", str(job), "--every", "0s")
    assert result.returncode == 2 and "at least 1s" in result.stderr, result.stderr


# ------------------------------------------------------------------ 5. every run recorded, one line always


def test_ctrl_c_during_a_reindex_exits_130_cleans_up_and_is_recorded(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    first = _ok("reindex", str(job))["index"]
    slow = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, name="slow.toml", chunk_size=100,
                       transform=slow_transform(tmp_path, 0.2))   # 30 chunks: about 6 s
    for sig, code, word in ((signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")):
        proc = start_indexer("reindex", str(slow))
        wait_until(lambda: any(count(i) for i in readable(f"{alias}-*") if i != first),
                   "the reindex writing into its new index", proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code and err.strip().endswith(word) and "Traceback" not in err, err
        assert indices(f"{alias}-*") == [first] and alias_targets(alias) == [first]
        assert stored_state(alias)["last_run"]["outcome"] == "interrupted"


def test_state_and_dead_letter_files_that_cannot_be_written_are_one_line_before_any_read(
        tmp_path, engine_url, alias, sqlite_sensors):
    """A dead-letter file in a read-only place gave a traceback at the first dead letter, after the reads."""
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    missing = tmp_path / "no" / "such" / "dir" / "file.json"
    for option, path, words in (("--state-file", missing, "does not exist"),
                                ("--dead-letter-file", missing, "does not exist"),
                                ("--dead-letter-file", tmp_path.__class__("/proc/x"), "cannot be written"),
                                ("--state-file", tmp_path.__class__("/proc/self/state.json"), "cannot be written")):
        result = run_indexer("reindex", str(job), option, str(path))
        assert result.returncode == 2, (option, path, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert words in result.stderr and "Traceback" not in result.stderr
        assert indices(f"{alias}-*") == []           # nothing was read, nothing created
    assert not (tmp_path / "no").exists()            # no folder made behind the user's back
    status = run_indexer("status", str(job), "--state-file", str(tmp_path / "nowhere" / "state.json"))
    assert "Traceback" not in status.stderr and status.returncode in (0, 2), status.stderr


def test_a_watch_loop_outlives_its_sqlite_file_moved_away_for_a_moment(tmp_path, engine_url, alias, sqlite_sensors):
    """A backup tool or an atomic replace moves the file away and back: that ended the loop with exit 2."""
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _ok("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = -6, date_updated = '2025-12-01 00:00:00' WHERE code = 'SEN0000008'")
    proc = start_indexer("sync", str(job), "--every", "1s")
    aside = sqlite_sensors.with_name("aside.db")
    try:
        wait_until(lambda: document(alias, "SEN0000008")["value"] == -6, "a first sync pass", proc)
        sqlite_sensors.rename(aside)
        wait_until(lambda: "not found" in _last_error(alias), "the failed pass recorded", proc)
        aside.rename(sqlite_sensors)
        sql(sqlite_sensors, "UPDATE sensors SET value = -7, date_updated = '2026-01-01 00:00:00' WHERE code = 'SEN0000009'")
        wait_until(lambda: document(alias, "SEN0000009")["value"] == -7, "a sync once the file is back", proc)
    finally:
        if aside.exists():
            aside.rename(sqlite_sensors)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SQLite database file not found" in err and "trying again in 1s" in err and "Traceback" not in err

    # the same mistake before any pass succeeded is the job file's: exit 2 at once
    gone = watched_job(tmp_path, tmp_path / "never.db", {"url": engine_url}, alias, name="gone.toml")
    result = run_indexer("sync", str(gone), "--every", "1s", timeout=60)
    assert result.returncode == 2 and "never.db" in result.stderr, result.stderr


def test_reconcile_every_is_kept_through_the_state_writes_of_a_busy_sync(tmp_path, engine_url, alias, sqlite_sensors):
    """Every sync state write dropped last_reconcile: 5 full reconciles in 21 s with reconcile_every = 1h."""
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, reconcile_every="1h")
    _ok("reindex", str(job))
    proc = start_indexer("sync", str(job), "--every", "1s", "--json")
    written: set[str] = set()

    def busy_passes() -> bool:
        state = stored_state(alias)
        last = state.get("last_run") or {}
        if last.get("command") == "sync" and last.get("sent"):
            written.add(last["started"])
        n = len(written) + 1  # a change for every pass: each one writes state
        sql(sqlite_sensors, f"UPDATE sensors SET value = {n}, date_updated = '2026-02-01 00:00:{n:02d}' "
                            "WHERE code = 'SEN0000011'")
        return len(written) >= 4

    try:
        wait_until(busy_passes, "four sync passes that wrote state", proc, timeout=90)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    commands = [json.loads(line)["command"] for line in out.splitlines() if line.startswith("{")]
    assert commands.count("reconcile") == 1 and commands.count("sync") >= 4, commands
    assert stored_state(alias)["last_reconcile"]["command"] == "reconcile"


def test_json_gives_the_summary_of_a_failed_or_refused_run_too(tmp_path, engine_url, alias, sqlite_sensors):
    """--json printed nothing on stdout when a run failed or was refused."""
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, query=f"{QUERY} WHERE site LIKE :site",
                      params={"site": "%"})
    _ok("reindex", str(job))
    refused = run_indexer("reindex", str(job), "--param", "site='NOWHERE'", "--json")
    assert refused.returncode == 1 and refused.stderr.startswith("error: swap refused"), refused.stderr
    summary = json.loads(refused.stdout)
    assert summary["outcome"] == "refused" and summary["error"].startswith("swap refused")
    assert summary["command"] == "reindex" and summary["rows_read"] == 0 and summary["documents_in_alias_before"] == 3000

    reconciled = run_indexer("reconcile", str(job), "--param", "site='NOWHERE'", "--json")
    assert reconciled.returncode == 1 and json.loads(reconciled.stdout)["outcome"] == "refused", reconciled.stdout
    status = run_indexer("status", str(job))
    assert "last reconcile: refused at" in status.stdout, status.stdout   # said "failed"

    before_any_run = run_indexer("reindex", str(tmp_path / "no-such-job.toml"), "--json")
    assert before_any_run.returncode == 2
    assert json.loads(before_any_run.stdout) == {"command": "reindex", "outcome": "failed",
                                                 "error": f"job file not found: {tmp_path / 'no-such-job.toml'}"}


def test_a_transform_returning_more_documents_than_rows_counts_both(tmp_path, engine_url, alias, sqlite_sensors):
    """The sums broke: "3430 documents failed in 1715 rows"."""
    (tmp_path / "twice.py").write_text(
        "def twice(docs):\n"
        "    return [d for doc in docs for d in (doc, {**doc, 'code': doc['code'] + '-copy'})]\n"
        "def twice_bad(docs):\n"
        "    return [d for doc in docs for d in (doc, {**doc, 'code': doc['code'] + '-copy', 'value': float('nan')})]\n")
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, transform="twice:twice")
    summary = _ok("reindex", str(job))
    _adds_up(summary)
    assert (summary["rows_read"], summary["documents"], summary["indexed"]) == (3000, 6000, 6000)
    line = run_indexer("reindex", str(job), "--no-progress")
    assert "3000 rows read -> 6000 documents = 0 skipped + 0 rejected + 6000 sent" in line.stdout, line.stdout

    bad = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, name="bad.toml", transform="twice:twice_bad")
    failed = run_indexer("reindex", str(bad))
    assert failed.returncode == 1
    found = re.search(r"(\d+) document\(s\) failed for good in (\d+) documents \(from (\d+) rows\)", failed.stderr)
    assert found, failed.stderr
    dead, documents_, rows = map(int, found.groups())
    assert dead * 2 == documents_ == rows * 2, failed.stderr  # every copy failed: half the documents, all rows


# ------------------------------------------------------------------ 7. NULL and odd watermarks


def _sensors_without_constraints(path):
    sql(path, "CREATE TABLE sensors (code TEXT PRIMARY KEY, description TEXT, site TEXT, value REAL, "
              "date_updated TEXT, is_deleted INTEGER NOT NULL DEFAULT 0)")
    sql_many(path, "INSERT INTO sensors VALUES (?, 'd', 'KEYWORTH', ?, ?, 0)",
             ((f"S{i:04d}", i, f"2025-01-01 00:{i // 60:02d}:{i % 60:02d}") for i in range(300)))
    return path


def test_a_reindex_indexes_rows_whose_watermark_is_null_or_empty_and_says_so(tmp_path, engine_url, alias):
    db = _sensors_without_constraints(tmp_path / "nulls.db")
    sql(db, "UPDATE sensors SET date_updated = NULL WHERE code = 'S0007'")
    sql(db, "UPDATE sensors SET date_updated = '' WHERE code = 'S0008'")
    job = watched_job(tmp_path, db, {"url": engine_url}, alias, chunk_size=50)
    result = run_indexer("reindex", str(job))
    assert result.returncode == 0, result.stderr
    assert "warning: 2 row(s) have a NULL or unusable 'date_updated'" in result.stderr
    assert count(alias) == 300
    summary = _ok("reindex", str(job))
    assert summary["null_watermarks"] == 2 and summary["watermark"] == "2025-01-01 00:04:59"


def test_a_sync_names_the_row_and_key_of_a_watermark_it_cannot_compare(tmp_path, engine_url, alias):
    db = _sensors_without_constraints(tmp_path / "odd.db")
    job = watched_job(tmp_path, db, {"url": engine_url}, alias, chunk_size=50)
    _ok("reindex", str(job))
    sql(db, "UPDATE sensors SET date_updated = '2025-06-01 00:00:00+02:00' WHERE code = 'S0003'")
    sql(db, "UPDATE sensors SET date_updated = '2025-06-01 00:00:01' WHERE code = 'S0004'")
    before = stored_state(alias)["watermark"]
    result = run_indexer("sync", str(job))
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "'S0003'" in result.stderr or "'S0004'" in result.stderr
    assert "row " in result.stderr and "date_updated" in result.stderr and "Traceback" not in result.stderr
    assert stored_state(alias)["watermark"] == before


# ------------------------------------------------------------------ 8. the user's SQL, the user's errors


def test_a_trailing_semicolon_works_in_reindex_sync_and_status(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, query=QUERY + " ;\n")
    _ok("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = -2, date_updated = '2025-04-04 04:04:04' WHERE code = 'SEN0000009'")
    assert _ok("sync", str(job))["indexed"] == 1
    assert _ok("status", str(job))["difference"] == 0


def test_a_misspelt_watermark_column_is_a_job_file_error_before_any_query(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias, watermark="nosuch")
    result = run_indexer("reindex", str(job))
    assert result.returncode == 2, result.stderr
    assert "job.watermark" in result.stderr and "'nosuch'" in result.stderr and "q.nosuch" not in result.stderr
    assert indices(f"{alias}-*") == []                # refused before the index was even filled


# ------------------------------------------------------------------ 9. names


def test_a_non_ascii_alias_works_end_to_end(tmp_path, engine_url, sqlite_sensors):
    alias = f"adv-é-{int(time.time() * 1000) % 10**9}"
    try:
        job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
        summary = _ok("reindex", str(job))
        assert summary["index"].startswith(alias + "-")
        status, body = http("GET", "/_alias/" + alias.replace("é", "%C3%A9"))
        assert status == 200 and list(body) == [summary["index"]]
        sql(sqlite_sensors, "UPDATE sensors SET value = -3, date_updated = '2025-04-04 04:04:04' WHERE code = 'SEN0000011'")
        assert _ok("sync", str(job))["indexed"] == 1
        state = state_document(alias)
        assert state["_id"] == alias and state["_source"]["state"]["watermark"]["value"] == "2025-04-04 04:04:04"
        assert _ok("status", str(job))["documents_in_alias"] == 3000
    finally:
        for name in indices(alias.replace("é", "%C3%A9") + "-*"):
            http("DELETE", "/" + name.replace("é", "%C3%A9"))


# ------------------------------------------------------------------ 10/11. counts that add up, small things


def test_a_delete_of_an_absent_document_is_counted_and_the_counts_add_up(tmp_path, engine_url, alias, sqlite_sensors):
    sql(sqlite_sensors, "UPDATE sensors SET is_deleted = 1, date_updated = '2025-08-08 08:08:08' WHERE code = 'SEN0000005'")
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    reindex = _ok("reindex", str(job))
    _adds_up(reindex)
    assert reindex["skipped"] == 1
    sync = _ok("sync", str(job))       # re-reads the lookback window: the soft-deleted row's document is absent
    assert sync["not_found"] == 1 and sync["failed"] == 0
    _adds_up(sync)
    line = run_indexer("sync", str(job), "--no-progress")
    assert line.returncode == 0 and "not found" in line.stdout and "duplicates" in line.stdout


def test_a_sync_with_nothing_new_writes_no_state_at_all(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _ok("reindex", str(job))
    sql(sqlite_sensors, "UPDATE sensors SET value = 1, date_updated = '2025-02-02 02:02:02' WHERE code = 'SEN0000003'")
    _ok("sync", str(job))
    before = state_document(alias)["_seq_no"]
    assert _ok("sync", str(job))["sent"] == 0
    assert state_document(alias)["_seq_no"] == before


def test_status_right_after_a_deleting_sync_counts_what_the_sync_wrote(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _ok("reindex", str(job))
    for n in range(3):
        code = f"SEN000002{n}"
        sql(sqlite_sensors, f"UPDATE sensors SET is_deleted = 1, date_updated = '2025-09-0{n + 1} 00:00:00' WHERE code = ?", code)
        assert _ok("sync", str(job))["deleted"] == 1
        info = _ok("status", str(job))       # no refresh of our own here: the sync made its writes visible
        assert info["documents_in_alias"] == 2999 - n and info["difference"] == 0


def test_the_progress_bar_ends_at_its_total_when_rows_are_skipped(tmp_path, engine_url, alias, sqlite_sensors):
    sql(sqlite_sensors, "UPDATE sensors SET is_deleted = 1 WHERE code IN ('SEN0000001', 'SEN0000002')")
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    result = run_indexer("reindex", str(job), env={"INDEXER_PROGRESS": "1", "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "3000/3000" in result.stderr and "2998/3000" not in result.stderr.splitlines()[-1]


def test_help_version_and_a_piped_summary_read_as_written(tmp_path, engine_url, alias, sqlite_sensors):
    help_ = run_indexer("bootstrap", "--help", env={"COLUMNS": "200"})
    assert "[target]" in help_.stdout, help_.stdout
    assert "[job.params]" in run_indexer("reindex", "--help", env={"COLUMNS": "200"}).stdout
    version = run_indexer("--version")
    assert version.returncode == 0 and version.stdout.startswith("indexer ")
    long_alias = alias + "-" + "x" * 60
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, long_alias)
    try:
        result = run_indexer("reindex", str(job), "--no-progress", env={"COLUMNS": "80"})
        assert result.returncode == 0, result.stderr
        assert any(line.startswith(f"alias {long_alias} -> {long_alias}-") for line in result.stdout.splitlines()), result.stdout
    finally:
        for name in indices(f"{long_alias}-*"):
            http("DELETE", f"/{name}")


# ------------------------------------------------------------------ 4. never past what was not written


def test_a_sync_through_an_alias_over_two_indices_refuses_and_keeps_the_watermark(tmp_path, engine_url, alias, sqlite_sensors):
    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    _ok("reindex", str(job))
    other = f"{alias}-extra"
    http("PUT", f"/{other}")
    assert http("POST", "/_aliases", {"actions": [{"add": {"index": other, "alias": alias}}]})[0] == 200
    before = stored_state(alias)["watermark"]
    sql(sqlite_sensors, "UPDATE sensors SET value = -4, date_updated = '2025-10-10 10:10:10' WHERE code = 'SEN0000012'")
    result = run_indexer("sync", str(job))
    assert result.returncode == 1 and "write index" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert stored_state(alias)["watermark"] == before
    assert not (tmp_path / "job.dead-letters.ndjson").exists()


# ------------------------------------------------------------------ 11. operator mistakes: one line, the right exit code


def test_operator_mistakes_get_one_line_and_the_right_exit_code(tmp_path, engine_url, alias, sqlite_sensors):
    def one_line(result, code, *words):
        assert result.returncode == code, (result.returncode, result.stderr)
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.stderr
        for word in words:
            assert word in result.stderr, result.stderr

    other, product = ("elasticsearch", "OpenSearch") if CLIENT_ENGINE == "opensearch" else ("opensearch", "Elasticsearch")
    wrong_engine = watched_job(tmp_path, sqlite_sensors, {"url": engine_url, "engine": other}, alias, name="e.toml")
    one_line(run_indexer("reindex", str(wrong_engine)), 2, product, "target.engine")

    half_auth = watched_job(tmp_path, sqlite_sensors, {"url": engine_url, "username": "indexer"}, alias, name="u.toml")
    one_line(run_indexer("reindex", str(half_auth)), 2, "password_env")

    job = watched_job(tmp_path, sqlite_sensors, {"url": engine_url}, alias)
    one_line(run_indexer("reindex", str(job), env={"INDEXER_URL": "localhost:9200"}), 2, "INDEXER_URL")
    one_line(run_indexer("reindex", str(job), "--param", "stratdate=2020-01-01"), 2, "stratdate")

    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + job.read_bytes())
    assert run_indexer("status", str(bom)).returncode == 0

    missing = watched_job(tmp_path, tmp_path / "no-such.db", {"url": engine_url}, alias, name="m.toml")
    one_line(run_indexer("reindex", str(missing)), 2, "no-such.db")

    check = run_indexer("bootstrap", "--check", "--url", "http://127.0.0.1:9")
    one_line(check, 2, "cannot reach")
    assert run_indexer("bootstrap", "--check", "--mappings", str(tmp_path / "nothing-here")).returncode == 2
