"""The nested documents benchmark of issue 21: merged child streams against one SQL join with json_agg.

    python bench/nested_bench.py                          # 200,000 orders x 5 lines, medians of 3; RSS at 1-500 lines
    python bench/nested_bench.py --quick                  # 5,000 orders, one round: does everything work? (~15 s)
    python bench/nested_bench.py --append BENCHMARKS.md   # also put the section into that file (make bench)

1. Side by side, interleaved (A, B, C, A, B, C, ...), medians of ``--repeat`` rounds, each a real
   ``python -m indexer.cli reindex JOB --json`` child process into the local node:

   * nested:   PostgreSQL, ``[[job.children]] name = "lines"`` (many, parent_key order_id, key order_id, line_no):
               the parent stream and the child stream merged by the indexer;
   * json_agg: PostgreSQL, a flat job whose query builds the same documents in the server
               (``json_agg(json_build_object(...) ORDER BY line_no)`` per order; psycopg2 parses the json);
   * sqlite:   the nested job over the same rows in a SQLite file (``--no-sqlite`` leaves it out).

   Then the documents of ~1,000 sampled ids are fetched from each index and must be equal (``indexer_digest``,
   which a nested job may stamp, left out of the comparison). Timestamps are whole seconds, so the reader's
   ``isoformat()`` and PostgreSQL's json rendering print them alike (``2024-01-01T00:00:07``).
2. Peak RSS against children per parent: the nested job over ``--rss-rows`` child rows arranged as
   1, 5, 50, 500 children per parent (parents = rows / n); the most children per parent again with chunk_size cut
   so that a fetch holds as many child rows as at 1 per parent (a probe: is a growth the fetch's?); and once with
   one parent of ``--big`` children among parents of 5; one run each (the figure is a high-water mark, not a rate).

Measuring as bench/run.py does: its launcher takes the child's wall time and, from ``os.wait4``, its CPU (user +
sys) and peak RSS; the PostgreSQL server's CPU (postmaster and backends, ended ones included) and the engine JVM's
come from /proc (bench/partitions_bench.py). Every run must report exactly the parents as documents and, nested,
the child rows, or the benchmark stops. The data: tables ``bench_orders_<pid>`` and ``bench_order_lines_<pid>``
(``generate_series``), dropped at the end; indices ``bench-nested-*`` from the template ``bench-nested``, removed at
the end. Needs the local node (ENGINE_PORT) and the local PostgreSQL server (PG_* as in the Makefile).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import random
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from baselines import Cluster, check_bench_name  # noqa: E402  (bench/ is this script's folder)
from partitions_bench import delta, postmaster_pid, put_section, server_cpu  # noqa: E402
from run import Failed, environment, fmt, last_json, log, pg_connect, pg_settings, run_child  # noqa: E402

SECTION = "## Nested documents (issue 21)"
TEMPLATE = "bench-nested"
DIGEST = "indexer_digest"  # relations.DIGEST_FIELD: left out of the comparison
LINE_FIELDS = {"line_no": "integer", "sku": "keyword", "qty": "integer", "cents": "integer", "updated_at": "date"}
KINDS = {"nested": "nested (`[[job.children]]`, merged streams), PostgreSQL",
         "json_agg": "json_agg (one query, documents built by the server), PostgreSQL",
         "sqlite": "nested (`[[job.children]]`, merged streams), SQLite"}
PARENTS = "SELECT id, customer, updated_at FROM {orders}"
CHILDREN = "SELECT order_id, line_no, sku, qty, cents, updated_at, is_deleted FROM {lines}"
JSON_AGG = ("SELECT o.id, o.customer, o.updated_at, COALESCE((SELECT json_agg(json_build_object('line_no', l.line_no, "
            "'sku', l.sku, 'qty', l.qty, 'cents', l.cents, 'updated_at', l.updated_at) ORDER BY l.line_no) "
            "FROM {lines} l WHERE l.order_id = o.id AND NOT l.is_deleted), '[]'::json) AS lines FROM {orders} o")


# ------------------------------------------------------------------ data


@dataclasses.dataclass(frozen=True)
class Shape:
    """Orders in runs of equal size: ``groups`` = ((orders, lines each), ...), ids 1, 2, ... in that order."""

    name: str
    groups: tuple[tuple[int, int], ...]

    @property
    def parents(self) -> int:
        return sum(n for n, _ in self.groups)

    @property
    def children(self) -> int:
        return sum(n * k for n, k in self.groups)

    def ranges(self):
        """(first id, last id, lines each) of every group."""
        first = 1
        for n, k in self.groups:
            yield first, first + n - 1, k
            first += n


# Values from the ids alone; timestamps in whole seconds (see the docstring). %% is psycopg2's %.
PG_ORDERS = ("INSERT INTO {orders} SELECT o, 'customer ' || (o %% 5000), "
             "timestamp '2024-01-01' + o * interval '1 second' FROM generate_series(%s, %s) o")
PG_LINES = ("INSERT INTO {lines} SELECT o, l, 'SKU-' || lpad(((o * 7 + l) %% 100000)::text, 6, '0'), 1 + (o + l) %% 9, "
            "(o * 31 + l * 17) %% 100000, timestamp '2024-01-01' + (o * 10 + l) * interval '1 second', false "
            "FROM generate_series(%s, %s) o, generate_series(1, %s) l ORDER BY 1, 2")


def pg_tables(shape: Shape, orders: str, lines: str) -> float:
    """Create and fill the two tables; seconds taken."""
    started = time.perf_counter()
    with contextlib.closing(pg_connect()) as conn, conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {orders}, {lines}")
        cur.execute(f"CREATE TABLE {orders} (id bigint PRIMARY KEY, customer text NOT NULL, "
                    "updated_at timestamp NOT NULL)")
        cur.execute(f"CREATE TABLE {lines} (order_id bigint NOT NULL, line_no int NOT NULL, sku text NOT NULL, "
                    "qty int NOT NULL, cents int NOT NULL, updated_at timestamp NOT NULL, "
                    "is_deleted boolean NOT NULL DEFAULT false, PRIMARY KEY (order_id, line_no))")
        for lo, hi, k in shape.ranges():
            cur.execute(PG_ORDERS.format(orders=orders), (lo, hi))
            cur.execute(PG_LINES.format(lines=lines), (lo, hi, k))
    with contextlib.closing(pg_connect()) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"VACUUM ANALYZE {orders}")
            cur.execute(f"VACUUM ANALYZE {lines}")
    return time.perf_counter() - started


def pg_drop(*tables: str) -> None:
    with contextlib.closing(pg_connect()) as conn, conn, conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {', '.join(tables)}")


def sqlite_tables(shape: Shape, path: Path) -> float:
    """The same rows in a SQLite file (tables orders and lines; text timestamps as PostgreSQL's json prints them)."""
    started = time.perf_counter()
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, updated_at TEXT NOT NULL)")
        conn.execute("CREATE TABLE lines (order_id INTEGER NOT NULL, line_no INTEGER NOT NULL, sku TEXT NOT NULL, "
                     "qty INTEGER NOT NULL, cents INTEGER NOT NULL, updated_at TEXT NOT NULL, "
                     "is_deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (order_id, line_no)) WITHOUT ROWID")
        stamp = "strftime('%Y-%m-%dT%H:%M:%S', '2024-01-01', '+' || ({}) || ' seconds')"
        for lo, hi, k in shape.ranges():
            conn.execute(f"WITH RECURSIVE o(v) AS (SELECT ? UNION ALL SELECT v + 1 FROM o WHERE v < ?) "
                         f"INSERT INTO orders SELECT v, 'customer ' || (v % 5000), {stamp.format('v')} FROM o",
                         (lo, hi))
            conn.execute(f"WITH RECURSIVE o(v) AS (SELECT ? UNION ALL SELECT v + 1 FROM o WHERE v < ?), "
                         f"l(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM l WHERE n < ?) "
                         f"INSERT INTO lines SELECT v, n, 'SKU-' || substr('00000' || ((v * 7 + n) % 100000), -6), "
                         f"1 + (v + n) % 9, (v * 31 + n * 17) % 100000, {stamp.format('v * 10 + n')}, 0 "
                         "FROM o, l ORDER BY 1, 2", (lo, hi, k))
    return time.perf_counter() - started


# ------------------------------------------------------------------ job files, template, indices


def job_file(folder: Path, name: str, url: str, source: str, query: str, children: str | None,
             chunk_size: int | None = None) -> Path:
    """A job file: alias bench-nested-<name>; ``children``: the lines query as [[job.children]] (else flat)."""
    if source == "sqlite":
        head = ['dbtype = "SQLITE"', f"filename = {json.dumps(str(folder / 'nested.db'))}"]
    else:
        s = pg_settings()
        head = ['dbtype = "PG"', f'host = "{s["host"]}"', f"port = {s['port']}", f'dbname = "{s["dbname"]}"',
                f'user = "{s["user"]}"', 'password_env = "PG_PASSWORD"']
    lines = ["# written by bench/nested_bench.py", "[source]", *head, "", "[target]", f"url = {json.dumps(url)}", "",
             "[job]", f'alias = "bench-nested-{name}"', 'key = ["id"]', f"query = {json.dumps(query)}", "keep = 0"]
    lines += [f"chunk_size = {chunk_size}"] if chunk_size else []
    if children:
        lines += ["", "[[job.children]]", 'name = "lines"', f"query = {json.dumps(children)}",
                  'parent_key = ["order_id"]', 'key = ["order_id", "line_no"]', "many = true", 'deleted = "is_deleted"']
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def install_template(cluster: Cluster, biggest: int) -> None:
    """bench-nested-*: 1 shard, 0 replicas, strict mappings, ``lines`` nested (as `indexer init --child` maps it)
    with the nested objects' limit raised above the biggest document's lines."""
    lines = {"type": "nested", "properties": {f: {"type": t} for f, t in LINE_FIELDS.items()}}
    mappings = {"dynamic": "strict", "properties": {
        "id": {"type": "long"}, "customer": {"type": "keyword"}, "updated_at": {"type": "date"}, "lines": lines,
        DIGEST: {"type": "keyword", "index": False, "doc_values": False}}}
    settings = {"number_of_shards": 1, "number_of_replicas": 0,
                "mapping.nested_objects.limit": max(10_000, 2 * biggest)}
    cluster.call("PUT", f"/_index_template/{TEMPLATE}", {
        "index_patterns": ["bench-nested-*"], "priority": 700, "template": {"settings": settings, "mappings": mappings},
        "_meta": {"managed_by": "bench/nested_bench.py", "description": "issue 21 benchmark indices"}})


def drop_indices(cluster: Cluster, pattern: str = "bench-nested-*") -> None:
    for index in cluster.indices(pattern):
        check_bench_name(index)
        cluster.delete(index)


def mget(cluster: Cluster, alias: str, ids: list[int]) -> dict[str, dict | None]:
    found = cluster.call("POST", f"/{alias}/_mget", {"ids": [str(i) for i in ids]})["docs"]
    return {d["_id"]: ({k: v for k, v in d["_source"].items() if k != DIGEST} if d.get("found") else None)
            for d in found}


def compare(cluster: Cluster, aliases: list[str], shape: Shape, sample: int) -> str:
    """The documents of ``sample`` ids (seeded) equal in every alias, each with its lines; a sentence saying so."""
    ids = sorted(random.Random(21).sample(range(1, shape.parents + 1), min(sample, shape.parents)))
    docs = {alias: mget(cluster, alias, ids) for alias in aliases}
    first = docs[aliases[0]]
    lines = shape.groups[0][1]
    for id_, doc in first.items():
        if doc is None or len(doc.get("lines", [])) != lines:
            raise Failed(f"{aliases[0]}: document {id_} is {'missing' if doc is None else 'without its lines'}")
        for alias in aliases[1:]:
            if docs[alias][id_] != doc:
                raise Failed(f"document {id_} differs: {aliases[0]} {json.dumps(doc)[:400]} "
                             f"vs {alias} {json.dumps(docs[alias][id_])[:400]}")
    return (f"the `_source` of {len(ids):,} sampled ids (seeded) is equal in {', '.join(f'`{a}`' for a in aliases)} "
            f"(`{DIGEST}` left out), each with its {lines} lines")


# ------------------------------------------------------------------ measuring


@dataclasses.dataclass
class Sample:
    kind: str
    round: int
    parents: int
    children: int
    per_parent: str
    wall: float
    cpu: float
    maxrss_mib: float
    db_cpu: float | None
    engine_cpu: float | None
    seconds: float  # inside the run (the summary's), start-up and the engine's admin calls excluded

    @property
    def dps(self) -> float:
        return self.parents / self.wall


def measure(kind: str, job: Path, shape: Shape, round_: int, env: dict[str, str], cluster: Cluster, folder: Path,
            timeout: float, per_parent: str = "") -> Sample:
    """One ``indexer reindex`` of ``job`` in a child process, checked: every parent a document (nested: with
    every child row), nothing rejected."""
    alias = f"bench-nested-{job.stem}"
    drop_indices(cluster, f"{alias}-*")
    argv = [sys.executable, "-m", "indexer.cli", "reindex", str(job), "--json", "--no-progress",
            "--state-file", str(folder / f"{job.stem}.state.json")]
    pg = postmaster_pid() if kind != "sqlite" else None
    db0 = server_cpu(pg)
    wall, cpu, rss, out, err, code, engine_cpu = run_child(argv, env, timeout)
    time.sleep(0.2)  # ended backends reaped by the postmaster: their CPU moves into its cutime
    db1 = server_cpu(pg)
    if code != 0:
        raise Failed(f"{kind} reindex exited {code}:\n{shlex.join(argv)}\n{err.strip()[-2000:]}")
    try:
        summary = last_json(out)
    except ValueError as exc:
        raise Failed(f"{kind}: {exc}; stderr: {err[-1000:]!r}") from None
    want = {"outcome": "ok", "rows_read": shape.parents, "sent": shape.parents, "indexed": shape.parents,
            "documents_in_index": shape.parents, "rejected": 0, "orphans": 0,
            "child_rows": 0 if kind == "json_agg" else shape.children}
    got = {k: summary.get(k) for k in want}
    if got != want:
        raise Failed(f"{kind} reindex of {shape.name}: {got}, expected {want} ({summary.get('error')})")
    return Sample(kind, round_, shape.parents, shape.children, per_parent, wall, cpu, rss, delta(db0, db1), engine_cpu,
                  summary["seconds"])


def retried(what: str, failures: list[str], retries: int, run, *args) -> Sample:
    """``run(*args)``, again up to ``retries`` times when it fails (the machine and its services are shared)."""
    for attempt in range(retries + 1):
        try:
            return run(*args)
        except Failed as exc:
            failures.append(f"{what}: {str(exc).strip().splitlines()[-1][:300]}")
            if attempt == retries:
                raise
            log(f"[nested] {what} failed ({failures[-1]}); retrying")
    raise AssertionError("unreachable")


def side_by_side(args, env, cluster, folder: Path, record: dict) -> str:
    """The configurations in turn, ``--repeat`` rounds; then the documents compared. The equality sentence."""
    shape = Shape(f"{args.orders:,} orders x {args.lines}", ((args.orders, args.lines),))
    sfx = os.getpid()
    orders, lines = f"bench_orders_{sfx}", f"bench_order_lines_{sfx}"
    record["tables"] += [orders, lines]
    record["data"].append(f"PostgreSQL tables {orders}, {lines}: {shape.parents:,} orders, {shape.children:,} lines "
                          f"(generated in {pg_tables(shape, orders, lines):.0f} s)")
    jobs = {"nested": job_file(folder, "nested", args.url, "pg", PARENTS.format(orders=orders),
                               CHILDREN.format(lines=lines)),
            "json_agg": job_file(folder, "json_agg", args.url, "pg", JSON_AGG.format(orders=orders, lines=lines), None)}
    if args.sqlite:
        took = sqlite_tables(shape, folder / "nested.db")
        record["data"].append(f"SQLite: the same rows in a temporary file (generated in {took:.0f} s)")
        jobs["sqlite"] = job_file(folder, "sqlite", args.url, "sqlite", PARENTS.format(orders="orders"),
                                  CHILDREN.format(lines="lines"))
    total, started = len(jobs) * args.repeat, time.perf_counter()
    for round_ in range(1, args.repeat + 1):
        for kind, job in jobs.items():
            s = retried(f"round {round_} {kind}", record["failures"], args.retries,
                        measure, kind, job, shape, round_, env, cluster, folder, args.timeout)
            record["samples"].append(s)
            log(f"[nested {len(record['samples'])}/{total}] {kind:<9} {s.dps:>8,.0f} docs/s, wall {s.wall:5.1f} s, "
                f"CPU {s.cpu:5.1f} s, db {fmt(s.db_cpu)} s, engine {fmt(s.engine_cpu)} s, RSS {s.maxrss_mib:6.1f} MiB "
                f"(elapsed {(time.perf_counter() - started) / 60:.1f} min)")
    same = compare(cluster, [f"bench-nested-{kind}" for kind in jobs], shape, args.sample)
    drop_indices(cluster)
    pg_drop(orders, lines)
    return same


def rss_plan(args) -> list[tuple[str, Shape, int | None]]:
    """(role, shape, chunk_size or the default) of each RSS run: the shapes of --per; the most children per parent
    again with chunk_size cut to hold as many child rows a chunk as 1 per parent does (the probe: is the growth the
    chunk's?); the big document among parents of 5."""
    from indexer.config import DEFAULT_CHUNK_SIZE

    n, most = args.rss_rows, max(args.per)
    plan: list[tuple[str, Shape, int | None]] = [("rss", Shape(f"{k} per parent", ((n // k, k),)), None)
                                                 for k in args.per]
    probe = max(1, DEFAULT_CHUNK_SIZE // most)
    plan.append(("rss_probe", Shape(f"{most} per parent, chunk_size {probe}", ((n // most, most),)), probe))
    small = (n - args.big) // 5
    groups = ((small // 2, 5), (1, args.big), (small - small // 2, 5))
    plan.append(("rss_big", Shape(f"one of {args.big:,} among parents of 5", groups), None))
    return plan


def rss_runs(args, env, cluster, folder: Path, record: dict) -> None:
    """The nested job over each shape, one run each; tables made before and dropped after each."""
    for i, (role, shape, chunk_size) in enumerate(rss_plan(args)):
        orders, lines = f"bench_orders_{os.getpid()}_r{i}", f"bench_order_lines_{os.getpid()}_r{i}"
        record["tables"] += [orders, lines]
        took = pg_tables(shape, orders, lines)
        job = job_file(folder, f"rss{i}", args.url, "pg", PARENTS.format(orders=orders), CHILDREN.format(lines=lines),
                       chunk_size)
        s = retried(f"RSS {shape.name}", record["failures"], args.retries,
                    measure, "nested", job, shape, 1, env, cluster, folder, args.timeout, shape.name)
        if role == "rss_big":  # the big document: its size as stored
            big = cluster.call("GET", f"/bench-nested-rss{i}/_doc/{shape.groups[0][0] + 1}")["_source"]
            record["big_mib"] = len(json.dumps(big, separators=(",", ":")).encode()) / 2**20
        record[role].append(s)
        drop_indices(cluster)
        pg_drop(orders, lines)
        log(f"[nested RSS] {shape.name}: {shape.parents:,} parents, {shape.children:,} lines (made in {took:.0f} s): "
            f"peak RSS {s.maxrss_mib:.1f} MiB, {s.dps:,.0f} docs/s, CPU {s.cpu:.1f} s")


# ------------------------------------------------------------------ the report


def med(samples: list[Sample], f) -> float | None:
    values = [v for v in map(f, samples) if v is not None]
    return statistics.median(values) if values else None


def side_table(record: dict) -> list[str]:
    by = {k: [s for s in record["samples"] if s.kind == k] for k in KINDS}
    out = ["| configuration | docs/s (median) | spread | wall s | in-run s | indexer CPU s | indexer CPU us/doc "
           "| PostgreSQL server CPU s | engine CPU s | peak RSS MiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, samples in by.items():
        if not samples:
            continue
        values = [s.dps for s in samples]
        spread = 50 * (max(values) - min(values)) / statistics.median(values)
        out.append(f"| {KINDS[kind]} | {med(samples, lambda s: s.dps):,.0f} | ±{spread:.0f}% | "
                   f"{med(samples, lambda s: s.wall):.1f} | {med(samples, lambda s: s.seconds):.1f} | "
                   f"{med(samples, lambda s: s.cpu):.1f} | {med(samples, lambda s: s.cpu / s.parents * 1e6):.0f} | "
                   f"{fmt(med(samples, lambda s: s.db_cpu))} | {fmt(med(samples, lambda s: s.engine_cpu))} | "
                   f"{med(samples, lambda s: s.maxrss_mib):.1f} |")
    return out


def round_ratios(record: dict, f) -> list[float]:
    """nested / json_agg of ``f`` in each round."""
    pairs = {}
    for s in record["samples"]:
        pairs.setdefault(s.round, {})[s.kind] = f(s)
    return [p["nested"] / p["json_agg"] for p in pairs.values() if "nested" in p and "json_agg" in p]


def rss_table(record: dict) -> list[str]:
    out = ["| children per parent | parents | child rows | docs/s | child rows/s | wall s | indexer CPU s "
           "| peak RSS MiB |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    out += [f"| {s.per_parent} | {s.parents:,} | {s.children:,} | {s.dps:,.0f} | {s.children / s.wall:,.0f} | "
            f"{s.wall:.1f} | {s.cpu:.1f} | {s.maxrss_mib:.1f} |" for s in record["rss"] + record["rss_probe"]
            + record["rss_big"]]
    return out


def reading(args, record: dict) -> list[str]:
    """What the figures say, in numbers (the words around them do not change with the figures)."""
    out = []
    by = {k: [s for s in record["samples"] if s.kind == k] for k in KINDS}
    if by["nested"] and by["json_agg"]:
        dps = round_ratios(record, lambda s: s.dps)
        cpu = round_ratios(record, lambda s: s.cpu)
        db = [s.db_cpu for s in by["nested"] + by["json_agg"]]
        line = (f"- docs/s, nested / json_agg: **{statistics.median(dps):.2f}x** (per round: "
                f"{', '.join(f'{r:.2f}' for r in dps)}); the indexer's CPU, nested / json_agg: "
                f"{statistics.median(cpu):.2f}x (per round: {', '.join(f'{r:.2f}' for r in cpu)}).")
        if None not in db:
            nested_db, agg_db = med(by["nested"], lambda s: s.db_cpu), med(by["json_agg"], lambda s: s.db_cpu)
            line += (f" The PostgreSQL server's CPU: {nested_db:.1f} s nested (two ordered scans), {agg_db:.1f} s "
                     "json_agg (a correlated subquery and the JSON text per order), the server shared with other "
                     "work on this machine.")
        out.append(line)
        out.append(f"- Client and server together (indexer + PostgreSQL CPU s, medians): nested "
                   f"{med(by['nested'], lambda s: s.cpu + (s.db_cpu or 0)):.1f}, json_agg "
                   f"{med(by['json_agg'], lambda s: s.cpu + (s.db_cpu or 0)):.1f}." if None not in db else
                   "- The PostgreSQL server's CPU could not be read (not on this machine).")
    if record["rss"] and record["rss_probe"] and record["rss_big"]:
        regular, probe, big = record["rss"], record["rss_probe"][0], record["rss_big"][0]
        low = min(regular, key=lambda s: s.maxrss_mib)
        fewest, most = regular[0], regular[-1]  # the shapes in order of children per parent
        five = next((s for s in regular if s.per_parent.startswith("5 ")), regular[0])
        grows = most.maxrss_mib > 1.2 * fewest.maxrss_mib  # the question: more children, more memory?
        out.append(f"- Peak RSS from {fewest.per_parent} to {most.per_parent}: {fewest.maxrss_mib:.0f} to "
                   f"{most.maxrss_mib:.0f} MiB ({most.maxrss_mib / fewest.maxrss_mib:.2f}x; lowest "
                   f"{low.maxrss_mib:.0f}): "
                   + ("**it grows with the children per parent**, against the issue's requirement." if grows else
                      "it does not grow with the children per parent (within 20%, or lower)."))
        out.append(f"- The probe, {probe.per_parent} (as many child rows a fetch as 1 per parent holds): peak RSS "
                   f"{probe.maxrss_mib:.0f} MiB against {most.maxrss_mib:.0f} MiB at the default chunk_size"
                   + (": the growth is in what a fetch holds, not in the merge's look-ahead." if grows
                      and probe.maxrss_mib <= 1.2 * fewest.maxrss_mib else "."))
        out.append(f"- The one document of {args.big:,} lines ({record.get('big_mib', 0):.1f} MiB "
                   f"of JSON) among parents of 5: peak RSS {big.maxrss_mib:.0f} MiB against {five.maxrss_mib:.0f} MiB "
                   f"with {five.per_parent.split()[0]} lines each ({big.maxrss_mib - five.maxrss_mib:+.0f} MiB); "
                   "a document is held whole by design.")
    return out


def report(args, info: dict, record: dict, minutes: float) -> str:
    out = [SECTION, ""]
    if args.quick:
        out += [f"> **Quick run** (`--quick`): {args.orders:,} orders, one round. It checks that everything works; "
                "its figures are dominated by start-up and are not the benchmark.", ""]
    shapes = ", ".join(f"{n:,} parents x {k}" for n, k in ((args.rss_rows // k, k) for k in args.per))
    out += ["Written by `bench/nested_bench.py`; rerun with `make bench` (or the command below); do not edit by hand.",
            "",
            f"- date: {record['started'][:16].replace('T', ' ')} UTC; the run took {minutes:.1f} min; command: "
            f"`{record['command']}`",
            f"- machine: {info['machine']}; load average at the start: {info['load']}",
            f"- Python {info['Python']}; indexer {info['indexer']} (commit {info['commit']}); engine: "
            f"{info['engine']}, local node; SQLite {info['SQLite']}; PostgreSQL {info['PostgreSQL']} (local); the "
            "machine and both servers shared with other work: rounds interleaved, medians and per-round ratios",
            f"- data: {'; '.join(record['data'])}. Orders `(id bigint primary key, customer text, updated_at "
            "timestamp)`, lines `(order_id, line_no, sku text, qty int, cents int, updated_at timestamp, is_deleted "
            "bool false)`, primary key (order_id, line_no); values from the ids (`generate_series`), timestamps in "
            "whole seconds so that `isoformat()` (the reader) and PostgreSQL's json print them alike "
            "(`2024-01-01T00:00:07`).",
            f"- nested job: `query = \"{PARENTS.format(orders='bench_orders_N')}\"`, key `id`; `[[job.children]] "
            f"name = \"lines\"`, `query = \"{CHILDREN.format(lines='bench_order_lines_N')}\"`, parent_key "
            "`[\"order_id\"]`, key `[\"order_id\", \"line_no\"]`, many, deleted `is_deleted`. json_agg job: key `id`, "
            f"`query = \"{JSON_AGG.format(orders='bench_orders_N', lines='bench_order_lines_N')}\"`. Indexer "
            "defaults otherwise (chunk_size 5,000, 8 MiB, concurrency 2); `keep = 0`.",
            "- each run: `python -m indexer.cli reindex JOB --json --no-progress --state-file ...` as a child process "
            "into a fresh index (the previous one deleted, untimed); template `bench-nested`: 1 shard, 0 replicas, "
            "strict mappings, `lines` mapped `nested` (as `indexer init --child` maps it). docs/s = parents / the "
            "process's wall time (start-up included); in-run s = the summary's `seconds`. CPU: user + sys of the "
            "indexer process (`os.wait4`); PostgreSQL server CPU: postmaster and backends over the run (/proc); "
            "engine CPU: the JVM over the run (/proc). Checked: every parent a document, nested runs every child "
            "row, nothing rejected or orphaned.",
            f"- documents: {record['same']}.",
            "", f"### Side by side: {args.orders:,} orders x {args.lines} lines, medians of {args.repeat} interleaved "
            "rounds", ""]
    out += side_table(record)
    out += ["", f"### Peak RSS against children per parent ({args.rss_rows:,} child rows; one run each)", "",
            f"The nested PostgreSQL job over {shapes}; the most children per parent again with chunk_size cut so that "
            "a fetch holds as many child rows as at 1 per parent (a probe of where the memory goes); and once over "
            f"one parent of {args.big:,} lines among parents of 5 (in the middle of the ids). One run per shape: "
            "peak RSS is a high-water mark, not a rate; the docs/s here are single runs.", ""]
    out += rss_table(record)
    out += ["", "### Reading", ""] + reading(args, record)
    if record["failures"]:
        out += ["", f"{len(record['failures'])} run(s) failed and were run again; not in the figures:"]
        out += [f"- {f}" for f in record["failures"]]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one round: check that everything works")
    p.add_argument("--orders", type=int, help="parents side by side (default 200,000; --quick 5,000)")
    p.add_argument("--lines", type=int, default=5, help="children per parent side by side (default 5)")
    p.add_argument("--repeat", type=int, help="rounds side by side, medians reported (default 3; --quick 1)")
    p.add_argument("--rss-rows", type=int, help="child rows of each RSS shape (default 1,000,000; --quick 20,000)")
    p.add_argument("--per", default="1,5,50,500", help="children per parent of the RSS shapes")
    p.add_argument("--big", type=int, help="lines of the one big document (default 100,000; --quick 5,000)")
    p.add_argument("--sample", type=int, default=1000, help="documents compared between the indices")
    p.add_argument("--no-sqlite", dest="sqlite", action="store_false", help="leave out the SQLite nested runs")
    p.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('ENGINE_PORT', '9200')}", help="the local node")
    p.add_argument("--timeout", type=float, default=3600, help="seconds before a run is killed")
    p.add_argument("--retries", type=int, default=1, help="times a failed run is run again before the benchmark stops")
    p.add_argument("--append", type=Path, help="also put the section into this file (replacing an earlier one)")
    args = p.parse_args(argv)
    quick = args.quick
    args.orders = args.orders or (5_000 if quick else 200_000)
    args.repeat = args.repeat or (1 if quick else 3)
    args.rss_rows = args.rss_rows or (20_000 if quick else 1_000_000)
    args.big = args.big or (5_000 if quick else 100_000)
    args.per = [int(x) for x in args.per.split(",") if x]
    if args.big >= args.rss_rows or not args.per or min(args.per) < 1 or args.lines < 1:
        p.error("--big must be below --rss-rows; --per and --lines at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at, started = dt.datetime.now(dt.UTC), time.perf_counter()
    env = {**{k: v for k, v in os.environ.items() if k not in ("INDEXER_URL", "INDEXER_PROGRESS")},
           "PYTHONPATH": str(ROOT)}  # job files name the url
    cluster = Cluster(args.url)
    try:
        cluster.call("GET", "/")
    except OSError as exc:
        raise SystemExit(f"no engine at {args.url} ({exc}); start it with `make engine`") from None
    info = environment(cluster, ["pg"], env)
    record = {"started": started_at.isoformat(), "data": [], "samples": [], "rss": [], "rss_probe": [], "rss_big": [],
              "failures": [], "tables": [],
              "command": shlex.join(["python", "bench/nested_bench.py", *(sys.argv[1:] if argv is None else argv)])}
    install_template(cluster, max(args.big, max(args.per), args.lines))
    drop_indices(cluster)
    try:
        with tempfile.TemporaryDirectory(prefix="nested-bench-") as folder:
            record["same"] = side_by_side(args, env, cluster, Path(folder), record)
            rss_runs(args, env, cluster, Path(folder), record)
    finally:
        drop_indices(cluster)
        cluster.call("DELETE", f"/_index_template/{TEMPLATE}", missing_ok=True)
        if record["tables"]:
            pg_drop(*record["tables"])
    text = report(args, info, record, (time.perf_counter() - started) / 60)
    print(text)
    if args.append:
        put_section(args.append, text, SECTION)
        log(f"wrote the section into {args.append}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failed as exc:
        log(f"nested bench: FAILED: {exc}")
        sys.exit(1)
