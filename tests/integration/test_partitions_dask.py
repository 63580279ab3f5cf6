"""A partitioned reindex on a real Dask distributed cluster (``--cluster``): worker processes started
here by ``distributed.LocalCluster``, the real node, real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from pathlib import Path

import dask
import pytest
from distributed import Client, LocalCluster

from indexer import dask_runner
from indexer.dask_runner import run_on_dask
from indexer.errors import ConfigError
from indexer.jobfile import load_job
from indexer.partitions import plan_slices
from indexer.slices import SliceFailed, SliceTask
from tests.support import harness
from tests.support.harness import (
    alias_targets, documents, indices, pg_source, run_indexer, sensors_job, sqlite_rows, stalling_transform,
    start_indexer, wait_until,
)

# Only the coordinator's environment has this variable; the cluster's workers started without it.
COORDINATOR_ONLY_PASSWORD = "INDEXER_DASK_TEST_COORDINATOR_ONLY_PW"


def _cluster() -> LocalCluster:
    return LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0")


@pytest.fixture(scope="module")
def cluster():
    assert COORDINATOR_ONLY_PASSWORD not in os.environ
    with _cluster() as local:
        yield local.scheduler_address


def _reindex(job: Path, *extra: str, env: dict | None = None) -> dict:
    result = run_indexer("reindex", str(job), "--json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def _same_index_on_dask(tmp_path, target, alias, db, column, cluster) -> dict:
    """A plain reindex, then a reindex in three slices on the cluster: the same documents; the latter's summary."""
    job = sensors_job(tmp_path, db, target, alias, partition_by=column, chunk_size=250)
    plain = _reindex(job)
    expected = documents(alias)

    on_dask = _reindex(job, "--partitions", "3", "--cluster", cluster)

    assert alias_targets(alias) == [on_dask["index"]] != [plain["index"]]
    assert on_dask["indexed"] == plain["indexed"] == 3000 and on_dask["partitions"] == 3
    assert documents(alias) == expected
    return on_dask


def test_three_slices_on_dask_build_the_same_index_as_a_plain_reindex_sqlite(tmp_path, target, alias,
                                                                             sqlite_sensors, cluster):
    on_dask = _same_index_on_dask(tmp_path, target, alias, sqlite_sensors, "value", cluster)
    assert documents(alias) == sqlite_rows(sqlite_sensors)
    with Client(cluster) as client:  # the worker processes that ran slices (it said 0)
        assert 1 <= on_dask["workers"] <= len(client.run(os.getpid))


def test_three_slices_on_dask_build_the_same_index_as_a_plain_reindex_postgres(tmp_path, target, alias,
                                                                               pg_table, cluster):
    _same_index_on_dask(tmp_path, target, alias, pg_table, "date_updated", cluster)


def _paused_tasks(tmp_path: Path, target: dict, alias: str, db: Path) -> list[SliceTask]:
    """Three extraction-only slices (nothing sent) of about 1,000 rows, chunks of 250; in each worker process
    every chunk after the first one stalls until the file ``go`` exists."""
    job = load_job(sensors_job(tmp_path, db, target, alias, partition_by="value", chunk_size=250,
                               transform=stalling_transform(tmp_path, after=1)))
    return [SliceTask(job, s, None) for s in plan_slices(job, 3).slices]


def _told(client: Client, **run) -> list[bool]:
    """Whether each worker process has been told that a run stopped."""
    return list(client.run(lambda: bool(dask_runner._stopped), **run).values())


def test_rows_reach_the_coordinator_while_the_slices_run(tmp_path, target, alias, sqlite_sensors, cluster):
    tasks = _paused_tasks(tmp_path, target, alias, sqlite_sensors)
    reported, done = [], []
    runner = threading.Thread(target=lambda: done.append(run_on_dask(tasks, address=cluster, on_rows=reported.append)))
    runner.start()
    try:
        wait_until(lambda: sum(reported) > 0, "rows reported")
        assert not done  # rows arrived while no slice could finish
    finally:
        (tmp_path / "go").touch()
        runner.join(120)

    [results] = done
    assert [r.number for r in results] == [t.slice.number for t in tasks]
    assert sum(r.counts.rows_read for r in results) == sum(reported) == 3000


def test_a_stopped_run_stops_its_slices_at_their_next_chunk(tmp_path, target, alias, sqlite_sensors, cluster):
    tasks = _paused_tasks(tmp_path, target, alias, sqlite_sensors)
    reported, raised, stop = [], [], threading.Event()

    def run() -> None:
        try:
            run_on_dask(tasks, address=cluster, on_rows=reported.append, stop=stop)
        except SliceFailed as exc:
            raised.append(str(exc))

    runner = threading.Thread(target=run)
    runner.start()
    with Client(cluster) as client:
        try:
            wait_until(lambda: sum(reported) == 500, "the first chunk of the two running slices")
            stop.set()
            wait_until(lambda: all(_told(client)), "workers told")
        finally:
            (tmp_path / "go").touch()
            runner.join(120)
        assert not any(_told(client))  # forgotten once stopped

    assert raised == ["the run was stopped"]
    assert sum(reported) == 500  # the running slices stopped at their next chunk; the queued one never read


def _stalled_job(tmp_path: Path, target: dict, alias: str, db: Path) -> Path:
    """A 3-slice job whose slices stall on their first chunk (writing ``running-<pid>``) until the file
    ``go`` exists."""
    return sensors_job(tmp_path, db, target, alias, partition_by="value", partitions=3, chunk_size=100,
                       transform=stalling_transform(tmp_path))


def test_a_worker_killed_during_a_slice_has_it_rerun_and_the_index_is_exact(tmp_path, target, alias,
                                                                            sqlite_sensors):
    job = _stalled_job(tmp_path, target, alias, sqlite_sensors)
    with _cluster() as local, Client(local.scheduler_address) as client:  # its own cluster: one worker dies
        workers = set(client.run(os.getpid).values())
        run = start_indexer("reindex", str(job), "--json", "--cluster", local.scheduler_address)
        try:
            victim = _running_worker(tmp_path, workers)
            os.kill(victim, signal.SIGKILL)
            (tmp_path / "go").touch()
            out, err = run.communicate(timeout=180)
        finally:
            run.kill()
        client.wait_for_workers(2, timeout=60)  # the nanny started a new process in place of the victim
        assert victim not in client.run(os.getpid).values()

    assert run.returncode == 0, err
    summary = json.loads(out)
    assert alias_targets(alias) == [summary["index"]]
    assert documents(alias) == sqlite_rows(sqlite_sensors)


def test_a_slice_whose_workers_keep_dying_fails_the_run_and_leaves_no_index(tmp_path, target, alias, sqlite_sensors):
    job = _stalled_job(tmp_path, target, alias, sqlite_sensors)
    # No worker death allowed: the first one fails its slice for good (Dask's default allows 3).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), _cluster() as local, \
            Client(local.scheduler_address) as client:
        workers = set(client.run(os.getpid).values())
        run = start_indexer("reindex", str(job), "--cluster", local.scheduler_address)
        try:
            os.kill(_running_worker(tmp_path, workers), signal.SIGKILL)
            wait_until(lambda: any(_told(client, on_error="ignore")), "the surviving worker told")
        finally:
            (tmp_path / "go").touch()
            out, err = run.communicate(timeout=120)

    assert run.returncode == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "failed after 1 attempt(s): the worker processes running it died" in lines[0], err
    assert alias_targets(alias) == [] and indices(f"{alias}-*") == []


def test_ctrl_c_in_the_coordinator_stops_the_slices_and_leaves_no_index(tmp_path, target, alias, sqlite_sensors,
                                                                       cluster):
    job = _stalled_job(tmp_path, target, alias, sqlite_sensors)
    with Client(cluster) as client:
        workers = set(client.run(os.getpid).values())
        run = start_indexer("reindex", str(job), "--cluster", cluster)
        try:
            _running_worker(tmp_path, workers)
            run.send_signal(signal.SIGINT)
            wait_until(lambda: all(_told(client)), "workers told")
        finally:
            (tmp_path / "go").touch()
            out, err = run.communicate(timeout=120)

    assert run.returncode == 130, err
    assert alias_targets(alias) == [] and indices(f"{alias}-*") == []


def _running_worker(folder: Path, workers: set[int]) -> int:
    """The pid of a worker process that is in the middle of a slice (stalled in its transform)."""
    running = wait_until(lambda: [pid for pid in (int(p.name.split("-")[1]) for p in folder.glob("running-*"))
                                  if pid in workers], "a slice started on a worker")
    return running[0]


def test_a_slice_that_fails_for_good_fails_the_run_and_the_alias_stays(tmp_path, target, alias, sqlite_sensors,
                                                                      cluster):
    # The transform refuses one row: its slice fails on every attempt, wherever it runs.
    (tmp_path / "refuse.py").write_text(
        "def refuse(docs):\n"
        "    if any(d['code'] == 'SEN0001500' for d in docs):\n"
        "        raise ValueError('row SEN0001500 refused')\n"
        "    return docs\n")
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, partition_by="value")
    before = _reindex(job)
    sensors_job(tmp_path, sqlite_sensors, target, alias, partition_by="value", transform="refuse:refuse")

    result = run_indexer("reindex", str(job), "--partitions", "3", "--cluster", cluster)

    assert result.returncode == 1, result.stderr
    lines = _error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "slice" in lines[0] and "value >=" in lines[0] and "failed after 3 attempt(s)" in lines[0], lines[0]
    assert "row SEN0001500 refused" in lines[0]
    assert alias_targets(alias) == [before["index"]]
    assert indices(f"{alias}-*") == [before["index"]]  # the partial index is gone


def test_a_password_variable_missing_on_the_workers_fails_at_once_naming_it(tmp_path, target, alias, pg_table,
                                                                            cluster):
    # The job's password variable exists only where the coordinator runs, not in the workers'
    # environment: no retry can help, so the run fails after one attempt, naming the variable only.
    password = os.environ[harness.PG_PASSWORD_ENV]
    env = {COORDINATOR_ONLY_PASSWORD: password}
    job = sensors_job(tmp_path, pg_table, target, alias, partition_by="date_updated",
                      source={**pg_source(), "password_env": COORDINATOR_ONLY_PASSWORD})
    before = _reindex(job, env=env)

    result = run_indexer("reindex", str(job), "--partitions", "3", "--cluster", cluster, env=env)

    assert result.returncode == 2, result.stderr  # a ConfigError's exit code: the environment is wrong
    lines = _error_lines(result)
    assert len(lines) == 1, result.stderr
    assert "failed after 1 attempt(s)" in lines[0] and COORDINATOR_ONLY_PASSWORD in lines[0], lines[0]
    assert password not in result.stderr + result.stdout
    assert alias_targets(alias) == [before["index"]]
    assert indices(f"{alias}-*") == [before["index"]]


def test_an_unreachable_scheduler_is_one_line_and_nothing_is_written(tmp_path, target, alias, sqlite_sensors):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, partition_by="value", partitions=2,
                      cluster=f"tcp://127.0.0.1:{port}")

    result = run_indexer("reindex", str(job))

    assert result.returncode == 1, result.stdout
    lines = _error_lines(result)
    assert len(lines) == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in lines[0], result.stderr
    assert alias_targets(alias) == [] and indices(f"{alias}-*") == []


def test_without_dask_installed_cluster_is_one_config_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` meets without the extra
    with pytest.raises(ConfigError, match=r"^--cluster needs Dask: pip install 'indexer\[dask\]'$"):
        run_on_dask([], address="tcp://127.0.0.1:8786", on_rows=lambda n: None)
