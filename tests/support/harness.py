"""Shared test plumbing: the real search node and its stored state, SQLite files and PostgreSQL scratch
tables, job files over the sensors tables, transforms that make a run last, running the CLI, waiting.

Nothing here fakes the engine or the database: tests that need them fail (never
skip) when they are not running; `make test` starts both, once per engine.

Which engine the node is comes from ``INDEXER_TEST_ENGINE_KIND`` (scripts/test-matrix.sh sets it):
``opensearch`` (the default), ``elasticsearch`` (8.x) or ``elasticsearch9``; ``CLIENT_ENGINE`` is the
``[target] engine`` that talks to it (``opensearch`` -> opensearch-py, both Elasticsearch majors ->
the elasticsearch 8.x client, in compatibility mode on 9.x).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE_URL = os.environ.get("INDEXER_TEST_ENGINE", f"http://127.0.0.1:{os.environ.get('ENGINE_PORT', '9200')}")
# engine kind -> (the [target] engine value, the major version GET / must report; None: any)
ENGINE_KINDS = {"opensearch": ("opensearch", None), "elasticsearch": ("elasticsearch", "8"),
                "elasticsearch9": ("elasticsearch", "9")}
ENGINE_KIND = os.environ.get("INDEXER_TEST_ENGINE_KIND", "opensearch")
CLIENT_ENGINE = ENGINE_KINDS.get(ENGINE_KIND, ("?", None))[0]
# The error type of a document that does not fit the mapping: Elasticsearch 8 renamed OpenSearch's (and 7.x's).
PARSING_EXCEPTION = "document_parsing_exception" if CLIENT_ENGINE == "elasticsearch" else "mapper_parsing_exception"
PG = {
    "host": "127.0.0.1",
    "port": int(os.environ.get("PG_PORT", "54329")),
    "dbname": os.environ.get("PG_DB", "indexer_test"),
    "user": os.environ.get("PG_USER", "indexer"),
}
PG_PASSWORD_ENV = "PG_PASSWORD"
# The sensors tables (demo/generate.py; tests/conftest.py: ``sqlite_sensors``, ``pg_table``): a document's fields.
SENSORS = "code, description, site, value, date_updated"
SENSORS_QUERY = f"SELECT {SENSORS} FROM sensors"
T = TypeVar("T")


# ------------------------------------------------------------------ the engine, inspected over plain HTTP


def http(method: str, path: str, body: Any = None, url: str = ENGINE_URL) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def bulk_index(index: str, docs: dict[str, dict]) -> None:
    """Index ``docs`` (by _id) into ``index`` in one bulk request, refreshed; every item must succeed."""
    body = "".join(json.dumps({"index": {"_id": id_}}) + "\n" + json.dumps(doc) + "\n" for id_, doc in docs.items())
    req = urllib.request.Request(f"{ENGINE_URL}/{quote(index, safe='')}/_bulk?refresh=true", data=body.encode(),
                                 method="POST", headers={"content-type": "application/x-ndjson"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    assert not answer["errors"], [i for i in answer["items"] if "error" in i["index"]][:3]


def require_engine() -> None:
    try:
        status, body = http("GET", "/_cluster/health?wait_for_status=yellow&timeout=10s")
    except OSError as exc:
        pytest.fail(f"no search node at {ENGINE_URL} ({exc}); run the tests with `make test`", pytrace=False)
    if status != 200:
        pytest.fail(f"search node at {ENGINE_URL} is not healthy: {body}", pytrace=False)
    if ENGINE_KIND not in ENGINE_KINDS:
        pytest.fail(f"INDEXER_TEST_ENGINE_KIND={ENGINE_KIND!r}: use one of {', '.join(ENGINE_KINDS)}", pytrace=False)
    found = engine_kind_of(http("GET", "/")[1] or {})
    if found != ENGINE_KIND:
        pytest.fail(f"INDEXER_TEST_ENGINE_KIND={ENGINE_KIND} but the node at {ENGINE_URL} is {found}; "
                    "run the tests with `make test` (or scripts/test-matrix.sh)", pytrace=False)


def engine_kind_of(root: dict) -> str:
    """The engine kind a ``GET /`` answer names: opensearch, elasticsearch (8.x), elasticsearch9, or a description."""
    version = root.get("version") or {}
    number = str(version.get("number", "?"))
    if version.get("distribution") == "opensearch":
        return "opensearch"
    major = number.split(".")[0]
    for kind, (client, wanted) in ENGINE_KINDS.items():
        if client == "elasticsearch" and wanted == major:
            return kind
    return f"{version.get('distribution', 'elasticsearch')} {number}"


def documents(alias: str) -> dict[str, dict]:
    """Every document behind an alias or index, by _id (tests keep indices under 10,000 documents)."""
    http("POST", f"/{alias}/_refresh")
    status, body = http("POST", f"/{alias}/_search", {"size": 10000, "query": {"match_all": {}}, "track_total_hits": True})
    assert status == 200, body
    assert body["hits"]["total"]["value"] <= 10000
    return {hit["_id"]: hit["_source"] for hit in body["hits"]["hits"]}


def alias_targets(alias: str) -> list[str]:
    status, body = http("GET", f"/_alias/{alias}")
    return sorted(body) if status == 200 else []


def indices(pattern: str) -> list[str]:
    status, body = http("GET", f"/{pattern}/_settings?expand_wildcards=open,closed")
    return sorted(body) if status == 200 else []


def readable(pattern: str) -> list[str]:
    """The indices matching ``pattern`` whose primary shards have all started, so reads answer: a GET or a count
    on an index a run has just created can meet its shard still recovering (503), more often on a busy machine."""
    status, body = http("GET", f"/_cat/shards/{pattern}?format=json&h=index,prirep,state")
    if status != 200:
        return []
    primaries: dict[str, set[str]] = {}
    for shard in body:
        if shard["prirep"] == "p":
            primaries.setdefault(shard["index"], set()).add(shard["state"])
    return sorted(name for name, states in primaries.items() if states == {"STARTED"})


def count(name: str) -> int:
    http("POST", f"/{name}/_refresh")
    status, body = http("GET", f"/{name}/_count")
    assert status == 200, body
    return body["count"]


def delete_indices(pattern: str) -> None:
    for name in indices(pattern):
        http("DELETE", f"/{name}")


def document(index: str, id_: str) -> dict | None:
    """One document's source by id, as it is now (a GET is realtime: no refresh), or None."""
    status, body = http("GET", f"/{quote(index, safe='')}/_doc/{quote(id_, safe='')}")
    assert status in (200, 404), body
    return body["_source"] if status == 200 and body.get("found") else None


# ------------------------------------------------------------------ what a run stored in the cluster


def state_document(alias: str) -> dict:
    """The ``indexer-state`` document of ``alias`` as stored (``_source``, ``_seq_no``...); it must exist."""
    status, body = http("GET", f"/indexer-state/_doc/{quote(alias, safe='')}")
    assert status == 200, body
    return body


def stored_state(alias: str) -> dict:
    """The state a run stored for ``alias``: watermark, marks, index, last_run, last_reconcile."""
    return state_document(alias)["_source"]["state"]


def lock_of(alias: str) -> dict | None:
    """The run lock held on ``alias`` (host, pid, token, expires), or None when nobody holds it."""
    status, body = http("GET", f"/indexer-state/_doc/{quote('lock:' + alias, safe='')}")
    assert status in (200, 404), body
    return body["_source"]["lock"] if status == 200 else None


def put_lock(alias: str, lock: dict) -> None:
    """Another owner's lock on ``alias``, as a run elsewhere would hold it."""
    status, body = http("PUT", f"/indexer-state/_doc/{quote('lock:' + alias, safe='')}?refresh=true",
                        {"alias": alias, "lock": lock})
    assert status in (200, 201), body


# ------------------------------------------------------------------ PostgreSQL


def pg_connect():
    import psycopg2

    password = os.environ.get(PG_PASSWORD_ENV)
    if not password:
        pytest.fail(f"{PG_PASSWORD_ENV} is not set; run the tests with `make test`", pytrace=False)
    try:
        return psycopg2.connect(password=password, connect_timeout=5, **PG)
    except psycopg2.OperationalError as exc:
        pytest.fail(f"no PostgreSQL at {PG['host']}:{PG['port']} ({exc}); run the tests with `make test`", pytrace=False)


def pg_documents(conn, table: str, where: str = "") -> dict[str, dict]:
    """What the index should hold for a sensors table in PostgreSQL (timestamps in ISO 8601)."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT code, description, site, value, date_updated FROM {table} {where}")
        rows = cur.fetchall()
    conn.rollback()
    return {c: {"code": c, "description": d, "site": s, "value": v, "date_updated": t.isoformat()}
            for c, d, s, v, t in rows}


def pg_dsn() -> str:
    return " ".join(f"{k}={v}" for k, v in PG.items())


class PgTables:
    """Scratch tables in the test PostgreSQL, each under a fresh name, all dropped by ``drop()`` (the
    ``pg_tables`` fixture does it after the test). ``conn`` is an open connection of its own."""

    def __init__(self) -> None:
        self.conn = pg_connect()
        self.made: list[str] = []

    def name(self, prefix: str = "t") -> str:
        """A fresh table name, dropped with the others (for a table written by other means)."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.made.append(name)
        return name

    def create(self, columns: str, rows: Sequence[tuple] = (), *, prefix: str = "t", name: str | None = None) -> str:
        """``CREATE TABLE`` with these columns and rows (bound as parameters); its name (``name``, quoted as
        given, or a fresh one)."""
        if name is None:
            name = self.name(prefix)
        else:
            self.made.append(name)
        self.execute(f"CREATE TABLE {name} ({columns})")
        if rows:
            with self.conn, self.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {name} VALUES ({', '.join(['%s'] * len(rows[0]))})", rows)
        return name

    def execute(self, statement: str, *params: Any) -> None:
        """One statement, committed."""
        with self.conn, self.conn.cursor() as cur:
            cur.execute(statement, params or None)

    def drop(self) -> None:
        with self.conn, self.conn.cursor() as cur:
            cur.execute("SET lock_timeout = '10s'")  # never wait forever on a connection a test left open
            for name in self.made:
                cur.execute(f"DROP TABLE IF EXISTS {name}")
        self.conn.close()


# ------------------------------------------------------------------ SQLite

# SQLite lets no write in while a statement reads the file: a change made while a run reads waits for the
# read to end (a reindex holds its SELECT open until its last chunk), up to this many seconds.
SQLITE_WRITE_WAIT = 60.0


def sql(db: Path, statement: str, *params: Any) -> None:
    """One statement on the SQLite file ``db`` (created when missing), committed."""
    conn = sqlite3.connect(db, timeout=SQLITE_WRITE_WAIT)
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def sql_many(db: Path, statement: str, rows: Iterable[Sequence[Any]]) -> None:
    """One statement for each of ``rows`` on the SQLite file ``db``, committed together."""
    conn = sqlite3.connect(db, timeout=SQLITE_WRITE_WAIT)
    conn.executemany(statement, rows)
    conn.commit()
    conn.close()


def sqlite_rows(path: Path, query: str = SENSORS_QUERY) -> dict[str, dict]:
    """What the index should hold for a query over a SQLite file: every row by its ``code``."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = {r["code"]: dict(r) for r in conn.execute(query)}
    conn.close()
    return rows


def live_sensors(path: Path) -> dict[str, dict]:
    """What the index of a synced sensors job holds: every row not soft-deleted, by ``code``."""
    return sqlite_rows(path, f"{SENSORS_QUERY} WHERE is_deleted = 0")


# ------------------------------------------------------------------ job files and the CLI


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_job(path: Path, source: dict, target: dict, job: dict, params: dict | None = None, extra: str = "") -> Path:
    lines = []
    for table, values in (("source", source), ("target", target), ("job", job)):
        lines.append(f"[{table}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    if params:
        lines.append("[job.params]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _child_env(env: dict | None) -> dict:
    """The CLI child's environment: this process's, without a developer shell's INDEXER_URL (the job files
    name the test node), plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if k != "INDEXER_URL"}, **(env or {})}


def run_indexer(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args], capture_output=True, text=True,
        timeout=timeout, env=_child_env(env), cwd=REPO,
    )


def start_indexer(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The real CLI started in a child process; with faulthandler on, so that ``stacks_of`` can ask a hung
    one where each of its threads is."""
    return subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "indexer.cli", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_child_env(env), cwd=REPO,
    )


def stacks_of(proc: subprocess.Popen) -> str:
    """End a hung ``start_indexer`` child with SIGABRT: faulthandler prints every thread's stack on stderr
    as it dies. Its stderr, to put in the test's failure."""
    proc.send_signal(signal.SIGABRT)
    try:
        return proc.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]


# ------------------------------------------------------------------ sources and sensors jobs


def sqlite_source(path: Path) -> dict:
    return {"dbtype": "SQLITE", "filename": str(path)}


def pg_source() -> dict:
    return {**PG, "dbtype": "PG", "password_env": PG_PASSWORD_ENV}


def sensors_job(folder: Path, db: Path | str, target: dict, alias: str, *, synced: bool = False,
                name: str = "job.toml", source: dict | None = None, params: dict | None = None, **job: Any) -> Path:
    """A job file ``folder/name`` over a sensors table: ``db`` is its SQLite file, or the name of its
    PostgreSQL table. Key ``code``; the query selects a document's fields (``SENSORS``); ``synced``, as
    examples/sensors.toml: ``is_deleted`` too (soft deletes), ``date_updated`` the watermark. ``job``: any
    other setting, or one of these replaced; ``source``: another [source] table (a database that refuses)."""
    table, own = ("sensors", sqlite_source(db)) if isinstance(db, Path) else (db, pg_source())
    columns = f"{SENSORS}, is_deleted" if synced else SENSORS
    settings = {"alias": alias, "key": ["code"], "query": f"SELECT {columns} FROM {table}",
                **({"watermark": "date_updated", "deleted": "is_deleted"} if synced else {}), **job}
    return write_job(folder / name, source or own, target, settings, params=params)


# ------------------------------------------------------------------ transforms that make a run last


def _transform_module(folder: Path, prefix: str, code: str) -> str:
    """``code`` as a new module in ``folder`` (a job file's: transforms are looked up there); its ``job.transform``.
    A new name every time: a process keeps a module it imported once (an in-process run, a Dask worker)."""
    module = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (folder / f"{module}.py").write_text(code)
    return f"{module}:transform"


def slow_transform(folder: Path, pause: float) -> str:
    """A transform that sleeps ``pause`` seconds per chunk and changes nothing: a run that lasts."""
    return _transform_module(folder, "slow", f"import time\n\ndef transform(docs):\n    time.sleep({pause})\n"
                                             "    return docs\n")


def stalling_transform(folder: Path, *, after: int = 0, timeout: float = 120) -> str:
    """A transform that holds every chunk after the first ``after`` of its process until the file ``go``
    exists in ``folder``, writing ``running-<pid>`` there while it holds one (at most ``timeout`` s)."""
    return _transform_module(folder, "stall", (
        "import os, pathlib, time\n\nFOLDER = pathlib.Path(__file__).parent\nseen = 0\n\n"
        "def transform(docs):\n"
        "    global seen\n"
        "    seen += 1\n"
        "    go = FOLDER / 'go'\n"
        f"    if seen > {after} and not go.exists():\n"
        "        (FOLDER / f'running-{os.getpid()}').touch()\n"
        f"        deadline = time.monotonic() + {timeout}\n"
        "        while not go.exists() and time.monotonic() < deadline:\n"
        "            time.sleep(0.05)\n"
        "    return docs\n"))


def slow_job(folder: Path, db: Path | str, target: dict, alias: str, *, pause: float, **job: Any) -> Path:
    """A sensors job read in chunks of 100 rows, one at a time, each held ``pause`` seconds by its transform:
    3,000 rows last about 30 × ``pause`` seconds."""
    return sensors_job(folder, db, target, alias, **{"chunk_size": 100, "concurrency": 1,
                                                      "transform": slow_transform(folder, pause), **job})


def free_port() -> int:
    """A TCP port nothing listens on now (for a server a test starts: a daemon's metrics, a closed database)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> tuple[int, str]:
    """GET a plain-text URL: (status, body); (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - a local test URL
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


# ------------------------------------------------------------------ waiting for what can be waited on


def wait_until(condition: Callable[[], T], what: str, proc: subprocess.Popen | None = None,
               timeout: float = 60, every: float = 0.05) -> T:
    """Poll ``condition()`` until it returns something true, and return that. Fails naming ``what`` after
    ``timeout`` seconds, or as soon as ``proc`` (the run that should bring it about) has ended, with its stderr."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            pytest.fail(f"{what}: the run ended first (exit {proc.returncode}): {err[-3000:]!s}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g} s", pytrace=False)
        time.sleep(every)
    return found
