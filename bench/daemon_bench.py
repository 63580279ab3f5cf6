"""The daemon benchmark of issue 20: the CPU a document costs with metrics on and off, and memory with 1-50 jobs.

    python bench/daemon_bench.py                          # 100,000 changed rows x 7 rounds; 1, 10, 50 jobs
    python bench/daemon_bench.py --quick                  # 5,000 rows x 1 round; 1 and 3 jobs: does it work?
    python bench/daemon_bench.py --append BENCHMARKS.md   # also append the section (make bench)

1. Metrics on vs off, side by side: a SQLite table of ROWS rows, reindexed once; then, round after round, every
   row changed (a new watermark) and one ``indexer sync JOB --every 1h`` pass run in a child process, which
   the bench ends with SIGTERM once its first pass is logged. "on" adds ``--metrics-port`` and a scraper
   reading /metrics every second while it runs (as Prometheus would): the observer and the server thread;
   "count" adds ``--count-pending`` too (one COUNT(*) over the sync window per pass, in-process on SQLite).
   Its CPU (user + system, from ``os.wait4``) divided by the rows sent; the three in turn, the order rotated
   every round; medians and the per-round ratios to off. Target: on/off <= 1.03.
2. Memory with N jobs: N job files over N tables of ROWS_PER_JOB rows in one SQLite file, each reindexed;
   ``indexer sync DIR --every 2s --metrics-port P`` runs until every job has had 3 passes, every table's rows
   changed once meanwhile (so each job sends its rows); then its VmHWM (peak RSS) from /proc.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
URL = f"http://127.0.0.1:{os.environ.get('ENGINE_PORT', '9200')}"


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("INDEXER_URL", None)
    return env


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the local daemon
            return resp.read().decode()
    except OSError:
        return ""


def _table(db: Path, name: str, rows: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.execute(f"CREATE TABLE {name} (code TEXT PRIMARY KEY, description TEXT, site TEXT, value REAL, "
                     "date_updated TEXT, is_deleted INTEGER DEFAULT 0)")
        conn.executemany(f"INSERT INTO {name} VALUES (?, ?, ?, ?, '2024-01-01 00:00:00', 0)",
                         ((f"SEN{i:07d}", f"sensor {i} of the bench", f"SITE{i % 50}", i * 0.5) for i in range(rows)))


def _touch(db: Path, name: str, stamp: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(f"UPDATE {name} SET value = value + 1, date_updated = ?", (stamp,))


def _job(folder: Path, db: Path, table: str, alias: str) -> Path:
    path = folder / f"{alias}.toml"
    path.write_text(f'[source]\ndbtype = "SQLITE"\nfilename = "{db}"\n[target]\nurl = "{URL}"\n[job]\n'
                    f'alias = "{alias}"\nkey = ["code"]\nwatermark = "date_updated"\ndeleted = "is_deleted"\n'
                    f'lookback = 0\nchunk_size = 5000\nquery = "SELECT code, description, site, value, '
                    f'date_updated, is_deleted FROM {table}"\n')
    return path


def _run(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "indexer.cli", *args], capture_output=True, text=True, env=_env(),
                          cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"daemon_bench: indexer {args[0]} failed: {done.stderr.strip()}")


def _delete(pattern: str) -> None:
    req = urllib.request.Request(f"{URL}/{pattern}?expand_wildcards=all&ignore_unavailable=true", method="DELETE")
    urllib.request.urlopen(req, timeout=60).read()  # noqa: S310 - the local node


VARIANTS = {"off": [], "on": ["--metrics-port"], "count": ["--metrics-port", "--count-pending"]}


def one_pass(job: Path, variant: str) -> tuple[float, int]:
    """One sync pass in a child (``variant``: off, on = --metrics-port scraped every second, count = on with
    --count-pending); (its CPU seconds, rows it sent)."""
    port = _port()
    extra = list(VARIANTS[variant])
    if "--metrics-port" in extra:
        extra.insert(extra.index("--metrics-port") + 1, str(port))
    proc = subprocess.Popen([sys.executable, "-m", "indexer.cli", "sync", str(job), "--every", "1h", "--json",
                             "--no-progress", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=ROOT)
    stop = threading.Event()
    if variant != "off":
        def scrape() -> None:
            while not stop.wait(1.0):
                _get(f"http://127.0.0.1:{port}/metrics")
        threading.Thread(target=scrape, daemon=True).start()
    line = proc.stdout.readline() if proc.stdout else ""
    stop.set()
    proc.send_signal(signal.SIGTERM)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or not line:
        sys.exit(f"daemon_bench: sync failed ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}")
    summary = json.loads(line)
    return usage.ru_utime + usage.ru_stime, summary["sent"]


def cpu_rounds(folder: Path, rows: int, rounds: int) -> dict:
    """Rounds of the three variants, the order rotated every round; medians and per-round ratios to off."""
    db = folder / "cpu.db"
    _table(db, "sensors", rows)
    job = _job(folder, db, "sensors", "bench-daemon-cpu")
    _run("reindex", str(job), "--no-progress")
    names = list(VARIANTS)
    costs: dict[str, list[float]] = {v: [] for v in names}
    passes = 0
    for i in range(rounds):
        for variant in names[i % 3:] + names[:i % 3]:
            passes += 1  # every pass a later watermark than the last
            _touch(db, "sensors", f"2025-01-01 {passes // 60:02d}:{passes % 60:02d}:00")
            cpu, sent = one_pass(job, variant)
            if sent != rows:
                sys.exit(f"daemon_bench: a pass sent {sent} of {rows} rows")
            costs[variant].append(cpu / sent * 1e6)  # microseconds per document
        print(f"round {i + 1}: " + ", ".join(f"{v} {costs[v][-1]:.1f} us/doc" for v in names), flush=True)
    _delete("bench-daemon-cpu*")
    ratios = {v: [c / o for c, o in zip(costs[v], costs["off"], strict=True)] for v in ("on", "count")}
    return {"rows": rows, "rounds": rounds, **{v: statistics.median(costs[v]) for v in names},
            "ratio": {v: statistics.median(r) for v, r in ratios.items()}, "ratios": ratios}


def memory(folder: Path, jobs: int, rows: int) -> dict:
    where = folder / f"mem{jobs}"
    where.mkdir()
    db = where / "tables.db"
    names = [f"t{i:02d}" for i in range(jobs)]
    for name in names:
        _table(db, name, rows)
    files = [_job(where, db, name, f"bench-daemon-mem-{name}") for name in names]
    for job in files:
        _run("reindex", str(job), "--no-progress")
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "indexer.cli", "sync", str(where), "--every", "2s",
                             "--metrics-port", str(port), "--no-progress"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    started = time.monotonic()

    def passes() -> list[float]:
        text = _get(f"http://127.0.0.1:{port}/metrics")
        return [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("indexer_passes_total{") and 'outcome="ok"' in line]

    time.sleep(3)
    for name in names:
        _touch(db, name, "2025-06-01 00:00:00")
    while len(found := passes()) < jobs or min(found) < 3:
        if proc.poll() is not None or time.monotonic() - started > 900:
            proc.kill()
            sys.exit(f"daemon_bench: the {jobs}-job daemon did not pass 3 times: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)
    status = Path(f"/proc/{proc.pid}/status").read_text()
    fields = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines() if line.startswith("Vm")}
    threads = len(os.listdir(f"/proc/{proc.pid}/task"))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    for name in names:
        _delete(f"bench-daemon-mem-{name}*")
    return {"jobs": jobs, "rows": rows, "peak_mib": fields["VmHWM"] / 1024, "rss_mib": fields["VmRSS"] / 1024,
            "threads": threads, "exit": proc.returncode}


def report(cpu: dict, mems: list[dict]) -> str:
    def ratios(v: str) -> str:
        return ", ".join(f"{r:.3f}" for r in cpu["ratios"][v])

    lines = [f"Metrics on vs off: one `sync` pass of {cpu['rows']:,} changed rows (SQLite, the OpenSearch node), "
             f"{cpu['rounds']} rounds of the three, the order rotated each round; CPU of the indexer process "
             "(its start included) per document sent.", "",
             "| metrics | CPU us/doc (median) | / off, median of the per-round ratios |", "|---|---:|---:|",
             f"| off | {cpu['off']:.1f} | |",
             f"| on: `--metrics-port`, scraped every 1 s | {cpu['on']:.1f} | **{cpu['ratio']['on']:.3f}** |",
             f"| on with `--count-pending` (a COUNT(*) per pass, in-process on SQLite) | {cpu['count']:.1f} | "
             f"{cpu['ratio']['count']:.3f} |", "",
             f"Per-round ratios: on {ratios('on')}; with the count {ratios('count')}. Target: metrics on <= 1.03 x "
             f"off: {'met' if cpu['ratio']['on'] <= 1.03 else 'NOT met'}.", "",
             "Memory: `sync DIR --every 2s --metrics-port P` with N jobs (one table of "
             f"{mems[0]['rows']:,} rows each, all changed once), after every job's 3rd successful pass.", "",
             "| jobs | peak RSS MiB | RSS MiB | threads | exit on SIGTERM |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {m['jobs']} | {m['peak_mib']:.1f} | {m['rss_mib']:.1f} | {m['threads']} | {m['exit']} |"
              for m in mems]
    first, last = mems[0], mems[-1]
    per_job = (last["peak_mib"] - first["peak_mib"]) / (last["jobs"] - 1)
    lines += ["", f"peak RSS per job beyond the first: {per_job:.2f} MiB ({first['jobs']} -> {last['jobs']} jobs)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: does it work?")
    parser.add_argument("--append", type=Path, help="also append the section, with the machine and date, to this file")
    args = parser.parse_args()
    rows, rounds, jobs, per_job = (5_000, 1, [1, 3], 500) if args.quick else (100_000, 7, [1, 10, 50], 2_000)
    with tempfile.TemporaryDirectory(prefix="daemon-bench-") as folder:
        cpu = cpu_rounds(Path(folder), rows, rounds)
        mems = [memory(Path(folder), n, per_job) for n in jobs]
    table = report(cpu, mems)
    print(table)
    if args.append:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with args.append.open("a", encoding="utf-8") as fh:
            fh.write(f"\n## Daemon (issue 20)\n\n{when}; {platform.machine()}, {os.cpu_count()} cores, "
                     f"Python {platform.python_version()}; `python -m indexer.cli sync` as a child process.\n\n"
                     f"{table}\n")


if __name__ == "__main__":
    main()
