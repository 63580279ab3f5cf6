"""Shared test plumbing: the real search node, the real PostgreSQL, job files, running the CLI.

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
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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


def count(name: str) -> int:
    http("POST", f"/{name}/_refresh")
    status, body = http("GET", f"/{name}/_count")
    assert status == 200, body
    return body["count"]


def delete_indices(pattern: str) -> None:
    for name in indices(pattern):
        http("DELETE", f"/{name}")


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


def run_indexer(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("INDEXER_URL", None)
    if env and "INDEXER_URL" in env:
        full_env["INDEXER_URL"] = env["INDEXER_URL"]
    return subprocess.run(
        [sys.executable, "-m", "indexer.cli", *args], capture_output=True, text=True,
        timeout=timeout, env=full_env, cwd=REPO,
    )


def start_indexer(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "indexer.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, **(env or {})}, cwd=REPO,
    )


# ------------------------------------------------------------------ sources


def sqlite_rows(path: Path, query: str = "SELECT code, description, site, value, date_updated FROM sensors") -> dict[str, dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    rows = {r["code"]: dict(r) for r in conn.execute(query)}
    conn.close()
    return rows


def slow_job(tmp_path: Path, target: dict, alias: str, db: Path, *, pause: float,
             query: str = "SELECT code, description, site, value, date_updated FROM sensors", **job: Any) -> Path:
    """A sensors job whose transform sleeps ``pause`` seconds per chunk of 100 rows: a run that lasts."""
    (tmp_path / "slowdown.py").write_text(f"import time\n\ndef slow(docs):\n    time.sleep({pause})\n    return docs\n")
    return write_job(tmp_path / "job.toml", sqlite_source(db), target, {
        "alias": alias, "key": ["code"], "query": query, "chunk_size": 100, "concurrency": 1,
        "transform": "slowdown:slow", **job,
    })


def sqlite_source(path: Path) -> dict:
    return {"dbtype": "SQLITE", "filename": str(path)}


def pg_source() -> dict:
    return {**PG, "dbtype": "PG", "password_env": PG_PASSWORD_ENV}
