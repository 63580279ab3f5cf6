"""Chaos soak: a randomized fault run against a real PostgreSQL and search cluster, ending in an exact comparison.

    python -m tests.soak.soak --minutes 30 [--seed N] [--engine opensearch|elasticsearch|elasticsearch9]
                              [--nodes 3] [--port 9500] [--pg-port 54339] [--out SOAK.md]

It starts its own PostgreSQL (scripts/pg.sh), search nodes (scripts/cluster.sh; scripts/engine.sh for
``--nodes 1``) and the fault proxy (tests/support/httpproxy.py) between the indexer and node 1. A writer
changes rows (inserts, updates, same-second ties, late commits, soft and hard deletes, revivals) while a
supervisor keeps ``sync --every 1s`` running and starts ``reconcile`` and ``reindex`` now and then, and the
chaos thread injects faults. At the end every fault is healed, one last sync and reconcile run, and every
document behind the alias is compared with the table. Exit 0 only when nothing differs and the run worked.
Every choice comes from ``--seed`` (timing varies); the report goes to stdout and is appended to ``--out``.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import datetime as dt
import heapq
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras

from tests.support.httpproxy import ProxyServer

REPO = Path(__file__).resolve().parents[2]
SOAK_DIR = REPO / ".services" / "soak"
ALIAS = TABLE = "soak_items"
PG_USER, PG_DB, PG_PASSWORD = "indexer", "soak", "soak-test-only"
LEASE_SECONDS = 10
SEED_ROWS = 3000
# an insert, idempotent when retried after a commit whose answer was lost
INSERT = (f"INSERT INTO {TABLE} (id, code, body, value, updated_at) VALUES (%s, %s, %s, %s, now()) "
          "ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, updated_at = EXCLUDED.updated_at")
CLIENT_ENGINE = {"opensearch": "opensearch", "elasticsearch": "elasticsearch", "elasticsearch9": "elasticsearch"}
T0 = time.monotonic()


def rel() -> float:
    """Seconds since the soak started."""
    return time.monotonic() - T0


def say(message: str) -> None:
    print(f"[{rel():7.1f}s] {message}", file=sys.stderr, flush=True)


def http(base: str, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    """One JSON request to a node; an HTTP error is an answer, a dead node raises OSError."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw) if raw else None
        except ValueError:
            return exc.code, None


def script(name: str, *args: str, env: dict[str, str], timeout: float = 900) -> None:
    """Run scripts/<name> in its own session (a Ctrl-C here must not cut it half-way); raise on failure."""
    done = subprocess.run([str(REPO / "scripts" / name), *args], env={**os.environ, **env}, cwd=REPO, text=True,
                          capture_output=True, timeout=timeout, start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-800:]}")


# ------------------------------------------------------------------ services


class Service:
    """Runs its scripts one at a time; once closing, a fault's late restart no longer starts anything."""

    tool = ""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lock = threading.Lock()
        self.closing = False

    def do(self, *args: str, final: bool = False) -> None:
        with self.lock:
            if self.closing and not final:
                return
            self.closing = self.closing or final
            script(self.tool, *args, env=self.env)


class Postgres(Service):
    """The soak's own PostgreSQL server (restarting it is a fault, so never the test one)."""

    tool = "pg.sh"

    def __init__(self, port: int) -> None:
        super().__init__({"PG_PORT": str(port), "PG_DIR": str(SOAK_DIR / "pg"), "PG_PASSWORD": PG_PASSWORD,
                          "PG_USER": PG_USER, "PG_DB": PG_DB})
        self.port = port

    def start(self) -> None:
        self.do("start")

    def stop(self, final: bool = False) -> None:
        self.do("stop", final=final)

    def connect(self):
        return psycopg2.connect(host="127.0.0.1", port=self.port, dbname=PG_DB, user=PG_USER, password=PG_PASSWORD,
                                connect_timeout=5, options="-c statement_timeout=30000")


class Cluster(Service):
    """The search nodes: scripts/cluster.sh for several, scripts/engine.sh for one (no node faults then)."""

    def __init__(self, engine: str, nodes: int, port: int) -> None:
        self.nodes, self.port = nodes, port
        self.down: set[int] = set()
        self.tool = "cluster.sh" if nodes > 1 else "engine.sh"
        env = {"ENGINE": engine, "ENGINE_PORT": str(port), "ENGINE_HEAP": "512m"}
        if nodes > 1:
            super().__init__({**env, "NODES": str(nodes), "CLUSTER_DIR": str(SOAK_DIR / f"cluster-{engine}")})
        else:
            super().__init__({**env, "ENGINE_DIR": str(SOAK_DIR / f"node-{engine}")})

    def start(self) -> None:
        if not os.access(REPO / "scripts" / self.tool, os.X_OK):
            raise RuntimeError(f"--nodes {self.nodes} needs scripts/{self.tool} (use --nodes 1 for a single node)")
        self.do("start")

    def stop(self, final: bool = False) -> None:
        self.do("stop", final=final)

    def kill(self, n: int) -> None:
        self.down.add(n)
        self.do("kill", str(n))

    def start_node(self, n: int) -> None:
        self.do("start-node", str(n))
        self.down.discard(n)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port + n - 1}"

    def pid(self, n: int) -> int:
        """Node ``n``'s JVM (scripts/cluster.sh keeps it in the node's folder)."""
        return int((Path(self.env["CLUSTER_DIR"]) / f"node-{n}" / "node.pid").read_text())

    def http(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        """Straight to the first live node, never through the proxy."""
        last: Exception | None = None
        for n in range(1, self.nodes + 1):
            if n not in self.down:
                try:
                    return http(self.url(n), method, path, body, timeout)
                except OSError as exc:
                    last = exc
        raise OSError(f"no search node answers ({last})")

    def heal(self) -> None:
        """Every node up, the cluster green."""
        for n in sorted(self.down):
            self.start_node(n)
        status, body = self.http("GET", "/_cluster/health?wait_for_status=green&timeout=240s", timeout=260)
        if status != 200 or body.get("status") != "green":
            raise RuntimeError(f"the cluster is not green after healing: {body}")

    def version(self) -> str:
        root = self.http("GET", "/")[1]
        name = "OpenSearch" if root["version"].get("distribution") == "opensearch" else "Elasticsearch"
        return f"{name} {root['version']['number']}"


# ------------------------------------------------------------------ the writer and what it expects


class IdSet:
    """Ids with O(1) add, remove and a seeded choice (the order depends only on the operations)."""

    def __init__(self, ids: list[int] | None = None) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}
        for i in ids or []:
            self.add(i)

    def add(self, i: int) -> None:
        self.pos[i] = len(self.items)
        self.items.append(i)

    def remove(self, i: int) -> None:
        at, last = self.pos.pop(i), self.items.pop()
        if last != i:
            self.items[at], self.pos[last] = last, at

    def choice(self, rng: random.Random) -> int:
        return self.items[rng.randrange(len(self.items))]

    def __contains__(self, i: int) -> bool:
        return i in self.pos

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Sample:
    """A write whose arrival in the index the checker times: ``body`` expected, or None for 'absent'."""

    id: int
    body: str | None
    op: int
    path: str  # "sync" (inserts, updates, soft deletes) or "reconcile" (hard deletes)
    written: float
    seen: float | None = None


class Halted(Exception):
    """The writer was told to stop while an operation was still failing."""


class Writer(threading.Thread):
    """Changes rows at a steady rate, with seeded choices; retries each operation until it commits."""

    OPS = {"insert": 25, "update": 33, "tie": 8, "late": 4, "soft_delete": 8, "revive": 4, "hard_delete": 8}
    EXTRAS = ("", "", "", " ünïcødé ✓", ' "quoted" \\ back', " line\nbreak", " 🙂")

    def __init__(self, pg: Postgres, seed: int, rate: float) -> None:
        super().__init__(name="writer", daemon=True)
        self.pg, self.rate = pg, rate
        self.rng = random.Random(f"{seed}:writer")
        self.halt = threading.Event()
        self.ops: collections.Counter[str] = collections.Counter()
        self.rows: collections.Counter[str] = collections.Counter()
        self.samples: list[Sample] = []
        self.touched: dict[int, int] = {}
        self.hard_deleted: set[int] = set()  # their documents wait for reconcile (or a reindex)
        self.again: list[tuple[int, str, int]] = []  # (operation number, kind, row): a row's next flip, scheduled
        self.flips: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.late: list[threading.Thread] = []
        self.retries = 0
        self.error: BaseException | None = None
        self.conn = None

    def seed_table(self, rows: int) -> None:
        ids = list(range(1, rows + 1))
        # every 40th row is touched only by late commits, so their held row locks never stall the writer
        self.slow = [i for i in ids if i % 40 == 0]
        self.live, self.soft = IdSet([i for i in ids if i % 40]), IdSet()
        self.next_id, self.late_n = rows + 1, 0
        now = dt.datetime.now(dt.UTC)
        values = [(i, *self._values(), self._body(f"seed-{i}"), now - dt.timedelta(seconds=self.rng.uniform(60, 86400)))
                  for i in ids]
        conn = self.pg.connect()
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
            cur.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, code text, body text, value double precision, "
                        "updated_at timestamptz NOT NULL, is_deleted boolean NOT NULL DEFAULT false)")
            psycopg2.extras.execute_values(
                cur, f"INSERT INTO {TABLE} (id, code, value, body, updated_at) VALUES %s", values)
        conn.close()

    def _values(self) -> tuple[str | None, float | None]:
        r = self.rng.random()
        code = None if r < 0.03 else f"C{self.rng.randrange(100000):05d}"
        if r > 0.95:
            return code, None
        return code, float(self.rng.randrange(100)) if r > 0.85 else round(self.rng.uniform(-1e5, 1e5), 3)

    def _body(self, token: str) -> str:
        return token + self.rng.choice(self.EXTRAS)

    def _execute(self, sql: str, params: tuple) -> int:
        """One statement in its own transaction; retried across PostgreSQL restarts. Its row count."""
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = self.pg.connect()
                with self.conn.cursor() as cur:
                    cur.execute(sql, params)
                    count = cur.rowcount
                self.conn.commit()
                return count
            except psycopg2.Error:
                self.retries += 1
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if self.halt.wait(0.5):
                    raise Halted from None

    def run(self) -> None:
        try:
            n, start = 0, time.monotonic()
            while not self.halt.is_set():
                behind = time.monotonic() - (start + n / self.rate)
                if behind > 1:  # after an outage: go on at the steady rate, no burst
                    start += behind
                elif behind < 0 and self.halt.wait(-behind):
                    break
                self.step(n)
                n += 1
        except Halted:
            pass
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            self.error = exc
        finally:
            for thread in self.late:
                thread.join(60)
            if self.conn is not None:
                self.conn.close()

    def _count(self, kind: str, rows: int) -> None:
        with self.lock:
            self.ops[kind] += 1
            self.rows[kind] += max(rows, 0)

    def step(self, n: int) -> None:
        """Operation number ``n``: its kind, row and content come from the seeded generator only."""
        rng = self.rng
        kind = rng.choices(list(self.OPS), weights=list(self.OPS.values()))[0]
        flip = self._flip(n)
        kind = flip[0] if flip else kind
        token = f"{kind}-{n}-{rng.randrange(16 ** 8):08x}"
        if kind in ("update", "tie", "soft_delete", "hard_delete") and len(self.live) < 10:
            kind = "insert"
        if kind == "revive" and not self.soft:
            kind = "update"
        if flip and kind == flip[0]:
            self.flips[kind] += 1
        else:
            flip = None
        sample: Sample | None = None
        if kind == "insert":
            id_, (code, value), body = self.next_id, self._values(), self._body(token)
            self.next_id += 1
            rows = self._execute(INSERT + ", code = EXCLUDED.code, value = EXCLUDED.value, is_deleted = false",
                                 (id_, code, body, value))
            self.live.add(id_)
            sample = Sample(id_, body, n, "sync", 0)
        elif kind == "update":
            id_, (_, value), body = self.live.choice(rng), self._values(), self._body(token)
            rows = self._execute(f"UPDATE {TABLE} SET body = %s, value = %s, updated_at = now() WHERE id = %s",
                                 (body, value, id_))
            sample = Sample(id_, body, n, "sync", 0)
        elif kind == "tie":  # several rows, one statement, the very same (whole-second) timestamp
            ids = sorted({self.live.choice(rng) for _ in range(rng.randint(3, 6))})
            rows = self._execute(f"UPDATE {TABLE} SET body = %s || '/' || id, updated_at = date_trunc('second', now()) "
                                 "WHERE id = ANY(%s)", (token, ids))
            for i in ids[1:]:
                self.touched[i] = n
            id_, sample = ids[0], Sample(ids[0], f"{token}/{ids[0]}", n, "sync", 0)
        elif kind == "late":
            self._late(n, token)
            return
        elif kind == "soft_delete":
            id_ = flip[1] if flip else self.live.choice(rng)
            rows = self._execute(f"UPDATE {TABLE} SET is_deleted = true, updated_at = now() WHERE id = %s", (id_,))
            self.live.remove(id_)
            self.soft.add(id_)
            self._schedule(n, "revive", id_, 0.25)
            sample = Sample(id_, None, n, "sync", 0)
        elif kind == "revive":
            id_, body = flip[1] if flip else self.soft.choice(rng), self._body(token)
            rows = self._execute(f"UPDATE {TABLE} SET is_deleted = false, body = %s, updated_at = now() WHERE id = %s",
                                 (body, id_))
            self.soft.remove(id_)
            self.live.add(id_)
            self._schedule(n, "soft_delete", id_, 0.75)
            sample = Sample(id_, body, n, "sync", 0)
        else:  # hard_delete: mostly live rows, sometimes soft-deleted ones
            pool = self.live if rng.random() < 0.8 or not self.soft else self.soft
            id_ = pool.choice(rng)
            rows = self._execute(f"DELETE FROM {TABLE} WHERE id = %s", (id_,))
            pool.remove(id_)
            self.hard_deleted.add(id_)
            sample = Sample(id_, None, n, "reconcile", 0) if pool is self.live else None
        self._count(kind, rows)
        self.touched[id_] = n
        if sample is not None and n % 4 == 0:
            sample.written = time.time()
            self.samples.append(sample)

    def _schedule(self, n: int, kind: str, id_: int, share: float) -> None:
        """``share`` of the time, ``kind`` for this row again 40-250 operations on (2-10 s at the usual rate): a row
        soft-deleted, revived and soft-deleted again inside the lookback window, each step likely seen by a sync
        pass. Sync's marks once skipped the second delete (docs/soak.md, "What it found"); chance alone made it
        rare."""
        if self.rng.random() < share:
            heapq.heappush(self.again, (n + self.rng.randint(40, 250), kind, id_))

    def _flip(self, n: int) -> tuple[str, int] | None:
        """The first scheduled flip now due whose row is still where the flip expects it (a hard delete or another
        change may have moved it)."""
        while self.again and self.again[0][0] <= n:
            _, kind, id_ = heapq.heappop(self.again)
            if id_ in (self.soft if kind == "revive" else self.live):
                return kind, id_
        return None

    def _late(self, n: int, token: str) -> None:
        """A transaction that takes its timestamp, then sleeps (less than the lookback) before it commits."""
        delay, insert = self.rng.uniform(2, 8), self.rng.random() < 0.4
        if insert:
            id_, (code, value) = self.next_id, self._values()
            self.next_id += 1
            sql, params = INSERT, (id_, code, self._body(token), value)
        else:
            id_ = self.slow[self.late_n % len(self.slow)]
            self.late_n += 1
            sql, params = f"UPDATE {TABLE} SET body = %s, updated_at = now() WHERE id = %s", (self._body(token), id_)
        self.late = [t for t in self.late if t.is_alive()]
        while len(self.late) >= 8 and not self.halt.is_set():  # bounded connections; waiting keeps choices seeded
            self.late[0].join(1)
            self.late = [t for t in self.late if t.is_alive()]
        thread = threading.Thread(target=self._late_commit, args=(sql, params, delay), daemon=True, name=f"late-{n}")
        thread.start()
        self.late.append(thread)

    def _late_commit(self, sql: str, params: tuple, delay: float) -> None:
        first = True
        while True:
            conn = None
            try:
                conn = self.pg.connect()
                with conn.cursor() as cur:
                    cur.execute(sql, params)  # now() is taken here
                    rows = cur.rowcount
                if first:
                    self.halt.wait(delay)
                conn.commit()
                self._count("late" if first else "late (retried at once)", rows)
                return
            except psycopg2.Error:
                first = False
                if self.halt.wait(0.5):
                    return
            finally:
                if conn is not None:
                    conn.close()


# ------------------------------------------------------------------ the indexer processes


@dataclass
class Run:
    """One indexer child process."""

    label: str
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    killed: str = ""  # why we ended it: "killed" (a fault), "timeout", "hung"
    paused: bool = False
    last: dict | None = None
    last_line: float = field(default_factory=time.monotonic)
    reader: threading.Thread | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None


class Supervisor(threading.Thread):
    """Keeps ``sync --every 1s`` running; starts ``reconcile`` every 45-60 s and ``reindex`` every 2.5-4 min."""

    def __init__(self, job: Path, folder: Path, seed: int) -> None:
        super().__init__(name="supervisor", daemon=True)
        self.job, self.folder = job, folder
        self.env = {**{k: v for k, v in os.environ.items() if k != "INDEXER_URL"},
                    "PG_PASSWORD": PG_PASSWORD, "INDEXER_LEASE_SECONDS": str(LEASE_SECONDS)}
        self.rng = {c: random.Random(f"{seed}:{c}") for c in ("reconcile", "reindex")}
        self.halt = threading.Event()
        self.runs: list[Run] = []
        self.loop: Run | None = None
        self.due: dict[str, float] = {}  # when reconcile and reindex run next
        self.passes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.killed: collections.Counter[str] = collections.Counter()
        self.lease_lost: list[float] = []
        self.problems: list[str] = []
        self.error: BaseException | None = None

    def launch(self, label: str, command: str, *args: str) -> Run:
        log = open(self.folder / f"{command}.log", "a")  # noqa: SIM115 - the child keeps it
        log.write(f"--- {label} started at {rel():.1f}s\n")
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "indexer.cli", command, str(self.job), *args, "--json"],
                                stdout=subprocess.PIPE, stderr=log, text=True, env=self.env, cwd=REPO,
                                start_new_session=True)
        log.close()
        run = Run(label, proc)
        run.reader = threading.Thread(target=self._read, args=(run,), daemon=True, name=f"read-{proc.pid}")
        run.reader.start()
        self.runs.append(run)
        return run

    def _read(self, run: Run) -> None:
        """Each --json line is a pass: counted by its outcome. A killed process's cut pass counts as killed."""
        saw = False
        for line in run.proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and "outcome" in data:
                saw, run.last, run.last_line = True, data, time.monotonic()
                self.passes[run.label, str(data["outcome"])] += 1
                if "was lost" in str(data.get("error") or ""):
                    self.lease_lost.append(rel())
        rc = run.proc.wait()
        if run.killed and (run.label == "sync --every" or not saw):
            self.passes[run.label, run.killed] += 1
        elif not saw:
            self.passes[run.label, f"exit {rc}"] += 1
        if run.label in self.due and rc != 0:  # as a supervisor would: try again soon
            self.due[run.label] = min(self.due[run.label], rel() + 5)
        if run.label == "sync --every" and not run.killed and not self.halt.is_set():
            self.problems.append(f"{rel():.0f}s: the sync loop (pid {run.proc.pid}) exited by itself ({rc})")

    def running(self, label: str | None = None) -> list[Run]:
        return [r for r in self.runs if r.alive() and not r.killed and label in (None, r.label)]

    def run(self) -> None:
        try:
            self.due = {"reconcile": rel() + self.rng["reconcile"].uniform(20, 40),
                        "reindex": rel() + self.rng["reindex"].uniform(60, 100)}
            while not self.halt.is_set():
                if self.loop is None or not self.loop.alive():
                    self.loop = self.launch("sync --every", "sync", "--every", "1s")
                for command, (low, high) in (("reconcile", (45, 60)), ("reindex", (150, 240))):
                    if rel() >= self.due[command] and not self.running(command):
                        self.launch(command, command)
                        self.due[command] = rel() + self.rng[command].uniform(low, high)
                self._watchdog()
                self.halt.wait(0.5)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            self.error = exc

    def _watchdog(self) -> None:
        now = time.monotonic()
        for run in self.running():
            if run.label == "sync --every" and not run.paused and now - run.last_line > 180:
                self.problems.append(f"{rel():.0f}s: the sync loop printed nothing for 180 s; killed")
                self.kill(run, "hung")
            elif run.label != "sync --every" and now - run.started > 300:
                self.problems.append(f"{rel():.0f}s: {run.label} ran over 300 s; killed")
                self.kill(run, "timeout")

    def kill(self, run: Run, why: str = "killed") -> None:
        run.killed = why
        if why == "killed":
            self.killed[run.label] += 1
        try:
            os.kill(run.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def kill_one(self, r: float, one_shot: bool) -> str:
        """SIGKILL one running indexer process (``r`` in [0, 1) picks which; ``one_shot``: a reconcile or
        reindex, not the sync loop); what was killed."""
        running = sorted((x for x in self.running() if not x.paused and (x.label in self.due or not one_shot)),
                         key=lambda x: (x.label, x.started))
        if not running:
            return "nothing: no such run was running"
        run = running[int(r * len(running))]
        self.kill(run)
        return f"{run.label} (pid {run.proc.pid})"

    def run_once(self, label: str, command: str, timeout: float = 300) -> Run:
        run = self.launch(label, command)
        try:
            run.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(run, "timeout")
        run.reader.join(30)
        return run

    def finish(self) -> None:
        """No new runs; the sync loop stopped by SIGTERM; running one-shots allowed to end."""
        self.halt.set()
        self.join(30)
        for run in self.running():
            if run.label == "sync --every":
                os.kill(run.proc.pid, signal.SIGCONT)
                run.proc.terminate()
        deadline = time.monotonic() + 240
        for run in self.running():
            try:
                run.proc.wait(max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.problems.append(f"{run.label} (pid {run.proc.pid}) did not end at the end; killed")
                self.kill(run, "timeout")
        for run in self.runs:
            if run.reader is not None:
                run.reader.join(30)

    def kill_all(self) -> None:
        """For the final cleanup: SIGTERM everything still running, SIGKILL what outlives 15 s."""
        self.halt.set()
        if self.is_alive():
            self.join(10)  # launches nothing more
        alive = [r for r in self.runs if r.alive()]
        for run in alive:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(run.proc.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for run in alive:
            try:
                run.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()


# ------------------------------------------------------------------ faults


class Chaos(threading.Thread):
    """Injects one fault at a time, chosen from the seed, each logged with its start time and duration."""

    WEIGHTS = {"item-429": 2.0, "request-429": 1.0, "503-storm": 2.0, "conn-reset": 2.0, "pg-restart": 1.5,
               "node-kill": 2.0, "node-freeze": 1.0, "indexer-kill": 2.0, "lease-expiry": 1.0}

    def __init__(self, seed: int, proxy: ProxyServer, pg: Postgres, cluster: Cluster, sup: Supervisor,
                 log: Path, kinds: list[str]) -> None:
        super().__init__(name="chaos", daemon=True)
        self.rng = random.Random(f"{seed}:chaos")
        self.proxy, self.pg, self.cluster, self.sup, self.log = proxy, pg, cluster, sup, log
        self.kinds = [k for k in kinds if k not in ("node-kill", "node-freeze") or cluster.nodes > 1]
        self.halt = threading.Event()
        self.counts: collections.Counter[str] = collections.Counter()
        self.lease: collections.Counter[str] = collections.Counter()
        self.error: BaseException | None = None

    def note(self, start: float, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        line = f"{start:8.1f}s  {kind:<13} {detail} ({rel() - start:.1f}s)"
        with self.log.open("a") as f:
            f.write(line + "\n")
        say(f"fault {line.strip()}")

    def run(self) -> None:
        try:
            self.halt.wait(self.rng.uniform(8, 15))
            while not self.halt.is_set():
                kind = self.rng.choices(self.kinds, weights=[self.WEIGHTS[k] for k in self.kinds])[0]
                a, b, c = self.rng.random(), self.rng.random(), self.rng.random()
                start = rel()
                detail = getattr(self, "_" + kind.replace("-", "_"))(a, b, c)
                self.note(start, kind, detail)
                self.halt.wait(6 + 12 * self.rng.random())
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            self.error = exc

    def _storm(self, seconds: float, **settings: Any) -> None:
        faults = self.proxy.faults
        try:
            for name, value in settings.items():
                setattr(faults, name, value)
            self.halt.wait(seconds)
        finally:
            faults.clear()

    def _item_429(self, a: float, b: float, c: float) -> str:
        fraction, attempts = 0.2 + 0.6 * a, 1 + int(b * 3)
        self._storm(3 + 5 * c, seed=int(a * 1e9), bulk_item_429_fraction=fraction, bulk_item_429_attempts=attempts)
        return f"{fraction:.0%} of bulk items answered 429, each up to {attempts}x"

    def _request_429(self, a: float, b: float, c: float) -> str:
        self._storm(3 + 5 * c, request_status=429, request_status_match=lambda m, p: True)
        return "every request answered 429"

    def _503_storm(self, a: float, b: float, c: float) -> str:
        self._storm(3 + 5 * c, request_status=503, request_status_match=lambda m, p: True)
        return "every request answered 503"

    def _conn_reset(self, a: float, b: float, c: float) -> str:
        before, after = 2 + int(a * 6), 1 + int(b * 4)
        self._storm(3 + 5 * c, reset_before_forward=before, reset_connection_after_forward=after)
        return f"{before} connections reset before forwarding, {after} after"

    def _pg_restart(self, a: float, b: float, c: float) -> str:
        self.pg.stop()
        try:
            self.halt.wait(2 + 6 * c)
        finally:
            self.pg.start()
        return "PostgreSQL stopped and started"

    def _node_kill(self, a: float, b: float, c: float) -> str:
        n = 1 if a < 0.1 else 2 + int(b * (self.cluster.nodes - 1))
        self.cluster.kill(n)
        try:
            self.halt.wait(5 + 15 * c)
        finally:
            self.cluster.start_node(n)
        return f"node {n} SIGKILLed, started again after {5 + 15 * c:.0f}s" + (" (the proxy's node)" if n == 1 else "")

    def _node_freeze(self, a: float, b: float, c: float) -> str:
        """SIGSTOP a node's JVM (a long GC pause, a frozen VM), SIGCONT it 5-20 s later."""
        n = 1 if a < 0.1 else 2 + int(b * (self.cluster.nodes - 1))
        seconds = 5 + 15 * c
        pid = self.cluster.pid(n)
        os.kill(pid, signal.SIGSTOP)
        try:
            self.halt.wait(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)
        return f"node {n} frozen (SIGSTOP) for {seconds:.0f}s" + (" (the proxy's node)" if n == 1 else "")

    def _indexer_kill(self, a: float, b: float, c: float) -> str:
        one_shot = b < 0.6  # then wait (up to 60 s) for a reconcile or reindex, and kill it mid-run
        deadline = time.monotonic() + 60
        while one_shot and not any(r.label in self.sup.due for r in self.sup.running()) and not self.halt.wait(0.1):
            if time.monotonic() > deadline:
                break
        if one_shot:
            self.halt.wait(c * 1.5)
        return "SIGKILL " + self.sup.kill_one(a, one_shot)

    def _lock_pid(self) -> int | None:
        try:
            status, body = self.cluster.http("GET", f"/indexer-state/_doc/lock%3A{ALIAS}")
        except OSError:
            return None
        return body["_source"]["lock"].get("pid") if status == 200 else None

    def _lease_expiry(self, a: float, b: float, c: float) -> str:
        """SIGSTOP the sync loop (while it holds the lock, if it comes to that within 5 s) past its lease, let a
        one-shot sync take the lock over, SIGCONT it: it must notice it lost the lease."""
        loop = self.sup.loop
        if loop is None or not loop.alive() or loop.killed:
            return "skipped: no sync loop running"
        deadline = time.monotonic() + 5
        while self._lock_pid() != loop.proc.pid and time.monotonic() < deadline and not self.halt.is_set():
            time.sleep(0.05)
        held = self._lock_pid() == loop.proc.pid
        lost_before = len(self.sup.lease_lost)
        loop.paused = True
        os.kill(loop.proc.pid, signal.SIGSTOP)
        try:
            if self.halt.wait(LEASE_SECONDS + 3):
                return "interrupted by the end of the run"
            takeover = self.sup.run_once("sync (takeover)", "sync", timeout=120)
        finally:
            os.kill(loop.proc.pid, signal.SIGCONT)
            loop.paused, loop.last_line = False, time.monotonic()
        outcome = (takeover.last or {}).get("outcome", f"exit {takeover.proc.returncode}")
        deadline = time.monotonic() + 15
        while held and len(self.sup.lease_lost) == lost_before and time.monotonic() < deadline:
            time.sleep(0.2)
        noticed = len(self.sup.lease_lost) > lost_before
        self.lease["held"] += held
        self.lease["noticed"] += held and noticed
        self.lease[f"takeover {outcome}"] += 1
        return (f"sync loop pid {loop.proc.pid} stopped {'holding the lock' if held else 'between passes'}, "
                f"takeover sync {outcome}, lost lease {'noticed' if noticed else 'not reported'}")


# ------------------------------------------------------------------ lag and the final comparison


class Checker(threading.Thread):
    """Times the writer's samples: when the index (read straight from a node) shows what was written."""

    def __init__(self, writer: Writer, cluster: Cluster) -> None:
        super().__init__(name="checker", daemon=True)
        self.writer, self.cluster = writer, cluster
        self.halt = threading.Event()
        self.pending: list[Sample] = []
        self.taken = self.superseded = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.wait(0.5):
                self.check()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the main thread
            self.error = exc

    def check(self) -> None:
        new = self.writer.samples[self.taken:]
        self.taken += len(new)
        keep = []
        for s in self.pending + new:
            if self.writer.touched.get(s.id) != s.op:
                self.superseded += 1  # written over before it was seen
            else:
                keep.append(s)
        self.pending = keep
        for start in range(0, len(keep), 500):
            batch = keep[start:start + 500]
            try:
                status, body = self.cluster.http("POST", f"/{ALIAS}/_mget", {"ids": [str(s.id) for s in batch]})
            except OSError:
                return
            if status != 200:
                return
            now = time.time()
            for s, doc in zip(batch, body["docs"], strict=True):
                found = doc.get("found") and doc.get("_source", {}).get("body")
                if (s.body is None and not doc.get("found")) or (s.body is not None and found == s.body):
                    s.seen = now
        self.pending = [s for s in self.pending if s.seen is None]

    def lags(self, path: str) -> list[float]:
        return sorted(s.seen - s.written for s in self.writer.samples if s.path == path and s.seen is not None)


@dataclass
class Comparison:
    rows: int = 0
    soft_deleted: int = 0
    documents: int = 0
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    indices: str = ""

    @property
    def mismatches(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)

    def without_hard_deletes(self, hard_deleted: set[int]) -> int:
        """Mismatches once the documents of hard-deleted rows are forgiven (only reconcile removes those)."""
        return len(self.missing) + len(self.different) + sum(1 for i in self.extra if int(i) not in hard_deleted)


def compare(pg: Postgres, cluster: Cluster) -> Comparison:
    """Every live row must be a document with equal content (timestamps as the indexer writes them, ISO 8601
    of the driver's aware datetime), and there must be no other document behind the alias."""
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute(f"SELECT id, code, body, value, updated_at, is_deleted FROM {TABLE}")
        rows = cur.fetchall()
    conn.close()
    expected = {str(i): {"id": i, "code": c, "body": b, "value": v, "updated_at": t.isoformat()}
                for i, c, b, v, t, deleted in rows if not deleted}
    result = Comparison(rows=len(expected), soft_deleted=sum(1 for r in rows if r[5]))
    cluster.http("POST", f"/{ALIAS}/_refresh", timeout=60)
    actual: dict[str, dict] = {}
    status, body = cluster.http("POST", f"/{ALIAS}/_search?scroll=2m",
                                {"size": 1000, "sort": ["_doc"], "track_total_hits": True}, timeout=60)
    assert status == 200, body
    total, scroll = body["hits"]["total"]["value"], body.get("_scroll_id")
    while body["hits"]["hits"]:
        for hit in body["hits"]["hits"]:
            if hit["_id"] in actual:
                result.extra.append(hit["_id"])
                result.details.append(f"{hit['_id']}: twice behind the alias ({hit['_index']})")
            actual[hit["_id"]] = hit["_source"]
        status, body = cluster.http("POST", "/_search/scroll", {"scroll": "2m", "scroll_id": scroll}, timeout=60)
        assert status == 200, body
        scroll = body.get("_scroll_id", scroll)
    cluster.http("DELETE", "/_search/scroll", {"scroll_id": scroll})
    behind = sorted(cluster.http("GET", f"/_alias/{ALIAS}")[1] or {})
    others = sorted(i["index"] for i in cluster.http("GET", f"/_cat/indices/{ALIAS}-*?format=json&h=index")[1] or []
                    if i["index"] not in behind)
    result.indices = (f"alias {ALIAS} -> {', '.join(behind)}; other {ALIAS}-* indices (kept for rollback, or left "
                      f"by a killed run): {', '.join(others) or 'none'}")
    result.documents = len(actual) + len(result.extra)  # extra holds the duplicates so far
    if result.documents != total:
        result.details.append(f"the scroll read {result.documents} documents of {total}")
    for id_ in sorted(expected.keys() | actual.keys(), key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k)):
        want, got = expected.get(id_), actual.get(id_)
        if got is None:
            result.missing.append(id_)
            result.details.append(f"{id_}: missing; source {want}")
        elif want is None:
            result.extra.append(id_)
            result.details.append(f"{id_}: extra; index {got}")
        elif want != got:
            result.different.append(id_)
            result.details.append(f"{id_}: different; source {want} index {got}")
    return result


# ------------------------------------------------------------------ the run and its report


HEADER = """# Chaos soak runs

Each section is one run of `python -m tests.soak.soak` (tests/soak/soak.py): a private PostgreSQL and search
cluster, a writer changing rows (inserts, updates, same-second ties, late commits, soft and hard deletes) while
`sync --every`, `reconcile` and `reindex` run under randomized faults (429/503 storms, connection resets,
PostgreSQL restarts, node kills and freezes, indexer kills, lease expiries); then every document behind the
alias is compared with the table, after the final sync and again after the final reconcile. Every count below
is what happened in that run; replay one with its seed. How the soak works: [docs/soak.md](docs/soak.md).
"""


MAIN_OUTCOMES = ("ok", "failed", "refused", "killed")


def counts(counter: collections.Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"


def lag_text(lags: list[float], pending: int) -> str:
    if not lags:
        return f"no sample seen ({pending} pending)"
    return (f"worst {lags[-1]:.1f} s, median {statistics.median(lags):.2f} s over {len(lags)} samples"
            + (f", {pending} never seen" if pending else ""))


def report(args: argparse.Namespace, soak: Soak, result: Comparison | None, failure: str) -> str:
    w, sup, chaos = soak.writer, soak.sup, soak.chaos
    machine = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    verdict = ("FAIL" if failure or result is None or result.mismatches
               or (sync_mismatches(soak) and args.gate == "all") else "PASS")
    if verdict == "PASS" and sync_mismatches(soak):
        verdict = "PASS (final comparison; sync alone left documents wrong: an open finding, see below)"
    lines = [f"## {soak.started:%Y-%m-%d %H:%M} UTC: {soak.version}, {args.nodes} node(s), seed {args.seed}: {verdict}",
             "", f"- machine: {machine}, {os.cpu_count()} cores",
             f"- engine: {soak.version} (`--engine {args.engine}`), nodes: {args.nodes}; seed: {args.seed}",
             f"- duration: planned {args.minutes:g} min of writes and faults, real {rel() / 60:.1f} min in all "
             f"(writes {soak.write_seconds / 60:.1f} min)"]
    if w is not None:
        ops = ", ".join(f"{k} {w.ops[k]} ({w.rows[k]} rows)" for k in sorted(w.ops))
        total = sum(w.ops.values())
        lines.append(f"- rows: {SEED_ROWS} seeded; operations committed: {total} "
                     f"({total / max(soak.write_seconds, 1):.1f}/s): {ops}; "
                     f"{w.retries} statement retries across PostgreSQL faults; of the revivals and soft deletes, "
                     f"{w.flips['revive']} and {w.flips['soft_delete']} were a row's scheduled flip")
    if chaos is not None:
        lines.append(f"- faults injected: {sum(chaos.counts.values())}: {counts(chaos.counts)}")
        if chaos.counts["lease-expiry"]:
            lines.append(f"- lease expiries: {counts(chaos.lease)}")
    if sup is not None:
        lines.append(f"- indexer processes killed: {sum(sup.killed.values())} ({counts(sup.killed)})")
        labels = sorted({label for label, _ in sup.passes})
        lines += ["- passes run: " + str(sum(sup.passes.values())), "",
                  "  | command | passes | ok | failed | refused | killed | other |", "  |---|---|---|---|---|---|---|"]
        for label in labels:
            row = {o: n for (lab, o), n in sup.passes.items() if lab == label}
            other = ", ".join(f"{o} {n}" for o, n in sorted(row.items()) if o not in MAIN_OUTCOMES)
            lines.append(f"  | {label} | {sum(row.values())} | {row.get('ok', 0)} | {row.get('failed', 0)} | "
                         f"{row.get('refused', 0)} | {row.get('killed', 0)} | {other or '-'} |")
        lines.append("")
        for problem in sup.problems:
            lines.append(f"- supervisor: {problem}")
    if soak.checker is not None:
        pending = collections.Counter(s.path for s in soak.checker.pending)
        lines.append("- lag, inserts/updates/soft deletes (sync): "
                     f"{lag_text(soak.checker.lags('sync'), pending['sync'])}")
        lines.append(f"- lag, hard deletes (reconcile or reindex): "
                     f"{lag_text(soak.checker.lags('reconcile'), pending['reconcile'])}")
    if result is not None:
        lines.append(f"- compared: {result.documents} documents behind the alias against {result.rows} live rows "
                     f"({result.soft_deleted} soft-deleted rows left out); {result.indices}")
        if soak.after_sync is not None and soak.writer is not None:
            before = soak.after_sync
            lines.append(f"- after the final sync, before the final reconcile: missing {len(before.missing)}, "
                         f"different {len(before.different)}, extra {len(before.extra)} (of which "
                         f"{len(before.extra) - before.without_hard_deletes(soak.writer.hard_deleted)} hard-deleted "
                         f"rows, left for reconcile): **sync mismatches: {sync_mismatches(soak)}**")
            lines += [f"  - {d}" for d in before.details if not d.startswith(tuple(
                f"{i}: extra" for i in before.extra if int(i) in soak.writer.hard_deleted))][:10]
        lines.append(f"- **mismatches: {result.mismatches}** (missing {len(result.missing)}, "
                     f"extra {len(result.extra)}, different {len(result.different)})")
        lines += [f"  - {d}" for d in result.details[:10]]
    if failure:
        lines.append(f"- **the run did not work**: {failure}")
    lines.append(f"- fault log: {soak.fault_log.relative_to(REPO)}; run folder: {soak.folder.relative_to(REPO)}")
    options = (f" --faults {','.join(args.faults)}" if args.faults != list(Chaos.WEIGHTS) else "") + \
        (f" --rate {args.rate:g}" if args.rate != 30 else "")
    lines.append(f"- replay: `python -m tests.soak.soak --minutes {args.minutes:g} --seed {args.seed} "
                 f"--engine {args.engine} --nodes {args.nodes}{options}`")
    return "\n".join(lines) + "\n"


def sync_mismatches(soak: Soak) -> int:
    """What the final sync alone left wrong (hard deletes aside); 0 when it was not compared."""
    if soak.after_sync is None or soak.writer is None:
        return 0
    return soak.after_sync.without_hard_deletes(soak.writer.hard_deleted)


class Soak:
    """Sets everything up, runs the chaos for the planned time, heals, compares; ``cleanup`` stops it all."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.started = dt.datetime.now(dt.UTC)
        name = f"{self.started:%Y%m%d-%H%M%S}-seed{args.seed}"
        self.folder = SOAK_DIR / "runs" / name
        self.fault_log = SOAK_DIR / "runs" / f"{name}.faults.log"
        self.pg = Postgres(args.pg_port)
        self.cluster = Cluster(args.engine, args.nodes, args.port)
        self.proxy: ProxyServer | None = None
        self.writer: Writer | None = None
        self.sup: Supervisor | None = None
        self.chaos: Chaos | None = None
        self.checker: Checker | None = None
        self.version = args.engine
        self.write_seconds = 0.0
        self.after_sync: Comparison | None = None
        self.cleaned = False

    def setup(self) -> None:
        self.folder.mkdir(parents=True)
        self.fault_log.touch()
        say(f"starting PostgreSQL on {self.args.pg_port} and {self.args.nodes} {self.args.engine} node(s) "
            f"on {self.args.port}...")
        self.pg.start()
        self.cluster.start()
        self.version = self.cluster.version()
        self.proxy = ProxyServer(upstream=self.cluster.url(1)).start()
        for name in (self.cluster.http("GET", f"/_cat/indices/{ALIAS}-*?format=json&h=index")[1] or []):
            self.cluster.http("DELETE", f"/{name['index']}")
        for doc in (ALIAS, f"lock%3A{ALIAS}"):
            self.cluster.http("DELETE", f"/indexer-state/_doc/{doc}?refresh=true")
        self.write_job()
        self.writer = Writer(self.pg, self.args.seed, self.args.rate)
        self.writer.seed_table(SEED_ROWS)
        self.sup = Supervisor(self.folder / "job.toml", self.folder, self.args.seed)
        job = str(self.folder / "job.toml")
        boot = subprocess.run([sys.executable, "-m", "indexer.cli", "bootstrap", "--job", job],
                              capture_output=True, text=True, env=self.sup.env, cwd=REPO, timeout=300)
        if boot.returncode != 0:
            raise RuntimeError(f"indexer bootstrap failed: {boot.stderr.strip()}")
        first = self.sup.run_once("reindex (initial)", "reindex")
        if first.proc.returncode != 0:
            raise RuntimeError(f"the first reindex failed: {first.last}")

    def write_job(self) -> None:
        mappings = self.folder / "mappings"
        (mappings / "component").mkdir(parents=True)
        (mappings / "index").mkdir()
        settings = {"number_of_shards": 2, "number_of_replicas": 1 if self.args.nodes > 1 else 0,
                    "refresh_interval": "1s"}
        properties = {"id": {"type": "long"}, "code": {"type": "keyword"}, "body": {"type": "text"},
                      "value": {"type": "double"},
                      "updated_at": {"type": "date", "format": "strict_date_optional_time"}}
        for path, body in ((mappings / "component" / "soak-settings.json", {"template": {"settings": settings}}),
                           (mappings / "component" / "soak-mappings.json",
                            {"template": {"mappings": {"dynamic": "strict", "properties": properties}}}),
                           (mappings / "index" / "soak-items.json",
                            {"index_patterns": [f"{ALIAS}-*"], "composed_of": ["soak-settings", "soak-mappings"],
                             "priority": 100})):
            path.write_text(json.dumps(body, indent=2) + "\n")
        q = json.dumps
        (self.folder / "job.toml").write_text(f"""[source]
dbtype = "PG"
host = "127.0.0.1"
port = {self.args.pg_port}
dbname = {q(PG_DB)}
user = {q(PG_USER)}
password_env = "PG_PASSWORD"

[target]
url = {q(self.proxy.url)}
engine = {q(CLIENT_ENGINE[self.args.engine])}
max_retry_time = 20

[job]
alias = {q(ALIAS)}
key = ["id"]
query = "SELECT id, code, body, value, updated_at, is_deleted FROM {TABLE}"
watermark = "updated_at"
deleted = "is_deleted"
lookback = "30s"
chunk_size = 500
mappings = "mappings"
""")

    def run(self) -> Comparison:
        assert self.writer is not None and self.sup is not None and self.proxy is not None
        self.checker = Checker(self.writer, self.cluster)
        self.chaos = Chaos(self.args.seed, self.proxy, self.pg, self.cluster, self.sup, self.fault_log,
                           self.args.faults)
        threads: list[Any] = [self.sup, self.writer, self.checker, self.chaos]
        for thread in threads:
            thread.start()
        start = time.monotonic()
        end, progress = start + self.args.minutes * 60, start + 30
        while time.monotonic() < end:
            time.sleep(1)
            for thread in threads:
                if thread.error is not None:
                    raise RuntimeError(f"the {thread.name} thread failed: {thread.error!r}") from thread.error
            if time.monotonic() >= progress:
                progress += 30
                say(f"{sum(self.writer.ops.values())} writes, faults {counts(self.chaos.counts)}, "
                    f"{sum(self.sup.passes.values())} passes, {len(self.checker.pending)} samples pending")
        say("writes and faults stop; healing")
        self.writer.halt.set()
        self.chaos.halt.set()
        self.writer.join(120)
        self.write_seconds = time.monotonic() - start
        self.chaos.join(600)
        self.proxy.faults.clear()
        self.pg.start()
        self.cluster.heal()
        self.sup.finish()
        for command in ("sync", "reconcile"):
            for attempt in range(6):
                final = self.sup.run_once(f"{command} (final)", command)
                outcome = (final.last or {}).get("outcome")
                if final.proc.returncode == 0 or outcome != "refused" or attempt == 5:
                    break
                say(f"final {command} refused ({(final.last or {}).get('error')}); trying again")
                time.sleep(5)
            if final.proc.returncode != 0:
                raise RuntimeError(f"the final {command} ended {final.proc.returncode}: {final.last}")
            if command == "sync":  # sync alone must have made the index exact, but for hard deletes
                say("comparing the index with the table after the final sync, before reconcile")
                self.after_sync = compare(self.pg, self.cluster)
        self.checker.halt.set()
        self.checker.join(30)
        self.checker.check()
        say("comparing the index with the table")
        return compare(self.pg, self.cluster)

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say("stopping everything the soak started")
        for part in (self.writer, self.chaos, self.checker):
            if part is not None:
                part.halt.set()
        steps = [self.sup.kill_all if self.sup else None, self.proxy.stop if self.proxy else None,
                 lambda: self.cluster.stop(final=True), lambda: self.pg.stop(final=True)]
        for step in steps:
            if step is not None:
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - every step gets its chance
                    say(f"cleanup: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--engine", choices=sorted(CLIENT_ENGINE), default="opensearch")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=9500)
    parser.add_argument("--pg-port", type=int, default=54339)
    parser.add_argument("--rate", type=float, default=30, help="writes per second (default 30)")
    parser.add_argument("--faults", default=",".join(Chaos.WEIGHTS),
                        help="the fault kinds to inject, comma-separated (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "SOAK.md")
    parser.add_argument("--gate", choices=("all", "final"), default="all",
                        help="what fails the run: 'all' (the default) the comparison after the final sync "
                             "(hard deletes aside) and after the final reconcile; 'final' only the latter "
                             "(make test: see docs/soak.md)")
    args = parser.parse_args(argv)
    args.faults = [k for k in args.faults.split(",") if k]
    if not set(args.faults) <= set(Chaos.WEIGHTS):
        parser.error(f"--faults: one of {', '.join(Chaos.WEIGHTS)}")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 2**31)
    print(f"soak: seed {args.seed}", flush=True)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored (a `&` job)
    soak = Soak(args)
    atexit.register(soak.cleanup)
    result, failure = None, ""
    try:
        soak.setup()
        result = soak.run()
    except KeyboardInterrupt:
        failure = "interrupted"
    except Exception as exc:  # noqa: BLE001 - reported, and the run fails
        failure = f"{type(exc).__name__}: {exc}"
    finally:
        soak.cleanup()
    text = report(args, soak, result, failure)
    print(text)
    if not args.out.exists():
        args.out.write_text(HEADER)
    with args.out.open("a") as f:
        f.write("\n" + text)
    gated_sync = sync_mismatches(soak) if args.gate == "all" else 0
    return 0 if result is not None and not failure and result.mismatches == 0 and not gated_sync else 1


if __name__ == "__main__":
    sys.exit(main())
