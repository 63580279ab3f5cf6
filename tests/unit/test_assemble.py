"""indexer.assemble and the dialects' key lists: children of chosen parents read by key lists (a real SQLite file),
the SQL each database gets, and the bind limits that cut the lists."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from indexer import assemble, sources
from indexer.config import Job
from indexer.nesting import Tally

JOB = {
    "source": {"dbtype": "SQLITE", "filename": "shop.db"},
    "target": {"url": "http://127.0.0.1:9200"},
    "job": {"alias": "orders", "key": ["id"], "query": "SELECT id FROM orders", "children": [
        {"name": "lines", "query": "SELECT order_id, line_no, qty FROM lines", "parent_key": ["order_id"],
         "key": ["order_id", "line_no"], "children": [
             {"name": "tag", "query": "SELECT order_id, line_no, tag FROM tags", "parent_key": ["order_id", "line_no"],
              "key": ["order_id", "line_no"], "many": False}]}]},
}


@pytest.fixture
def shop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect(tmp_path / "shop.db")
    conn.executescript("""
        CREATE TABLE orders (id INTEGER); CREATE TABLE lines (order_id INTEGER, line_no INTEGER, qty INTEGER);
        CREATE TABLE tags (order_id INTEGER, line_no INTEGER, tag TEXT);
        INSERT INTO orders VALUES (1), (2), (3), (4);
        INSERT INTO lines VALUES (3, 2, 20), (1, 1, 10), (3, 1, 30), (NULL, 1, 99), (4, 1, 40);
        INSERT INTO tags VALUES (3, 1, 'x'), (1, 1, 'y'), (4, 1, 'a'), (4, 1, 'b');
    """)
    conn.commit()
    conn.close()
    return Job(**JOB, base_dir=tmp_path, name="orders")


def test_descendants_carry_their_path_and_the_root_key_columns(shop):
    found = assemble.descendants(shop)
    assert [(d.path, d.root) for d in found] == [("lines", ["order_id"]), ("lines.tag", ["order_id"])]


@pytest.mark.parametrize("max_binds", [999, 1])
def test_families_by_key_lists_whatever_the_number_of_statements(shop, monkeypatch, max_binds):
    """One statement per batch of keys (1 key each when the database binds 1 parameter): the same families."""
    monkeypatch.setattr(sources.dialect("SQLITE"), "max_binds", max_binds)
    tally = Tally()
    with sources.connect(shop.source) as conn:
        found, sizes = assemble.by_keys(shop, conn, [(3,), (1,), (2,), (4,)], tally)
    assert sizes == {(1,): 2, (2,): 0, (3,): 3, (4,): 3}
    assert found[(1,)] == ({"lines": [{"line_no": 1, "qty": 10, "tag": {"tag": "y"}}]}, None)
    assert found[(2,)] == ({"lines": []}, None)
    assert found[(3,)] == ({"lines": [{"line_no": 1, "qty": 30, "tag": {"tag": "x"}},
                                      {"line_no": 2, "qty": 20, "tag": None}]}, None)
    assert found[(4,)][1] == "children 'tag': 2 rows for one parent, many = false"
    assert tally.orphans == 0 and tally.child_rows == 8  # 4 lines, 4 tags: the NULL order_id is never asked for


def test_a_child_column_the_query_lacks_is_named_before_any_row_is_read(shop):
    broken = shop.model_copy(update={"job": shop.job.model_copy(update={"children": [
        shop.job.children[0].model_copy(update={"key": ["order_id", "line"]})]})})
    with sources.connect(shop.source) as conn, pytest.raises(Exception, match=(
            r"^children 'lines': key column 'line' is not among the query's columns \(order_id, line_no, qty\)$")):
        assemble.check_columns(broken, conn, ("id",))


@pytest.mark.parametrize("dbtype, one, two", [
    ("SQLITE", "q.a IN (:indexer_k0, :indexer_k1)", "(q.a, q.b) IN ((:indexer_k0, :indexer_k1), (:indexer_k2, "
                                                     ":indexer_k3))"),
    ("PG", "q.a IN (%(indexer_k0)s, %(indexer_k1)s)", "(q.a, q.b) IN ((%(indexer_k0)s, %(indexer_k1)s), "
                                                       "(%(indexer_k2)s, %(indexer_k3)s))"),
    ("ORACLE", "q.a IN (:indexer_k0, :indexer_k1)", "(q.a, q.b) IN ((:indexer_k0, :indexer_k1), (:indexer_k2, "
                                                     ":indexer_k3))"),
    ("MSSQL", "q.a IN (?, ?)", "(q.a = ? AND q.b = ?) OR (q.a = ? AND q.b = ?)"),
])
def test_each_database_gets_its_key_list_and_binds_in_key_order(dbtype, one, two):
    db = sources.dialect(dbtype)
    assert db.key_list_query("SELECT a, b FROM t", ["a"], 2) == f"SELECT * FROM (SELECT a, b FROM t) q WHERE {one}"
    assert db.key_list_query("SELECT a, b FROM t", ["a", "b"], 2).endswith(f" WHERE {two}")
    params = db.key_list_params(db.params({"site": "x"}), [(1, "p"), (2, "q")])
    if db.positional:
        assert params == ("x", 1, "p", 2, "q")
    else:
        assert list(params.values()) == ["x", 1, "p", 2, "q"] and "indexer_k3" in params


def test_bind_limits_per_database():
    """Oracle's IN list holds 1,000 (ORA-01795), MSSQL binds 2,100 at most, SQLite 999 before 3.32."""
    assert {d: sources.dialect(d).max_binds for d in sources.DBTYPES} == {
        "ORACLE": 1000, "PG": 10_000, "SQLITE": 999, "MSSQL": 2000}


def test_text_columns_per_driver_description():
    """Where byte_order collates: PostgreSQL asks its catalogue (integration tests); Oracle by type, MSSQL by
    pyodbc's Python type, SQLite every column (a COLLATE BINARY is valid on any)."""
    oracledb = pytest.importorskip("oracledb", reason="python-oracledb is not installed")
    oracle = [("CODE", oracledb.DB_TYPE_VARCHAR), ("N", oracledb.DB_TYPE_NUMBER), ("C", oracledb.DB_TYPE_CHAR)]
    assert sources.dialect("ORACLE").text_columns(None, oracle) == {"code", "c"}
    assert sources.dialect("MSSQL").text_columns(None, [("Code", str), ("n", int)]) == {"code"}
    assert sources.dialect("SQLITE").text_columns(None, [("a", None), ("b", None)]) == {"a", "b"}
    assert sources.dialect("ORACLE").byte_order("code", True) == "NLSSORT(q.code, 'NLS_SORT = BINARY')"
    assert sources.dialect("MSSQL").byte_order("code", True) == "q.code COLLATE Latin1_General_100_BIN2"
    assert sources.dialect("PG").byte_order("n", False) == "q.n"


@pytest.mark.parametrize("by_keys", [False, True])
def test_chunks_hold_chunk_size_rows_of_all_tables_whatever_the_children_per_parent(tmp_path, monkeypatch, by_keys):
    """Memory bounded by rows, not parents: a fetch of parents is cut where its pieces reach chunk_size rows with
    their children; one family is never cut (order 3's 25 lines come whole, in a chunk of their own)."""
    from indexer import extract
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect(tmp_path / "shop.db")
    conn.executescript("CREATE TABLE orders (id INTEGER); CREATE TABLE lines (order_id INTEGER, line_no INTEGER, "
                       "qty INTEGER); CREATE TABLE tags (order_id INTEGER, line_no INTEGER, tag TEXT);")
    conn.executemany("INSERT INTO orders VALUES (?)", [(n,) for n in range(1, 9)])
    conn.executemany("INSERT INTO lines VALUES (?, ?, 1)", [(n, i) for n in range(1, 9) for i in
                                                            range(25 if n == 3 else 2)])
    conn.commit()
    conn.close()
    job = Job(**{**JOB, "job": {**JOB["job"], "chunk_size": 10}}, base_dir=tmp_path, name="orders")
    plan = extract.ReadPlan(job.job.query, None, "reindex", by_keys=by_keys)

    chunks = list(extract.read_chunks(job, plan))

    held = [(c.rows_read, sum(len(orjson.loads(a.line.split(b"\n")[1])["lines"]) for a in c.actions))
            for c in chunks]  # parents and their lines in each chunk
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert sum(r for r, _ in held) == 8 and sum(c.child_rows for c in chunks) == 2 * 7 + 25
    assert (1, 25) in held and all(r + k <= 10 for r, k in held if k != 25)
    assert [a.id for c in chunks for a in c.actions] == [str(n) for n in range(1, 9)]
    assert [(c.rows_read, c.child_rows) for c in chunks] == held  # each piece's own child rows
