"""The partitions benchmark of issue 12: a partitioned reindex with 1 and 2 workers, and the CPU of every process.

    python bench/partitions_bench.py                          # 1,000,000 rows, SQLite and PostgreSQL, medians of 3
    python bench/partitions_bench.py --quick                  # 20,000 rows, one run each: does everything work?
    python bench/partitions_bench.py --append BENCHMARKS.md   # also put the section into that file (make bench)
    python bench/partitions_bench.py --sources sqlite --repeat 5

Four measurements, each with 1 and 2 workers (``--partitions N --workers N``), on SQLite and PostgreSQL:

* extract:    the slices read and encode, nothing is sent (``slices.run_local`` with ``index=None``);
* sink:       the slices also send, into bench/free_sink.py, which answers every action "created" and
              stores nothing: the client side alone;
* e2e:        ``indexer reindex --partitions N --workers N`` through the CLI into the local node;
* e2e_pinned: the same with the engine's JVM pinned to CPU 0 (``taskset -a -p``, restored afterwards)
              and the indexer to CPU 1 (``taskset -c 1``), so the engine's CPU and the client's are apart.

Every run is a child process started by bench/run.py's launcher (wall time; CPU and peak RSS of the
process and its reaped worker processes from ``os.wait4``). Beside it: each slice's wall and CPU seconds
(``SliceResult``), the PostgreSQL server's CPU (the postmaster, its live children and its reaped ones,
from /proc), the engine JVM's and the free sink's (from /proc). Runs are interleaved (A, B, C, A, B, C)
and medians reported; every run must account for exactly all rows or the benchmark stops.

The partition column: the bench tables (bench/run.py) have no integer column (``code`` is text,
``SEN0000001``); ``date_updated`` is random, so its ranges would be read through its index in random
order. This benchmark copies them once into tables with ``id``, the number in ``code``, as the
integer primary key (in SQLite the rowid itself: a slice is one range seek), reused while the row
count matches. The documents gain the field ``id`` (the template ``bench-part`` maps it).

(About 700 lines, over the usual 350: the data, the measuring (with its /proc readers) and the report of one
benchmark section, as bench/run.py holds its own; the measured child, ``slices_child``, is 30 lines here
so that the spawned workers need no script of their own.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import resource
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from baselines import Cluster, check_bench_name, process_cpu  # noqa: E402  (bench/ is this script's folder)
from run import (  # noqa: E402
    DATA,
    SOURCE_NAMES,
    Failed,
    check_indexer,
    engine_pid,
    ensure_data,
    environment,
    fmt,
    last_json,
    log,
    pg_connect,
    pg_settings,
    pg_table,
    run_child,
    size_label,
    sqlite_file,
    verdict,
)

ALIASES = {"sqlite": "bench-part-sqlite", "pg": "bench-part-pg"}
SINK_INDEX = "bench-part-sink"
QUERY = "SELECT id, code, description, site, value, date_updated FROM {table}"
TEMPLATE = "bench-part"
SECTION = "## Partitioned reindex (issue 12)"
KINDS = ("extract", "sink", "e2e", "e2e_pinned")
WORKERS = (1, 2)
TARGET_RATIO = 1.7  # SQLite, extraction only: 2 workers / 1 worker
RATES = (50_000, 100_000, 250_000, 500_000)
CLK = os.sysconf("SC_CLK_TCK")
# The measured child for extract/sink: a `-c` program, so that spawned workers do not re-import a main script.
CHILD = f"import sys; sys.path.insert(0, {str(HERE)!r}); from partitions_bench import slices_child; slices_child(sys.argv[1:])"


# ------------------------------------------------------------------ the measured child (extract, sink)


def slices_child(argv: list[str]) -> None:
    """Plan ``--workers`` slices of the job, run them with ``run_local``, check the rows, print one JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("job")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--index", help="send into this index (the free sink); without it: extraction only")
    args = p.parse_args(argv)
    from indexer import tune_gc
    from indexer.jobfile import load_job
    from indexer.local_runner import run_local
    from indexer.partitions import plan_slices
    from indexer.slices import SliceTask

    def cpu() -> float:  # this process and its reaped children (the pool's workers, once it has shut down)
        return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))

    tune_gc()  # as the command line sets up its process
    job = load_job(args.job)
    started, cpu0 = time.perf_counter(), cpu()
    plan = plan_slices(job, args.workers)
    results = run_local([SliceTask(job, s, args.index) for s in plan.slices], workers=args.workers,
                        on_rows=lambda n: None)
    seconds, client_cpu = time.perf_counter() - started, cpu() - cpu0
    totals = {f: sum(r.counts.numbers()[f] for r in results) for f in ("rows_read", "sent", "indexed")}
    totals |= {"dead": sum(r.counts.dead_lettered for r in results), "slices": len(results),
               "retried": sum(r.attempts > 1 for r in results)}  # a rerun slice's timings would not be one run's
    expected = {"rows_read": args.rows, "sent": args.rows, "indexed": args.rows if args.index else 0, "dead": 0,
                "slices": args.workers, "retried": 0}
    if totals != expected:
        raise SystemExit(f"slices of {args.job}: {totals}, expected {expected}")
    print(json.dumps({"docs": totals["rows_read"], "seconds": seconds, "client_cpu": client_cpu, "slices": [
        {"number": r.number, "rows": r.counts.rows_read, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds,
         "nbytes": r.nbytes, "attempts": r.attempts} for r in results]}))


# ------------------------------------------------------------------ data, job files, template


def id_file(rows: int) -> Path:
    return DATA / f"sensors-{size_label(rows)}-id.db"


def id_table(rows: int) -> str:
    return f"bench_sensors_{size_label(rows)}_id"


def id_rows(source: str, rows: int) -> int | None:
    if source == "sqlite":
        if not id_file(rows).is_file():
            return None
        with contextlib.closing(sqlite3.connect(f"file:{id_file(rows)}?mode=ro", uri=True)) as conn:
            return conn.execute("SELECT COUNT(*) FROM sensors").fetchone()[0]
    with pg_connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (id_table(rows),))
        if cur.fetchone()[0] is None:
            return None
        cur.execute(f"SELECT COUNT(*) FROM {id_table(rows)}")
        return cur.fetchone()[0]


COPY_COLUMNS = "code, description, site, value, date_updated, is_deleted"


def ensure_id_data(source: str, rows: int, env: dict[str, str]) -> str:
    """bench/run.py's table of ``rows`` sensors, copied once with ``id`` (the number in ``code``) as primary key."""
    if id_rows(source, rows) == rows:
        return "reused"
    base = ensure_data(source, rows, env)
    started = time.perf_counter()
    if source == "sqlite":
        tmp = id_file(rows).with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with contextlib.closing(sqlite3.connect(tmp)) as conn:
            conn.execute("ATTACH DATABASE ? AS base", (str(sqlite_file(rows)),))
            conn.execute("CREATE TABLE sensors (id INTEGER PRIMARY KEY, code TEXT NOT NULL, description TEXT, site TEXT, "
                         "value REAL, date_updated TEXT NOT NULL, is_deleted INTEGER NOT NULL DEFAULT 0)")
            conn.execute(f"INSERT INTO sensors SELECT CAST(substr(code, 4) AS INTEGER), {COPY_COLUMNS} "
                         "FROM base.sensors ORDER BY 1")
            conn.commit()
        tmp.replace(id_file(rows))
    else:
        table = id_table(rows)
        with pg_connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
            cur.execute(f"CREATE TABLE {table} AS SELECT CAST(substr(code, 4) AS bigint) AS id, {COPY_COLUMNS} "
                        f"FROM {pg_table(rows)} ORDER BY 1")
            cur.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
            cur.execute(f"ANALYZE {table}")
    if id_rows(source, rows) != rows:
        raise SystemExit(f"copying {rows} rows with an id in {source} did not give {rows} rows")
    return f"base table {base}; copied with id in {time.perf_counter() - started:.0f} s"


def write_job(source: str, rows: int, url: str, name: str) -> Path:
    lines = ["# written by bench/partitions_bench.py; regenerated on every run", "[source]"]
    if source == "sqlite":
        lines += ['dbtype = "SQLITE"', f"filename = {json.dumps(str(id_file(rows)))}"]
        table = "sensors"
    else:
        s = pg_settings()
        lines += ['dbtype = "PG"', f'host = "{s["host"]}"', f"port = {s['port']}", f'dbname = "{s["dbname"]}"',
                  f'user = "{s["user"]}"', 'password_env = "PG_PASSWORD"']
        table = id_table(rows)
    lines += ["", "[target]", f"url = {json.dumps(url)}", 'engine = "opensearch"', "",
              "[job]", f'alias = "{ALIASES[source]}"', 'key = ["code"]', f'query = "{QUERY.format(table=table)}"',
              'partition_by = "id"', "keep = 0"]
    path = DATA / "jobs" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def install_template(cluster: Cluster) -> None:
    """PUT /_index_template/bench-part: bench-part-* get bench/run.py's template plus ``id`` (long)."""
    mappings = json.loads((ROOT / "mappings/component/sensors-mappings.json").read_text())["template"]["mappings"]
    mappings = {**mappings, "properties": {**mappings["properties"], "id": {"type": "long"}}}
    settings = json.loads((ROOT / "mappings/component/sensors-settings.json").read_text())["template"]["settings"]
    settings = {**settings, "number_of_shards": 1, "number_of_replicas": 0}
    cluster.call("PUT", f"/_index_template/{TEMPLATE}", {
        "index_patterns": ["bench-part-*"], "priority": 600, "template": {"settings": settings, "mappings": mappings},
        "_meta": {"managed_by": "bench/partitions_bench.py", "description": "issue 12 benchmark indices"}})
    got = cluster.call("POST", "/_index_template/_simulate_index/bench-part-check")["template"]
    if "id" not in got["mappings"]["properties"] or str(got["settings"]["index"].get("number_of_replicas")) != "0":
        raise SystemExit(f"the bench-part template does not apply as expected: {got}")


def drop_indices(cluster: Cluster, pattern: str = "bench-part-*") -> None:
    for index in cluster.indices(pattern):
        check_bench_name(index)
        cluster.delete(index)
    for path in (DATA / "state").glob("bench-part-*.json*"):
        path.unlink()


# ------------------------------------------------------------------ other processes' CPU


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [0] state, [1] ppid, [11] utime ... [14] cstime."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


@functools.cache
def postmaster_pid() -> int | None:
    """The local PostgreSQL server's postmaster: the parent of the backend that serves a connection of ours."""
    with contextlib.closing(pg_connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        backend = stat_fields(pid)  # while the connection, so the backend, lives
        if backend is None or not Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
            return None  # the server is not on this machine
    return int(backend[1])


def server_cpu(pid: int | None) -> float | None:
    """CPU seconds of a server and all its child processes so far: the postmaster's own, its live children's,
    and (cutime/cstime) those it has reaped, so backends that came and went during a run are counted."""
    own = stat_fields(pid) if pid else None
    if own is None:
        return None
    ticks = sum(int(own[i]) for i in (11, 12, 13, 14))
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (kid := stat_fields(int(entry.name))) and kid[1] == str(pid):
            ticks += sum(int(kid[i]) for i in (11, 12, 13, 14))
    return ticks / CLK


def delta(before: float | None, after: float | None) -> float | None:
    return after - before if before is not None and after is not None else None


@contextlib.contextmanager
def engine_on_cpu0(pid: int):
    """Every thread of the engine's JVM on CPU 0 for the duration; its affinity restored afterwards."""
    before = ",".join(map(str, sorted(os.sched_getaffinity(pid))))
    subprocess.run(["taskset", "-a", "-p", "-c", "0", str(pid)], check=True, stdout=subprocess.DEVNULL)
    try:
        if os.sched_getaffinity(pid) != {0}:
            raise Failed(f"taskset did not pin the engine (pid {pid}) to CPU 0")
        yield
    finally:
        subprocess.run(["taskset", "-a", "-p", "-c", before, str(pid)], check=True, stdout=subprocess.DEVNULL)


class Sink:
    """bench/free_sink.py in its own process, on a free port; its CPU and counters are read around each run."""

    def __enter__(self) -> Sink:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "free_sink.py")], cwd=ROOT, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.url = (self.proc.stdout.readline() if self.proc.stdout else "").strip()
        if not self.url.startswith("http://"):
            self.__exit__()
            raise SystemExit("bench/free_sink.py did not start (see above)")
        return self

    def actions(self) -> int:
        return int(Cluster(self.url).call("GET", "/_sink/stats")["actions"])

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(30)


# ------------------------------------------------------------------ measuring


@dataclasses.dataclass
class Config:
    kind: str      # extract | sink | e2e | e2e_pinned
    source: str
    workers: int
    rows: int
    job: Path


@dataclasses.dataclass
class Sample:
    """One run: what the launcher measured, what the child said, and the other processes' CPU."""

    kind: str
    source: str
    workers: int
    round: int
    rows: int
    wall: float
    cpu: float                   # the child and its reaped worker processes (os.wait4)
    maxrss_mib: float
    seconds: float               # extract/sink: planning + slices inside the child; e2e: the child's wall
    client_cpu: float            # CPU of the child and its workers over ``seconds`` (e2e: ``cpu``)
    slices: list[dict]           # extract/sink: each slice's rows, seconds, cpu_seconds, nbytes
    db_cpu: float | None         # the PostgreSQL server (pg runs)
    engine_cpu: float | None     # the engine's JVM
    sink_cpu: float | None       # the free sink (sink runs)

    @property
    def dps(self) -> float:
        return self.rows / self.seconds

    @property
    def worker_cpu(self) -> float | None:
        return sum(s["cpu_seconds"] for s in self.slices) if self.slices else None


def argv_of(cfg: Config) -> list[str]:
    if cfg.kind in ("extract", "sink"):
        index = ["--index", SINK_INDEX] if cfg.kind == "sink" else []
        return [sys.executable, "-c", CHILD, str(cfg.job), "--rows", str(cfg.rows), "--workers", str(cfg.workers), *index]
    state = DATA / "state" / f"{ALIASES[cfg.source]}.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "indexer.cli", "reindex", str(cfg.job), "--partitions", str(cfg.workers),
            "--workers", str(cfg.workers), "--json", "--no-progress", "--state-file", str(state)]
    return [shutil.which("taskset") or "taskset", "-c", "1", *argv] if cfg.kind == "e2e_pinned" else argv


def measure(cfg: Config, round_: int, env: dict[str, str], cluster: Cluster, sink: Sink, timeout: float) -> Sample:
    if cfg.kind.startswith("e2e"):
        drop_indices(cluster, f"{ALIASES[cfg.source]}-*")
    argv = argv_of(cfg)
    pg = postmaster_pid() if cfg.source == "pg" else None
    jvm = jvm_pid()
    db0, sink0, acks0 = server_cpu(pg), process_cpu(sink.proc.pid), sink.actions()
    pinned = engine_on_cpu0(jvm) if cfg.kind == "e2e_pinned" else contextlib.nullcontext()
    with pinned:
        wall, cpu, rss, out, err, code, engine_cpu = run_child(argv, env, timeout)
    time.sleep(0.2)  # ended backends reaped by the postmaster: their CPU moves into its cutime
    db1, sink1, acks1 = server_cpu(pg), process_cpu(sink.proc.pid), sink.actions()
    what = f"{SOURCE_NAMES[cfg.source]} {cfg.kind} {cfg.workers} worker(s)"
    if code != 0:
        raise Failed(f"{what} exited {code}:\n{shlex.join(argv)}\n{err.strip()[-2000:]}")
    try:
        result = last_json(out)
    except ValueError as exc:
        raise Failed(f"{what}: {exc}; stderr: {err[-1000:]!r}") from None
    if cfg.kind.startswith("e2e"):
        check_indexer(result, cfg.rows)
        slices = cfg.workers if cfg.workers > 1 else 0  # --partitions 1: the unpartitioned path (0 in the summary)
        if (result.get("partitions", slices), result.get("workers", slices)) != (slices, slices):
            raise Failed(f"{what}: the summary says partitions {result.get('partitions')}, workers {result.get('workers')}")
    expected = cfg.rows if cfg.kind == "sink" else 0
    if acks1 - acks0 != expected:
        raise Failed(f"{what}: the free sink acknowledged {acks1 - acks0} actions, expected {expected}")
    seconds, client_cpu = (result["seconds"], result["client_cpu"]) if cfg.kind in ("extract", "sink") else (wall, cpu)
    return Sample(cfg.kind, cfg.source, cfg.workers, round_, cfg.rows, wall, cpu, rss, seconds, client_cpu, result.get("slices", []),
                  delta(db0, db1), engine_cpu, delta(sink0, sink1) if cfg.kind == "sink" else None)


def jvm_pid() -> int:
    pid = engine_pid("opensearch")
    if pid is None:
        raise SystemExit("no pid for the local OpenSearch node (.services/engine/node.pid): start it with `make engine`")
    return pid


def run_rounds(configs: list[Config], args, env: dict[str, str], cluster: Cluster, sink: Sink, record: dict) -> None:
    """A, B, C, A, B, C, ...: each configuration once per round; a failed run is retried ``--retries`` times."""
    total, started = len(configs) * args.repeat, time.perf_counter()
    for round_ in range(1, args.repeat + 1):
        for cfg in configs:
            for attempt in range(args.retries + 1):
                try:
                    sample = measure(cfg, round_, env, cluster, sink, args.timeout)
                    break
                except Failed as exc:
                    record["failures"].append({"round": round_, "config": dataclasses.asdict(cfg) | {"job": str(cfg.job)},
                                               "error": str(exc).strip().splitlines()[-1][:300]})
                    save(record)
                    if attempt == args.retries:
                        raise
                    log(f"[partitions] {cfg.source} {cfg.kind} {cfg.workers}w failed ({exc}); retrying")
            record["samples"].append(sample)
            save(record)
            log(f"[partitions {len(record['samples'])}/{total}] {SOURCE_NAMES[cfg.source]:<10} {cfg.kind:<10} "
                f"{cfg.workers} worker(s): {sample.dps:>9,.0f} docs/s, CPU {sample.cpu:5.1f} s, "
                f"db {fmt(sample.db_cpu)} s, engine {fmt(sample.engine_cpu)} s, sink {fmt(sample.sink_cpu)} s "
                f"(elapsed {(time.perf_counter() - started) / 60:.1f} min)")


def save(record: dict) -> None:
    raw = {**record, "samples": [dataclasses.asdict(s) for s in record["samples"]]}
    (DATA / "PARTITIONS.json").write_text(json.dumps(raw, indent=1, default=str))


# ------------------------------------------------------------------ the report


def median(samples: list[Sample], f) -> float | None:
    values = [v for v in map(f, samples) if v is not None]
    return statistics.median(values) if values else None


def per_row(samples: list[Sample], f) -> float | None:
    """Median CPU microseconds per row of ``f(sample)`` (CPU seconds)."""
    return median(samples, lambda s: None if f(s) is None else f(s) / s.rows * 1e6)


def dps(samples: list[Sample]) -> float:
    return median(samples, lambda s: s.dps)


def spread(samples: list[Sample]) -> str:
    values = [s.dps for s in samples]
    return f"±{50 * (max(values) - min(values)) / statistics.median(values):.0f}%"


def slice_rate(samples: list[Sample]) -> float | None:
    """docs/s of one slice in its worker (rows / the slice's own wall seconds), median over slices and runs."""
    return median(samples, lambda s: statistics.median(x["rows"] / x["seconds"] for x in s.slices) if s.slices else None)


def startup(samples: list[Sample]) -> float | None:
    """Seconds of a run outside its longest slice: planning and the worker processes' start."""
    return median(samples, lambda s: s.seconds - max(x["seconds"] for x in s.slices) if s.slices else None)


def slices_dps(samples: list[Sample]) -> float | None:
    """rows / the longest slice's seconds: the slices' own throughput, start-up left out."""
    return median(samples, lambda s: s.rows / max(x["seconds"] for x in s.slices) if s.slices else None)


def each_slice(samples: list[Sample]) -> str:
    """Each slice's CPU seconds in its worker (median over runs), ``2.1 + 2.0``."""
    numbers = sorted({x["number"] for s in samples for x in s.slices})
    return " + ".join(fmt(median(samples, lambda s, n=n: next((x["cpu_seconds"] for x in s.slices if x["number"] == n),
                                                                None)), 2) for n in numbers) or "-"


def ratio(g: list[Sample], one: list[Sample] | None) -> str:
    return f"{dps(g) / dps(one):.2f}x" if one else "-"


def us(value: float | None) -> str:
    return fmt(value, 1) + " us" if value is not None else "-"


def measured(groups: dict, kind: str, source: str):
    """(workers, its runs, the runs with 1 worker) for each worker count measured."""
    for w in WORKERS:
        if groups.get((kind, source, w)):
            yield w, groups[(kind, source, w)], groups.get((kind, source, 1))


def slices_table(groups: dict, kind: str, sources: list[str]) -> list[str]:
    sink = kind == "sink"
    out = ["| source | workers | docs/s | spread | vs 1 worker | planning + workers' start, s | docs/s of one slice in its "
           "worker | CPU s of each worker | CPU per row: workers | all client processes | PostgreSQL server"
           + (" | free sink" if sink else "") + " | runs |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if sink else "") + "---:|"]
    for source in sources:
        for w, g, one in measured(groups, kind, source):
            out.append(f"| {SOURCE_NAMES[source]} | {w} | {dps(g):,.0f} | {spread(g)} | {ratio(g, one)} | "
                       f"{fmt(startup(g), 2)} | {fmt(slice_rate(g), 0)} | {each_slice(g)} | "
                       f"{us(per_row(g, lambda s: s.worker_cpu))} | {us(per_row(g, lambda s: s.client_cpu))} | "
                       f"{us(per_row(g, lambda s: s.db_cpu))} | " + (f"{us(per_row(g, lambda s: s.sink_cpu))} | " if sink else "")
                       + f"{len(g)} |")
    return out


def e2e_table(groups: dict, sources: list[str]) -> list[str]:
    out = ["| source | workers | CPUs | docs/s | spread | vs 1 worker | CPU per row: indexer (all its processes) | "
           "engine JVM | PostgreSQL server | peak RSS MiB (largest process) | runs |",
           "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, cpus in (("e2e", "shared"), ("e2e_pinned", "engine: CPU 0; indexer: CPU 1")):
        for source in sources:
            for w, g, one in measured(groups, kind, source):
                out.append(f"| {SOURCE_NAMES[source]} | {w} | {cpus} | {dps(g):,.0f} | {spread(g)} | {ratio(g, one)} | "
                           f"{us(per_row(g, lambda s: s.client_cpu))} | {us(per_row(g, lambda s: s.engine_cpu))} | "
                           f"{us(per_row(g, lambda s: s.db_cpu))} | {fmt(median(g, lambda s: s.maxrss_mib))} | {len(g)} |")
    return out


def explain(groups: dict, kind: str, source: str, cores: int) -> str | None:
    """The 2-worker ratio, and the CPU per row of each process that explains it."""
    one, two = groups.get((kind, source, 1)), groups.get((kind, source, 2))
    if not one or not two:
        return None
    parts = {"client processes": per_row(two, lambda s: s.client_cpu), "PostgreSQL server": per_row(two, lambda s: s.db_cpu),
             "engine JVM": per_row(two, lambda s: s.engine_cpu) if kind.startswith("e2e") else None,
             "free sink": per_row(two, lambda s: s.sink_cpu)}
    parts = {k: v for k, v in parts.items() if v is not None}
    total, client = sum(parts.values()), parts["client processes"]
    workers = per_row(two, lambda s: s.worker_cpu)
    text = (f"{SOURCE_NAMES[source]}, {kind}: 2 workers give {dps(two) / dps(one):.2f}x of 1 ({dps(one):,.0f} -> "
            f"{dps(two):,.0f} docs/s). CPU per row with 2 workers: "
            + ", ".join(f"{k} {v:.1f} us" + (f" (the slices in the workers: {workers:.1f} us)" if workers and k.startswith(
                "client") else "") for k, v in parts.items())
            + f"; {total:.1f} us in all, so {cores} cores allow at most {cores * 1e6 / total:,.0f} docs/s here "
            f"({dps(two) / (cores * 1e6 / total):.0%} of that reached).")
    if kind in ("extract", "sink"):
        text += (f" The slices alone (rows / the longest slice; planning and the workers' start, {startup(one):.2f} s "
                 f"with 1 worker and {startup(two):.2f} s with 2, left out) give {slices_dps(two) / slices_dps(one):.2f}x.")
    if kind == "e2e_pinned" and "engine JVM" in parts:
        text += (f" Pinned, the engine's one core allows {1e6 / parts['engine JVM']:,.0f} docs/s and the indexer's one core "
                 f"{1e6 / client:,.0f} docs/s: the smaller is the bound.")
    elif len(parts) > 1:
        text += f" With the other processes on other machines, the client's {client:.1f} us per row on {cores} cores " \
                f"would allow {cores * 1e6 / client:,.0f} docs/s."
    return text


def sizing_table(groups: dict, sources: list[str]) -> list[str]:
    """Workers (and database and engine cores) a target rate needs, from the CPU per row measured here."""
    worker = {s: per_row(groups.get(("sink", s, 1), []), lambda x: x.worker_cpu) for s in sources}
    worker = {s: v for s, v in worker.items() if v}
    db = per_row(groups.get(("extract", "pg", 1), []), lambda x: x.db_cpu)
    engine = median([x for s in sources for x in groups.get(("e2e", s, 1), [])], lambda x: x.engine_cpu / x.rows * 1e6
                    if x.engine_cpu is not None else None)
    nbytes = median([x for g in groups.values() for x in g if x.slices], lambda x: sum(s["nbytes"] for s in x.slices) / x.rows)
    if not worker:
        return []
    out = ["| target docs/s | " + " | ".join(f"workers ({SOURCE_NAMES[s]})" for s in worker)
           + (" | PostgreSQL server cores" if db else "") + (" | engine cores" if engine else "")
           + (" | NDJSON to the engine" if nbytes else "") + " |",
           "|---:|" + "---:|" * (len(worker) + bool(db) + bool(engine) + bool(nbytes))]
    for rate in RATES:
        cells = [str(math.ceil(rate * v / 1e6)) for v in worker.values()]
        cells += [f"{rate * db / 1e6:.1f}"] if db else []
        cells += [f"{rate * engine / 1e6:.1f}"] if engine else []
        cells += [f"{rate * nbytes / 1e6:.0f} MB/s"] if nbytes else []
        out.append(f"| {rate:,} | " + " | ".join(cells) + " |")
    out += ["", "Assumptions: the database and the engine run on other machines; each worker process has a core of its "
            "own and stays busy on it, at the CPU per row measured here against the free sink with 1 worker ("
            + ", ".join(f"{SOURCE_NAMES[s]}: {v:.1f} us, {1e6 / v:,.0f} docs/s per worker" for s, v in worker.items())
            + "); scaling is linear (no shared bottleneck: the database serves every slice's cursor at that rate, the "
            "network carries the NDJSON)."
            + (f" PostgreSQL server cores: {db:.1f} us of server CPU per row, measured with 1 worker, extraction only." if db else "")
            + (f" Engine cores: {engine:.1f} us of JVM CPU per document, measured end to end with 1 worker on this node "
               "(1 shard, 0 replicas, refresh off while loading); a cluster spreads it over its nodes' cores, replicas "
               "multiply it." if engine else "")
            + (f" NDJSON: {nbytes:.0f} bytes per action here." if nbytes else "") + " On paper: only the 1 and 2 worker "
            "rows above were measured."]
    return out


def report(args, info: dict, record: dict, sources: list[str], minutes: float, skipped: list[str]) -> str:
    samples: list[Sample] = record["samples"]
    groups: dict[tuple, list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.kind, s.source, s.workers), []).append(s)
    cores = len(os.sched_getaffinity(0))
    out = [SECTION, ""]
    if args.quick:
        out += [f"> **Quick run** (`--quick`): {args.rows:,} rows, one run each. It checks that everything works; its figures "
                "are dominated by start-up and are not the benchmark.", ""]
    out += [f"Written by `bench/partitions_bench.py`; every figure is a median of {args.repeat} interleaved run(s) of "
            f"{args.rows:,} rows. Rerun with `make bench` (or the command below); do not edit by hand.", "",
            f"- date: {record['started'][:16].replace('T', ' ')} UTC; the run took {minutes:.1f} min; command: "
            f"`{record['command']}`",
            f"- machine: {info['machine']}; load average at the start: {info['load']}",
            f"- Python {info['Python']}; indexer {info['indexer']} (commit {info['commit']}); engine: {info['engine']}, "
            f"local node; SQLite {info['SQLite']}" + (f"; PostgreSQL {info['PostgreSQL']} (local)" if "PostgreSQL" in info else ""),
            f"- data: {'; '.join(record['data'])}. Query `{QUERY.format(table='<table>')}`, key `code`, "
            "`partition_by = \"id\"`. The bench tables of bench/run.py have no integer column (`code` is text, "
            "`date_updated` random, so its ranges would be read through its index in random order): these copies "
            "add `id`, the number in `code`, as the integer primary key (in SQLite the rowid itself, so a slice is "
            "one range seek). The documents gain the field `id` (template `bench-part`).",
            "- N workers = N slices (`--partitions N --workers N`), equal-width ranges of `id`.",
            "- commands: extraction only and free sink: `python -c \"from partitions_bench import slices_child; "
            "slices_child(sys.argv[1:])\" JOB --rows N --workers W [--index bench-part-sink]` (plans the slices with `partitions.plan_slices`, runs them with "
            "`slices.run_local`; docs/s = rows / (planning + slices), worker processes' start included); end to end: "
            "`python -m indexer.cli reindex JOB --partitions W --workers W --json --no-progress --state-file ...` "
            "(docs/s = rows / the process's wall time), pinned: the same under `taskset -c 1`, the JVM under "
            "`taskset -a -p -c 0` for the run. With `--partitions 1` the CLI takes the unpartitioned path.",
            "- CPU per row: client processes = the measured process and its worker processes over the timed interval "
            "(extraction and free sink: `getrusage` self + children around planning and slices; end to end: `os.wait4`, "
            "the whole command); workers = "
            "the slices' own `cpu_seconds`; PostgreSQL server = the postmaster and every backend, reaped ones included "
            "(/proc); engine JVM and free sink from /proc over the same run.",
            ]
    out += [f"- skipped: {s}" for s in skipped]
    titles = {"extract": "Extraction only (read + encode, nothing sent)",
              "sink": "Client side against the free sink (read + encode + send; bench/free_sink.py answers every "
                      "action \"created\" and stores nothing)"}
    for kind in ("extract", "sink"):
        if any(k == kind for k, _, _ in groups):
            out += ["", f"### {titles[kind]}", ""] + slices_table(groups, kind, sources)
    if any(k.startswith("e2e") for k, _, _ in groups):
        out += ["", "### End to end (`indexer reindex` into the local node)", ""] + e2e_table(groups, sources)
    out += ["", "### Targets and what explains the ratios", ""]
    lite = (groups.get(("extract", "sqlite", 1)), groups.get(("extract", "sqlite", 2)))
    if all(lite):
        ratio = dps(lite[1]) / dps(lite[0])
        out.append(f"- SQLite, extraction only, 2 workers / 1 worker >= {TARGET_RATIO}: {ratio:.2f}x "
                   f"{verdict(ratio, '>=', TARGET_RATIO).replace('MISS', 'FAIL: missed')}")
    out += [f"- {text}" for kind in KINDS for s in sources if (text := explain(groups, kind, s, cores))]
    sizing = sizing_table(groups, sources)
    if sizing:
        out += ["", "### Workers needed for a target rate (on paper)", ""] + sizing
    if record["failures"]:
        out += ["", f"{len(record['failures'])} run(s) failed and were run again; not in the figures:"]
        out += [f"- round {f['round']}, {f['config']['source']} {f['config']['kind']} {f['config']['workers']} worker(s): "
                f"{f['error']}" for f in record["failures"]]
    return "\n".join(out) + "\n"


def put_section(path: Path, text: str, section: str = SECTION) -> None:
    """Replace ``section`` in ``path`` (up to the next ``## `` heading), or append it."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    start = old.find(section + "\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text if old else text, encoding="utf-8")
        return
    end = old.find("\n## ", start + len(section))
    path.write_text(old[:start] + text + (old[end:] if end >= 0 else ""), encoding="utf-8")


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, help="rows (default 1,000,000; --quick 20,000)")
    p.add_argument("--repeat", type=int, help="runs per configuration, median reported (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="20,000 rows, one run each: check that everything works")
    p.add_argument("--sources", default="sqlite,pg", help="sqlite,pg (default both)")
    p.add_argument("--kinds", default=",".join(KINDS), help=f"what to measure (default all: {','.join(KINDS)})")
    p.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('ENGINE_PORT', '9200')}", help="the local node")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed")
    p.add_argument("--retries", type=int, default=1, help="times a failed run is run again before the benchmark stops")
    p.add_argument("--append", type=Path, help="also put the section into this file (replacing an earlier one)")
    args = p.parse_args(argv)
    args.rows = args.rows or (20_000 if args.quick else 1_000_000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.sources = [s for s in args.sources.split(",") if s]
    args.kinds = [k for k in args.kinds.split(",") if k]
    if not args.sources or not set(args.sources) <= set(ALIASES) or not args.kinds or not set(args.kinds) <= set(KINDS):
        p.error(f"--sources takes sqlite and/or pg; --kinds some of {', '.join(KINDS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at, started = dt.datetime.now(dt.UTC), time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k not in ("INDEXER_URL", "INDEXER_PROGRESS")}  # job files name the url
    cluster = Cluster(args.url)
    try:
        cluster.call("GET", "/")
    except OSError as exc:
        raise SystemExit(f"no engine at {args.url} ({exc}); start it with `make engine`") from None
    info = environment(cluster, args.sources, env)
    skipped = []
    if "e2e_pinned" in args.kinds and not ({0, 1} <= os.sched_getaffinity(0) and shutil.which("taskset")):
        args.kinds.remove("e2e_pinned")
        skipped.append("end to end pinned: needs CPUs 0 and 1 and `taskset`")
    install_template(cluster)
    drop_indices(cluster)
    data = []
    for source in args.sources:
        how = ensure_id_data(source, args.rows, env)
        where = id_file(args.rows).relative_to(ROOT) if source == "sqlite" else f"table {id_table(args.rows)}"
        data.append(f"{SOURCE_NAMES[source]} {args.rows:,} rows in {where} ({how})")
    log("; ".join(data))
    record = {"started": started_at.isoformat(), "command": shlex.join(["python", "bench/partitions_bench.py",
              *(sys.argv[1:] if argv is None else argv)]), "info": info, "data": data, "samples": [], "failures": []}
    with Sink() as sink:
        jobs = {(s, to): write_job(s, args.rows, url, f"part-{to}-{s}-{size_label(args.rows)}")
                for s in args.sources for to, url in (("engine", args.url), ("sink", sink.url))}
        configs = [Config(kind, s, w, args.rows, jobs[(s, "sink" if kind == "sink" else "engine")])
                   for kind in args.kinds for w in WORKERS for s in args.sources]
        try:
            run_rounds(configs, args, env, cluster, sink, record)
        finally:
            drop_indices(cluster)
            cluster.call("DELETE", f"/_index_template/{TEMPLATE}", missing_ok=True)
            save(record)
    text = report(args, info, record, args.sources, (time.perf_counter() - started) / 60, skipped)
    print(text)
    if args.append:
        put_section(args.append, text)
        log(f"wrote the section into {args.append}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        log(f"partitions bench: FAILED: {exc}")
        sys.exit(1)
