"""What a running indexer tells Prometheus: per-job counters and gauges, fed by the watch loop's observer.

::

    commands.watch (one loop per job) --JobMetrics (an Observer, a Progress, a lease callback)-->
        Metrics.registry (prometheus_client) --> serve.MetricsServer (/metrics) | write_textfile(--metrics-file)
    the watermark lag: computed when scraped (now minus the stored watermark), so it grows between passes

Counters advance when a pass ends (from its summary: the counts a failed pass reached count too), the
pending rows while it runs. Every series carries the labels ``job`` (the job file's name) and ``alias``;
``docs/metrics.md`` lists them all. A registry of our own, never the library's global one: two daemons in
one test process never share a series.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
    write_to_textfile,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from indexer import __version__
from indexer import watermark as wm
from indexer.errors import ConfigError, IndexerError
from indexer.lease import LeaseLostError
from indexer.run import Summary, outcome_of
from indexer.sink import Progress
from indexer.state import Outcome

disable_created_metrics()  # no *_created series beside each counter: they double the exposition for nothing

LABELS = ("job", "alias")
# Pass durations: a sync pass of a few rows takes well under a second, a first pass or a reconcile minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SUCCESS = (Outcome.OK, Outcome.DEAD_LETTERS)  # the pass finished and its watermark moved


class Metrics:
    """Every series of one process, in a registry of its own."""

    def __init__(self, textfile: Path | None = None) -> None:
        self.textfile = textfile
        self.registry = CollectorRegistry()
        r = self.registry

        def counter(name: str, text: str, *extra: str) -> Counter:
            return Counter(name, text, LABELS + extra, registry=r)

        def gauge(name: str, text: str) -> Gauge:
            return Gauge(name, text, LABELS, registry=r)

        self.rows_read = counter("indexer_rows_read", "Rows read from the source.")
        self.indexed = counter("indexer_documents_indexed", "Documents indexed (created or updated).")
        self.deleted = counter("indexer_documents_deleted", "Documents deleted (soft deletes, reconcile).")
        self.failed = counter("indexer_documents_failed", "Documents the cluster refused for good.")
        self.dead_letters = counter("indexer_dead_letters", "Documents written to the dead-letter file.")
        self.item_retries = counter("indexer_item_retries", "Bulk items sent again (answered 429/5xx).")
        self.request_retries = counter("indexer_request_retries", "Whole requests sent again (unanswered, "
                                       "429/5xx, or failed over to another node).")
        self.passes = counter("indexer_passes", "Passes ended, by command and outcome.", "command", "outcome")
        self.lease_lost = counter("indexer_lease_lost", "Passes whose lock was taken over or expired.")
        self.reconcile_deleted = counter("indexer_reconcile_deleted", "Documents reconcile deleted.")
        self.reconcile_indexed = counter("indexer_reconcile_indexed", "Documents reconcile indexed.")
        self.duration = Histogram("indexer_pass_duration_seconds", "How long passes took.", LABELS + ("command",),
                                  buckets=DURATION_BUCKETS, registry=r)
        self.last_success = gauge("indexer_last_success_timestamp_seconds", "When the job's last successful sync "
                                  "pass ended (Unix time); before any, when its loop started.")
        self.last_reconcile = gauge("indexer_last_reconcile_timestamp_seconds", "When the job's last successful "
                                    "reconcile ended (Unix time).")
        self.period = gauge("indexer_job_period_seconds", "The job's pause between passes.")
        self.pending = gauge("indexer_rows_pending", "Rows the sync pass in flight (or the last one) counted and "
                             "has not finished yet.")
        self.lease_held = gauge("indexer_lease_held", "1 while the job holds its alias's lock (during a pass).")
        Info("indexer_build", "The indexer's version.", registry=r).info({"version": __version__})
        self.watermarks: dict[tuple[str, str], Any] = {}  # the stored watermark per job, for the lag
        r.register(_Lag(self.watermarks))

    def job(self, name: str, alias: str, period: float | None = None, count: bool = False) -> JobMetrics:
        return JobMetrics(self, name, alias, period, count)

    @classmethod
    def to_file(cls, path: Path) -> Metrics:
        """Metrics written to ``path`` (``--metrics-file``), written once now: a path that cannot be written is
        one line before the run reads a row."""
        metrics = cls(path)
        metrics._carry_over(path)
        metrics.write_textfile()
        return metrics

    def _carry_over(self, path: Path) -> None:
        """Keep the last success and the last reconcile of the file this run replaces (its counters are its
        own): a failed cron run must not hide how long ago the job last succeeded."""
        try:
            text = path.read_text()
            families = list(text_string_to_metric_families(text))
        except (OSError, ValueError):
            return  # no file yet, or not ours: nothing to keep
        gauges = {"indexer_last_success_timestamp_seconds": self.last_success,
                  "indexer_last_reconcile_timestamp_seconds": self.last_reconcile}
        for family in families:
            for sample in family.samples:
                if sample.name in gauges and set(sample.labels) == set(LABELS):
                    gauges[sample.name].labels(**sample.labels).set(sample.value)

    def write_textfile(self) -> None:
        """The node_exporter textfile convention: the whole exposition, written to a temporary file then
        renamed over the path (a scrape never reads half a file)."""
        if self.textfile is None:
            return
        try:
            write_to_textfile(str(self.textfile), self.registry)
        except OSError as exc:
            raise ConfigError(f"--metrics-file {self.textfile}: cannot write it ({exc.strerror})") from None


class JobMetrics(Progress):
    """One job's series: told of its passes (a watch Observer), of the rows of the pass in flight (a
    Progress: with ``count``, each pass counts its rows first, for ``indexer_rows_pending``) and of its lock."""

    def __init__(self, metrics: Metrics, name: str, alias: str, period: float | None, count: bool = False) -> None:
        self.m, self.labels, self.key = metrics, {"job": name, "alias": alias}, (name, alias)
        self.counting = count  # one COUNT(*) over the pass's window: in-process CPU on SQLite (BENCHMARKS.md)
        self._total: int | None = None
        m = metrics
        for series in (m.rows_read, m.indexed, m.deleted, m.failed, m.dead_letters, m.item_retries,
                       m.request_retries, m.lease_lost, m.reconcile_deleted, m.reconcile_indexed):
            series.labels(**self.labels)  # present at 0 from the start: increase() sees the first one
        m.lease_held.labels(**self.labels).set(0)
        if period is not None:
            m.period.labels(**self.labels).set(period)
            m.last_success.labels(**self.labels).set(time.time())

    # ------------------------------------------------------------------ Progress: the pass in flight

    def total(self, rows: int) -> None:
        self._total = rows
        self.m.pending.labels(**self.labels).set(rows)

    def rows(self, done: int) -> None:
        if self._total is not None:
            self.m.pending.labels(**self.labels).set(max(0, self._total - done))

    def holding(self, held: bool) -> None:
        self.m.lease_held.labels(**self.labels).set(1 if held else 0)

    # ------------------------------------------------------------------ Observer: a pass ended

    def passed(self, command: str, summary: Summary) -> None:
        self._ended(command, summary, summary.outcome)

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        if isinstance(exc, LeaseLostError):
            self.m.lease_lost.labels(**self.labels).inc()
        summary = getattr(exc, "summary", None)
        if isinstance(summary, Summary):
            self._ended(command, summary, outcome_of(exc))
        else:  # refused before its run began (a config error, the job file gone): a pass all the same
            self.m.passes.labels(**self.labels, command=command, outcome=outcome_of(exc).value).inc()

    def interrupted(self, command: str, summary: Summary) -> None:
        """A one-shot run ended by SIGTERM or Ctrl-C (its run frame recorded it so)."""
        self._ended(command, summary, Outcome.INTERRUPTED)

    def _ended(self, command: str, summary: Summary, outcome: Outcome) -> None:
        m, labels, n = self.m, self.labels, summary.counts.numbers()
        if command != "reconcile" and summary.watermark is not None:
            m.watermarks[self.key] = summary.watermark  # first: a scrape seeing this pass's counts sees its lag
        for series, value in ((m.rows_read, n["rows_read"]), (m.indexed, n["indexed"]), (m.deleted, n["deleted"]),
                              (m.failed, n["failed"]), (m.dead_letters, n["dead_lettered"]),
                              (m.item_retries, n["retried"]), (m.request_retries, summary.requests_retried)):
            if value:
                series.labels(**labels).inc(value)
        m.passes.labels(**labels, command=command, outcome=outcome.value).inc()
        m.duration.labels(**labels, command=command).observe(summary.seconds)
        if command == "reconcile":
            m.reconcile_deleted.labels(**labels).inc(n["deleted"])
            m.reconcile_indexed.labels(**labels).inc(n["indexed"])
            if outcome in SUCCESS:
                m.last_reconcile.labels(**labels).set(time.time())
            return
        if outcome in SUCCESS:
            m.last_success.labels(**labels).set(time.time())
            if self._total is not None:
                m.pending.labels(**labels).set(0)
        self._total = None


class _Lag(Collector):
    """``indexer_watermark_lag_seconds``: now minus each job's stored watermark, when it is a point in time."""

    def __init__(self, watermarks: dict[tuple[str, str], Any]) -> None:
        self.watermarks = watermarks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("indexer_watermark_lag_seconds", "Now minus the stored watermark (time "
                                   "watermarks only; a value without a zone is read as UTC).", labels=LABELS)
        now = dt.datetime.now(dt.UTC)
        for (name, alias), value in list(self.watermarks.items()):
            at = point_in_time(value)
            if at is not None:
                family.add_metric([name, alias], (now - at).total_seconds())
        yield family


def point_in_time(value: Any) -> dt.datetime | None:
    """A watermark as an aware datetime (no zone: UTC), or None when it is a number or plain text."""
    try:
        kind = wm.value_kind(value)
    except wm.WatermarkValueError:
        return None
    if kind in (wm.Kind.ISO_TEXT, wm.Kind.ISO_TEXT_TZ):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    elif kind == wm.Kind.DATE:
        value = dt.datetime.combine(value, dt.time())
    elif kind not in (wm.Kind.TIMESTAMP, wm.Kind.TIMESTAMP_TZ):
        return None
    return value if value.utcoffset() is not None else value.replace(tzinfo=dt.UTC)
