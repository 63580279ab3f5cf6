"""`indexer reconcile` through the CLI: exit codes, one-line refusals, --dry-run, --json, --temp-dir,
`status`, and `sync --every` running a reconcile at `reconcile_every`."""

from __future__ import annotations

import json
import signal

from tests.support.harness import (
    count, document, documents, run_indexer, sensors_job, sql, sqlite_rows, start_indexer, wait_until,
)


def test_the_command_repairs_refuses_in_one_line_and_dry_runs(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    assert run_indexer("reindex", str(job)).returncode == 0
    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid % 10 = 0")
    spill = tmp_path / "spill"
    spill.mkdir()

    dry = run_indexer("reconcile", str(job), "--dry-run", "--temp-dir", str(spill))
    assert dry.returncode == 0, dry.stderr
    assert "compared 3000 ids = 2700 unchanged + 300 to delete + 0 to index" in dry.stdout
    assert "to delete, e.g.: 'SEN0000010', 'SEN0000020'" in dry.stdout and "dry run: nothing written" in dry.stdout
    assert count(alias) == 3000

    done = run_indexer("reconcile", str(job), "--json", "--temp-dir", str(spill))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["command"], summary["deleted"], summary["compared"]) == ("reconcile", 300, 3000)
    assert documents(alias) == sqlite_rows(sqlite_sensors) and list(spill.iterdir()) == []

    status = run_indexer("status", str(job))
    assert "last reconcile: ok at " in status.stdout and "300 deleted, 0 indexed" in status.stdout

    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid > 1000")
    refused = run_indexer("reconcile", str(job))
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: reconcile refused: 1800 of the 2700")
    assert count(alias) == 2700
    forced = run_indexer("reconcile", str(job), "--force")
    assert forced.returncode == 0 and count(alias) == 900


def test_a_failed_dry_run_says_it_was_one_in_its_json(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)  # never reindexed: the alias does not exist
    failed = run_indexer("reconcile", str(job), "--dry-run", "--json")
    assert failed.returncode == 1 and failed.stderr.count("\n") == 1 and "does not exist" in failed.stderr
    summary = json.loads(failed.stdout)
    assert (summary["command"], summary["outcome"], summary["dry_run"]) == ("reconcile", "failed", True)


def test_sync_every_runs_a_reconcile_at_reconcile_every(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, watermark="date_updated", reconcile_every="1h")
    assert run_indexer("reindex", str(job)).returncode == 0
    sql(sqlite_sensors, "DELETE FROM sensors WHERE rowid % 10 = 0")
    watch = start_indexer("sync", str(job), "--every", "1s", "--no-progress")
    wait_until(lambda: count(alias) == 2700, "the reconcile deleting the 300 rows gone", watch)
    for n in (1, 2):  # two more sync passes, each seen by the change it indexed; no second reconcile within the hour
        sql(sqlite_sensors, f"UPDATE sensors SET value = -{n}, date_updated = '2030-01-0{n} 00:00:00' "
                            "WHERE code = 'SEN0000001'")
        wait_until(lambda n=n: document(alias, "SEN0000001")["value"] == -n, f"sync pass {n} after the reconcile",
                   watch)
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    assert out.count("reconcile ") == 1 and out.count("sync ") >= 2
    assert count(alias) == 2700
