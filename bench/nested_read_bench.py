"""How nested documents are read for a whole reindex: merged streams against key lists (issue 21's choice).

    python bench/nested_read_bench.py                          # 200,000 orders x 5 lines, SQLite and PostgreSQL
    python bench/nested_read_bench.py --quick                  # 20,000 orders, one round: does it work?
    python bench/nested_read_bench.py --append BENCHMARKS.md   # also put the section into that file (make bench)

Extraction only (read, join, encode; nothing sent): ``extract.read_chunks`` over the whole job, in a child
process per run, with ``merge`` (the reindex: every table read once, in key order, merged as streams) and
``keys`` (what sync and preview use: each chunk of parents, then its children by ``WHERE order_id IN (...)``,
one statement per chunk and child). Runs interleaved (merge, keys, merge, keys...), medians of 3: wall, CPU
(user + sys of the child, from ``os.wait4``) and peak RSS. Both runs must give the same number of documents
and child rows, or the benchmark stops.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

LINES = 5
PG = {"host": "127.0.0.1", "port": int(os.environ.get("PG_PORT", "54329")),
      "dbname": os.environ.get("PG_DB", "indexer_test"), "user": os.environ.get("PG_USER", "indexer")}


def _job(source: dict, orders: str, lines: str) -> dict:
    return {"source": source, "target": {"url": "http://127.0.0.1:9"}, "job": {
        "alias": "bench-nested", "key": ["id"], "chunk_size": 5000,
        "query": f"SELECT id, customer, updated_at FROM {orders}",
        "children": [{"name": "lines", "query": f"SELECT order_id, line_no, sku, qty, cents FROM {lines}",
                      "parent_key": ["order_id"], "key": ["order_id", "line_no"]}]}}


def sqlite_data(folder: Path, orders: int) -> dict:
    path = folder / f"nested-{orders}.db"
    if not path.exists():
        conn = sqlite3.connect(path)
        conn.executescript(f"""
            CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, updated_at TEXT);
            CREATE TABLE order_lines (order_id INTEGER, line_no INTEGER, sku TEXT, qty INTEGER, cents INTEGER,
                                      PRIMARY KEY (order_id, line_no));
            WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {orders})
            INSERT INTO orders SELECT n, 'customer ' || n, '2026-01-01T00:00:00' FROM g;
            WITH RECURSIVE l(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM l WHERE k < {LINES})
            INSERT INTO order_lines SELECT id, k, 'SKU-' || (id * 7 + k) % 1000, k, id % 997 FROM orders, l;
        """)
        conn.commit()
        conn.close()
    return _job({"dbtype": "SQLITE", "filename": str(path)}, "orders", "order_lines")


def pg_data(orders: int) -> tuple[dict, list[str]]:
    import psycopg2
    suffix = uuid.uuid4().hex[:6]
    names = [f"bench_n_orders_{suffix}", f"bench_n_lines_{suffix}"]
    with psycopg2.connect(password=os.environ["PG_PASSWORD"], **PG) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {names[0]} (id INTEGER PRIMARY KEY, customer TEXT, updated_at TIMESTAMP)")
        cur.execute(f"INSERT INTO {names[0]} SELECT g, 'customer ' || g, '2026-01-01' FROM generate_series(1, {orders}) g")
        cur.execute(f"CREATE TABLE {names[1]} (order_id INTEGER, line_no INTEGER, sku TEXT, qty INTEGER, cents INTEGER, "
                    "PRIMARY KEY (order_id, line_no))")
        cur.execute(f"INSERT INTO {names[1]} SELECT g, k, 'SKU-' || (g * 7 + k) % 1000, k, g % 997 "
                    f"FROM generate_series(1, {orders}) g, generate_series(1, {LINES}) k")
        cur.execute(f"ANALYZE {names[0]}; ANALYZE {names[1]}")
    source = {**PG, "dbtype": "PG", "password_env": "PG_PASSWORD"}
    return _job(source, *names), names


def child(spec: str, mode: str) -> None:
    """The measured run (in a child process): every chunk of the job read and encoded."""
    from indexer import extract
    from indexer.config import Job
    job = Job(**json.loads(spec), base_dir=ROOT, name="bench")
    plan = extract.ReadPlan(job.job.query, extract.user_params(job), "reindex", by_keys=mode == "keys")
    docs = rows = 0
    for chunk in extract.read_chunks(job, plan):
        docs += len(chunk.actions)
        rows += chunk.child_rows
    print(json.dumps({"documents": docs, "child_rows": rows}))


def measure(spec: dict, mode: str) -> dict:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec), mode], stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        sys.exit(f"{mode} run failed (status {status})")
    return {**json.loads(out), "wall": time.monotonic() - started, "cpu": usage.ru_utime + usage.ru_stime,
            "rss_mib": usage.ru_maxrss / 1024}


def compare(name: str, spec: dict, rounds: int) -> list[str]:
    runs: dict[str, list[dict]] = {"merge": [], "keys": []}
    for _ in range(rounds):
        for mode in runs:
            runs[mode].append(measure(spec, mode))
    firsts = {(r["documents"], r["child_rows"]) for rs in runs.values() for r in rs}
    if len(firsts) != 1:
        sys.exit(f"{name}: the two reads disagree: {firsts}")
    med = {m: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "rss_mib")} for m, rs in runs.items()}
    docs = next(iter(firsts))[0]
    lines = [f"| {name} | {mode} | {docs / med[mode]['wall']:,.0f} | {med[mode]['wall']:.1f} | {med[mode]['cpu']:.1f} | "
             f"{med[mode]['rss_mib']:.0f} |" for mode in runs]
    lines.append(f"| {name} | keys / merge | | {med['keys']['wall'] / med['merge']['wall']:.2f}x | "
                 f"{med['keys']['cpu'] / med['merge']['cpu']:.2f}x | |")
    return lines


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    orders, rounds = (20_000, 1) if args.quick else (200_000, 3)
    folder = ROOT / "bench" / "data"
    folder.mkdir(parents=True, exist_ok=True)
    table = ["| source | read | docs/s | wall s | CPU s | peak RSS MiB |", "|---|---|---|---|---|---|"]
    table += compare("SQLite", sqlite_data(folder, orders), rounds)
    spec, names = pg_data(orders)
    try:
        table += compare("PostgreSQL", spec, rounds)
    finally:
        import psycopg2
        with psycopg2.connect(password=os.environ["PG_PASSWORD"], **PG) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {names[1]}; DROP TABLE IF EXISTS {names[0]}")
    section = "\n".join([
        f"## Nested documents: merged streams against key lists (issue 21), {dt.date.today()}", "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"`python bench/nested_read_bench.py{' --quick' if args.quick else ''}`: {orders:,} orders x {LINES} lines, "
        f"read and encoded (nothing sent), medians of {rounds}, runs interleaved.", "", *table, "",
        "merge: the reindex's read (each table once, in key order, merged); keys: each chunk of 5,000 parents, "
        "then its lines by `WHERE order_id IN (...)` (what sync and preview use).", ""])
    print(section)
    if args.append:
        with args.append.open("a") as out:
            out.write("\n" + section)


if __name__ == "__main__":
    main()
