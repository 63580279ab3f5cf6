"""The daemon's parts without a cluster: metrics counted from summaries, the lag, the textfile, the probes' logic
and server, JSON log lines, the job files a daemon takes, and loops that never wait for each other."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import json
import logging
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from indexer import logs
from indexer.commands import daemon, watch
from indexer.config import Job
from indexer.counts import Answers, Failure
from indexer.errors import ConfigError, EngineError, SourceError
from indexer.lease import LeaseLostError
from indexer.metrics import Metrics, point_in_time
from indexer.options import job_files
from indexer.run import Summary
from indexer.serve import Health, MetricsServer
from indexer.state import Outcome
from tests.support.builders import chunk
from tests.support.harness import http_get


def _samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _summary(command: str = "sync", outcome: Outcome = Outcome.OK, watermark=None) -> Summary:
    summary = Summary(command=command, job="j", alias="a", started="2026-01-01T00:00:00+00:00", outcome=outcome,
                      watermark=watermark, seconds=0.3, requests_retried=2)
    summary.counts.add(chunk(0, actions=4, rejected=1, skipped=2),
                       Answers(indexed=2, deleted=1, failed=[Failure("0-3", 400, "x", "")], retried=3))
    return summary


J = {"job": "j", "alias": "a"}


def _at(series: dict, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted({**J, **labels}.items()))))


def test_a_pass_adds_its_counts_and_its_outcome_and_a_failure_its_counts_so_far():
    metrics = Metrics()
    job = metrics.job("j", "a", period=60)
    before = _samples(metrics)
    assert _at(before, "indexer_documents_indexed_total") == 0      # present at 0 from the start (increase())
    assert _at(before, "indexer_job_period_seconds") == 60
    assert time.time() - _at(before, "indexer_last_success_timestamp_seconds") < 5  # the loop's start
    job.passed("sync", _summary())
    failed = EngineError("bulk: cannot reach the cluster")
    failed.summary = _summary(outcome=Outcome.FAILED)  # type: ignore[attr-defined]
    job.failed("sync", failed, "then")
    job.failed("sync", ConfigError("the job file is gone"), "then")  # before any run: a pass, no counts
    s = _samples(metrics)
    assert _at(s, "indexer_rows_read_total") == 2 * 7
    assert (_at(s, "indexer_documents_indexed_total"), _at(s, "indexer_documents_deleted_total")) == (4, 2)
    assert (_at(s, "indexer_documents_failed_total"), _at(s, "indexer_dead_letters_total")) == (2, 4)
    assert (_at(s, "indexer_item_retries_total"), _at(s, "indexer_request_retries_total")) == (6, 4)
    assert _at(s, "indexer_passes_total", command="sync", outcome="ok") == 1
    assert _at(s, "indexer_passes_total", command="sync", outcome="failed") == 2
    assert _at(s, "indexer_pass_duration_seconds_count", command="sync") == 2
    assert _at(s, "indexer_lease_lost_total") == 0


def test_the_last_success_moves_on_a_finished_sync_only_and_a_lost_lease_is_counted():
    metrics = Metrics()
    job = metrics.job("j", "a", period=60)
    metrics.last_success.labels(**J).set(0)
    job.passed("sync", _summary(outcome=Outcome.STOPPED))
    assert _at(_samples(metrics), "indexer_last_success_timestamp_seconds") == 0
    lost = LeaseLostError("the lock was taken over")
    job.failed("sync", lost, "then")
    job.passed("sync", _summary(outcome=Outcome.DEAD_LETTERS))
    s = _samples(metrics)
    assert time.time() - _at(s, "indexer_last_success_timestamp_seconds") < 5
    assert _at(s, "indexer_lease_lost_total") == 1


def test_a_reconcile_counts_apart_and_leaves_the_sync_watermark_alone():
    metrics = Metrics()
    job = metrics.job("j", "a", period=60)
    job.passed("reconcile", _summary("reconcile", watermark=dt.datetime(2020, 1, 1)))
    s = _samples(metrics)
    assert (_at(s, "indexer_reconcile_deleted_total"), _at(s, "indexer_reconcile_indexed_total")) == (1, 2)
    assert time.time() - _at(s, "indexer_last_reconcile_timestamp_seconds") < 5
    assert _at(s, "indexer_watermark_lag_seconds") is None


def test_the_rows_pending_follow_the_pass_in_flight_and_the_lock_is_shown():
    metrics = Metrics()
    assert not metrics.job("j", "a", period=60).counting  # a COUNT(*) per pass only when asked (--count-pending)
    job = metrics.job("j", "a", period=60, count=True)
    assert job.counting
    job.total(100)
    job.rows(30)
    job.holding(True)
    s = _samples(metrics)
    assert (_at(s, "indexer_rows_pending"), _at(s, "indexer_lease_held")) == (70, 1)
    job.holding(False)
    job.passed("sync", _summary())
    s = _samples(metrics)
    assert (_at(s, "indexer_rows_pending"), _at(s, "indexer_lease_held")) == (0, 0)


@pytest.mark.parametrize("value", [
    dt.datetime(2026, 1, 1, 12), dt.datetime(2026, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    "2026-01-01 12:00:00", "2026-01-01T12:00:00Z", dt.date(2026, 1, 1),
])
def test_the_lag_of_a_time_watermark_is_now_minus_it_read_as_utc_without_a_zone(value):
    metrics = Metrics()
    metrics.job("j", "a", period=60).passed("sync", _summary(watermark=value))
    lag = _at(_samples(metrics), "indexer_watermark_lag_seconds")
    at = point_in_time(value)
    assert at is not None and at.utcoffset() is not None
    assert abs(lag - (dt.datetime.now(dt.UTC) - at).total_seconds()) < 5


@pytest.mark.parametrize("value", [42, "SEN0001", float("nan")])
def test_a_number_or_text_watermark_has_no_lag(value):
    metrics = Metrics()
    metrics.job("j", "a", period=60).passed("sync", _summary(watermark=value))
    assert _at(_samples(metrics), "indexer_watermark_lag_seconds") is None


def test_the_textfile_is_written_whole_and_keeps_the_last_success_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "indexer.prom"
    first = Metrics.to_file(path)
    first.job("j", "a").passed("sync", _summary())
    first.write_textfile()
    succeeded = _at(_samples(first), "indexer_last_success_timestamp_seconds")
    second = Metrics.to_file(path)  # the next run, which fails
    failed = EngineError("no cluster")
    second.job("j", "a").failed("sync", failed, "")
    second.write_textfile()
    text = path.read_text()
    in_file = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert _at(in_file, "indexer_last_success_timestamp_seconds") == succeeded
    assert 'indexer_passes_total{alias="a",command="sync",job="j",outcome="failed"} 1.0' in text
    assert "indexer_documents_indexed_total" in text and "_created" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["indexer.prom"]
    (tmp_path / "junk.prom").write_text("not { the format")
    Metrics.to_file(tmp_path / "junk.prom")  # a file that is not ours is replaced, not read
    with pytest.raises(ConfigError, match=r"^--metrics-file .*: cannot write it"):
        Metrics.to_file(tmp_path / "missing" / "x.prom")


def test_readiness_wants_a_success_within_n_periods_of_each_job_and_liveness_a_ticking_loop(monkeypatch):
    health = Health(ready_periods=3)
    health.add("a", 10)
    health.add("b", 60)
    assert health.not_ready() == ["a", "b"]
    health.succeeded("a")
    health.succeeded("b")
    assert health.not_ready() == [] and health.alive()
    clock = time.monotonic() + 31
    monkeypatch.setattr("indexer.serve.time.monotonic", lambda: clock)
    assert health.not_ready() == ["a"]     # 31 s > 3 x 10 s; b has 180 s
    assert not health.alive()              # no beat for 31 s


def test_the_server_answers_metrics_and_both_probes_and_refuses_a_busy_port():
    metrics, health = Metrics(), Health()
    metrics.job("j", "a", period=1)
    health.add("j", 1)
    server = MetricsServer(metrics, health, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, text = http_get(f"{base}/metrics")
        assert status == 200 and 'indexer_documents_indexed_total{alias="a",job="j"} 0.0' in text
        assert http_get(f"{base}/healthz") == (200, "ok\n")
        assert http_get(f"{base}/readyz") == (503, "not ready: j\n")
        health.succeeded("j")
        assert http_get(f"{base}/readyz") == (200, "ready\n")
        assert http_get(f"{base}/nothing")[0] == 404
        with pytest.raises(ConfigError, match=rf"^--metrics-port {server.port}: cannot listen on 127.0.0.1"):
            MetricsServer(metrics, health, "127.0.0.1", server.port)
    finally:
        server.close()


def test_a_json_log_line_is_one_object_with_the_events_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    logs.EVENTS.addHandler(handler)
    logs.EVENTS.setLevel(logging.INFO)
    try:
        logs.event(logging.INFO, "pass", "sync j: ok", job="j", indexed=3, when=dt.date(2026, 1, 1))
        logging.getLogger("indexer.retry").addHandler(handler)
        logging.getLogger("indexer.retry").warning("bulk failed (%s); retry %d", "503", 1)
    finally:
        logs.EVENTS.removeHandler(handler)
        logging.getLogger("indexer.retry").removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "pass" and first["job"] == "j" and first["indexed"] == 3 and first["level"] == "info"
    assert first["when"] == "2026-01-01" and first["time"].endswith("+00:00")
    assert second == {**second, "event": "log", "level": "warning", "message": "bulk failed (503); retry 1"}
    assert "job" not in second


def _job(name: str, alias: str, every: str | None = None) -> Job:
    return Job.model_validate({"source": {"dbtype": "SQLITE", "filename": "x.db"}, "name": name,
                               "job": {"alias": alias, "key": ["id"], "query": "SELECT 1 AS id", "watermark": "w",
                                       **({"every": every} if every else {})}})


def test_jobs_of_one_daemon_need_their_own_names_and_aliases_and_may_have_their_own_period(tmp_path):
    daemon.check_jobs([_job("a", "x"), _job("b", "y")])
    with pytest.raises(ConfigError, match="two jobs have the job file name 'a'"):
        daemon.check_jobs([_job("a", "x"), _job("a", "y")])
    with pytest.raises(ConfigError, match="two jobs write the alias 'x' on http://127.0.0.1:9200: each job"):
        daemon.check_jobs([_job("a", "x"), _job("b", "x")])
    elsewhere = _job("b", "x").model_copy(update={"target": _job("b", "x").target.model_copy(
        update={"url": "http://10.0.0.2:9200"})})
    daemon.check_jobs([_job("a", "x"), elsewhere])  # one alias on two clusters: a dual write, fine
    assert daemon.period_of(_job("a", "x", every="5m"), 60, "60s") == (300, "5m")
    assert daemon.period_of(_job("a", "x"), 60, "60s") == (60, "60s")
    with pytest.raises(ValueError, match="at least 1s"):
        _job("a", "x", every="0.5s")
    (tmp_path / "b.toml").touch()
    (tmp_path / "a.toml").touch()
    (tmp_path / "notes.txt").touch()
    assert job_files([tmp_path, tmp_path / "a.toml"]) == [tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "a.toml"]


def _sync_failing(name: str, error: Exception, passes: list[str] | None = None):
    """A stand-in for ``sync``: job ``name``'s passes raise ``error``, the others succeed; each pass noted."""

    async def fake_sync(job, **kwargs):
        if passes is not None:
            passes.append(job.name)
        if job.name == name:
            raise error
        summary = _summary()
        summary.job = job.name
        return summary

    return fake_sync


class _Told:
    """An observer writing down (job, "passed" | the failure's text) for each pass."""

    def __init__(self, name: str, told: list[tuple[str, str]]) -> None:
        self.name, self.told = name, told

    def passed(self, command, summary):
        self.told.append((self.name, "passed"))

    def failed(self, command, exc, then):
        self.told.append((self.name, str(exc)))


def test_one_jobs_failing_loop_never_holds_up_another_and_stop_ends_them_all(monkeypatch):
    passes: list[str] = []
    monkeypatch.setattr(watch, "sync", _sync_failing("bad", SourceError("database down"), passes))
    told: list[tuple[str, str]] = []
    Told = functools.partial(_Told, told=told)

    async def main() -> None:
        stop = asyncio.Event()
        jobs = [watch.Watched(_job(n, n), 0.05, "0.05s", Told(n), offset=i * 0.05 / 2)
                for i, n in enumerate(("bad", "good"))]
        task = asyncio.create_task(watch.watch_all(jobs, stop=stop))
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert passes.count("good") >= 3 and passes.count("bad") >= 3
    assert {("good", "passed"), ("bad", "database down")} == set(told)


def test_a_lone_jobs_config_error_before_any_success_ends_its_loop(monkeypatch):
    async def fake_sync(job, **kwargs):
        raise ConfigError("no watermark is stored")

    monkeypatch.setattr(watch, "sync", fake_sync)

    async def main() -> None:
        await watch.watch_all([watch.Watched(_job("a", "a"), 1, "1s")], stop=asyncio.Event())

    with pytest.raises(ConfigError, match="no watermark is stored"):  # itself, not in a group: the CLI's one line
        asyncio.run(main())


def test_a_defect_in_one_of_several_jobs_is_a_failed_pass_and_the_others_go_on(monkeypatch):
    monkeypatch.setattr(watch, "sync", _sync_failing("buggy", KeyError("a defect")))
    told: list[tuple[str, str]] = []
    Told = functools.partial(_Told, told=told)

    async def main(names: tuple[str, ...]) -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(watch.watch_all(
            [watch.Watched(_job(n, n), 0.05, "0.05s", Told(n)) for n in names], stop=stop))
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main(("buggy", "good")))
    assert ("good", "passed") in told
    assert ("buggy", "unexpected KeyError: this is a bug in indexer (run again with --debug for the traceback)") in told
    with pytest.raises(KeyError):  # a lone job: the defect ends it, as any command's would
        asyncio.run(main(("buggy",)))


def test_stop_cancels_a_reconcile_in_flight_and_the_loop_ends_without_a_sync(monkeypatch):
    started, synced = asyncio.Event(), []

    async def due(job, **kwargs):
        return True

    async def slow_reconcile(job, **kwargs):
        started.set()
        await asyncio.sleep(3600)

    async def fake_sync(job, **kwargs):
        synced.append(job.name)

    monkeypatch.setattr(watch.reconciling, "due", due)
    monkeypatch.setattr(watch.reconciling, "reconcile", slow_reconcile)
    monkeypatch.setattr(watch, "sync", fake_sync)
    job = _job("a", "a").model_copy(update={"job": _job("a", "a").job.model_copy(update={"reconcile_every": "1h"})})

    async def main() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(watch.watch(job, 60, "60s", stop=stop))
        await started.wait()
        stop.set()
        begun = time.monotonic()
        await asyncio.wait_for(task, 5)
        return time.monotonic() - begun

    assert asyncio.run(main()) < 1 and synced == []


def test_several_one_shot_passes_exit_with_the_worst_code_not_the_highest(monkeypatch):
    from indexer import cli
    from indexer.options import RunOptions

    codes = {"ok": 0, "dead": cli.EXIT_DEAD_LETTERS, "down": None}

    async def counted(name, job, options, command, metrics):
        if codes[job.name] is None:
            raise EngineError("cannot reach the cluster")
        return codes[job.name]

    monkeypatch.setattr(cli, "_counted", counted)
    monkeypatch.setattr(cli, "print_failure", lambda *a, **k: None)
    options = RunOptions(None, None, None, False, False, False, False, "text", None)
    jobs = [_job(n, n) for n in ("ok", "down", "dead")]
    assert asyncio.run(cli._one_pass_each(jobs, options, asyncio.Event())) == 1  # failed beats dead letters (3)
    assert asyncio.run(cli._one_pass_each([_job("ok", "ok"), _job("dead", "dead")], options, asyncio.Event())) == 3
