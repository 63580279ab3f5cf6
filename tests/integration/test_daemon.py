"""The production daemon (issue 20): several jobs in one process, Prometheus metrics (served, scraped by a real
Prometheus, and written as a textfile), health probes, JSON logs without secrets or row values.

Every test runs the real CLI against the real node under test and, for the scrape, this checkout's real
Prometheus server (scripts/prometheus.sh; `make test` starts it): a test that needs it fails when it is
missing, it never skips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.harness import (
    REPO,
    count,
    document,
    free_port,
    http,
    http_get,
    pg_source,
    readable,
    run_indexer,
    sensors_job,
    slow_transform,
    sql,
    start_indexer,
    wait_until,
)

PROM_PORT = int(os.environ.get("PROM_PORT", "9490"))
PROM_DIR = Path(os.environ.get("PROM_DIR", REPO / ".services" / "prometheus"))
PROM_URL = f"http://127.0.0.1:{PROM_PORT}"
ROW_CANARY = "ROWCANARY-d43m0n"
PASSWORD = "c4n4ry-d43m0n-pw"


def _series(port: int) -> dict[tuple[str, tuple], float]:
    """The daemon's /metrics as {(sample name, sorted labels): value}; {} while it does not answer yet."""
    status, text = http_get(f"http://127.0.0.1:{port}/metrics")
    return _parse(text) if status == 200 else {}


def _parse(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(series: dict, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out, err


def _db(path: Path, rows: int = 20) -> Path:
    sql(path, "CREATE TABLE sensors (code TEXT PRIMARY KEY, description TEXT, site TEXT, value, "
              "date_updated TEXT, is_deleted INTEGER DEFAULT 0)")
    for i in range(rows):
        sql(path, "INSERT INTO sensors VALUES (?, ?, 'LAB', ?, '2024-01-01 00:00:00', 0)", f"S{i:04d}", f"sensor {i}",
            i * 1.5)
    return path


@pytest.fixture
def aliases(engine_url):
    made: list[str] = []

    def make(prefix: str = "td") -> str:
        name = f"{prefix}{os.urandom(5).hex()}"
        made.append(name)
        return name

    yield make
    for name in made:
        for index in (http("GET", f"/_alias/{name}")[1] or {}):
            http("DELETE", f"/{index}")
        for doc_id in (name, f"lock:{name}"):
            http("DELETE", f"/indexer-state/_doc/{doc_id}?refresh=true")


def _jobs(folder: Path, db: Path, target: dict, names: list[str], **job) -> list[Path]:
    """One job file per alias in ``names``, each named after its alias (the metrics' ``job`` label)."""
    folder.mkdir(exist_ok=True)
    return [sensors_job(folder, db, target, name, synced=True, name=f"{name}.toml", lookback=0, **job)
            for name in names]


# ------------------------------------------------------------------ several jobs, one of them down


def test_a_daemon_of_three_jobs_goes_on_while_one_jobs_database_is_down(tmp_path, target, aliases, pg_tables):
    db = _db(tmp_path / "sensors.db")
    good = [aliases(), aliases()]
    jobs = _jobs(tmp_path / "jobs", db, target, good)
    down = aliases()
    table = pg_tables.create("code text PRIMARY KEY, description text, site text, value float, date_updated "
                             "timestamp, is_deleted int", [("P1", "pg sensor", "LAB", 1.0, "2024-01-01", 0)])
    pg_job = sensors_job(tmp_path / "jobs", table, target, down, synced=True, name=f"{down}.toml")
    for job in [*jobs, pg_job]:
        assert run_indexer("reindex", str(job)).returncode == 0
    # then its PostgreSQL goes down: nothing listens where its job file now points
    sensors_job(tmp_path / "jobs", table, target, down, synced=True, name=f"{down}.toml",
                source={**pg_source(), "port": free_port()})
    port = free_port()
    proc = start_indexer("sync", str(tmp_path / "jobs"), "--every", "1s", "--metrics-port", str(port),
                         "--log-format", "json")
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, "the daemon serves /healthz", proc)
        sql(db, "UPDATE sensors SET value = -7, date_updated = '2025-05-05 05:05:05' WHERE code = 'S0003'")
        for alias in good:
            wait_until(lambda a=alias: (document(a, "S0003") or {}).get("value") == -7, f"{alias} synced", proc)
        failed = wait_until(lambda: _value(_series(port), "indexer_passes_total", job=down, alias=down,
                                           command="sync", outcome="failed") or 0, "the down job's failures", proc)
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[1].strip() == f"not ready: {down}",
                   "readiness naming only the job that never succeeded", proc)
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503
        series = _series(port)
        for alias in good:
            assert _value(series, "indexer_documents_indexed_total", job=alias, alias=alias) >= 1
            assert _value(series, "indexer_passes_total", job=alias, alias=alias, command="sync", outcome="ok") >= 1
            assert not _value(series, "indexer_passes_total", job=alias, alias=alias, command="sync", outcome="failed")
        assert failed >= 1 and proc.poll() is None
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]  # every line of stderr is one JSON object
    assert lines[0]["event"] == "started" and sorted(lines[0]["jobs"]) == sorted([*good, down])
    assert lines[-1]["event"] == "stopped"
    failures = [x for x in lines if x["event"] == "failed"]
    assert failures and {x["job"] for x in failures} == {down}
    assert all("connect" in x["message"] and x["outcome"] == "failed" for x in failures), failures
    assert {x["job"] for x in lines if x["event"] == "pass"} == set(good)
    assert out == ""  # --log-format json without --json: nothing on stdout


def test_two_jobs_on_one_alias_or_with_one_name_are_refused_before_any_pass(tmp_path, target, aliases):
    db = _db(tmp_path / "sensors.db")
    alias = aliases()
    first = sensors_job(tmp_path, db, target, alias, synced=True, name="one.toml")
    second = sensors_job(tmp_path, db, target, alias, synced=True, name="two.toml")
    result = run_indexer("sync", str(first), str(second), "--every", "1s")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (f"error: two jobs write the alias {alias!r} on {target['url']}: each job needs "
                                     "its own")
    nothing = run_indexer("sync", str(tmp_path / "empty"), "--every", "1s")
    assert nothing.returncode == 2 and "job file not found" in nothing.stderr, nothing.stderr
    (tmp_path / "empty").mkdir()
    empty = run_indexer("sync", str(tmp_path / "empty"), "--every", "1s")
    assert empty.returncode == 2 and "no job files (*.toml) in the folder" in empty.stderr, empty.stderr
    port = run_indexer("sync", str(first), "--metrics-port", "9")
    assert port.returncode == 2 and "--metrics-port needs --every" in port.stderr, port.stderr
    count_alone = run_indexer("sync", str(first), "--every", "1s", "--count-pending")
    assert count_alone.returncode == 2, count_alone.stderr
    assert "--count-pending needs --every and --metrics-port or --metrics-file" in count_alone.stderr


def test_a_jobs_own_every_overrides_the_option_and_sigterm_ends_every_loop_with_exit_0(tmp_path, target, aliases):
    db = _db(tmp_path / "sensors.db")
    fast, slow = aliases(), aliases()
    folder = tmp_path / "jobs"
    _jobs(folder, db, target, [fast])
    _jobs(folder, db, target, [slow], every="1h")
    for name in (fast, slow):
        assert run_indexer("reindex", str(folder / f"{name}.toml")).returncode == 0
    port = free_port()
    proc = start_indexer("sync", str(folder), "--every", "1s", "--metrics-port", str(port))
    try:
        wait_until(lambda: (_value(_series(port), "indexer_passes_total", job=fast, alias=fast, command="sync",
                                   outcome="ok") or 0) >= 3, "three passes of the 1s job", proc)
        series = _series(port)
        assert _value(series, "indexer_job_period_seconds", job=slow, alias=slow) == 3600
        assert _value(series, "indexer_job_period_seconds", job=fast, alias=fast) == 1
        # the hourly job ran once (its first pass, i/n of its period late: at most 30 min; here it is second of
        # two, so it has not run yet or ran once) -- never more than once in these seconds
        assert (_value(series, "indexer_passes_total", job=slow, alias=slow, command="sync", outcome="ok") or 0) <= 1
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# ------------------------------------------------------------------ the metrics against what was indexed


@pytest.fixture
def prometheus() -> str:
    """This checkout's Prometheus server (scripts/prometheus.sh), which `make test` starts; missing: fail."""
    if http_get(f"{PROM_URL}/-/ready")[0] != 200:
        pytest.fail(f"no Prometheus answers on {PROM_URL}: start it with `scripts/prometheus.sh start` "
                    "(`make test` does)", pytrace=False)
    return PROM_URL


def _query(prom: str, expr: str) -> list[dict]:
    status, body = http_get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


def test_a_real_prometheus_scrapes_the_counters_and_the_lag_of_a_running_daemon(tmp_path, target, aliases, prometheus):
    db = _db(tmp_path / "sensors.db", rows=40)
    alias = aliases("tprom")
    (job,) = _jobs(tmp_path / "jobs", db, target, [alias])
    assert run_indexer("reindex", str(job)).returncode == 0
    port = free_port()
    proc = start_indexer("sync", str(job), "--every", "1s", "--metrics-port", str(port), "--count-pending")
    targets = PROM_DIR / "targets" / f"{alias}.json"
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200, "a first successful pass", proc)
        now = time.time()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now - 120))  # the rows changed 2 minutes ago
        sql(db, "UPDATE sensors SET value = -1, date_updated = ? WHERE code IN ('S0001', 'S0002', 'S0003')", stamp)
        sql(db, "UPDATE sensors SET is_deleted = 1, date_updated = ? WHERE code = 'S0004'", stamp)
        wait_until(lambda: document(alias, "S0004") is None and (document(alias, "S0003") or {}).get("value") == -1,
                   "the sync of 3 updates and 1 soft delete", proc)
        targets.parent.mkdir(parents=True, exist_ok=True)
        written = targets.with_suffix(".tmp")  # written whole, then renamed: Prometheus never reads half of it
        written.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"]}]))
        written.rename(targets)
        selector = f'{{job="{alias}",alias="{alias}"}}'

        def scraped(name: str) -> float | None:
            result = _query(prometheus, f"{name}{selector}")
            return float(result[0]["value"][1]) if result else None

        wait_until(lambda: scraped("indexer_documents_deleted_total") == 1, "Prometheus scraped the delete",
                   proc, timeout=90, every=0.5)
        assert scraped("indexer_documents_indexed_total") == 3   # the reindex ran in another process
        assert scraped("indexer_documents_failed_total") == 0
        assert count(alias) == 39
        ok = _query(prometheus, f'indexer_passes_total{{job="{alias}",command="sync",outcome="ok"}}')
        assert float(ok[0]["value"][1]) >= 2
        lag = scraped("indexer_watermark_lag_seconds")
        assert lag is not None and 115 <= lag <= 120 + (time.time() - now) + 5, lag  # the stored watermark: stamp
        # between passes: the lock let go, nothing pending (a pass in flight may show otherwise for a moment)
        wait_until(lambda: scraped("indexer_lease_held") == 0 and scraped("indexer_rows_pending") == 0,
                   "a scrape between passes", proc, every=0.5)
        assert _query(prometheus, f'up{{instance="127.0.0.1:{port}"}}')[0]["value"][1] == "1"
    finally:
        targets.unlink(missing_ok=True)
        out, err = _stop(proc)
    assert proc.returncode == 0, err


def test_a_one_shot_run_writes_its_metrics_file_whatever_its_outcome(tmp_path, target, aliases):
    db = _db(tmp_path / "sensors.db", rows=25)
    alias = aliases()
    (job,) = _jobs(tmp_path / "jobs", db, target, [alias])
    prom = tmp_path / "textfile" / "indexer.prom"
    prom.parent.mkdir()
    assert run_indexer("reindex", str(job), "--metrics-file", str(prom)).returncode == 0
    series = _parse(prom.read_text())
    assert _value(series, "indexer_documents_indexed_total", job=alias, alias=alias) == 25
    assert _value(series, "indexer_passes_total", job=alias, alias=alias, command="reindex", outcome="ok") == 1
    assert time.time() - _value(series, "indexer_last_success_timestamp_seconds", job=alias, alias=alias) < 120
    assert list(prom.parent.iterdir()) == [prom]  # written whole, then renamed: no temporary file left

    sql(db, "UPDATE sensors SET value = 0, date_updated = '2025-01-01 00:00:00' WHERE code < 'S0005'")
    summary = json.loads(run_indexer("sync", str(job), "--json", "--metrics-file", str(prom)).stdout)
    series = _parse(prom.read_text())
    assert _value(series, "indexer_documents_indexed_total", job=alias, alias=alias) == summary["indexed"] == 5
    assert _value(series, "indexer_rows_read_total", job=alias, alias=alias) == summary["rows_read"]

    succeeded = _value(series, "indexer_last_success_timestamp_seconds", job=alias, alias=alias)
    (down,) = _jobs(tmp_path / "down", db, {**target, "url": f"http://127.0.0.1:{free_port()}"}, [alias])
    failed = run_indexer("sync", str(down), "--metrics-file", str(prom))  # no cluster there: it fails
    assert failed.returncode == 1, failed.stderr
    series = _parse(prom.read_text())
    assert _value(series, "indexer_passes_total", job=alias, alias=alias, command="sync", outcome="failed") == 1
    assert _value(series, "indexer_documents_indexed_total", job=alias, alias=alias) == 0  # this run's counts
    # ... but the last success is the file's: an alert on its age goes on seeing it
    assert _value(series, "indexer_last_success_timestamp_seconds", job=alias, alias=alias) == succeeded

    unwritable = run_indexer("sync", str(job), "--metrics-file", str(tmp_path / "no" / "such" / "x.prom"))
    assert unwritable.returncode == 2, unwritable.stderr
    assert unwritable.stderr.startswith("error: --metrics-file ") and "cannot write it" in unwritable.stderr


def test_a_reindex_ended_by_sigterm_writes_its_metrics_file_with_the_interrupted_pass(tmp_path, target, aliases):
    db = _db(tmp_path / "sensors.db", rows=3000)
    alias = aliases()
    (tmp_path / "jobs").mkdir()
    (job,) = _jobs(tmp_path / "jobs", db, target, [alias], chunk_size=100, concurrency=1,
                   transform=slow_transform(tmp_path / "jobs", 0.2))  # 30 chunks: about 6 s
    prom = tmp_path / "indexer.prom"
    proc = start_indexer("reindex", str(job), "--metrics-file", str(prom))
    wait_until(lambda: any(count(i) for i in readable(f"{alias}-*")), "the reindex writing", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    series = _parse(prom.read_text())
    assert _value(series, "indexer_passes_total", job=alias, alias=alias, command="reindex", outcome="interrupted") == 1
    assert 0 < _value(series, "indexer_rows_read_total", job=alias, alias=alias) < 3000


# ------------------------------------------------------------------ logs a machine can read, and keep secrets


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_logs_hold_no_secret_and_no_row_value_in_either_format(tmp_path, target, aliases, log_format):
    db = _db(tmp_path / "sensors.db", rows=30)
    alias = aliases()
    status, body = http("PUT", f"/_index_template/{alias}", {
        "index_patterns": [f"{alias}-*"], "priority": 990,
        "template": {"mappings": {"properties": {"value": {"type": "double"}}}},
    })
    assert status == 200, body
    try:
        (job,) = _jobs(tmp_path / "jobs", db, {**target, "username": "indexer", "password_env": "DAEMON_PW"},
                       [alias], max_error_rate=0.5)
        env = {"DAEMON_PW": PASSWORD}
        assert run_indexer("reindex", str(job), env=env).returncode == 0
        port = free_port()
        proc = start_indexer("sync", str(job), "--every", "1s", "--metrics-port", str(port), "--log-format",
                             log_format, env=env)
        try:
            # a value the mapping refuses (the cluster's error quotes it) and a description beside it
            sql(db, "UPDATE sensors SET value = ?, description = ?, date_updated = '2025-01-01 00:00:00' "
                    "WHERE code = 'S0007'", ROW_CANARY, f"{ROW_CANARY} description")
            wait_until(lambda: _value(_series(port), "indexer_dead_letters_total", job=alias, alias=alias),
                       "the refused row dead-lettered", proc)
            metrics_text = http_get(f"http://127.0.0.1:{port}/metrics")[1]
        finally:
            out, err = _stop(proc)
    finally:
        http("DELETE", f"/_index_template/{alias}")
    assert proc.returncode == 0, err
    for where, text in (("stdout", out), ("stderr", err), ("metrics", metrics_text)):
        for secret in (ROW_CANARY, PASSWORD, "c4n4ry"):
            assert secret not in text, f"{secret} in {where}: {text[-2000:]}"
    if log_format == "json":
        lines = [json.loads(line) for line in err.splitlines()]
        passes = [x for x in lines if x["event"] == "pass"]
        assert any(x["dead_lettered"] == 1 and x["level"] == "warning" for x in passes), passes
        assert all({"time", "level", "job", "event", "message"} <= set(x) for x in passes)
    else:
        assert "dead-lettered" in out and "Traceback" not in err
