"""`indexer init` on real SQLite and PostgreSQL tables: the files it writes bootstrap, preview, reindex (and
sync) without edits, every row is indexed as it should be, and `bootstrap --check` then exits 0."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import sqlite3
import tomllib
import uuid
from decimal import Decimal

import pytest

from tests.support.harness import PG, PG_PASSWORD_ENV, documents, http, pg_documents, run_indexer, sqlite_rows


@pytest.fixture
def templates(alias):
    """The templates init writes for ``alias``, deleted afterwards (the ``alias`` fixture deletes the indices)."""
    yield alias
    http("DELETE", f"/_index_template/{alias}")
    for part in ("mappings", "settings"):
        http("DELETE", f"/_component_template/{alias}-{part}")


def _init(target, *args):
    return run_indexer("init", "--url", target["url"], "--engine", target["engine"], "--json", *args)


def _sqlite_init(target, out, db, table, alias, *args):
    return _init(target, "--dbtype", "SQLITE", "--filename", str(db), "--table", table, "--alias", alias,
                 "--out", str(out), *args)


def _pg_init(target, out, table, alias, *args):
    return _init(target, "--dbtype", "PG", "--host", PG["host"], "--port", str(PG["port"]), "--dbname", PG["dbname"],
                 "--user", PG["user"], "--password-env", PG_PASSWORD_ENV, "--table", table, "--alias", alias,
                 "--out", str(out), *args)


def _ok(result):
    assert result.returncode == 0, result.stderr + result.stdout[-2000:]
    return result


def _written(result, out, alias):
    assert json.loads(_ok(result).stdout)["written"] == [
        str(out / f"{alias}.toml"), str(out / "mappings" / "component" / f"{alias}-mappings.json"),
        str(out / "mappings" / "component" / f"{alias}-settings.json"), str(out / "mappings" / "index" / f"{alias}.json")]
    job = tomllib.loads((out / f"{alias}.toml").read_text())["job"]
    assert job["mappings"] == "mappings"  # the templates folder, relative to the job file
    return job


def _bootstrap_preview_reindex(out, alias):
    """The generated files as a user runs them, with no option but the job: preview (no problem, before
    the cluster has a template: from the job's own files), bootstrap, preview, reindex, bootstrap --check."""
    job = str(out / f"{alias}.toml")
    state = ("--state-file", str(out / "state.json"))
    before = json.loads(_ok(run_indexer("preview", job, "--json", *state)).stdout)
    assert before["problems"] == [] and "the cluster has no index template for it yet" in before["templates"]
    _ok(run_indexer("bootstrap", "--job", job))
    after = json.loads(_ok(run_indexer("preview", job, "--json", *state)).stdout)
    assert after["problems"] == [] and after["mappings"] == before["mappings"]
    summary = json.loads(_ok(run_indexer("reindex", job, "--json", *state)).stdout)
    assert summary["dead_lettered"] == 0
    check = run_indexer("bootstrap", "--job", job, "--check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["drift"] is False, check.stdout + check.stderr
    return summary


# ---------------------------------------------------------------- the demo database and a PostgreSQL sensors table


def test_the_demo_database_gives_a_job_that_indexes_every_row_as_the_example_does(tmp_path, target, templates, sqlite_sensors):
    alias, out = templates, tmp_path / "jobs"
    job = _written(_sqlite_init(target, out, sqlite_sensors, "sensors", alias), out, alias)
    assert (job["key"], job["watermark"], job["deleted"]) == (["code"], "date_updated", "is_deleted")
    _bootstrap_preview_reindex(out, alias)

    expected = sqlite_rows(sqlite_sensors)
    assert documents(alias) == expected and len(expected) == 3000


def test_a_postgres_sensors_table_gives_a_job_that_indexes_every_row(tmp_path, target, templates, pg_table, pg_tables):
    alias, out = templates, tmp_path / "jobs"
    job = _written(_pg_init(target, out, f"public.{pg_table}", alias), out, alias)
    assert (job["key"], job["watermark"], job["deleted"]) == (["code"], "date_updated", "is_deleted")
    written = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert os.environ[PG_PASSWORD_ENV] not in written and f'password_env = "{PG_PASSWORD_ENV}"' in written
    _bootstrap_preview_reindex(out, alias)
    assert documents(alias) == pg_documents(pg_tables.conn, pg_table)


# ---------------------------------------------------------------- every common type, names that need quoting

PG_COLUMNS = """
    id_a integer, "Line No" smallint, big bigint, amount numeric(10,2), huge numeric(30,5), plain_num numeric,
    r real, d double precision, code varchar(8), title varchar(200), body text, "Order Date" date,
    "UpdatedAt" timestamp, seen timestamptz, flag boolean, data bytea, j json, jb jsonb, tags text[], u uuid,
    "select" text, "metadata.source" varchar(20), is_deleted boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id_a, "Line No")
"""
PG_INSERT = (
    'INSERT INTO {t} (id_a, "Line No", big, amount, huge, plain_num, r, d, code, title, body, "Order Date", "UpdatedAt", '
    'seen, flag, data, j, jb, tags, u, "select", "metadata.source", is_deleted) VALUES '
    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
UTC = dt.timezone.utc


@pytest.fixture
def pg_types(pg_tables) -> str:
    """A mixed-case table with a space in its name, every common type and a composite key; dropped afterwards."""
    table = pg_tables.create(PG_COLUMNS, name=f'"Init Types {uuid.uuid4().hex[:8]}"')
    for row in (
            (1, 1, 9007199254740993, Decimal("12.35"), Decimal("1234567890123456789012345.12345"), Decimal("0.1"),
             1.5, 2.25, "AB-1", "A title", "A long body", dt.date(2024, 3, 4), dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
             dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), True, b"\x00\x01", json.dumps({"a": [1, "x"]}),
             json.dumps({"b": {"c": 2}}), ["x", "y"], "6f1c2e3a-0000-4000-8000-000000000001", "chosen", "lab", False),
            (1, 2, *[None] * 10, dt.datetime(2024, 1, 3), *[None] * 9, False),
            (2, 1, *[None] * 10, dt.datetime(2024, 1, 4), *[None] * 9, True)):
        pg_tables.execute(PG_INSERT.format(t=table), *row)
    return table


def test_postgres_types_and_quoted_names_index_without_edits_and_the_guesses_drive_sync(tmp_path, target, templates, pg_types,
                                                                                       pg_tables):
    table = pg_types
    alias, out = templates, tmp_path / "jobs"
    job = _written(_pg_init(target, out, f"public.{table}", alias), out, alias)
    assert job["key"] == ["id_a", "line no"]
    assert (job["watermark"], job["deleted"]) == ("updatedat", "is_deleted")
    assert '"UpdatedAt" AS updatedat' in job["query"] and '"select"' in job["query"]
    summary = _bootstrap_preview_reindex(out, alias)
    assert summary["skipped"] == 1  # the soft-deleted row

    docs = documents(alias)
    assert set(docs) == {"1|1", "1|2"}
    first = docs["1|1"]
    assert first["big"] == 9007199254740993 and first["amount"] == 12.35 and first["plain_num"] == 0.1
    assert first["huge"] == "1234567890123456789012345.12345"  # exact, as text: no double holds it
    assert (first["r"], first["d"], first["code"], first["title"], first["body"]) == (1.5, 2.25, "AB-1", "A title", "A long body")
    assert first["order date"] == "2024-03-04" and first["updatedat"] == "2024-01-02T03:04:05.123456"
    assert dt.datetime.fromisoformat(first["seen"]) == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert first["flag"] is True and base64.b64decode(first["data"]) == b"\x00\x01"
    assert first["j"] == {"a": [1, "x"]} and first["jb"] == {"b": {"c": 2}} and first["tags"] == ["x", "y"]
    assert first["select"] == "chosen" and first["metadata"] == {"source": "lab"} and "is_deleted" not in first
    assert docs["1|2"]["title"] is None

    pg_tables.execute(f"""UPDATE {table} SET title = 'changed', "UpdatedAt" = '2030-01-01' WHERE "Line No" = 2""")
    pg_tables.execute(f"""UPDATE {table} SET is_deleted = true, "UpdatedAt" = '2030-01-01' WHERE id_a = 1 AND "Line No" = 1""")
    _ok(run_indexer("sync", str(out / f"{alias}.toml"), "--state-file", str(out / "state.json")))
    docs = documents(alias)
    assert set(docs) == {"1|2"} and docs["1|2"]["title"] == "changed"


SQLITE_TABLE = """CREATE TABLE "Order Lines" (
    "Order Id" INTEGER, "select" INTEGER, Code VARCHAR(10), Notes TEXT, Price DECIMAL(10,2), Ratio REAL,
    Photo BLOB, Meta JSON, Created DATE, UpdatedAt DATETIME, Active BOOLEAN, is_deleted INTEGER NOT NULL DEFAULT 0,
    "metadata.source" TEXT, PRIMARY KEY ("Order Id", "select"))"""


# Every layout the date format reads: Python's isoformat (naive, aware) and SQLite's own text forms.
LAYOUTS = ["2024-01-02", "2024-01-02T03:04:05", "2024-01-02T03:04:05.123456", "2024-01-02T03:04:05+05:30",
           "2024-01-02T03:04:05.123456-01:00", "2024-01-02T03:04:05Z", "2024-01-02 03:04:05",
           "2024-01-02 03:04:05.123", "2024-01-02 03:04:05.123456"]


def test_sqlite_types_and_quoted_names_index_without_edits(tmp_path, target, templates):
    db = tmp_path / "orders.db"
    with sqlite3.connect(db) as conn:
        conn.execute(SQLITE_TABLE)
        conn.executemany('INSERT INTO "Order Lines" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', [
            (1, 1, "A-1", "first line", 12.35, 0.5, b"\x00\xff", '{"a": 1}', "2024-01-02", "2024-01-02 03:04:05.123", 1, 0, "lab"),
            (1, 2, None, None, None, None, None, None, None, "2024-01-03T00:00:00", 0, 0, None),
            (2, 1, "B-1", "gone", 1.0, 1.0, None, None, None, "2024-01-04 00:00:00", 1, 1, None),
        ] + [(3, n, None, None, None, None, None, None, None, when, None, 0, None) for n, when in enumerate(LAYOUTS)])
    conn.close()
    alias, out = templates, tmp_path / "jobs"
    job = _written(_sqlite_init(target, out, db, '"Order Lines"', alias), out, alias)
    assert job["key"] == ["order id", "select"] and (job["watermark"], job["deleted"]) == ("updatedat", "is_deleted")
    _bootstrap_preview_reindex(out, alias)
    docs = documents(alias)
    assert set(docs) == {"1|1", "1|2", *(f"3|{n}" for n in range(len(LAYOUTS)))}
    assert [docs[f"3|{n}"]["updatedat"] for n in range(len(LAYOUTS))] == LAYOUTS
    assert docs["1|1"] == {"order id": 1, "select": 1, "code": "A-1", "notes": "first line", "price": 12.35, "ratio": 0.5,
                           "photo": base64.b64encode(b"\x00\xff").decode(), "meta": '{"a": 1}', "created": "2024-01-02",
                           "updatedat": "2024-01-02 03:04:05.123", "active": 1, "metadata": {"source": "lab"}}


# ---------------------------------------------------------------- no primary key; never overwrite; unknown table


def test_no_primary_key_is_one_line_asking_for_key_and_then_key_works(tmp_path, target, templates):
    db = tmp_path / "readings.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE readings (site TEXT, n INTEGER, v REAL)")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?)", [("a", 1, 0.5), ("a", 2, 1.5), ("b", 1, 2.5)])
    conn.close()
    alias, out = templates, tmp_path / "jobs"
    refused = _sqlite_init(target, out, db, "readings", alias)
    assert refused.returncode == 2
    assert refused.stderr == "error: table readings has no primary key: name the key columns with --key COL\n"
    assert not out.exists()

    job = _written(_sqlite_init(target, out, db, "readings", alias, "--key", "site", "--key", "N"), out, alias)
    assert job["key"] == ["site", "n"]
    _bootstrap_preview_reindex(out, alias)
    assert set(documents(alias)) == {"a|1", "a|2", "b|1"}


def test_a_postgres_table_without_primary_key_needs_key(tmp_path, target, templates, pg_tables):
    table = pg_tables.create("site text, n integer", [("a", 1), ("b", 2)], prefix="nokey")
    alias, out = templates, tmp_path / "jobs"
    refused = _pg_init(target, out, table, alias)
    assert refused.returncode == 2 and "has no primary key: name the key columns with --key COL" in refused.stderr
    _written(_pg_init(target, out, table, alias, "--key", "site"), out, alias)
    _bootstrap_preview_reindex(out, alias)
    assert set(documents(alias)) == {"a", "b"}


def test_init_never_overwrites_and_writes_nothing_when_one_file_exists(tmp_path, target, sqlite_sensors):
    out = tmp_path / "jobs"
    _written(_sqlite_init(target, out, sqlite_sensors, "sensors", "first"), out, "first")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = _sqlite_init(target, out, sqlite_sensors, "sensors", "first")
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert f"{out / 'first.toml'} already exists" in again.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before

    (out / "mappings" / "index" / "second.json").write_text("{}")
    clash = _sqlite_init(target, out, sqlite_sensors, "sensors", "second")
    assert clash.returncode == 2 and "second.json already exists" in clash.stderr
    assert not (out / "second.toml").exists() and not (out / "mappings" / "component" / "second-mappings.json").exists()


def test_an_unknown_table_is_one_line(tmp_path, target, sqlite_sensors):
    result = _sqlite_init(target, tmp_path, sqlite_sensors, "nope", "nope")
    assert result.returncode == 2 and result.stderr.startswith("error: table nope not found")
    assert result.stderr.count("\n") == 1


# ---------------------------------------------------------------- metadata field names, long codes, bad --table (issue 17, 5)

# Every name the engines refuse in a document (documents.METADATA_FIELDS), and two they accept.
META_COLUMNS = ["_source", "_index", "_routing", "_field_names", "_ignored", "_seq_no", "_version", "_doc_count",
                "_data_stream_timestamp", "_nested_path", "_feature", "_ignored_source", "_tier", "_size"]


def test_columns_named_like_metadata_fields_are_renamed_and_index(tmp_path, target, templates):
    db = tmp_path / "meta.db"
    columns = ", ".join(f'"{c}" TEXT' for c in META_COLUMNS)
    with sqlite3.connect(db) as conn:
        conn.execute(f'CREATE TABLE meta ("_ID" TEXT PRIMARY KEY, id_ INTEGER, {columns}, "_type" TEXT, "_meta" TEXT)')
        conn.execute(f"INSERT INTO meta VALUES ({', '.join('?' * (len(META_COLUMNS) + 4))})",
                     ["a", 1, *(f"v{n}" for n in range(len(META_COLUMNS))), "t", "m"])
    conn.close()
    alias, out = templates, tmp_path / "jobs"
    job = _written(_sqlite_init(target, out, db, "meta", alias), out, alias)
    assert job["key"] == ["id__"]  # "_ID" is the field _id, renamed; id_ is taken by a column, so id__
    assert '"_ID" AS id__' in job["query"] and '"_source" AS source_' in job["query"]
    text = (out / f"{alias}.toml").read_text()
    assert '# column "_ID" is renamed "id__" in the query: _id is a metadata field name' in text
    assert '# column "_type"' not in text  # the engines take _type and _meta in a document: kept
    mappings = json.loads((out / "mappings" / "component" / f"{alias}-mappings.json").read_text())
    assert not set(mappings["template"]["mappings"]["properties"]) & {"_id", *META_COLUMNS}

    _bootstrap_preview_reindex(out, alias)
    expected = {"id__": "a", "id_": 1, "_type": "t", "_meta": "m",
                **{c.lstrip("_") + "_": f"v{n}" for n, c in enumerate(META_COLUMNS)}}
    assert documents(alias) == {"a": expected}


def test_a_sqlite_varchar_holding_more_than_its_length_still_indexes(tmp_path, target, templates):
    # SQLite does not enforce VARCHAR(10): 40,000 characters are more than Lucene's 32,766-byte term
    db = tmp_path / "codes.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE codes (id INTEGER PRIMARY KEY, code VARCHAR(10))")
        conn.executemany("INSERT INTO codes VALUES (?, ?)", [(1, "x" * 40_000), (2, "short")])
    conn.close()
    alias, out = templates, tmp_path / "jobs"
    _written(_sqlite_init(target, out, db, "codes", alias), out, alias)
    mappings = json.loads((out / "mappings" / "component" / f"{alias}-mappings.json").read_text())
    assert mappings["template"]["mappings"]["properties"]["code"] == {"type": "keyword", "ignore_above": 8191}
    summary = _bootstrap_preview_reindex(out, alias)
    assert summary["indexed"] == 2
    docs = documents(alias)
    assert docs["1"]["code"] == "x" * 40_000 and docs["2"]["code"] == "short"  # the long value stays in _source
    status, found = http("POST", f"/{alias}/_search", {"query": {"term": {"code": "short"}}})
    assert status == 200 and [h["_id"] for h in found["hits"]["hits"]] == ["2"]


@pytest.mark.parametrize("database", ["SQLITE", "PG"])
def test_a_table_option_that_is_not_a_plain_name_is_an_option_error(tmp_path, target, sqlite_sensors, database):
    out = tmp_path / "jobs"
    run = (lambda table: _sqlite_init(target, out, sqlite_sensors, table, "x")) if database == "SQLITE" else \
        (lambda table: _pg_init(target, out, table, "x"))
    result = run("sensors; drop table sensors")
    assert result.returncode == 2, result.stderr
    assert result.stderr == ("error: --table 'sensors; drop table sensors': 'sensors; drop table sensors' is not a "
                             'plain name (letters, digits, _, $, #): quote it, as in SQL ("sensors; drop table sensors")\n')
    assert not out.exists()


def test_a_table_name_postgres_cannot_read_is_an_option_error(tmp_path, target):
    result = _pg_init(target, tmp_path / "jobs", "public.[Order Items]", "x")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: --table 'public.[Order Items]': PostgreSQL reads no table name in it "
                                    "(invalid name syntax)")
