"""The benchmark of issue #4: `indexer reindex` against its baselines, written to BENCHMARKS.md.

    python bench/run.py                 # 1,000,000 rows, SQLite and PostgreSQL, medians of 3 (~20 min here)
    python bench/run.py --sweep         # the same, then the chunk_size/concurrency/chunk_bytes sweep (~25 min; make bench)
    python bench/run.py --quick         # 20,000 rows, one run of each: does everything work? (~30 s)
    python bench/run.py --sweep --no-main                     # only the sweep (~5 min)
    python bench/run.py --quick --no-es                       # OpenSearch only

Needs the local OpenSearch node (`make engine`) and, for PostgreSQL, the local
server (`make pg`, PG_PASSWORD/PG_PORT/PG_USER/PG_DB as in the Makefile). The
Elasticsearch 8 section (on unless --no-es) starts a local Elasticsearch 8 node
with scripts/engine.sh on --es-port (9201) when none runs there, and stops it at the end:
`indexer reindex` and the engine ceiling run against it the same way, on the same data,
interleaved with the OpenSearch runs.

How it measures: every configuration runs as its own child process, started by a
tiny launcher that takes its wall time and, from ``os.wait4``, its CPU (user + sys,
all threads) and peak RSS (``ru_maxrss``). The engine JVM's CPU over the same interval is read
from /proc. Configurations are interleaved (A, B, C, A, B, C, ...) so that noise
on the machine hits them alike, and each figure is the median of ``--repeat``
runs. Every run must account for exactly as many documents as rows, or the
benchmark stops with an error. Data is generated once into bench/data/ (SQLite
files) and PostgreSQL tables bench_sensors_<size>, and reused when the row count
matches. Only indices named bench-* are created or deleted. The raw runs are saved
after every run to bench/data/<output name>.json (BENCHMARKS.json by default).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import re
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from baselines import Cluster, check_bench_name, process_cpu  # noqa: E402  (bench/ is this script's folder)

DATA = HERE / "data"
MiB = 1024 * 1024
ALIASES = {"sqlite": "bench-sqlite", "pg": "bench-pg"}
SOURCE_NAMES = {"sqlite": "SQLite", "pg": "PostgreSQL"}
QUERY = "SELECT code, description, site, value, date_updated FROM {table}"
TEMPLATE = "bench"

# The targets: (key, label, comparison, threshold).
TARGETS = [
    ("ceiling_ratio", "indexer / engine ceiling (docs/s)", ">=", 0.8),
    ("recipe_ratio", "indexer / etlhelper recipe (docs/s)", ">=", 20.0),
    ("naive_ratio", "indexer / naive script (docs/s)", ">=", 1.5),
    ("cpu_us_per_doc", "indexer CPU per document, us (target on SQLite)", "<=", 20.0),
    ("rss_mib", "indexer peak RSS at the full size, MiB", "<=", 250.0),
    ("rss_ratio", "RSS(full size) / RSS(RSS size)", "<=", 1.1),
]


# ------------------------------------------------------------------ measuring one child


@dataclasses.dataclass
class Run:
    """One child process: what the runner measured, and what the child said."""

    config: str
    source: str
    rows: int
    round: int
    wall: float
    cpu: float
    maxrss_mib: float
    engine_cpu: float | None
    result: dict

    @property
    def docs_per_second(self) -> float:
        seconds = self.result.get("timed_seconds", self.wall)
        return self.rows / seconds


# scripts/engine.sh's folders: OpenSearch's default, and the bench's own Elasticsearch 8 node (its own
# folder, so that a node of `make demo ENGINE=elasticsearch` on another port is left alone)
ENGINE_DIRS = {"opensearch": "engine", "elasticsearch": "elasticsearch-bench"}
ENGINE_NAMES = {"opensearch": "OpenSearch", "elasticsearch": "Elasticsearch 8"}


def engine_pid(engine: str = "opensearch") -> int | None:
    """The local node's JVM (scripts/engine.sh writes its pid), to read its CPU time."""
    services = Path(os.environ.get("ENGINE_SERVICES", ROOT / ".services"))
    try:
        pid = int((services / ENGINE_DIRS[engine] / "node.pid").read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


# Peak RSS must be the child's own. Linux carries the parent's high-water RSS into a
# forked (or vforked) child across exec, so os.wait4 in this (larger) process would report
# at least the runner's RSS. A tiny launcher (stdlib only, started with -S, ~9 MiB) forks and
# execs the measured command, waits for it with os.wait4 and writes the child's rusage to a file.
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(out, "w") as f:
    json.dump({"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(argv: list[str], env: dict[str, str], timeout: float, engine: str = "opensearch"
              ) -> tuple[float, float, float, str, str, int, float | None]:
    """Run argv; (wall s, CPU s, peak RSS MiB, stdout, stderr, exit code, engine CPU s) of that process alone."""
    jvm = engine_pid(engine)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".json") as usage_file:
        jvm_before = process_cpu(jvm)
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, usage_file.name, *argv],
                                stdout=out, stderr=err, cwd=ROOT, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the launcher's own process group: it and the measured child
            proc.wait()
            raise Failed(f"timed out after {timeout:.0f} s: {shlex.join(argv)}") from None
        jvm_after = process_cpu(jvm)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        text = usage_file.read()
    if not text:
        raise Failed(f"the launcher wrote no usage (exit {code}): {stderr[-1000:]}")
    usage = json.loads(text)
    engine_cpu = jvm_after - jvm_before if jvm_before is not None and jvm_after is not None else None
    return usage["wall"], usage["cpu"], usage["maxrss_kib"] / 1024, stdout, stderr, code, engine_cpu


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        raise ValueError("no JSON line on stdout")
    return json.loads(lines[-1])


class Failed(RuntimeError):
    pass


# ------------------------------------------------------------------ configurations


@dataclasses.dataclass
class Config:
    """One measured configuration: a command line and a check of what it reported."""

    key: str          # indexer | indexer_rss | ceiling | naive | recipe | extract | sweep:... | es_indexer | es_ceiling
    label: str
    source: str
    rows: int
    argv: list[str]
    check: Callable[[dict, int], dict]
    before: Callable[[], None] | None = None  # untimed preparation (e.g. delete the previous index)
    engine: str = "opensearch"  # whose JVM CPU is read
    extra_env: dict[str, str] = dataclasses.field(default_factory=dict)  # e.g. INDEXER_URL of the other engine


def check_indexer(summary: dict, rows: int) -> dict:
    """`indexer reindex --json`: the run is valid only when every row became exactly one document."""
    problems = []
    if summary.get("outcome") != "ok":
        problems.append(f"outcome {summary.get('outcome')!r} ({summary.get('error')})")
    for field in ("rows_read", "sent", "indexed", "documents_in_index"):
        if summary.get(field) != rows:
            problems.append(f"{field} = {summary.get(field)}")
    if problems:
        raise Failed(f"indexer reindex did not index {rows} rows: {', '.join(problems)}")
    return {"timed_seconds_inside": summary.get("seconds"), "bulk_requests": summary.get("bulk_requests"),
            "index": summary.get("index")}


def check_baseline(result: dict, rows: int) -> dict:
    if result.get("docs") != rows:
        raise Failed(f"baseline {result.get('name')} handled {result.get('docs')} documents, expected {rows}")
    return result


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# ------------------------------------------------------------------ data and job files


def pg_settings() -> dict[str, Any]:
    return {"host": os.environ.get("PG_HOST", "127.0.0.1"), "port": int(os.environ.get("PG_PORT", "54329")),
            "dbname": os.environ.get("PG_DB", "indexer_test"), "user": os.environ.get("PG_USER", "indexer")}


def pg_connect():
    import psycopg2

    if not os.environ.get("PG_PASSWORD"):
        raise SystemExit("PostgreSQL: set PG_PASSWORD (make bench exports it), or run with --sources sqlite")
    return psycopg2.connect(password=os.environ["PG_PASSWORD"], connect_timeout=10, **pg_settings())


def sqlite_file(rows: int) -> Path:
    return DATA / f"sensors-{size_label(rows)}.db"


def pg_table(rows: int) -> str:
    return f"bench_sensors_{size_label(rows)}"


def existing_rows(source: str, rows: int) -> int | None:
    try:
        if source == "sqlite":
            path = sqlite_file(rows)
            if not path.is_file():
                return None
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT COUNT(*) FROM sensors").fetchone()[0]
        with pg_connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (pg_table(rows),))
            if cur.fetchone()[0] is None:
                return None
            cur.execute(f"SELECT COUNT(*) FROM {pg_table(rows)}")
            return cur.fetchone()[0]
    except sqlite3.Error:
        return None


def ensure_data(source: str, rows: int, env: dict[str, str]) -> str:
    """Generate ``rows`` sensor rows with demo/generate.py (in a child: the runner stays small) unless present."""
    if existing_rows(source, rows) == rows:
        return "reused"
    log(f"generating {rows:,} rows in {SOURCE_NAMES[source]} ...")
    if source == "sqlite":
        code = f"from demo.generate import write_sqlite; from pathlib import Path; write_sqlite(Path({str(sqlite_file(rows))!r}), {rows})"
    else:
        s = pg_settings()
        dsn = f"host={s['host']} port={s['port']} dbname={s['dbname']} user={s['user']}"
        code = f"from demo.generate import write_postgres; write_postgres({dsn!r}, {rows}, table={pg_table(rows)!r})"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PGPASSWORD": env.get("PG_PASSWORD", "")},
                   check=True)
    if existing_rows(source, rows) != rows:
        raise SystemExit(f"generating {rows} rows in {source} did not give {rows} rows")
    return f"generated in {time.perf_counter() - started:.0f} s"


def write_job(source: str, rows: int, url: str, name: str | None = None, settings: dict | None = None,
              engine: str = "opensearch") -> Path:
    """A job file for `indexer reindex` (alias bench-sqlite / bench-pg); no chunk settings = the indexer's defaults."""
    lines = ["# written by bench/run.py; regenerated on every run", "[source]"]
    if source == "sqlite":
        lines += ['dbtype = "SQLITE"', f"filename = {json.dumps(str(sqlite_file(rows)))}"]
        table = "sensors"
    else:
        s = pg_settings()
        lines += ['dbtype = "PG"', f'host = "{s["host"]}"', f"port = {s['port']}", f'dbname = "{s["dbname"]}"',
                  f'user = "{s["user"]}"', 'password_env = "PG_PASSWORD"']
        table = pg_table(rows)
    lines += ["", "[target]", f"url = {json.dumps(url)}", f"engine = {json.dumps(engine)}", "",
              "[job]", f'alias = "{ALIASES[source]}"', 'key = ["code"]', f'query = "{QUERY.format(table=table)}"',
              "keep = 0"]
    lines += [f"{k} = {v}" for k, v in (settings or {}).items()]
    path = DATA / "jobs" / f"{name or f'{source}-{size_label(rows)}'}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def install_template(cluster: Cluster) -> dict:
    """PUT /_index_template/bench: bench-* indices get 1 shard, 0 replicas and the sensors mappings."""
    mappings = json.loads((ROOT / "mappings/component/sensors-mappings.json").read_text())["template"]["mappings"]
    settings = json.loads((ROOT / "mappings/component/sensors-settings.json").read_text())["template"]["settings"]
    settings = {**settings, "number_of_shards": 1, "number_of_replicas": 0}
    body = {"index_patterns": ["bench-*"], "priority": 500, "template": {"settings": settings, "mappings": mappings},
            "_meta": {"managed_by": "bench/run.py", "description": "issue #4 benchmark indices"}}
    cluster.call("PUT", f"/_index_template/{TEMPLATE}", body)
    got = cluster.call("POST", "/_index_template/_simulate_index/bench-check")["template"]["settings"]["index"]
    if str(got.get("number_of_shards")) != "1" or str(got.get("number_of_replicas")) != "0":
        raise SystemExit(f"the bench template does not apply as expected: {got}")
    return settings


def drop_alias_indices(cluster: Cluster, source: str) -> None:
    """Delete what earlier runs of alias bench-<source> left (indices `bench-<source>-<14 digits>`)."""
    alias = ALIASES[source]
    for index in cluster.indices(f"{alias}-*"):
        if re.fullmatch(re.escape(alias) + r"-\d{14}", index):
            cluster.delete(index)
    for path in (DATA / "state").glob(f"{alias}.json*"):
        path.unlink()


def cleanup(cluster: Cluster, sources: list[str]) -> None:
    for source in sources:
        drop_alias_indices(cluster, source)
    for index in cluster.indices("bench-baseline-*"):
        check_bench_name(index)
        cluster.delete(index)


# ------------------------------------------------------------------ the plan


def indexer_config(key: str, label: str, source: str, rows: int, job: Path, cluster: Cluster,
                   engine: str = "opensearch") -> Config:
    prefix = "" if engine == "opensearch" else f"{engine}-"
    state = DATA / "state" / f"{prefix}{ALIASES[source]}.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "indexer.cli", "reindex", str(job), "--json", "--no-progress", "--state-file", str(state)]
    return Config(key, label, source, rows, argv, check_indexer, before=lambda: drop_alias_indices(cluster, source),
                  engine=engine)


def baseline_config(key: str, label: str, source: str, rows: int, job: Path, *extra: str,
                    command: str | None = None, engine: str = "opensearch") -> Config:
    argv = [sys.executable, str(HERE / "baselines.py"), command or key, str(job), "--rows", str(rows), *extra]
    return Config(key, label, source, rows, argv, check_baseline, engine=engine)


def main_configs(args, source: str, jobs: dict, cluster: Cluster) -> list[Config]:
    n, rss_n, recipe_n = args.rows, args.rss_rows, args.recipe_rows
    full = jobs[(source, n)]
    return [
        indexer_config("indexer", "indexer reindex", source, n, full, cluster),
        baseline_config("ceiling", "engine ceiling (pre-serialised _bulk, aiohttp)", source, n, full,
                        "--index", f"bench-baseline-ceiling-{source}", "--concurrency", args.ceiling_concurrency,
                        *(["--engine-pid", str(engine_pid())] if engine_pid() else [])),
        baseline_config("naive", "naive script (iter_chunks + opensearchpy.helpers.bulk)", source, n, full,
                        "--index", f"bench-baseline-naive-{source}"),
        baseline_config("recipe", "etlhelper recipe, re-implemented (per-document POST)", source, recipe_n,
                        jobs[(source, recipe_n)], "--index", f"bench-baseline-recipe-{source}"),
        baseline_config("extract", "extraction only (read + convert, nothing sent)", source, n, full),
        indexer_config("indexer_rss", "indexer reindex (RSS size)", source, rss_n, jobs[(source, rss_n)], cluster),
    ]


def es_configs(args, source: str, es_jobs: dict, es_cluster: Cluster) -> list[Config]:
    """The Elasticsearch 8 pair: `indexer reindex` end to end and the engine ceiling, as on OpenSearch."""
    n = args.rows
    pid = engine_pid("elasticsearch")
    configs = [
        indexer_config("es_indexer", "indexer reindex (Elasticsearch 8)", source, n, es_jobs[(source, n)], es_cluster,
                       engine="elasticsearch"),
        baseline_config("es_ceiling", "engine ceiling (Elasticsearch 8)", source, n, es_jobs[(source, n)],
                        "--index", f"bench-baseline-ceiling-{source}", "--concurrency", args.ceiling_concurrency,
                        *(["--engine-pid", str(pid)] if pid else []), command="ceiling", engine="elasticsearch"),
    ]
    for config in configs:  # INDEXER_URL (the OpenSearch node, for every other run) overrides a job file's url
        config.extra_env = {"INDEXER_URL": es_cluster.url}
    return configs


class EsNode:
    """The local Elasticsearch 8 node for the Elasticsearch section: reused when it runs, else started and stopped."""

    def __init__(self, port: int) -> None:
        self.port, self.url, self.started = port, f"http://127.0.0.1:{port}", False
        services = Path(os.environ.get("ENGINE_SERVICES", ROOT / ".services"))
        self.env = {**os.environ, "ENGINE": "elasticsearch", "ENGINE_PORT": str(port),
                    "ENGINE_DIR": str(services / ENGINE_DIRS["elasticsearch"])}

    def _engine(self, command: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "scripts" / "engine.sh"), command], env=self.env, cwd=ROOT, **kw)

    def __enter__(self) -> EsNode:
        if self._engine("status", capture_output=True).returncode != 0:
            log(f"bench: starting a local Elasticsearch 8 node on {self.url}")
            if self._engine("start", stdout=sys.stderr).returncode != 0:
                raise SystemExit(f"bench: no Elasticsearch 8 node on {self.url} (see above); or run with --no-es")
            self.started = True
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self._engine("stop", stdout=sys.stderr)


# ------------------------------------------------------------------ running


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure(config: Config, round_: int, env: dict[str, str], timeout: float) -> Run:
    if config.before:
        config.before()
    wall, cpu, rss, stdout, stderr, code, engine_cpu = run_child(config.argv, {**env, **config.extra_env}, timeout, config.engine)
    if code != 0:
        raise Failed(f"{config.source} {config.key} ({config.rows:,} rows) exited {code}:\n"
                     f"{shlex.join(config.argv)}\n{stderr.strip()[-2000:]}")
    try:
        result = config.check(last_json(stdout), config.rows)
    except ValueError as exc:
        raise Failed(f"{config.source} {config.key}: {exc}; stdout: {stdout[-500:]!r} stderr: {stderr[-1000:]!r}") from None
    if config.key in ("ceiling", "es_ceiling"):  # posting at the best concurrency only: pre-serialisation excluded
        result = {**result, "timed_seconds": result["seconds"]}
        engine_cpu = result.get("engine_cpu")
    return Run(config.key, config.source, config.rows, round_, wall, cpu, rss, engine_cpu, result)


@dataclasses.dataclass
class Record:
    """Everything measured so far, saved to bench/data/<output name>.json after every run (a failed benchmark keeps its data)."""

    head: dict
    runs: list[Run] = dataclasses.field(default_factory=list)
    sweep: list[Run] = dataclasses.field(default_factory=list)
    failures: list[dict] = dataclasses.field(default_factory=list)

    def save(self) -> None:
        raw = {**self.head, "runs": [dataclasses.asdict(r) for r in self.runs],
               "sweep": [dataclasses.asdict(r) for r in self.sweep], "failures": self.failures}
        (DATA / f"{self.head['output']}.json").write_text(json.dumps(raw, indent=1, default=str))


def run_rounds(configs: list[Config], repeat: int, env: dict[str, str], args, record: Record, into: list[Run],
               what: str) -> list[Run]:
    """A, B, C, A, B, C, ...: every configuration once per round, ``repeat`` rounds.

    A run that fails is retried (``--retries`` times; the machine and its services are shared)
    and the failure is recorded in the report; one more failure stops the benchmark.
    """
    runs: list[Run] = []
    total = len(configs) * repeat
    started = time.perf_counter()
    for round_ in range(1, repeat + 1):
        for config in configs:
            for attempt in range(args.retries + 1):
                try:
                    run = measure(config, round_, env, args.timeout)
                    break
                except Failed as exc:
                    first = str(exc).strip().splitlines()[-1][:300]
                    record.failures.append({"source": config.source, "config": config.key, "rows": config.rows,
                                            "round": round_, "error": first})
                    record.save()
                    if attempt == args.retries:
                        raise
                    log(f"[{what}] {SOURCE_NAMES[config.source]} {config.key} failed ({first}); retrying")
            runs.append(run)
            into.append(run)
            record.save()
            elapsed = time.perf_counter() - started
            log(f"[{what} {len(runs)}/{total}] {SOURCE_NAMES[config.source]:<10} {config.key:<12} {config.rows:>9,} rows: "
                f"{run.docs_per_second:>9,.0f} docs/s, wall {run.wall:6.1f} s, CPU {run.cpu:6.1f} s, "
                f"RSS {run.maxrss_mib:6.1f} MiB  (elapsed {elapsed / 60:.1f} min)")
        if round_ == 1 and repeat > 1:
            log(f"[{what}] one round took {elapsed / 60:.1f} min; expect about {elapsed * repeat / 60:.0f} min for {repeat} rounds")
    return runs


# ------------------------------------------------------------------ figures


@dataclasses.dataclass
class Figure:
    """Medians over the runs of one configuration."""

    key: str
    source: str
    rows: int
    runs: list[Run]

    def median(self, f: Callable[[Run], float | None]) -> float | None:
        values = [v for v in map(f, self.runs) if v is not None]
        return statistics.median(values) if values else None

    @property
    def dps(self) -> float:
        return self.median(lambda r: r.docs_per_second)

    @property
    def spread(self) -> float:
        """(max - min) / median of docs/s, in %."""
        values = [r.docs_per_second for r in self.runs]
        return 100 * (max(values) - min(values)) / statistics.median(values)

    @property
    def cpu(self) -> float:
        return self.median(lambda r: r.cpu)

    @property
    def cpu_us_per_doc(self) -> float:
        return self.median(lambda r: r.cpu / r.rows * 1e6)

    @property
    def rss(self) -> float:
        return self.median(lambda r: r.maxrss_mib)

    @property
    def wall(self) -> float:
        return self.median(lambda r: r.result.get("timed_seconds", r.wall))


def figures(runs: list[Run]) -> dict[tuple[str, str], Figure]:
    out: dict[tuple[str, str], Figure] = {}
    for run in runs:
        out.setdefault((run.source, run.config), Figure(run.config, run.source, run.rows, [])).runs.append(run)
    return out


def ratios(figs: dict, source: str) -> dict[str, float | None]:
    def get(key: str) -> Figure | None:
        return figs.get((source, key))

    ix, ceil, naive, recipe, small = (get(k) for k in ("indexer", "ceiling", "naive", "recipe", "indexer_rss"))
    return {
        "ceiling_ratio": ix.dps / ceil.dps if ix and ceil else None,
        "recipe_ratio": ix.dps / recipe.dps if ix and recipe else None,
        "naive_ratio": ix.dps / naive.dps if ix and naive else None,
        "cpu_us_per_doc": ix.cpu_us_per_doc if ix else None,
        "rss_mib": ix.rss if ix else None,
        "rss_ratio": ix.rss / small.rss if ix and small else None,
    }


def verdict(value: float | None, op: str, threshold: float) -> str:
    if value is None:
        return "not measured"
    if op == ">=":
        if value >= threshold:
            return "PASS"
        return f"MISS by {100 * (threshold - value) / threshold:.0f}% (needs {threshold / value:.2f}x)"
    if value <= threshold:
        return "PASS"
    return f"MISS by {100 * (value - threshold) / threshold:.0f}% over"


# ------------------------------------------------------------------ the report


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def environment(cluster: Cluster, sources: list[str], env: dict[str, str]) -> dict[str, str]:
    info: dict[str, str] = {}
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    info["machine"] = (f"{os.cpu_count()} CPUs (usable: {len(os.sched_getaffinity(0))}), "
                       f"{model.group(1).strip() if model else platform.processor() or '?'}, "
                       f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB RAM, Linux {platform.release()}")
    info["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["Python"] = platform.python_version()
    for dist in ("indexer", "elasticsearch", "opensearch-py", "etlhelper", "orjson", "psycopg2-binary", "aiohttp"):
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[dist] = "not installed"
    root = cluster.call("GET", "/")
    info["engine"] = f"{root['version'].get('distribution', 'elasticsearch')} {root['version']['number']} (1 shard, 0 replicas)"
    info["SQLite"] = sqlite3.sqlite_version
    if "pg" in sources:
        with pg_connect() as conn, conn.cursor() as cur:
            cur.execute("SHOW server_version")
            info["PostgreSQL"] = cur.fetchone()[0]
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "indexer"],
                               capture_output=True, text=True).stdout.strip()
        info["commit"] = head + (" (indexer/ has uncommitted changes)" if dirty else "")
    except OSError:
        info["commit"] = "?"
    return info


def startup_cost(env: dict[str, str], timeout: float) -> dict[str, float]:
    """What a child costs before doing any work: `import indexer.cli`, and an empty interpreter (RSS floor)."""
    out = {}
    for name, code in (("empty", "pass"), ("cli", "import indexer.cli")):
        wall, cpu, rss, _, stderr, rc, _ = run_child([sys.executable, "-c", code], env, timeout)
        if rc:
            raise Failed(f"python -c {code!r} failed: {stderr[-500:]}")
        out.update({f"{name}_wall": wall, f"{name}_cpu": cpu, f"{name}_rss": rss})
    return out


def source_table(figs: dict, source: str) -> list[str]:
    rows = ["| configuration | rows | docs/s | spread | wall s | CPU s | CPU us/doc | peak RSS MiB | engine CPU s | runs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    labels = {
        "indexer": "`indexer reindex` (CLI, end to end)",
        "ceiling": "engine ceiling: the indexer's bodies pre-serialised, `_bulk` via aiohttp",
        "naive": "naive script: `etlhelper.iter_chunks` + `opensearchpy.helpers.bulk` (sync, serial)",
        "recipe": "etlhelper recipe, **re-implemented**: per-document `POST /<index>/_doc`, `asyncio.run` per 5,000 rows",
        "extract": "extraction only: the indexer's reader (read + convert), nothing sent",
        "indexer_rss": "`indexer reindex` at the RSS size",
    }
    for key in ("indexer", "ceiling", "naive", "recipe", "extract", "indexer_rss"):
        fig = figs.get((source, key))
        if fig is None:
            continue
        label = labels[key]
        if key == "ceiling":
            best = statistics.mode(r.result["best_concurrency"] for r in fig.runs)
            label += f" (best concurrency {best})"
            cpu = cpu_doc = "n/a"  # the child's CPU/RSS include pre-serialising and every concurrency
            rss = "n/a"
        else:
            cpu, cpu_doc, rss = fmt(fig.cpu), fmt(fig.cpu_us_per_doc), fmt(fig.rss)
        engine = fig.median(lambda r: r.engine_cpu)
        rows.append(f"| {label} | {fig.rows:,} | {fmt(fig.dps, 0)} | ±{fig.spread / 2:.0f}% | {fmt(fig.wall)} | {cpu} | "
                    f"{cpu_doc} | {rss} | {fmt(engine)} | {len(fig.runs)} |")
    ceiling = figs.get((source, "ceiling"))
    if ceiling:
        by: dict[str, list[float]] = {}
        for run in ceiling.runs:
            for c, r in run.result["by_concurrency"].items():
                by.setdefault(c, []).append(r["docs_per_second"])
        parts = [f"concurrency {c}: {statistics.median(v):,.0f} docs/s" for c, v in sorted(by.items(), key=lambda x: int(x[0]))]
        run = ceiling.runs[0]
        rows.append("")
        rows.append(f"Engine ceiling by concurrency (medians): {'; '.join(parts)}. "
                    f"{run.result['requests']:,} requests of {run.result['bytes'] / run.result['requests'] / MiB:.2f} MiB "
                    f"on average ({run.result['bytes'] / ceiling.rows:.0f} bytes per action).")
    return rows


def engines_table(figs: dict, sources: list[str]) -> list[str]:
    """`indexer reindex` and the engine ceiling, OpenSearch beside Elasticsearch 8, per source."""
    rows = ["| source | engine | `indexer reindex` docs/s | engine ceiling docs/s (best concurrency) | indexer / ceiling | "
            "indexer CPU us/doc | indexer engine CPU s | runs |",
            "|---|---|---:|---:|---:|---:|---:|---:|"]
    for source in sources:
        for engine, ix_key, ceil_key in (("OpenSearch", "indexer", "ceiling"), ("Elasticsearch 8", "es_indexer", "es_ceiling")):
            ix, ceil = figs.get((source, ix_key)), figs.get((source, ceil_key))
            if ix is None and ceil is None:
                continue
            best = f" ({statistics.mode(r.result['best_concurrency'] for r in ceil.runs)})" if ceil else ""
            rows.append(f"| {SOURCE_NAMES[source]} | {engine} | {fmt(ix.dps, 0) if ix else '-'} | "
                        f"{fmt(ceil.dps, 0) if ceil else '-'}{best} | {fmt(ix.dps / ceil.dps, 2) if ix and ceil else '-'} | "
                        f"{fmt(ix.cpu_us_per_doc) if ix else '-'} | {fmt(ix.median(lambda r: r.engine_cpu)) if ix else '-'} | "
                        f"{len(ix.runs) if ix else len(ceil.runs)} |")
    return rows


def targets_table(figs: dict, sources: list[str], args, startup: dict) -> list[str]:
    head = "| target | " + " | ".join(SOURCE_NAMES[s] for s in sources) + " |"
    rows = [head, "|---|" + "---|" * len(sources)]
    computed = {s: ratios(figs, s) for s in sources}
    for key, label, op, threshold in TARGETS:
        if key == "rss_mib":
            label = f"indexer peak RSS at {args.rows:,} rows, MiB"
        if key == "rss_ratio":
            label = f"RSS({size_label(args.rows)}) / RSS({size_label(args.rss_rows)})"
        cells = []
        for s in sources:
            value = computed[s][key]
            digits = 2 if key in ("ceiling_ratio", "naive_ratio", "rss_ratio") else 1
            cell = f"{fmt(value, digits)} " + ("(target is for SQLite)" if key == "cpu_us_per_doc" and s != "sqlite"
                                               else verdict(value, op, threshold))
            if key == "cpu_us_per_doc" and value is not None:
                fig = figs[(s, "indexer")]
                cell += f"; {(fig.cpu - startup['cli_cpu']) / fig.rows * 1e6:.1f} without the start-up"
            cells.append(cell)
        rows.append(f"| {label} {op} {threshold:g} | " + " | ".join(cells) + " |")
    return rows


def sweep_phase(runs: list[Run], phase: int) -> dict:
    """Medians per setting within one sweep phase, its best setting and its noise floor.

    The noise floor: settings that sent identical requests (same chunk_size and concurrency,
    chunk_bytes above any chunk's size, so the same bulk requests) did the same work; how far
    apart their medians are (in %) is what noise alone does in this phase.
    """
    by: dict[tuple, list[Run]] = {}
    for run in runs:
        s = run.result["settings"]
        if s.get("phase", 1) == phase:
            by.setdefault((s["chunk_size"], s["concurrency"], s["chunk_bytes"]), []).append(run)
    medians = {k: statistics.median(r.docs_per_second for r in v) for k, v in by.items()}
    same_work: dict[tuple, list[float]] = {}
    for (cs, c, b), rs in by.items():
        same_work.setdefault((cs, c, rs[0].result.get("bulk_requests")), []).append(medians[(cs, c, b)])
    floors = [100 * (max(v) - min(v)) / min(v) for v in same_work.values() if len(v) > 1]
    return {"by": by, "medians": medians, "best": max(medians, key=medians.get) if medians else None,
            "noise_floor": max(floors) if floors else None}


def sweep_report(runs: list[Run], defaults: dict[str, int]) -> list[str]:
    """Both phases' tables, each compared within itself, and what they say about the defaults."""
    default_key = (defaults["chunk_size"], defaults["concurrency"], defaults["chunk_bytes"])
    out: list[str] = []
    verdicts: list[str] = []
    for phase, title in ((1, "Phase 1: chunk_size x concurrency (default chunk_bytes)"),
                         (2, "Phase 2: chunk_bytes at phase 1's best chunk_size and concurrency")):
        ph = sweep_phase(runs, phase)
        if not ph["by"]:
            continue
        best, medians = ph["best"], ph["medians"]
        out += ["", f"{title}:", "",
                "| chunk_size | concurrency | chunk_bytes | docs/s (median) | spread | vs best | CPU us/doc | peak RSS MiB | "
                "bulk requests | runs | |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for key in sorted(ph["by"]):
            rs = ph["by"][key]
            marks = (["**best**"] if key == best else []) + (["current default"] if key == default_key else [])
            cs, c, b = key
            values = [r.docs_per_second for r in rs]
            out.append(f"| {cs:,} | {c} | {b / MiB:g} MiB | {medians[key]:,.0f} | ±{50 * (max(values) - min(values)) / medians[key]:.0f}% | "
                       f"{100 * medians[key] / medians[best]:.0f}% | "
                       f"{statistics.median(r.cpu / r.rows * 1e6 for r in rs):.1f} | {statistics.median(r.maxrss_mib for r in rs):.0f} | "
                       f"{rs[0].result.get('bulk_requests')} | {len(rs)} | {' '.join(marks)} |")
        floor = ph["noise_floor"]
        if phase == 1:
            text = f"Phase 1 best: chunk_size {best[0]:,}, concurrency {best[1]} ({medians[best]:,.0f} docs/s)"
            if default_key in medians:
                gain = 100 * (medians[best] / medians[default_key] - 1)
                text += f", {gain:+.0f}% vs the current defaults in the same phase"
            verdicts.append(text + ".")
        else:
            text = f"Phase 2 best: chunk_bytes {best[2] / MiB:g} MiB ({medians[best]:,.0f} docs/s)"
            if floor is not None:
                text += (f"; noise floor: chunk_bytes values that sent identical requests differ by up to {floor:.0f}%, "
                         "so a difference between settings smaller than that is not evidence")
            verdicts.append(text + ".")
    return out + [""] + [" ".join(verdicts)]


def report(args, info: dict, startup: dict, record: Record, sources: list[str],
           started: dt.datetime, minutes: float, command: str, defaults: dict, data_notes: list[str]) -> str:
    runs, sweep_runs = record.runs, record.sweep
    figs = figures(runs)
    out = ["# Benchmarks", "",
           "Written by `bench/run.py` (issue #4); every figure below comes from the run described here. "
           "Rerun with `make bench`; do not edit by hand.", "",
           "## Setup", "",
           f"- date: {started:%Y-%m-%d %H:%M} UTC; the run took {minutes:.1f} min",
           f"- command: `{command}`",
           f"- machine: {info['machine']}; load average at the start: {info['load']}",
           f"- Python {info['Python']}; indexer {info['indexer']} (commit {info['commit']}); elasticsearch {info['elasticsearch']}; "
           f"opensearch-py {info['opensearch-py']}; etlhelper {info['etlhelper']}; orjson {info['orjson']}; "
           f"psycopg2-binary {info['psycopg2-binary']}; aiohttp {info['aiohttp']}",
           f"- engine: {info['engine']}, local node"
           + (f"; and {info['engine_es']}, local node built from the Maven Central jars (docs/engines.md)" if "engine_es" in info else "")
           + f"; SQLite {info['SQLite']}"
           + (f"; PostgreSQL {info['PostgreSQL']} (local)" if "PostgreSQL" in info else ""),
           f"- indexer settings (the defaults in indexer/config.py): chunk_size {defaults['chunk_size']:,}, "
           f"chunk_bytes {defaults['chunk_bytes'] / MiB:g} MiB, concurrency {defaults['concurrency']}",
           f"- data: generated sensor rows (demo/generate.py), query `{QUERY.format(table='<table>')}`, key `code`; "
           + "; ".join(data_notes),
           ]
    if args.quick:
        out.insert(4, "> **Quick run** (`--quick`): small sizes, one run each. It checks that everything works; "
                      "its figures are dominated by start-up and are not the benchmark.\n")
    if runs:
        out.append(f"- runs: median of {args.repeat} per configuration, configurations interleaved; "
                   f"{args.rows:,} rows; recipe on {args.recipe_rows:,} rows; RSS also at {args.rss_rows:,} rows")
        for source in sources:
            out += ["", f"## {SOURCE_NAMES[source]}", ""] + source_table(figs, source)
        if any(r.config.startswith("es_") for r in runs):
            out += ["", "## Elasticsearch 8 beside OpenSearch", "",
                    "The same data, job files (but `engine = \"elasticsearch\"`), index template and measurement, "
                    "interleaved with the runs above: the indexer end to end and the engine ceiling on each engine.", ""]
            out += engines_table(figs, sources)
        out += ["", "## Targets", "",
                "Ratios are of the median docs/s; the recipe runs on fewer rows (its docs/s do not depend on the size).", ""]
        out += targets_table(figs, sources, args, startup)
    if sweep_runs:
        per_action = record.head.get("sweep_bytes_per_action", 0)
        out += ["", "## Sweep: chunk_size, concurrency, chunk_bytes (SQLite)", "",
                f"`indexer reindex` on {args.sweep_rows:,} SQLite rows, median of {args.sweep_repeat} interleaved runs per "
                "setting, in two phases; settings are compared only within their phase, because the machine's load drifts "
                f"between phases. An action (action line + document) is {per_action:.0f} bytes on average here, so a chunk "
                f"of 5,000 rows is {5000 * per_action / MiB:.2f} MiB and of 10,000 rows {10000 * per_action / MiB:.2f} MiB: "
                "chunk_bytes only cuts requests below that."]
        out += sweep_report(sweep_runs, defaults)
    out += ["", "## Notes", "",
            "- Each configuration is its own child process. wall s: the process from start to exit (for the engine ceiling: "
            "posting plus the final `_refresh` only). CPU s: user + sys of the process, all threads, from `os.wait4`; "
            "CPU us/doc = CPU s / rows. peak RSS: `ru_maxrss` of the process. engine CPU s: the engine's JVM over the "
            "same interval (from /proc; for the ceiling, over the timed posting). docs/s = rows / wall s. spread: half of (max - min) / median of docs/s.",
            f"- A child's fixed cost is in its figures: an empty `python` takes {startup['empty_cpu']:.2f} s CPU and "
            f"{startup['empty_rss']:.0f} MiB RSS here; `import indexer.cli` takes {startup['cli_wall']:.2f} s wall, "
            f"{startup['cli_cpu']:.2f} s CPU and {startup['cli_rss']:.0f} MiB RSS.",
            "- `indexer reindex` runs as the real CLI (`python -m indexer.cli reindex JOB.toml --json --no-progress "
            "--state-file ...`; job files in bench/data/jobs/, alias bench-sqlite / bench-pg, keep = 0). End to end includes "
            "start-up, creating the index, restoring its settings, refresh, count, verification and the alias swap. Before "
            "each run the previous bench index is deleted (untimed), so every run starts from the same empty engine. "
            "Every run is checked: rows read = sent = created = documents in the index = rows.",
            "- Every baseline reads the same job file and verifies its document count (`_count` after `_refresh`). Baselines "
            "write to concrete `bench-baseline-*` indices made by the `bench` template (1 shard, 0 replicas, the "
            "sensors mappings), deleted afterwards. The naive script and the recipe keep the template's refresh_interval "
            "(what a user's script gets); the engine ceiling creates its indices with the indexer's load settings "
            "(refresh_interval -1), so it is the ceiling for the indexer's way of loading.",
            "- The recipe is a re-implementation of etlhelper's \"Database to API / NoSQL copy ETL script template\" "
            "(copy_sensors_async.py): one `aiohttp.ClientSession` and one `asyncio.run` per 5,000-row chunk, every "
            "document POSTed alone (`json.dumps`, no id, auto-generated ids). Its `metadata.transferred_at` field is left out "
            "because the mapping is strict; otherwise the documents are the indexer's.",
            "- The naive script uses opensearch-py's `helpers.bulk` with the synchronous `OpenSearch` client because the "
            "node is OpenSearch (`elasticsearch.helpers.bulk` refuses a non-Elasticsearch server); helper defaults "
            "(500 actions per request), `_id` = code, etlhelper's dict rows.",
            "- Engine ceiling: the exact NDJSON bodies the indexer would send (`extract.read_chunks` and "
            "`documents.byte_batches` over the same rows) are built in memory first, untimed, then POSTed at each "
            "concurrency into a fresh index; the best concurrency counts.",
            "- The machine is shared and noisy (2 cores); compare the spread column before reading much into small differences.",
            ]
    if record.failures:
        out.append(f"- {len(record.failures)} run(s) failed and were run again (`--retries {args.retries}`); "
                   "the failed attempts are not in the figures:")
        out += [f"  - round {f['round']}, {SOURCE_NAMES[f['source']]} {f['config']} ({f['rows']:,} rows): {f['error']}"
                for f in record.failures]
    if runs:
        out += ["", "## Every run", "",
                "| round | source | configuration | rows | docs/s | wall s | CPU s | peak RSS MiB | engine CPU s |",
                "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in runs:
            extra = f" (c={r.result['best_concurrency']})" if r.config == "ceiling" else ""
            out.append(f"| {r.round} | {SOURCE_NAMES[r.source]} | {r.config}{extra} | {r.rows:,} | {r.docs_per_second:,.0f} | "
                       f"{r.result.get('timed_seconds', r.wall):.1f} | {r.cpu:.1f} | {r.maxrss_mib:.1f} | {fmt(r.engine_cpu)} |")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, help="rows for the main configurations (default 1,000,000; --quick 20,000)")
    p.add_argument("--rss-rows", type=int, help="the smaller size for RSS(full)/RSS(small) (default 200,000; --quick 5,000)")
    p.add_argument("--recipe-rows", type=int, help="rows for the recipe re-implementation (default 100,000; --quick 5,000)")
    p.add_argument("--repeat", type=int, help="runs per configuration, median reported (default 3; --quick 1)")
    p.add_argument("--quick", action="store_true", help="small sizes and one run each: check that everything works")
    p.add_argument("--sources", default="sqlite,pg", help="sqlite,pg (default both)")
    p.add_argument("--url", default=os.environ.get("INDEXER_URL", "http://127.0.0.1:9200"), help="the engine")
    p.add_argument("--ceiling-concurrency", default="1,2,4", help="concurrencies tried for the engine ceiling")
    p.add_argument("--no-es", dest="es", action="store_false",
                   help="skip the Elasticsearch 8 section (indexer and engine ceiling on a local Elasticsearch 8 node)")
    p.add_argument("--es-port", type=int, default=int(os.environ.get("BENCH_ES_PORT", "9201")),
                   help="the local Elasticsearch 8 node's HTTP port (started with scripts/engine.sh when none runs there)")
    p.add_argument("--sweep", action="store_true", help="also sweep chunk_size, concurrency and chunk_bytes on SQLite")
    p.add_argument("--no-main", action="store_true", help="skip the main comparison (with --sweep: only the sweep)")
    p.add_argument("--sweep-rows", type=int, help="rows for the sweep (default 200,000; --quick 20,000)")
    p.add_argument("--sweep-repeat", type=int, help="runs per sweep setting (default 3; --quick 1)")
    p.add_argument("--sweep-chunk-sizes", default="1000,2000,5000,10000")
    p.add_argument("--sweep-concurrency", default="1,2,4")
    p.add_argument("--sweep-chunk-bytes", default="1,4,8,16", help="MiB")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a child is killed")
    p.add_argument("--retries", type=int, default=1, help="times a failed run is run again before the benchmark stops")
    p.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = p.parse_args(argv)
    quick = {"rows": 20_000, "rss_rows": 5_000, "recipe_rows": 5_000, "repeat": 1, "sweep_rows": 20_000, "sweep_repeat": 1}
    full = {"rows": 1_000_000, "rss_rows": 200_000, "recipe_rows": 100_000, "repeat": 3, "sweep_rows": 200_000, "sweep_repeat": 3}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not set(args.sources) <= set(ALIASES) or not args.sources:
        p.error("--sources takes sqlite and/or pg")
    if args.repeat < 1 or args.sweep_repeat < 1:
        p.error("--repeat and --sweep-repeat must be at least 1")
    if args.no_main and not args.sweep:
        p.error("--no-main without --sweep measures nothing")
    return args


def run_sweep(args, env: dict[str, str], cluster: Cluster, record: Record) -> list[Run]:
    """Phase 1: chunk_size x concurrency at the default chunk_bytes. Phase 2: chunk_bytes at phase 1's best pair.

    SQLite only. Settings are compared only within their phase (the machine's load drifts between phases).
    """
    from indexer.config import DEFAULT_CHUNK_BYTES

    def configs(settings: list[tuple[int, int, int]], phase: int) -> list[Config]:
        out = []
        for cs, c, b in settings:
            job = write_job("sqlite", args.sweep_rows, args.url, name=f"sweep-{size_label(args.sweep_rows)}-cs{cs}-c{c}-b{b // 1024}k",
                            settings={"chunk_size": cs, "concurrency": c, "chunk_bytes": b})
            cfg = indexer_config("sweep", "sweep", "sqlite", args.sweep_rows, job, cluster)
            tag = {"chunk_size": cs, "concurrency": c, "chunk_bytes": b, "phase": phase}
            cfg.check = lambda summary, rows, tag=tag, check=cfg.check: {**check(summary, rows), "settings": tag}
            out.append(cfg)
        return out

    probe = measure(baseline_config("extract", "extract", "sqlite", args.sweep_rows,
                                    write_job("sqlite", args.sweep_rows, args.url)), 0, env, args.timeout)
    record.head["sweep_bytes_per_action"] = probe.result["bytes"] / args.sweep_rows
    sizes = [int(x) for x in args.sweep_chunk_sizes.split(",")]
    concs = [int(x) for x in args.sweep_concurrency.split(",")]
    grid = [(cs, c, DEFAULT_CHUNK_BYTES) for cs in sizes for c in concs]
    runs = run_rounds(configs(grid, 1), args.sweep_repeat, env, args, record, record.sweep, "sweep 1/2")
    best = sweep_phase(runs, 1)["best"]
    values = sorted({int(float(x) * MiB) for x in args.sweep_chunk_bytes.split(",")} | {DEFAULT_CHUNK_BYTES})
    byte_grid = [(best[0], best[1], b) for b in values]
    runs += run_rounds(configs(byte_grid, 2), args.sweep_repeat, env, args, record, record.sweep, "sweep 2/2")
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    started_at = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    env = {**os.environ, "INDEXER_URL": args.url}
    env.pop("INDEXER_PROGRESS", None)
    cluster = Cluster(args.url)
    try:
        cluster.call("GET", "/")
    except OSError as exc:
        raise SystemExit(f"no engine at {args.url} ({exc}); start it with `make engine`") from None
    sources = args.sources

    info = environment(cluster, sources, env)
    with contextlib.ExitStack() as stack:
        es_cluster = None
        if args.es and not args.no_main:
            es_node = stack.enter_context(EsNode(args.es_port))
            es_cluster = Cluster(es_node.url)
            root = es_cluster.call("GET", "/")
            info["engine_es"] = f"elasticsearch {root['version']['number']} (1 shard, 0 replicas)"
        return _main(args, command, started_at, started, env, cluster, es_cluster, sources, info)


def _main(args, command, started_at, started, env, cluster, es_cluster, sources, info) -> int:
    from indexer.config import DEFAULT_CHUNK_BYTES, DEFAULT_CHUNK_SIZE, DEFAULT_CONCURRENCY

    defaults = {"chunk_size": DEFAULT_CHUNK_SIZE, "concurrency": DEFAULT_CONCURRENCY, "chunk_bytes": DEFAULT_CHUNK_BYTES}
    install_template(cluster)
    cleanup(cluster, sources)
    if es_cluster is not None:
        install_template(es_cluster)
        cleanup(es_cluster, sources)

    sizes: dict[str, set[int]] = {s: set() for s in sources}
    if not args.no_main:
        for s in sources:
            sizes[s] |= {args.rows, args.rss_rows, args.recipe_rows}
    if args.sweep:
        sizes.setdefault("sqlite", set()).add(args.sweep_rows)
    data_notes, jobs, es_jobs = [], {}, {}
    for source, ns in sizes.items():
        for n in sorted(ns):
            how = ensure_data(source, n, env)
            where = sqlite_file(n).relative_to(ROOT) if source == "sqlite" else f"table {pg_table(n)}"
            data_notes.append(f"{SOURCE_NAMES[source]} {n:,} rows in {where} ({how})")
            jobs[(source, n)] = write_job(source, n, args.url)
            if es_cluster is not None and n == args.rows and not args.no_main:
                es_jobs[(source, n)] = write_job(source, n, es_cluster.url, name=f"es-{source}-{size_label(n)}",
                                                 engine="elasticsearch")
    log("; ".join(data_notes))

    startup = startup_cost(env, args.timeout)
    record = Record({"output": args.output.stem, "started": started_at.isoformat(), "command": command, "args": {k: str(v) if isinstance(v, Path) else v
                     for k, v in vars(args).items()}, "defaults": defaults, "data": data_notes, "info": info, "startup": startup})
    try:
        if not args.no_main:
            per_source = [main_configs(args, s, jobs, cluster)
                          + (es_configs(args, s, es_jobs, es_cluster) if es_cluster is not None else []) for s in sources]
            interleaved = [c for group in zip(*per_source) for c in group]  # same configuration, each source, next ...
            run_rounds(interleaved, args.repeat, env, args, record, record.runs, "main")
        if args.sweep:
            run_sweep(args, env, cluster, record)
    finally:
        cleanup(cluster, sources)
        if es_cluster is not None:
            cleanup(es_cluster, sources)
        record.save()

    minutes = (time.perf_counter() - started) / 60
    text = report(args, info, startup, record, sources, started_at, minutes, command, defaults, data_notes)
    args.output.write_text(text)
    print(text)
    log(f"wrote {args.output} ({minutes:.1f} min); raw runs in {(DATA / (args.output.stem + '.json')).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        log(f"bench: FAILED: {exc}")
        sys.exit(1)
