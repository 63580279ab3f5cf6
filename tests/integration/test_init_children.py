"""`indexer init --child` on real SQLite and PostgreSQL tables: the foreign keys in the catalogue give the
[[job.children]] entries (one-to-many, one-to-one, a lookup as a grandchild), the job file loads, its templates
map the children as nested (or, with --object, plain) objects and the engine installs them; what init cannot
plan is one line, exit 2, and no file."""

from __future__ import annotations

import json
import sqlite3
import tomllib

import pytest

from indexer.jobfile import load_job
from indexer.sources import columns_of, connect
from tests.support.harness import PG, PG_PASSWORD_ENV, http, pg_connect, run_indexer

# {p}: the prefix that makes the PostgreSQL tables the test's own.
SHOP = """
CREATE TABLE {p}orders (id INTEGER PRIMARY KEY, customer VARCHAR(40), updated_at TIMESTAMP);
CREATE TABLE {p}products (id INTEGER PRIMARY KEY, sku VARCHAR(20), title TEXT, updated_at TIMESTAMP);
CREATE TABLE {p}order_lines (order_id INTEGER REFERENCES {p}orders (id), line_no INTEGER,
    product_id INTEGER REFERENCES {p}products (id), qty INTEGER, updated_at TIMESTAMP, is_deleted BOOLEAN,
    PRIMARY KEY (order_id, line_no));
CREATE TABLE {p}shipments (order_id INTEGER PRIMARY KEY REFERENCES {p}orders (id), carrier VARCHAR(20),
    updated_at TIMESTAMP);
CREATE TABLE {p}notes (id INTEGER PRIMARY KEY, body TEXT);
CREATE TABLE {p}returns (order_id INTEGER REFERENCES {p}orders (id),
    replaces_order_id INTEGER REFERENCES {p}orders (id), n INTEGER, updated_at TIMESTAMP, PRIMARY KEY (order_id, n));
"""
TABLES = ("returns", "shipments", "order_lines", "notes", "products", "orders")  # in the order they can be dropped


@pytest.fixture(params=["sqlite", "pg"])
def shop(request, tmp_path):
    """The shop's tables in SQLite, or in the test PostgreSQL under a fresh prefix (dropped afterwards): the init
    options naming the database, and the tables' prefix."""
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        with sqlite3.connect(path) as conn:
            conn.executescript(SHOP.format(p=""))
        conn.close()
        return ["--dbtype", "SQLITE", "--filename", str(path)], ""
    pg_tables = request.getfixturevalue("pg_tables")
    prefix = pg_tables.name("shop") + "_"
    pg_tables.made.remove(prefix[:-1])
    pg_tables.made.extend(prefix + t for t in TABLES)
    for statement in SHOP.format(p=prefix).split(";"):
        if statement.strip():
            pg_tables.execute(statement)
    return ["--dbtype", "PG", "--host", PG["host"], "--port", str(PG["port"]), "--dbname", PG["dbname"],
            "--user", PG["user"], "--password-env", PG_PASSWORD_ENV], prefix


@pytest.fixture
def installed(alias):
    """The templates bootstrap installs for ``alias``, deleted afterwards."""
    yield alias
    http("DELETE", f"/_index_template/{alias}")
    for part in ("mappings", "settings"):
        http("DELETE", f"/_component_template/{alias}-{part}")


def _init(target, shop, out, alias, table, *args):
    database, prefix = shop
    children = [a if a.startswith("--") else "/".join(prefix + step for step in a.split("/")) for a in args]
    return run_indexer("init", *database, "--table", prefix + table, "--alias", alias, "--out", str(out),
                       "--url", target["url"], "--engine", target["engine"], *children)


def _properties(out, alias) -> dict:
    return json.loads((out / "mappings" / "component" / f"{alias}-mappings.json").read_text())[
        "template"]["mappings"]["properties"]


def test_children_from_foreign_keys_load_and_their_templates_install(tmp_path, target, shop, installed):
    alias, out, prefix = installed, tmp_path / "jobs", shop[1]
    done = _init(target, shop, out, alias, "orders", "--child", "order_lines", "--child", "shipments",
                 "--child", "order_lines/products")
    assert done.returncode == 0, done.stderr
    job = load_job(out / f"{alias}.toml").job
    lines, shipments = job.children
    assert (lines.name, lines.parent_key, lines.key, lines.many) == ("lines", ["order_id"], ["order_id", "line_no"],
                                                                     True)
    assert (lines.watermark, lines.deleted) == ("updated_at", "is_deleted")
    assert (shipments.name, shipments.parent_key, shipments.key, shipments.many) == (
        "shipments", ["order_id"], ["order_id"], False)
    (product,) = lines.children
    assert (product.parent_key, product.key, product.many, product.watermark) == (
        ["order_id", "line_no"], ["order_id", "line_no"], False, "updated_at")
    assert f"{prefix}products c ON c.id = p.product_id" in product.query
    assert job.watermark == "updated_at" and job.digest_on
    loaded = load_job(out / f"{alias}.toml")
    with connect(loaded.source) as conn:  # each query runs on the database and returns its key columns
        for child in job.descendants():
            assert set(child.key) <= set(columns_of(conn, child.query, None, child.name)), child.name
    assert tomllib.loads((out / f"{alias}.toml").read_text())["job"]["children"][0]["name"] == "lines"

    properties = _properties(out, alias)
    assert properties["lines"]["type"] == "nested"
    assert set(properties["lines"]["properties"]) == {"line_no", "product_id", "qty", "updated_at", "products"}
    assert "type" not in properties["lines"]["properties"][product.name]  # one object
    assert set(properties["shipments"]) == {"properties"} and "order_id" not in properties["shipments"]["properties"]
    assert properties["indexer_digest"] == {"type": "keyword", "index": False, "doc_values": False}

    boot = run_indexer("bootstrap", "--job", str(out / f"{alias}.toml"))
    assert boot.returncode == 0, boot.stderr + boot.stdout  # the engine judged and installed them
    _, stored = http("GET", f"/_component_template/{alias}-mappings")
    mapped = stored["component_templates"][0]["component_template"]["template"]["mappings"]["properties"]
    assert mapped["lines"]["type"] == "nested"

    _fill(shop, tmp_path)  # and the job init wrote builds the documents, into the templates it wrote
    indexed = run_indexer("reindex", str(out / f"{alias}.toml"), "--json")
    assert indexed.returncode == 0, indexed.stderr
    doc = http("GET", f"/{alias}/_doc/1")[1]["_source"]
    assert [(ln["line_no"], ln["qty"], ln["products"]["sku"]) for ln in doc["lines"]] == [(1, 2, "A-1"), (2, 3, "B-2")]
    assert doc["shipments"]["carrier"] == "post" and http("GET", f"/{alias}/_doc/2")[1]["_source"]["lines"] == []


def _fill(shop, tmp_path) -> None:
    """Two orders, two products, two lines and a shipment of order 1."""
    database, prefix = shop
    rows = [f"INSERT INTO {prefix}orders VALUES (1, 'ada', '2026-01-01 00:00:01'), (2, 'bob', '2026-01-01 00:00:02')",
            f"INSERT INTO {prefix}products VALUES (10, 'A-1', 'anvil', '2026-01-01 00:00:01'), "
            "(11, 'B-2', 'bucket', '2026-01-01 00:00:01')",
            f"INSERT INTO {prefix}order_lines VALUES (1, 1, 10, 2, '2026-01-01 00:00:01', false), "
            "(1, 2, 11, 3, '2026-01-01 00:00:01', false)",
            f"INSERT INTO {prefix}shipments VALUES (1, 'post', '2026-01-01 00:00:01')"]
    if database[1] == "SQLITE":
        with sqlite3.connect(tmp_path / "shop.db") as conn:
            for statement in rows:
                conn.execute(statement.replace("false", "0"))
        conn.close()
    else:
        with pg_connect() as conn, conn.cursor() as cur:
            for statement in rows:
                cur.execute(statement)
        conn.close()



def test_object_maps_every_child_as_a_plain_object(tmp_path, target, shop, alias):
    out = tmp_path / "jobs"
    done = _init(target, shop, out, alias, "orders", "--child", "order_lines", "--object")
    assert done.returncode == 0, done.stderr
    assert set(_properties(out, alias)["lines"]) == {"properties"}
    assert load_job(out / f"{alias}.toml").job.children[0].many  # still an array: only the mapping differs


def test_what_init_cannot_plan_is_one_line_and_no_file(tmp_path, target, shop, alias):
    out, prefix = tmp_path / "jobs", shop[1]
    none = _init(target, shop, out, alias, "orders", "--child", "notes")
    assert none.returncode == 2 and none.stderr == (
        f"error: no foreign key between {prefix}notes and {prefix}orders: write [[job.children]] by hand "
        "(docs/nested.md)\n")
    two = _init(target, shop, out, alias, "orders", "--child", "returns")
    assert two.returncode == 2 and "2 foreign keys between" in two.stderr and two.stderr.count("\n") == 1
    assert "pick one, --child" in two.stderr and "Traceback" not in two.stderr
    assert not out.exists()
    picked = _init(target, shop, out, alias, "orders", "--child", "returns:replaces_order_id")
    assert picked.returncode == 0, picked.stderr
    assert load_job(out / f"{alias}.toml").job.children[0].parent_key == ["replaces_order_id"]
