"""``indexer init --child``: foreign keys as each database's catalogue gives them (``catalogue.read_foreign_keys``,
the dialects' ``foreign_keys_query``), and the ``[[job.children]]`` entries and mappings planned from them
(``indexer.relations``). Oracle and MSSQL on literal catalogue rows (no server runs here), SQLite on a real
file; PostgreSQL and SQLite end to end in tests/integration/test_init.py."""

from __future__ import annotations

import sqlite3

import pytest

from indexer import catalogue
from indexer.catalogue import ForeignKey, TableName
from indexer.sources import Connection, dialect

# ---------------------------------------------------------------- each catalogue's foreign key rows


def _foreign_keys(dbtype: str, rows: list[tuple]) -> tuple[ForeignKey, ...]:
    return tuple(ForeignKey(name, columns, TableName(schema, table, table), ref_columns)
                 for name, columns, schema, table, ref_columns in dialect(dbtype).read_foreign_keys(rows))


def test_oracle_foreign_key_rows_pair_columns_by_position_one_key_per_constraint():
    sql, binds = dialect("ORACLE").foreign_keys_query(TableName("SHOP", "ORDER_LINES", "shop.order_lines"))
    assert binds == {"owner": "SHOP", "name": "ORDER_LINES"} and "constraint_type = 'R'" in sql
    assert "rc.position = cc.position" in sql and sql.endswith("ORDER BY c.constraint_name, cc.position")
    rows = [("FK_LINE_ORDER", "ORDER_ID", "SHOP", "ORDERS", "ID"),
            ("FK_LINE_PRODUCT", "SKU", "CATALOG", "PRODUCTS", "SKU"),
            ("FK_LINE_PRODUCT", "VARIANT", "CATALOG", "PRODUCTS", "VARIANT")]
    assert _foreign_keys("ORACLE", rows) == (
        ForeignKey("FK_LINE_ORDER", ("ORDER_ID",), TableName("SHOP", "ORDERS", "ORDERS"), ("ID",)),
        ForeignKey("FK_LINE_PRODUCT", ("SKU", "VARIANT"), TableName("CATALOG", "PRODUCTS", "PRODUCTS"),
                   ("SKU", "VARIANT")))


def test_mssql_foreign_key_rows_come_from_sys_foreign_key_columns_schema_and_name_bound_by_position():
    sql, binds = dialect("MSSQL").foreign_keys_query(TableName(None, "OrderLines", "OrderLines"))
    assert binds == (None, "OrderLines") and "sys.foreign_key_columns" in sql
    assert "COALESCE(?, SCHEMA_NAME())" in sql and sql.endswith("ORDER BY fk.name, fkc.constraint_column_id")
    rows = [("FK_OrderLines_Orders", "OrderId", "dbo", "Orders", "Id")]
    (fk,) = _foreign_keys("MSSQL", rows)
    assert fk == ForeignKey("FK_OrderLines_Orders", ("OrderId",), TableName("dbo", "Orders", "Orders"), ("Id",))
    assert fk.label == "FK_OrderLines_Orders"


def test_postgres_foreign_keys_unnest_both_column_lists_in_order():
    sql, binds = dialect("PG").foreign_keys_query(TableName("shop", "order_lines", "order_lines"))
    assert binds == {"schema": "shop", "name": "order_lines"} and "contype = 'f'" in sql
    assert "unnest(c.conkey, c.confkey) WITH ORDINALITY" in sql and sql.endswith("ORDER BY c.conname, k.pos")
    rows = [("fk_o", "b", "shop", "o", "b"), ("fk_o", "a", "shop", "o", "a")]
    assert _foreign_keys("PG", rows) == (ForeignKey("fk_o", ("b", "a"), TableName("shop", "o", "o"), ("b", "a")),)


def test_sqlite_foreign_keys_have_no_name_and_may_leave_the_referenced_key_implicit(tmp_path):
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, code TEXT UNIQUE)")
        raw.execute("CREATE TABLE order_lines (order_id INTEGER REFERENCES orders, line_no INTEGER, "
                    "order_code TEXT, x INTEGER, y INTEGER, FOREIGN KEY (order_code) REFERENCES Orders (Code), "
                    "FOREIGN KEY (x, y) REFERENCES pairs (a, b), PRIMARY KEY (order_id, line_no))")
    raw.close()
    conn = Connection(sqlite3.connect(path), dialect("SQLITE"))
    try:
        found = catalogue.read_foreign_keys(conn, catalogue.catalogue("SQLITE").parse_table("order_lines"))
        schema_given = catalogue.read_foreign_keys(conn, catalogue.catalogue("SQLITE").parse_table("main.order_lines"))
    finally:
        conn.raw.close()
    by_columns = {fk.columns: fk for fk in found}
    assert set(by_columns) == {("order_id",), ("order_code",), ("x", "y")} and found == schema_given
    assert by_columns[("order_id",)] == ForeignKey(None, ("order_id",), TableName(None, "orders", "orders"), (None,))
    assert by_columns[("order_code",)].ref_columns == ("Code",)  # as the constraint spells it
    assert by_columns[("x", "y")].ref_columns == ("a", "b") and by_columns[("x", "y")].label == "(x, y)"


@pytest.mark.parametrize("dbtype", ["ORACLE", "PG", "SQLITE", "MSSQL"])
def test_a_table_without_foreign_keys_reads_as_none(dbtype):
    assert dialect(dbtype).read_foreign_keys([]) == ()
