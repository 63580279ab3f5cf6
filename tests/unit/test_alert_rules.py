"""The alerting rules in deploy/prometheus/ are real: `promtool check rules` accepts them, their unit tests
(`promtool test rules`, alerts_test.yml) pass, every alert an operator needs is there with its test firing and
quiet, and the rules name only metrics the daemon exports (docs/metrics.md), so a renamed metric fails here.
promtool comes with Debian's prometheus package, which scripts/prometheus.sh installs (`make prometheus`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULES_TEST = RULES_DIR / "alerts_test.yml"
EXAMPLE_CONFIG = RULES_DIR / "prometheus.yml"

# What the daemon exports (indexer/metrics.py, docs/metrics.md): every series labelled job and alias.
METRICS = {
    "indexer_rows_read_total", "indexer_documents_indexed_total", "indexer_documents_deleted_total",
    "indexer_documents_failed_total", "indexer_dead_letters_total", "indexer_item_retries_total",
    "indexer_request_retries_total", "indexer_passes_total", "indexer_pass_duration_seconds",
    "indexer_last_success_timestamp_seconds", "indexer_job_period_seconds", "indexer_watermark_lag_seconds",
    "indexer_rows_pending", "indexer_lease_held", "indexer_lease_lost_total", "indexer_reconcile_deleted_total",
    "indexer_reconcile_indexed_total", "indexer_last_reconcile_timestamp_seconds",
}
HISTOGRAMS = {"indexer_pass_duration_seconds"}
# The series a query may name: the metrics, a histogram's own series, and Prometheus's `up`.
SERIES = METRICS | {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "count", "sum")} | {"up"}
ALERTS = {"IndexerJobNotSucceeding", "IndexerWatermarkLagHigh", "IndexerDeadLettersGrowing", "IndexerLeaseFlapping",
          "IndexerTargetDown"}
SEVERITIES = {"critical", "warning"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
            "atan2", "inf", "nan"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool is not installed: run scripts/prometheus.sh start (or make prometheus) to install it",
                    pytrace=False)
    return path


def _promtool_run(*args: str, cwd: Path = ROOT) -> None:
    result = subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"


def _rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> dict[str, dict]:
    return {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _identifiers(expr: str) -> tuple[set[str], set[str]]:
    """(series names, function names) an expression uses: label matchers, ranges, grouping labels, strings,
    numbers and keywords left out; a name followed by `(` (or by `by`/`without`) is a function or an aggregation."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings (matcher values)
    expr = re.sub(r"\{[^}]*\}", " ", expr)                                  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)                                 # ranges, subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", expr)  # label lists
    expr = re.sub(r"\boffset\s+\S+", " ", expr)
    series, functions = set(), set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = match.group()
        if name.lower() in KEYWORDS:
            continue
        called = re.match(r"\s*(\(|by\b|without\b)", expr[match.end():])  # sum(...), sum without(...) (...)
        (functions if called else series).add(name)
    return series, functions


def test_promtool_accepts_the_rules():
    _promtool_run("check", "rules", str(RULES))


def test_the_rules_unit_tests_pass():
    _promtool_run("test", "rules", str(RULES_TEST))


def test_the_example_scrape_config_is_valid_and_loads_the_rules():
    _promtool_run("check", "config", EXAMPLE_CONFIG.name, cwd=RULES_DIR)
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "indexer"]
    assert job["honor_labels"] is True


def test_every_alert_an_operator_needs_is_there_with_severity_duration_and_text():
    alerts = _alerts()
    assert ALERTS <= alerts.keys(), f"missing: {sorted(ALERTS - alerts.keys())}"
    for name, rule in alerts.items():
        assert "for" in rule, f"{name}: no `for:`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        annotations = rule.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        if any(s.startswith("indexer_") for s in _identifiers(rule["expr"])[0]):
            # over the daemon's series: the operator is told which job and which alias
            text = annotations["summary"] + annotations["description"]
            assert "$labels.job" in text and "$labels.alias" in text, name


def test_every_alert_is_tested_firing_and_quiet():
    cases = [case for test in yaml.safe_load(RULES_TEST.read_text())["tests"] for case in test["alert_rule_test"]]
    for name in _alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case["exp_alerts"] for case in mine), f"{name}: no test where it fires"
        assert any(not case["exp_alerts"] for case in mine), f"{name}: no test where it stays quiet"


def test_the_rules_name_only_metrics_the_daemon_exports():
    used = set()
    for rule in _rules():
        series, functions = _identifiers(rule["expr"])
        assert series <= SERIES, f"{rule.get('alert') or rule.get('record')}: unknown series {sorted(series - SERIES)}"
        used |= series
    assert "time" in _identifiers(_alerts()["IndexerJobNotSucceeding"]["expr"])[1]
    assert {"up", "indexer_last_success_timestamp_seconds", "indexer_watermark_lag_seconds"} <= used


def test_the_name_check_sees_a_renamed_metric():
    series, functions = _identifiers(
        'sum without(command, outcome) (increase(indexer_passes_total{outcome="failed", job=~"a.b"}[30m]))'
        ' + on(job, alias) increase(indexer_lease_lost_count[5m] offset 1h) > 1e3 unless absent(up{job="indexer"})')
    assert series == {"indexer_passes_total", "indexer_lease_lost_count", "up"}
    assert functions == {"sum", "increase", "absent"}
    assert not series <= SERIES
