"""The benchmark's baselines (issue #4), each run alone in a child process by bench/run.py.

    python bench/baselines.py recipe  JOB.toml --rows N --index bench-baseline-recipe-sqlite
    python bench/baselines.py naive   JOB.toml --rows N --index bench-baseline-naive-sqlite
    python bench/baselines.py ceiling JOB.toml --rows N --index bench-baseline-ceiling-sqlite --concurrency 1,2,4 [--engine-pid PID]
    python bench/baselines.py extract JOB.toml --rows N

Every baseline reads the same job file as ``indexer reindex`` (source, query, key,
chunk settings), checks that it handled exactly ``--rows`` documents (else exits 1),
and prints one JSON line on stdout. The runner measures the process from outside
(wall time, CPU, peak RSS); ``seconds`` here is the baseline's own timer.

* ``recipe``  - a RE-IMPLEMENTATION of etlhelper's recipe "Database to API / NoSQL copy
  ETL script template" (copy_sensors_async.py): ``etlhelper.iter_chunks`` with a
  transform to dicts, then for every 5,000-row chunk one ``asyncio.run`` that opens an
  ``aiohttp.ClientSession`` and POSTs each document alone to ``/<index>/_doc``
  (``json.dumps``, no id), gathered. Only the documents differ from the recipe: they
  are the indexer's documents (the recipe's ``metadata.transferred_at`` is left out,
  the bench mapping is strict).
* ``naive``   - the script a user would write: ``etlhelper.iter_chunks`` (dict rows) +
  ``opensearchpy.helpers.bulk`` with the synchronous ``OpenSearch`` client, serial,
  helper defaults (500 actions per request), ``_id`` = the key column. (The node is
  OpenSearch, so opensearch-py stands in for ``elasticsearch.helpers.bulk``.)
* ``ceiling`` - the engine's ceiling: the exact NDJSON bodies the indexer would send
  (``extract.read_chunks`` -> ``documents.byte_batches``) are built in memory first,
  untimed; then they are POSTed to ``/<index>/_bulk`` with aiohttp at each concurrency,
  each into a fresh index with the indexer's load settings, timed up to and including
  the final ``_refresh``. No database, no conversion while timed.
* ``extract`` - extraction only: the indexer's reader (``extract.read_chunks``: database
  read + row -> document -> NDJSON), nothing sent.

The indices are created here (the runner's ``bench`` template gives them 1 shard, 0
replicas and the sensors mappings) and deleted before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import operator
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BASELINES = ("recipe", "naive", "ceiling", "extract")
RECIPE_CHUNK = 5000  # the recipe's iter_chunks default: one asyncio.run per chunk


# ------------------------------------------------------------------ a tiny admin client (stdlib only)


class Cluster:
    """Index admin calls for the benchmark (create, refresh, count, delete); never on the hot path."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def call(self, method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=300) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return None
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None

    def create(self, index: str, settings: dict | None = None) -> None:
        check_bench_name(index)
        self.delete(index)
        self.call("PUT", f"/{index}", {"settings": settings} if settings else {})

    def refresh(self, index: str) -> None:
        self.call("POST", f"/{index}/_refresh")

    def count(self, index: str) -> int:
        return int(self.call("GET", f"/{index}/_count")["count"])

    def delete(self, index: str) -> None:
        check_bench_name(index)
        self.call("DELETE", f"/{index}", missing_ok=True)

    def indices(self, pattern: str) -> list[str]:
        rows = self.call("GET", f"/_cat/indices/{pattern}?format=json&expand_wildcards=open,closed", missing_ok=True)
        return sorted(r["index"] for r in rows or [])


def check_bench_name(index: str) -> None:
    """The benchmark only ever creates or deletes indices named bench-*."""
    if not index.startswith("bench-") or "*" in index or "," in index:
        raise ValueError(f"refusing to touch index {index!r}: the benchmark only uses concrete bench-* indices")


# ------------------------------------------------------------------ shared


def load(job_file: str):
    from indexer.jobfile import load_job

    return load_job(job_file)


def etlhelper_connect(job):
    """Connect the way a user of etlhelper would: DbParams(...).connect(password variable)."""
    import etlhelper

    src = job.source
    if src.dbtype == "SQLITE":
        if not src.filename.is_file():
            raise SystemExit(f"no such SQLite file: {src.filename}")
        return etlhelper.DbParams(dbtype="SQLITE", filename=str(src.filename)).connect()
    if src.dbtype == "PG":
        params = etlhelper.DbParams(dbtype="PG", host=src.host, port=str(src.port), dbname=src.dbname, user=src.user)
        return params.connect(src.password_env)
    raise SystemExit(f"baselines support SQLITE and PG, not {src.dbtype}")


def expect(what: str, got: int, rows: int) -> None:
    if got != rows:
        raise SystemExit(f"{what}: {got} documents, expected {rows}: the baseline did not do the whole job")


def timed_copy(job, rows: int, index: str, name: str, send, **iter_kwargs) -> dict:
    """What the recipe and the naive script share: a fresh index, every etlhelper chunk
    handed to ``send`` (which returns how many documents it got acknowledged), timed up to
    the refresh, both counts checked, the index deleted."""
    from etlhelper import iter_chunks

    cluster = Cluster(job.target.url)
    cluster.create(index)
    try:
        started = time.perf_counter()
        count = 0
        with etlhelper_connect(job) as conn:
            for chunk in iter_chunks(job.job.query, conn, **iter_kwargs):
                count += send(chunk)
        cluster.refresh(index)
        seconds = time.perf_counter() - started
        expect(f"{name} (acknowledged)", count, rows)
        expect(f"{name} (in the index)", cluster.count(index), rows)
    finally:
        cluster.delete(index)
    return {"docs": count, "seconds": seconds}


# ------------------------------------------------------------------ recipe (re-implementation)


def recipe(job, rows: int, index: str) -> dict:
    """etlhelper's async recipe, re-implemented: per-document POST /<index>/_doc, one asyncio.run per chunk."""
    import aiohttp

    url = f"{job.target.url}/{index}/_doc"
    headers = {"Content-Type": "application/json"}

    def transform(chunk: list[dict]) -> list[dict]:
        """Rows to dicts suitable for JSON (the recipe's transform_sensors)."""
        return [{k: (v.isoformat() if isinstance(v, (dt.date, dt.datetime)) else v) for k, v in row.items()}
                for row in chunk]

    async def post_one(item: dict, session: aiohttp.ClientSession) -> int:
        response = await session.post(url, headers=headers, data=json.dumps(item))
        if response.status >= 400:
            text = await response.text()
            raise SystemExit(f"recipe: a document failed: HTTP {response.status}: {text[:300]}")
        return response.status

    async def post_chunk(chunk: list[dict]) -> list[int]:
        async with aiohttp.ClientSession() as session:
            return await asyncio.gather(*(post_one(item, session) for item in chunk))

    return timed_copy(job, rows, index, "recipe", lambda chunk: len(asyncio.run(post_chunk(chunk))),
                      transform=transform, chunk_size=RECIPE_CHUNK)


# ------------------------------------------------------------------ naive script


def naive(job, rows: int, index: str) -> dict:
    """etlhelper.iter_chunks + opensearchpy.helpers.bulk (sync client), serial, helper defaults."""
    from opensearchpy import OpenSearch, helpers

    key = job.job.key[0]
    client = OpenSearch(job.target.url, timeout=120)

    def send(chunk: list[dict]) -> int:
        ok, _ = helpers.bulk(client, ({"_index": index, "_id": row[key], "_source": row} for row in chunk))
        return ok

    try:
        return timed_copy(job, rows, index, "naive", send)
    finally:
        client.close()


# ------------------------------------------------------------------ engine ceiling


def indexer_chunks(job):
    """The indexer's own reader for a full reindex of ``job`` (indexer.extract)."""
    from indexer.extract import ReadPlan, read_chunks, user_params

    return read_chunks(job, ReadPlan(job.job.query, user_params(job), "reindex"))


def indexer_bodies(job) -> tuple[list[tuple[int, bytes]], int]:
    """The _bulk bodies the indexer would send for this job: (actions, body) each, and the total bytes."""
    from indexer import documents

    bodies = []
    for chunk in indexer_chunks(job):
        if chunk.rejected:
            raise SystemExit(f"ceiling: {len(chunk.rejected)} rows rejected by the indexer's conversion")
        batches = ([a.line for a in batch] for batch in documents.byte_batches(chunk.actions, job.job.chunk_bytes))
        for lines in batches:
            bodies.append((len(lines), b"".join(lines)))
    return bodies, sum(len(b) for _, b in bodies)


async def post_bodies(url: str, bodies: list[tuple[int, bytes]], concurrency: int) -> int:
    """POST every body to ``url`` with ``concurrency`` requests in flight; the number of actions sent."""
    import aiohttp
    import orjson

    pending = iter(bodies)
    sent = 0
    headers = {"content-type": "application/x-ndjson", "accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=300)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:

        async def worker() -> None:
            nonlocal sent
            for actions, body in pending:  # one shared iterator: each worker takes the next body
                async with session.post(url, data=body, headers=headers, params={"filter_path": "errors,took"}) as resp:
                    payload = await resp.read()
                    if resp.status >= 300 or orjson.loads(payload).get("errors"):
                        raise SystemExit(f"ceiling: bulk request failed: HTTP {resp.status}: {payload[:300]!r}")
                sent += actions

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


def process_cpu(pid: int | None) -> float | None:
    """user + sys seconds of a running process (the engine's JVM), from /proc/<pid>/stat."""
    if not pid:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ceiling(job, rows: int, index: str, concurrencies: list[int], engine_pid: int | None = None) -> dict:
    """Pre-serialised indexer bodies posted at each concurrency into a fresh index; docs/s per concurrency."""
    from indexer.indices import LOAD_SETTINGS

    started = time.perf_counter()
    bodies, nbytes = indexer_bodies(job)
    prepare = time.perf_counter() - started
    expect("ceiling (encoded)", sum(n for n, _ in bodies), rows)
    cluster = Cluster(job.target.url)
    runs = {}
    for concurrency in concurrencies:
        target = f"{index}-c{concurrency}"
        cluster.create(target, LOAD_SETTINGS)
        try:
            engine_before = process_cpu(engine_pid)
            t0 = time.perf_counter()
            sent = asyncio.run(post_bodies(f"{job.target.url}/{target}/_bulk", bodies, concurrency))
            cluster.refresh(target)
            seconds = time.perf_counter() - t0
            engine_after = process_cpu(engine_pid)
            expect(f"ceiling c={concurrency} (sent)", sent, rows)
            expect(f"ceiling c={concurrency} (in the index)", cluster.count(target), rows)
        finally:
            cluster.delete(target)
        engine_cpu = engine_after - engine_before if engine_before is not None and engine_after is not None else None
        runs[str(concurrency)] = {"seconds": seconds, "docs_per_second": rows / seconds, "engine_cpu": engine_cpu}
    best = max(runs, key=lambda c: runs[c]["docs_per_second"])
    return {"docs": rows, "seconds": runs[best]["seconds"], "best_concurrency": int(best), "by_concurrency": runs,
            "engine_cpu": runs[best]["engine_cpu"],
            "prepare_seconds": prepare, "requests": len(bodies), "bytes": nbytes}


# ------------------------------------------------------------------ extraction only


def extract(job, rows: int) -> dict:
    """The indexer's reader alone: database read + conversion to NDJSON; nothing is sent.

    In a process set up as the command line sets up its own (``indexer.tune_gc``)."""
    from indexer import tune_gc

    tune_gc()
    started = time.perf_counter()
    docs = nbytes = rejected = 0
    line = operator.attrgetter("line")
    for chunk in indexer_chunks(job):
        docs += len(chunk.actions)
        nbytes += sum(map(len, map(line, chunk.actions)))
        rejected += len(chunk.rejected)
    seconds = time.perf_counter() - started
    if rejected:
        raise SystemExit(f"extract: {rejected} rows rejected by the indexer's conversion")
    expect("extract", docs, rows)
    return {"docs": docs, "seconds": seconds, "bytes": nbytes}


# ------------------------------------------------------------------ command line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=BASELINES)
    parser.add_argument("job", help="the bench job file (the same one `indexer reindex` gets)")
    parser.add_argument("--rows", type=int, required=True, help="rows the query returns; anything else fails")
    parser.add_argument("--index", help="concrete bench-baseline-* index to write (recipe, naive, ceiling)")
    parser.add_argument("--concurrency", default="1,2,4", help="ceiling: concurrencies to try, e.g. 1,2,4")
    parser.add_argument("--engine-pid", type=int, help="ceiling: the engine's pid, to report its CPU time per pass")
    args = parser.parse_args(argv)
    job = load(args.job)
    if args.name != "extract" and not (args.index or "").startswith("bench-baseline-"):
        parser.error("--index must name a bench-baseline-* index")
    if args.name == "recipe":
        result = recipe(job, args.rows, args.index)
    elif args.name == "naive":
        result = naive(job, args.rows, args.index)
    elif args.name == "ceiling":
        result = ceiling(job, args.rows, args.index, [int(c) for c in args.concurrency.split(",")], args.engine_pid)
    else:
        result = extract(job, args.rows)
    sys.stdout.write(json.dumps({"name": args.name, **result}) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo, for `indexer` without an install
    main()
