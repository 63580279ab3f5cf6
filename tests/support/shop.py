"""A small shop in SQLite or PostgreSQL for nested documents: orders, their lines (each with a product, a
grandchild through a join) and their shipment (one-to-one), and the documents a job over them must give,
built here in Python from plain SELECTs of each table (never by the tool's own SQL).

Rows: order 1 (two lines, one soft-deleted; a shipment), order 2 (no line, no shipment), order 3 (one line),
order 4 soft-deleted (a line), a line whose order_id is NULL, a line of order 99 which does not exist.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

from tests.support import harness

T0 = dt.datetime(2026, 1, 1)


def at(second: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=second)


TABLES = {
    "orders": "id INTEGER PRIMARY KEY, customer TEXT, updated_at {ts}, is_deleted INTEGER",
    "order_lines": "id INTEGER PRIMARY KEY, order_id INTEGER, line_no INTEGER, product_id INTEGER, qty INTEGER, "
                   "updated_at {ts}, is_deleted INTEGER",
    "shipments": "order_id INTEGER, carrier TEXT, updated_at {ts}",
    "products": "id INTEGER PRIMARY KEY, sku TEXT, title TEXT, updated_at {ts}",
}
ROWS = {
    "orders": [(1, "ada", at(1), 0), (2, "bob", at(2), 0), (3, "cy", at(3), 0), (4, "dee", at(4), 1)],
    "order_lines": [(1, 1, 1, 10, 2, at(1), 0), (2, 1, 2, 11, 1, at(2), 1), (3, 3, 1, 11, 5, at(3), 0),
                    (4, 4, 1, 10, 1, at(4), 0), (5, None, 1, 10, 9, at(5), 0), (6, 99, 1, 10, 3, at(6), 0)],
    "shipments": [(1, "post", at(1))],
    "products": [(10, "A-10", "anvil", at(1)), (11, "B-11", "bucket", at(2))],
}


class Shop:
    """The shop's tables in ``kind`` ("sqlite" or "pg"); ``run`` changes them (``?`` binds, ``{orders}`` names)."""

    def __init__(self, kind: str, tmp_path: Path, pg_tables: Any = None) -> None:
        self.kind, self.pg = kind, pg_tables
        self.db = tmp_path / "shop.db"
        ts = "TIMESTAMP" if kind == "pg" else "TEXT"
        self.names = {t: (pg_tables.name(t) if kind == "pg" else t) for t in TABLES}
        for table, columns in TABLES.items():
            self.run(f"CREATE TABLE {{{table}}} ({columns.format(ts=ts)})")
            self.insert(table, ROWS[table])

    @property
    def source(self) -> dict:
        return harness.pg_source() if self.kind == "pg" else harness.sqlite_source(self.db)

    def _value(self, value: Any) -> Any:
        return value.isoformat() if self.kind == "sqlite" and isinstance(value, dt.datetime) else value

    def run(self, statement: str, *params: Any) -> None:
        statement = statement.format(**self.names)
        values = tuple(self._value(v) for v in params)
        if self.kind == "pg":
            self.pg.execute(statement.replace("?", "%s"), *values)
        else:
            harness.sql(self.db, statement, *values)

    def insert(self, table: str, rows: list[tuple]) -> None:
        if not rows:
            return
        marks = ", ".join("?" * len(rows[0]))
        if self.kind == "pg":
            with self.pg.conn, self.pg.conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {self.names[table]} VALUES ({marks.replace('?', '%s')})", rows)
        else:
            harness.sql_many(self.db, f"INSERT INTO {table} VALUES ({marks})",
                             [tuple(self._value(v) for v in row) for row in rows])

    def rows(self, table: str) -> list[dict]:
        sql = f"SELECT * FROM {self.names[table]}"
        if self.kind == "pg":
            with self.pg.conn.cursor() as cur:
                cur.execute(sql)
                names = [c[0] for c in cur.description]
                found = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            self.pg.conn.rollback()
        else:
            conn = sqlite3.connect(self.db)
            conn.row_factory = sqlite3.Row
            found = [dict(r) for r in conn.execute(sql)]
            conn.close()
        return [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()} for row in found]

    def expected(self) -> dict[str, dict]:
        """Every live order's document by id: lines in line_no order (soft-deleted ones left out), each with
        its product or None; the shipment or None."""
        products = {p["id"]: {"sku": p["sku"], "title": p["title"], "updated_at": p["updated_at"]}
                    for p in self.rows("products")}
        docs = {}
        for order in self.rows("orders"):
            if order["is_deleted"]:
                continue
            lines = sorted((ln for ln in self.rows("order_lines") if ln["order_id"] == order["id"]
                            and not ln["is_deleted"]), key=lambda ln: ln["line_no"])
            shipments = [s for s in self.rows("shipments") if s["order_id"] == order["id"]]
            docs[str(order["id"])] = {
                "id": order["id"], "customer": order["customer"], "updated_at": order["updated_at"],
                "lines": [{"line_no": ln["line_no"], "product_id": ln["product_id"], "qty": ln["qty"],
                           "updated_at": ln["updated_at"], "product": products.get(ln["product_id"])}
                          for ln in lines],
                "shipment": ({"carrier": shipments[0]["carrier"], "updated_at": shipments[0]["updated_at"]}
                             if shipments else None),
            }
        return docs

    def job(self, folder: Path, target: dict, alias: str, *, name: str = "shop.toml", **extra: Any) -> Path:
        """The job file: orders with ``lines`` (many, a ``product`` grandchild) and ``shipment`` (one)."""
        n = self.names
        settings = {"alias": alias, "key": ["id"], "watermark": "updated_at", "deleted": "is_deleted",
                    "lookback": "0s", "query": f"SELECT id, customer, updated_at, is_deleted FROM {n['orders']}",
                    **extra}
        children = f"""
[[job.children]]
name = "lines"
query = "SELECT order_id, line_no, product_id, qty, updated_at, is_deleted FROM {n['order_lines']}"
parent_key = ["order_id"]
key = ["order_id", "line_no"]
watermark = "updated_at"
deleted = "is_deleted"

[[job.children.children]]
name = "product"
query = {json.dumps(f"SELECT l.order_id, l.line_no, p.sku, p.title, p.updated_at FROM {n['order_lines']} l "
                    f"JOIN {n['products']} p ON p.id = l.product_id")}
parent_key = ["order_id", "line_no"]
key = ["order_id", "line_no"]
many = false
watermark = "updated_at"

[[job.children]]
name = "shipment"
query = "SELECT order_id, carrier, updated_at FROM {n['shipments']}"
parent_key = ["order_id"]
key = ["order_id"]
many = false
watermark = "updated_at"
"""
        return harness.write_job(folder / name, self.source, target, settings, extra=children)
