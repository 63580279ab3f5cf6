"""`reconcile` by content (job.digest, issue 21) against the real node, SQLite and PostgreSQL: a row changed in the
source behind the index's back is found (``changed``) and re-indexed equal to its row, then compares unchanged;
documents indexed before digest was on are all changed once, then never; every document carries the digest of
its own body; a strict mapping without the field is one clear error. Without digest: test_reconcile.py."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest

from indexer import digest
from indexer.commands.reconcile import reconcile
from indexer.jobfile import load_job
from tests.support.harness import SENSORS, documents, http, pg_documents, run_indexer, sensors_job, sql, sqlite_rows


def _reindex(job) -> dict:
    result = run_indexer("reindex", str(job), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _reconcile(job, **options):
    return asyncio.run(reconcile(load_job(job), **options))


def _stamped(alias) -> dict[str, dict]:
    """The alias's documents without their digest, each digest checked against the document's own bytes."""
    found = {}
    for id_, doc in documents(alias).items():
        stored = doc.pop(digest.FIELD)
        assert stored == digest.of(orjson.dumps(doc)), id_  # the body as sent, without the field
        found[id_] = doc
    return found


def _adds_up(s) -> None:
    assert s.compared == s.unchanged + s.changed + s.to_delete + s.to_index
    assert s.in_source == s.unchanged + s.changed + s.to_index and s.in_index == s.unchanged + s.changed + s.to_delete


def test_a_row_changed_behind_the_index_is_found_and_re_indexed_sqlite(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, digest=True, chunk_size=700)
    _reindex(job)
    assert _stamped(alias) == sqlite_rows(sqlite_sensors)
    sql(sqlite_sensors, "UPDATE sensors SET description = 'moved to the roof' WHERE code = 'SEN0000042'")  # no sync
    sql(sqlite_sensors, "DELETE FROM sensors WHERE code = 'SEN0000007'")
    http("DELETE", f"/{alias}/_doc/SEN0000009?refresh=true")

    summary = _reconcile(job)

    n = summary.counts.numbers()
    assert (summary.changed, summary.to_delete, summary.to_index, summary.unchanged) == (1, 1, 1, 2997)
    assert summary.sample_changed == ["SEN0000042"] and summary.digest
    assert (n["indexed"], n["deleted"], n["failed"]) == (2, 1, 0)
    _adds_up(summary)
    after = _stamped(alias)
    assert after["SEN0000042"]["description"] == "moved to the roof"
    assert after == sqlite_rows(sqlite_sensors)                             # every document, compared

    again = _reconcile(job)
    assert (again.changed, again.unchanged, again.counts.numbers()["sent"]) == (0, 2999, 0)


def test_a_row_changed_behind_the_index_is_found_and_re_indexed_postgres(tmp_path, target, alias, pg_table,
                                                                        pg_tables):
    job = sensors_job(tmp_path, pg_table, target, alias, digest=True, chunk_size=1000)
    _reindex(job)
    pg_tables.execute(f"UPDATE {pg_table} SET value = value + 1000 WHERE code = 'SEN0000100'")

    dry = _reconcile(job, dry_run=True)
    assert (dry.changed, dry.unchanged, dry.sample_changed) == (1, 2999, ["SEN0000100"])
    assert dry.counts.numbers()["sent"] == 0

    summary = _reconcile(job)

    assert (summary.changed, summary.counts.numbers()["indexed"]) == (1, 1)
    _adds_up(summary)
    assert _stamped(alias) == pg_documents(pg_tables.conn, pg_table)
    assert _reconcile(job).changed == 0


def test_documents_indexed_before_digest_was_on_are_changed_once_then_never(tmp_path, target, alias, sqlite_sensors):
    plain = sensors_job(tmp_path, sqlite_sensors, target, alias)
    _reindex(plain)
    assert not any(digest.FIELD in doc for doc in documents(alias).values())
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, digest=True, name="digest.toml")

    first = _reconcile(job)

    assert (first.changed, first.unchanged, first.to_delete, first.counts.numbers()["indexed"]) == (3000, 0, 0, 3000)
    assert _stamped(alias) == sqlite_rows(sqlite_sensors)
    assert _reconcile(job).changed == 0
    assert _reconcile(plain).unchanged == 3000             # without digest: ids only, the digests ignored


def test_what_sync_writes_carries_the_same_digest_as_a_reindex(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, synced=True, digest=True)
    _reindex(job)
    sql(sqlite_sensors, "UPDATE sensors SET value = 1.5, date_updated = '2030-01-01 00:00:00' WHERE code = 'SEN0000005'")
    synced = run_indexer("sync", str(job), "--json")
    assert synced.returncode == 0 and json.loads(synced.stdout)["indexed"] == 1, synced.stderr
    assert _stamped(alias)["SEN0000005"]["value"] == 1.5

    summary = _reconcile(job)
    assert (summary.changed, summary.unchanged) == (0, 3000)


def test_the_cli_reports_changed_in_its_line_and_its_json(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, digest=True)
    _reindex(job)
    sql(sqlite_sensors, "UPDATE sensors SET site = 'ELSEWHERE' WHERE code IN ('SEN0000001', 'SEN0000002')")

    text = run_indexer("reconcile", str(job), "--dry-run")
    assert text.returncode == 0, text.stderr
    assert "compared 3000 ids = 2998 unchanged + 2 changed + 0 to delete + 0 to index" in text.stdout
    assert "changed, e.g.: 'SEN0000001', 'SEN0000002'" in text.stdout
    done = run_indexer("reconcile", str(job), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["changed"], summary["sample_changed"], summary["indexed"]) == (2, ["SEN0000001", "SEN0000002"], 2)


@pytest.fixture
def strict(alias):
    """An index template for ``<alias>-*`` whose strict mapping lacks indexer_digest; deleted afterwards."""
    properties = {c: {"type": "keyword"} for c in SENSORS.split(", ")} | {"value": {"type": "double"}}
    status, body = http("PUT", f"/_index_template/{alias}", {
        "index_patterns": [f"{alias}-*"], "priority": 500,
        "template": {"mappings": {"dynamic": "strict", "properties": properties}}})
    assert status == 200, body
    yield properties
    http("DELETE", f"/_index_template/{alias}")


def test_a_strict_mapping_without_the_field_refuses_every_document_in_one_clear_line(tmp_path, target, alias,
                                                                                    sqlite_sensors, strict):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, digest=True)
    result = run_indexer("reindex", str(job))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "mapping set to strict, dynamic introduction of [indexer_digest]" in result.stderr
    assert "stopped before any alias swap" in result.stderr
