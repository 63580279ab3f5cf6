"""``indexer init --child``: foreign keys as each database's catalogue gives them (``catalogue.read_foreign_keys``,
the dialects' ``foreign_keys_query``), and the ``[[job.children]]`` entries and mappings planned from them
(``indexer.relations``). Oracle and MSSQL on literal catalogue rows (no server runs here), SQLite on a real
file; PostgreSQL and SQLite end to end in tests/integration/test_init.py."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from indexer import catalogue, relations
from indexer.catalogue import ForeignKey, Table, TableName
from indexer.commands.init import init_job, plan
from indexer.errors import ConfigError
from indexer.jobfile import load_job
from indexer.relations import Found, Parent, Spec
from indexer.sources import Connection, dialect
from tests.support.builders import KEYWORD

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


# ---------------------------------------------------------------- planning [[job.children]] from literal catalogue rows


def _table(dbtype: str, text: str, columns: list[tuple], key: tuple, user: str | None = None) -> Table:
    cat = catalogue.catalogue(dbtype)
    return Table(cat.parse_table(text, user), cat.parse_columns(columns), key)


def _found(dbtype: str, text: str, table: Table, fk_rows: list[tuple], *children: Found, name=None,
           via=None) -> Found:
    return Found(Spec(text, name, via), table, _foreign_keys(dbtype, fk_rows), tuple(children))


def _children(dbtype: str, parent: Table, parent_fk_rows: list[tuple], *found: Found, key=None):
    job = plan(dbtype, parent, "t", key)
    node = Parent.of(parent, _foreign_keys(dbtype, parent_fk_rows), job)
    return relations.plan_children(catalogue.catalogue(dbtype), node, found,
                                   lambda table, child_key: plan(dbtype, table, "t", child_key))


ORACLE_ORDERS = [("ID", "NUMBER", 0, 10, 0), ("CUSTOMER", "VARCHAR2", 200, None, None),
                 ("UPDATED_AT", "TIMESTAMP(6)", 0, None, 6)]
ORACLE_LINES = [("LINE_NO", "NUMBER", 0, 4, 0), ("ORDER_ID", "NUMBER", 0, 10, 0), ("QTY", "NUMBER", 0, 6, 0),
                ("MODIFIED", "DATE", 0, None, None), ("DELETED", "CHAR", 1, None, None)]


def test_oracle_order_lines_become_an_array_keyed_by_the_foreign_key_then_the_rest_of_the_primary_key():
    orders = _table("ORACLE", "shop.orders", ORACLE_ORDERS, ("ID",))
    lines = _table("ORACLE", "shop.order_lines", ORACLE_LINES, ("LINE_NO", "ORDER_ID"))  # FK not first in the PK
    (child,) = _children("ORACLE", orders, [], _found("ORACLE", "shop.order_lines", lines,
                                                      [("FK_LINE_ORDER", "ORDER_ID", "SHOP", "ORDERS", "ID")]))
    assert (child.name, child.parent_key, child.many) == ("lines", ["order_id"], True)
    assert child.key == ["order_id", "line_no"]
    assert child.query.endswith("FROM SHOP.ORDER_LINES") and (child.watermark, child.deleted) == ("modified", "deleted")
    assert set(child.properties) == {"line_no", "qty", "modified"}  # parent_key and the deleted flag left out
    assert child.joins == "ORDER_LINES.ORDER_ID = ORDERS.ID"


def test_an_mssql_table_whose_primary_key_is_the_foreign_key_is_one_object():
    orders = _table("MSSQL", "dbo.Orders", [("Id", "int", None, 10, 0), ("Note", "nvarchar", -1, None, None)], ("Id",))
    columns = [("OrderId", "int", None, 10, 0), ("Carrier", "varchar", 20, None, None)]
    shipments = _table("MSSQL", "dbo.Shipments", columns, ("OrderId",))
    (child,) = _children("MSSQL", orders, [], _found("MSSQL", "dbo.Shipments", shipments,
                                                     [("FK_Shipments_Orders", "OrderId", "dbo", "Orders", "Id")]))
    assert (child.name, child.parent_key, child.key, child.many) == ("shipments", ["orderid"], ["orderid"], False)
    assert child.properties == {"carrier": KEYWORD} and child.query.endswith("FROM dbo.Shipments")
    assert relations.mappings((child,), objects=False) == {"shipments": {"properties": {"carrier": KEYWORD}}}


PG_PAIR = [("b", "text", None, None, None), ("a", "int4", None, 32, 0)]


def test_postgres_parent_key_follows_the_parent_keys_order_whatever_the_constraints():
    parent = _table("PG", "public.o", PG_PAIR, ("a", "b"))
    child = _table("PG", "public.l", [("b", "text", None, None, None), ("a", "int4", None, 32, 0),
                                      ("n", "int4", None, 32, 0), ("note", "text", None, None, None)], ("n", "b", "a"))
    (planned,) = _children("PG", parent, [], _found("PG", "public.l", child, [("fk_o", "b", "public", "o", "b"),
                                                                              ("fk_o", "a", "public", "o", "a")]))
    assert (planned.parent_key, planned.key, planned.many) == (["a", "b"], ["a", "b", "n"], True)
    assert planned.name == "l" and set(planned.properties) == {"n", "note"}


def test_a_sqlite_foreign_key_naming_no_column_refers_to_the_parents_primary_key():
    orders = _table("SQLITE", "orders", [("id", "INTEGER", 0), ("code", "TEXT", 0)], ("id",))
    lines = _table("SQLITE", "order_lines", [("order_id", "INTEGER", 1), ("line_no", "INTEGER", 2)],
                   ("order_id", "line_no"))
    (child,) = _children("SQLITE", orders, [], _found("SQLITE", "order_lines", lines,
                                                      [(0, "order_id", "Orders", None)]))
    assert (child.parent_key, child.key, child.many) == (["order_id"], ["order_id", "line_no"], True)


def test_a_lookup_the_parent_points_to_is_one_object_read_through_a_join_returning_the_parents_key():
    orders = _table("PG", "shop.orders", [("id", "int4", None, 32, 0), ("customer_id", "int4", None, 32, 0)], ("id",))
    customers = _table("PG", "shop.customers", [("id", "int4", None, 32, 0), ("name", "text", None, None, None),
                                                ("changed_at", "timestamptz", None, None, None)], ("id",))
    (child,) = _children("PG", orders, [("fk_customer", "customer_id", "shop", "customers", "id")],
                         _found("PG", "shop.customers", customers, []))
    # the customer's own id stays in the object: the parent's key is aliased beside it
    assert (child.name, child.parent_key, child.key, child.many) == ("customers", ["parent_id"], ["parent_id"], False)
    assert child.query == ("SELECT\n  p.id AS parent_id,\n  c.id,\n  c.name,\n  c.changed_at\n"
                           "FROM shop.orders p\nJOIN shop.customers c ON c.id = p.customer_id")
    assert set(child.properties) == {"id", "name", "changed_at"} and child.watermark == "changed_at"


def test_grandchildren_take_their_parents_key_and_nest_in_its_mapping():
    orders = _table("SQLITE", "orders", [("id", "INTEGER", 1)], ("id",))
    lines = _table("SQLITE", "order_lines", [("order_id", "INTEGER", 1), ("line_no", "INTEGER", 2),
                                             ("sku", "TEXT", 0)], ("order_id", "line_no"))
    notes = _table("SQLITE", "line_notes", [("order_id", "INTEGER", 1), ("line_no", "INTEGER", 2),
                                            ("n", "INTEGER", 3), ("body", "TEXT", 0)], ("order_id", "line_no", "n"))
    note_fk = [(0, "line_no", "order_lines", "line_no"), (0, "order_id", "order_lines", "order_id")]
    (child,) = _children("SQLITE", orders, [], _found(
        "SQLITE", "order_lines", lines, [(0, "order_id", "orders", "id")],
        _found("SQLITE", "line_notes", notes, note_fk)))
    (grandchild,) = child.children
    assert (grandchild.name, grandchild.parent_key, grandchild.key) == ("notes", ["order_id", "line_no"],
                                                                        ["order_id", "line_no", "n"])
    nested = relations.mappings((child,), objects=False)["lines"]
    assert nested["type"] == "nested" and nested["properties"]["notes"]["type"] == "nested"
    assert set(nested["properties"]) == {"line_no", "sku", "notes"}
    assert set(nested["properties"]["notes"]["properties"]) == {"n", "body"}
    plain = relations.mappings((child,), objects=True)["lines"]
    assert "type" not in plain and "type" not in plain["properties"]["notes"]  # --object: no nested cap


# ---------------------------------------------------------------- what init cannot tell: one line each

ORDERS = _table("PG", "orders", [("id", "int4", None, 32, 0), ("lines", "text", None, None, None)], ("id",),)
LINES_COLUMNS = [("order_id", "int4", None, 32, 0), ("first_order_id", "int4", None, 32, 0),
                 ("line_no", "int4", None, 32, 0)]
LINES = _table("PG", "order_lines", LINES_COLUMNS, ("order_id", "line_no"))
TWO_FKS = [("fk_first", "first_order_id", "public", "orders", "id"), ("fk_order", "order_id", "public", "orders", "id")]


def _refused(*found: Found, parent=ORDERS, parent_fks=(), key=None) -> str:
    with pytest.raises(ConfigError) as info:
        _children("PG", parent, list(parent_fks), *found, key=key)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_no_foreign_key_between_the_tables_asks_for_the_entry_by_hand():
    assert _refused(_found("PG", "order_lines", LINES, [], name="items")) == (
        "no foreign key between order_lines and orders: write [[job.children]] by hand (docs/nested.md)")


def test_several_foreign_keys_are_named_and_one_is_picked_by_its_name_or_its_columns():
    assert _refused(_found("PG", "order_lines", LINES, TWO_FKS, name="items")) == (
        "2 foreign keys between order_lines and orders (fk_first, fk_order): pick one, --child "
        "order_lines:FOREIGN_KEY (its name, or its columns: a,b)")
    by_name = _children("PG", ORDERS, [], _found("PG", "order_lines", LINES, TWO_FKS, name="items", via="FK_ORDER"))
    by_columns = _children("PG", ORDERS, [], _found("PG", "order_lines", LINES, TWO_FKS, name="items",
                                                    via="first_order_id"))
    assert by_name[0].parent_key == ["order_id"] and by_columns[0].parent_key == ["first_order_id"]
    assert _refused(_found("PG", "order_lines", LINES, TWO_FKS, name="items", via="fk_nope")) == (
        "no foreign key fk_nope between order_lines and orders (there are: fk_first, fk_order)")


def test_a_foreign_key_to_another_column_than_the_parents_key_is_refused():
    assert _refused(_found("PG", "order_lines", LINES, [("fk_o", "order_id", "public", "orders", "lines")],
                           name="items")) == (
        "foreign key fk_o of order_lines refers to orders(lines), not to its key (id): write [[job.children]] by "
        "hand (docs/nested.md)")


def test_a_child_without_primary_key_and_a_parent_without_one_are_refused():
    heap = _table("PG", "order_lines", LINES_COLUMNS, ())
    assert _refused(_found("PG", "order_lines", heap, TWO_FKS[1:], name="items")) == (
        "table order_lines has no primary key: init cannot tell its rows apart; write [[job.children]] by hand "
        "(docs/nested.md)")
    no_key = _table("PG", "orders", [("id", "int4", None, 32, 0)], ())
    assert _refused(_found("PG", "order_lines", LINES, TWO_FKS[1:]), parent=no_key) == (
        "table orders has no primary key: name the key columns with --key COL")
    # --key names the parent's key: a foreign key to it is followed
    (child,) = _children("PG", no_key, [], _found("PG", "order_lines", LINES, TWO_FKS[1:]), key=["id"])
    assert child.parent_key == ["order_id"]


def test_a_child_named_like_a_parent_column_or_a_sibling_must_be_named():
    assert _refused(_found("PG", "order_lines", LINES, TWO_FKS[1:])) == (
        "--child order_lines: the name 'lines' is a column of orders: name it, --child NAME=order_lines")
    twice = (_found("PG", "order_lines", LINES, TWO_FKS[1:], name="items"),
             _found("PG", "public.order_lines", LINES, TWO_FKS[:1], name="items"))
    assert _refused(*twice) == (
        "--child public.order_lines: the name 'items' is another child's: name it, --child NAME=public.order_lines")


def test_children_under_a_lookup_are_not_planned():
    customers = _table("PG", "customers", [("id", "int4", None, 32, 0)], ("id",))
    found = _found("PG", "customers", customers, [], _found("PG", "order_lines", LINES, TWO_FKS[1:]))
    assert _refused(found, parent_fks=[("fk_c", "id", "public", "customers", "id")]).startswith(
        "--child customers: customers is a lookup (the row orders points to): children under it are not planned")


# ---------------------------------------------------------------- --child's syntax


def test_child_options_read_as_a_tree_paths_sharing_their_start_merge():
    specs = relations.parse(["order_lines/products", "order_lines:fk_order/line_notes", "ship=shipments",
                             'public."A/B:C"'])
    assert [(s.table, s.name, s.via) for s in specs] == [
        ("order_lines", None, "fk_order"), ("shipments", "ship", None), ('public."A/B:C"', None, None)]
    assert [s.table for s in specs[0].children] == ["products", "line_notes"]


@pytest.mark.parametrize("text, message", [
    ("a//b", "expected [NAME=]TABLE[:FOREIGN_KEY]"), ("a:", "expected [NAME=]TABLE[:FOREIGN_KEY]"),
    ("x=a=b", "expected [NAME=]TABLE[:FOREIGN_KEY]"), ("a:b=c", "expected [NAME=]TABLE[:FOREIGN_KEY]"),
    ("1x=a", "the name '1x' must be a plain name"), ("a/b/c/d", "children nest at most 3 levels"),
])
def test_a_child_option_init_cannot_read_is_one_line(text, message):
    with pytest.raises(ConfigError, match=re.escape(f"--child {text!r}: {message}")):
        relations.parse([text])


def test_one_child_given_twice_through_different_foreign_keys_must_be_named_apart():
    with pytest.raises(ConfigError, match="given twice, through fk_a and fk_b: name each"):
        relations.parse(["lines:fk_a", "lines:fk_b"])
    assert len(relations.parse(["a=lines:fk_a", "b=lines:fk_b"])) == 2


@pytest.mark.parametrize("table, parent, name", [
    ("order_lines", "orders", "lines"), ("order_lines", "order", "lines"), ("shipments", "orders", "shipments"),
    ("Order Notes", "x", "order_notes"), ("orders_", "orders", "orders"), ("line_notes", "order_lines", "notes"),
    ("shop_shipments", "shop_orders", "shipments"), ("shop_order_lines", "shop_orders", "lines"),
    ("orders_archive", "orders", "archive"), ("shop", "shop_orders", "shop")])
def test_a_childs_default_name_is_its_table_without_what_it_shares_with_its_parents_name(table, parent, name):
    assert relations.default_name(table, parent) == name


# ---------------------------------------------------------------- the files init writes with children (SQLite)

SHOP = """
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT, updated_at TIMESTAMP);
CREATE TABLE products (id INTEGER PRIMARY KEY, sku VARCHAR(20), updated_at TIMESTAMP);
CREATE TABLE order_lines (order_id INTEGER REFERENCES orders, line_no INTEGER, product_id INTEGER REFERENCES products,
  qty INTEGER, updated_at TIMESTAMP, is_deleted BOOLEAN, PRIMARY KEY (order_id, line_no));
CREATE TABLE shipments (order_id INTEGER PRIMARY KEY REFERENCES orders (id), carrier VARCHAR(20));
"""


def _shop(tmp_path) -> dict:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(SHOP)
    raw.close()
    return {"dbtype": "SQLITE", "filename": str(path)}


def test_the_job_file_with_children_loads_and_its_mappings_nest_them(tmp_path):
    paths = init_job(_shop(tmp_path), "orders", out=tmp_path / "jobs", children=["order_lines/products", "shipments"])
    job = load_job(paths[0]).job
    lines, shipments = job.children
    assert (lines.name, lines.parent_key, lines.key, lines.many, lines.watermark, lines.deleted) == (
        "lines", ["order_id"], ["order_id", "line_no"], True, "updated_at", "is_deleted")
    (product,) = lines.children
    assert (product.name, product.parent_key, product.key, product.many) == (
        "products", ["order_id", "line_no"], ["order_id", "line_no"], False)
    assert "JOIN products c ON c.id = p.product_id" in product.query
    assert (shipments.key, shipments.many, shipments.watermark) == (["order_id"], False, None)
    text = paths[0].read_text()
    # a child without a watermark: the job's guess is kept as a comment, since sync needs one on every child
    assert '# watermark = "updated_at"   # guessed, but child \'shipments\' has none' in text and job.watermark is None
    assert "[[job.children.children]]   # from table products, foreign key (product_id)" in text
    properties = json.loads(paths[1].read_text())["template"]["mappings"]["properties"]
    assert properties["lines"]["type"] == "nested" and "order_id" not in properties["lines"]["properties"]
    assert "is_deleted" not in properties["lines"]["properties"]
    assert set(properties["lines"]["properties"]["products"]["properties"]) == {"id", "sku", "updated_at"}
    assert properties["shipments"] == {"properties": {"carrier": KEYWORD}}
    assert properties["indexer_digest"] == {"type": "keyword", "index": False, "doc_values": False}


def test_object_makes_every_child_a_plain_object_and_no_child_means_no_digest(tmp_path):
    source = _shop(tmp_path)
    paths = init_job(source, "orders", out=tmp_path / "a", children=["order_lines"], objects=True)
    properties = json.loads(paths[1].read_text())["template"]["mappings"]["properties"]
    assert "type" not in properties["lines"] and load_job(paths[0]).job.watermark == "updated_at"
    plain = json.loads(init_job(source, "orders", out=tmp_path / "b")[1].read_text())
    assert "indexer_digest" not in plain["template"]["mappings"]["properties"]


def test_a_child_init_cannot_plan_writes_no_file(tmp_path):
    with pytest.raises(ConfigError, match="^no foreign key between products and shipments: write"):
        init_job(_shop(tmp_path), "shipments", out=tmp_path / "jobs", children=["products"])
    assert not (tmp_path / "jobs").exists()
