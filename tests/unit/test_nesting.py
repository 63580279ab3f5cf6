"""indexer.nesting (issue 21, in progress): child rows merged into their parents in one pass over sorted streams."""

from __future__ import annotations

import pytest

from indexer.config import ChildSettings
from indexer.errors import SourceError
from indexer.nesting import Merger, Tally, families, merge, ordered, streams

LINES = ChildSettings(name="lines", query="q", parent_key=["order_id"], key=["order_id", "line_no"],
                      deleted="is_deleted", children=[ChildSettings(
                          name="product", query="q", parent_key=["order_id", "line_no"],
                          key=["order_id", "line_no"], many=False)])
NOTE = ChildSettings(name="note", query="q", parent_key=["order_id"], key=["order_id"], many=False)


def _merge(parents, rows_of, children=(LINES, NOTE)):
    tally = Tally()
    merged = list(merge(parents, ["id"], streams(list(children), {k: iter(v) for k, v in rows_of.items()}), tally))
    return merged, tally


def test_each_parent_gets_its_children_and_grandchildren_in_one_pass_empty_ones_too():
    """parent_key's columns stay out of each object (the parent holds them); many = false: an object or None."""
    parents = [{"id": 1}, {"id": 2}, {"id": 3}]
    lines = [{"order_id": 1, "line_no": 1, "qty": 5, "is_deleted": 0},
             {"order_id": 1, "line_no": 2, "qty": 1, "is_deleted": 1},   # soft-deleted: left out
             {"order_id": 3, "line_no": 1, "qty": 2, "is_deleted": 0}]
    products = [{"order_id": 1, "line_no": 1, "sku": "A"}, {"order_id": 1, "line_no": 2, "sku": "B"},
                {"order_id": 3, "line_no": 1, "sku": "C"}]
    notes = [{"order_id": 2, "text": "fragile"}]
    merged, tally = _merge(parents, {"lines": lines, "lines.product": products, "note": notes})
    assert [(p["id"], f, problem) for p, f, problem in merged] == [
        (1, {"lines": [{"line_no": 1, "qty": 5, "product": {"sku": "A"}}], "note": None}, None),
        (2, {"lines": [], "note": {"text": "fragile"}}, None),
        (3, {"lines": [{"line_no": 1, "qty": 2, "product": {"sku": "C"}}], "note": None}, None),
    ]
    assert (tally.child_rows, tally.orphans) == (7, 0)


def test_child_rows_without_a_parent_are_orphans_counted_and_a_null_key_joins_nothing():
    parents = [{"id": 2}, {"id": None}, {"id": 5}]
    lines = [{"order_id": None, "line_no": 9, "is_deleted": 0}, {"order_id": 1, "line_no": 1, "is_deleted": 0},
             {"order_id": 5, "line_no": 1, "is_deleted": 0}, {"order_id": 7, "line_no": 1, "is_deleted": 0}]
    merged, tally = _merge(parents, {"lines": lines, "lines.product": [], "note": []})
    assert [f.get("lines") for _, f, _ in merged] == [[], None, [{"line_no": 1, "product": None}]]
    assert tally.orphans == 2  # the NULL one and order 1; order 7 comes after the last parent: never read


def test_two_rows_for_a_child_of_many_false_are_the_parents_problem_not_a_silent_pick():
    merged, _ = _merge([{"id": 1}], {"note": [{"order_id": 1, "text": "a"}, {"order_id": 1, "text": "b"}]},
                       children=(NOTE,))
    [(_, family, problem)] = merged
    assert problem == "children 'note': 2 rows for one parent, many = false" and family["note"] == {"text": "a"}


def test_rows_out_of_key_order_or_with_keys_that_cannot_be_compared_stop_the_read():
    rows = [{"k": "a"}, {"k": "b"}, {"k": "B"}]
    with pytest.raises(SourceError, match=r"^children 'x': rows are not in key order at row 3 "):
        list(ordered(rows, ["k"], "children 'x'"))
    with pytest.raises(SourceError, match="row 2 has a key that cannot be compared"):
        list(ordered([{"k": 1}, {"k": "1"}], ["k"], "children 'x'"))
    assert [r["k"] for r in ordered([{"k": None}, {"k": "a"}, {"k": None}, {"k": "b"}], ["k"], "x")] == [
        None, "a", None, "b"]


def test_the_ordered_query_sorts_text_in_byte_order_on_every_database():
    from indexer import sources

    sql = {db: sources.dialect(db).ordered_query("SELECT * FROM l", ["order_id", "sku"], ["order_id"], {"sku"})
           for db in sources.DBTYPES}
    where = "SELECT * FROM (SELECT * FROM l) q WHERE q.order_id IS NOT NULL ORDER BY "
    assert sql["SQLITE"] == where + "q.order_id COLLATE BINARY, q.sku COLLATE BINARY"
    assert sql["PG"] == where + 'q.order_id, q.sku COLLATE "C"'
    assert sql["ORACLE"] == where + "q.order_id, NLSSORT(q.sku, 'NLS_SORT = BINARY')"
    assert sql["MSSQL"] == where + "q.order_id, q.sku COLLATE Latin1_General_100_BIN2"


def test_sqlite_reads_a_nocase_key_in_the_order_the_merge_checks(tmp_path):
    import sqlite3

    from indexer import sources

    conn = sqlite3.connect(tmp_path / "k.db")
    conn.execute("CREATE TABLE l (code TEXT COLLATE NOCASE)")
    conn.execute("CREATE INDEX l_code ON l (code)")
    conn.executemany("INSERT INTO l VALUES (?)", [("b",), ("B",), ("a",), ("é",), ("Z",)])
    plain = [{"code": c} for (c,) in conn.execute("SELECT * FROM (SELECT * FROM l) q ORDER BY q.code")]
    with pytest.raises(SourceError, match="not in key order"):
        list(ordered(plain, ["code"], "children 'l'"))  # NOCASE order: a, b, B, Z, é -> 'B' after 'b'
    query = sources.dialect("SQLITE").ordered_query("SELECT * FROM l", ["code"], [], {"code"})
    rows = [{"code": c} for (c,) in conn.execute(query)]
    assert [r["code"] for r in ordered(rows, ["code"], "children 'l'")] == ["B", "Z", "a", "b", "é"]


def test_the_parents_order_is_checked_across_fetches_and_a_repeated_key_gets_its_family_again():
    """One Merger over a whole read: a parent after a later one stops the run (its children were passed by),
    even when the two come in different fetches; the rows of one parent key each get the family."""
    tally = Tally()
    merger = Merger(streams([NOTE], {"note": iter([{"order_id": 2, "text": "b"}, {"order_id": 3, "text": "c"}])}),
                    tally)
    assert list(merger.families([(2,), (2,)])) == [({"note": {"text": "b"}}, None)] * 2
    assert list(merger.families([(3,)])) == [({"note": {"text": "c"}}, None)]
    with pytest.raises(SourceError, match=r"^job.query: rows are not in key order at row 4 "):
        list(merger.families([(1,)]))


def test_keys_of_two_types_or_a_null_in_a_childs_own_key_are_one_line_never_a_traceback():
    mixed = streams([NOTE], {"note": iter([{"order_id": "1", "text": "a"}])})
    with pytest.raises(SourceError, match=r"^children 'note': parent_key \['order_id'\] cannot be compared"):
        list(families([(1,)], mixed, Tally()))
    lines = [{"order_id": 1, "line_no": None, "is_deleted": 0}]
    products = [{"order_id": 1, "line_no": 1, "sku": "A"}]
    merged, tally = _merge([{"id": 1}], {"lines": lines, "lines.product": products}, children=(LINES,))
    assert merged[0][1] == {"lines": [{"line_no": None, "product": None}]} and tally.orphans == 0
