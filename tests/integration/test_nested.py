"""Nested documents (``[[job.children]]``) on SQLite and PostgreSQL and a real engine: whole documents built by
reindex (merged streams), kept whole by sync when any table changes, the same on a partitioned reindex."""

from __future__ import annotations

import json
import random

import pytest

from tests.support import harness
from tests.support.harness import run_indexer, stored_state
from tests.support.shop import Shop, at

DIGEST = "indexer_digest"


@pytest.fixture(params=["sqlite", "pg"])
def shop(request, tmp_path) -> Shop:
    return Shop(request.param, tmp_path, request.getfixturevalue("pg_tables") if request.param == "pg" else None)


def _run(*args: str, code: int = 0) -> dict:
    result = run_indexer(*args, "--json")
    assert result.returncode == code, result.stderr
    return json.loads(result.stdout)


def indexed(alias: str) -> dict[str, dict]:
    """The documents behind the alias, without the digest field (reconcile's; its own tests check it)."""
    return {id_: {k: v for k, v in doc.items() if k != DIGEST} for id_, doc in harness.documents(alias).items()}


def test_reindex_builds_each_document_from_its_rows_in_every_table(shop, tmp_path, target, alias):
    """One-to-many (lines, [] when none), one-to-one (shipment, null when none), a grandchild through a join
    (product); soft-deleted lines and orders left out; a line with a NULL order_id and one of an order that does
    not exist join nothing."""
    summary = _run("reindex", str(shop.job(tmp_path, target, alias)))

    expected = shop.expected()
    assert indexed(alias) == expected
    assert expected["2"]["lines"] == [] and expected["2"]["shipment"] is None  # the fixture has both cases
    assert summary["documents_in_index"] == 3 and summary["skipped"] == 1  # order 4 is soft-deleted
    # joined: 4 lines (the NULL one is never read), their 4 products, 1 shipment; order 99's line and product: orphans
    assert (summary["child_rows"], summary["orphans"]) == (9, 2)
    assert any("2 child row(s) whose parent" in w for w in summary["warnings"])
    children = stored_state(alias)["children"]
    assert set(children) == {"lines", "lines.product", "shipment"}
    assert children["lines"]["watermark"]["value"].startswith("2026-01-01T00:00:06")
    shown = _run("status", str(shop.job(tmp_path, target, alias)))["child_watermarks"]
    assert set(shown) == {"lines", "lines.product", "shipment"} and shown["shipment"].replace(" ", "T").startswith("2026-01-01T00:00:01")


def test_sync_rewrites_the_documents_of_every_changed_row_in_any_table_then_sends_nothing(shop, tmp_path, target,
                                                                                          alias):
    job = str(shop.job(tmp_path, target, alias))
    _run("reindex", job)
    shop.insert("order_lines", [(7, 2, 1, 10, 4, at(20), 0)])                      # a child inserted
    shop.run("UPDATE {order_lines} SET qty = 50, updated_at = ? WHERE id = 3", at(21))  # updated
    shop.run("UPDATE {order_lines} SET is_deleted = 1, updated_at = ? WHERE id = 1", at(22))  # soft-deleted
    shop.run("UPDATE {products} SET title = 'big bucket', updated_at = ? WHERE id = 11", at(23))  # a grandchild
    shop.insert("shipments", [(3, "courier", at(24))])                              # a one-to-one appears

    first = _run("sync", job)

    assert indexed(alias) == shop.expected()
    assert indexed(alias)["3"]["lines"][0]["product"]["title"] == "big bucket"
    assert indexed(alias)["1"]["lines"] == [] and indexed(alias)["3"]["shipment"]["carrier"] == "courier"
    assert first["outcome"] == "ok" and first["indexed"] >= 3
    children = stored_state(alias)["children"]
    assert children["shipment"]["watermark"]["value"].startswith("2026-01-01T00:00:24")
    assert children["lines.product"]["watermark"]["value"].startswith("2026-01-01T00:00:23")

    again = _run("sync", job)
    assert again["sent"] == 0 and indexed(alias) == shop.expected()


def test_a_parent_changed_with_its_children_and_a_soft_deleted_parent(shop, tmp_path, target, alias):
    job = str(shop.job(tmp_path, target, alias))
    _run("reindex", job)
    shop.run("UPDATE {orders} SET customer = 'ada2', updated_at = ? WHERE id = 1", at(30))
    shop.run("UPDATE {orders} SET is_deleted = 1, updated_at = ? WHERE id = 3", at(31))
    shop.run("UPDATE {order_lines} SET qty = 7, updated_at = ? WHERE id = 3", at(32))  # a line of the deleted one

    _run("sync", job)

    assert indexed(alias) == shop.expected() and set(indexed(alias)) == {"1", "2"}


def test_a_child_of_many_false_with_two_rows_is_a_dead_letter_naming_it_never_a_silent_pick(shop, tmp_path, target,
                                                                                           alias):
    shop.insert("shipments", [(1, "second", at(9))])
    job = shop.job(tmp_path, target, alias, max_error_rate=0.5)

    summary = _run("reindex", str(job), code=3)

    assert summary["dead_lettered"] == 1 and set(indexed(alias)) == {"2", "3"}
    [letter] = [json.loads(line) for line in (tmp_path / "shop.dead-letters.ndjson").read_text().splitlines()]
    assert letter["error"]["reason"] == "children 'shipment': 2 rows for one parent, many = false"


def test_a_partitioned_reindex_gives_the_same_documents(shop, tmp_path, target, alias):
    shop.insert("orders", [(n, f"c{n}", at(n), 0) for n in range(10, 60)])
    shop.insert("order_lines", [(100 + n * 3 + i, n, i, 10 + i % 2, i, at(n), 0) for n in range(10, 60) for i in (1, 2)])
    shop.insert("shipments", [(n, "post", at(n)) for n in range(10, 60, 7)])
    job = shop.job(tmp_path, target, alias, partition_by="id", partitions=4, chunk_size=7)

    summary = _run("reindex", str(job))

    assert summary["partitions"] == 4 and indexed(alias) == shop.expected()
    assert summary["orphans"] == 2


def test_a_parent_with_100000_children_is_one_document_with_all_of_them_in_order(shop, tmp_path, target, alias):
    """Streams merged, not one query per parent: the big family is the only thing held whole (one document).
    Lean lines (a product for every 1,000th): Elasticsearch 9 counts a document's expansion, about 4x its JSON,
    against indexing_pressure (10% of the test node's 512 MB heap); a 16 MB document is refused there (as a dead
    letter naming the limit: test_sink), this one of 8 MB is not."""
    if shop.kind == "pg":
        shop.run("INSERT INTO {order_lines} SELECT 1000 + g, 2, g, CASE WHEN g % 1000 = 0 THEN 10 END, g % 7, "
                 "NULL, 0 FROM generate_series(1, 100000) g")
    else:
        shop.run("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100000) "
                 "INSERT INTO {order_lines} SELECT 1000 + n, 2, n, CASE WHEN n % 1000 = 0 THEN 10 END, n % 7, NULL, 0 "
                 "FROM g")

    summary = _run("reindex", str(shop.job(tmp_path, target, alias)))

    assert summary["documents_in_index"] == 3 and summary["child_rows"] == 9 + 100_000 + 100  # lines, products
    status, body = harness.http("GET", f"/{alias}/_doc/2")
    lines = body["_source"]["lines"]
    assert status == 200 and len(lines) == 100_000
    assert [line["line_no"] for line in lines[:3]] == [1, 2, 3] and lines[-1]["line_no"] == 100_000
    assert lines[999]["product"] == {"sku": "A-10", "title": "anvil", "updated_at": "2026-01-01T00:00:01"}
    assert lines[998]["product"] is None and lines[998]["qty"] == 999 % 7


@pytest.mark.parametrize("kind", ["sqlite", "pg"])
def test_text_keys_join_in_byte_order_whatever_the_database_collation(kind, tmp_path, target, alias, request):
    """'B' < 'Z' < 'a' < 'é' in byte order; PostgreSQL's en_US and SQLite's NOCASE order them otherwise: the
    readers ask for byte order, so every child finds its parent (a wrong order would stop the run)."""
    codes = ["a", "B", "é", "Z", "ab", "A"]
    if kind == "pg":
        pg = request.getfixturevalue("pg_tables")
        # ICU's English order ('a' < 'B'), as a database created with an en_US locale sorts
        parents = pg.create('code TEXT COLLATE "en-x-icu" PRIMARY KEY', [(c,) for c in codes], prefix="p")
        kids = pg.create('code TEXT COLLATE "en-x-icu", n INTEGER', [(c, i) for i, c in enumerate(codes)] * 2,
                         prefix="k")
        source = harness.pg_source()
    else:
        db = tmp_path / "t.db"
        harness.sql(db, "CREATE TABLE p (code TEXT COLLATE NOCASE)")
        harness.sql(db, "CREATE INDEX p_code ON p (code)")  # a NOCASE index: the order the database prefers
        harness.sql_many(db, "INSERT INTO p VALUES (?)", [(c,) for c in codes])
        harness.sql(db, "CREATE TABLE k (code TEXT COLLATE NOCASE, n INTEGER)")
        harness.sql_many(db, "INSERT INTO k VALUES (?, ?)", [(c, i) for i, c in enumerate(codes)] * 2)
        parents, kids, source = "p", "k", harness.sqlite_source(db)
    children = (f'\n[[job.children]]\nname = "kids"\nquery = "SELECT code, n FROM {kids}"\nparent_key = ["code"]\n'
                'key = ["code", "n"]\n')
    job = harness.write_job(tmp_path / "t.toml", source, target,
                            {"alias": alias, "key": ["code"], "query": f"SELECT code FROM {parents}"}, extra=children)

    summary = _run("reindex", str(job))

    assert summary["orphans"] == 0
    assert indexed(alias) == {c: {"code": c, "kids": [{"n": i}, {"n": i}]} for i, c in enumerate(codes)}


def test_preview_shows_whole_nested_documents_and_the_problems_of_child_fields(shop, tmp_path, target, alias):
    """Children read by key lists for the first parents; an array cut after 3 items on the terminal, whole in
    --json; a document over the nested objects limit and a child that cannot be read are problems."""
    shop.insert("order_lines", [(20 + n, 1, 10 + n, 10, n, at(9), 0) for n in range(4)])  # order 1: 5 live lines
    folder = tmp_path / "templates"
    (folder / "index").mkdir(parents=True)
    (folder / "index" / f"{alias}.json").write_text(json.dumps({"index_patterns": [f"{alias}-*"], "template": {
        "settings": {"number_of_shards": 1, "index.mapping.nested_objects.limit": 4},
        "mappings": {"properties": {"lines": {"type": "nested"}}}}}))
    job = str(shop.job(tmp_path, target, alias))

    found = _run("preview", job, "--mappings", str(folder), code=1)

    docs = {d["_id"]: d["_source"] for d in found["documents"]}
    assert {k: {f: v for f, v in d.items() if f != DIGEST} for k, d in docs.items()} == shop.expected()
    assert len(docs["1"]["lines"]) == 5
    assert any("document '1' holds 5 nested objects, over index.mapping.nested_objects.limit (4)" in p
               for p in found["problems"])
    text = run_indexer("preview", job, "--mappings", str(folder))
    assert text.returncode == 1 and '"... 2 more"' in text.stdout

    broken = shop.job(tmp_path, target, alias, name="broken.toml")
    broken.write_text(broken.read_text().replace("parent_key = [\"order_id\"]\nkey = [\"order_id\"]",
                                                 "parent_key = [\"order_ref\"]\nkey = [\"order_ref\"]"))
    problems = _run("preview", str(broken), "--mappings", str(folder), code=1)["problems"]
    assert any(p.startswith("children 'shipment': parent_key column 'order_ref' is not among the query's columns")
               for p in problems)


def test_random_changes_in_every_table_with_a_sync_after_each_keep_every_document_whole(shop, tmp_path, target,
                                                                                      alias):
    """Inserts, updates, soft deletes and revivals of orders, lines, products and shipments, some in the same
    second as the previous change (a lookback of 1m re-reads them: the marks must not skip a changed row)."""
    rng = random.Random(21)
    job = str(shop.job(tmp_path, target, alias, lookback="1m"))
    _run("reindex", job)
    clock, next_line = 40, 100
    for _ in range(8):
        for _ in range(rng.randint(2, 6)):
            clock += rng.choice([0, 0, 1, 3])
            kind = rng.choice(["line", "qty", "line_gone", "product", "shipment", "order", "order_gone"])
            if kind == "line":
                next_line += 1
                shop.insert("order_lines", [(next_line, rng.choice([1, 2, 3, 4]), next_line, rng.choice([10, 11]),
                                             1, at(clock), 0)])
            elif kind == "qty":
                shop.run("UPDATE {order_lines} SET qty = qty + 1, updated_at = ? WHERE id = ?", at(clock),
                         rng.choice([1, 3, 4]))
            elif kind == "line_gone":
                shop.run("UPDATE {order_lines} SET is_deleted = 1 - is_deleted, updated_at = ? WHERE id = ?",
                         at(clock), rng.choice([1, 2, 3]))
            elif kind == "product":
                shop.run("UPDATE {products} SET title = ?, updated_at = ? WHERE id = ?", f"t{clock}", at(clock),
                         rng.choice([10, 11]))
            elif kind == "shipment":
                shop.run("UPDATE {shipments} SET carrier = ?, updated_at = ? WHERE order_id = 1", f"c{clock}",
                         at(clock))
            elif kind == "order":
                shop.run("UPDATE {orders} SET customer = ?, updated_at = ? WHERE id = ?", f"n{clock}", at(clock),
                         rng.choice([1, 2, 3]))
            else:
                shop.run("UPDATE {orders} SET is_deleted = 1 - is_deleted, updated_at = ? WHERE id = ?", at(clock),
                         rng.choice([3, 4]))
        _run("sync", job)
        assert indexed(alias) == shop.expected()
    assert _run("sync", job)["sent"] == 0


@pytest.mark.parametrize("partitions", [1, 4])
def test_reconcile_finds_and_repairs_the_document_a_child_hard_delete_left_stale(shop, tmp_path, target, alias,
                                                                                  partitions):
    """Sync cannot see a row that is gone; reconcile compares each document's digest with the source's whole
    document and rewrites it (also after a partitioned reindex, whose documents carry the same digests)."""
    shop.insert("orders", [(n, f"c{n}", at(n), 0) for n in range(10, 30)])
    shop.insert("order_lines", [(100 + n, n, 1, 10, 1, at(n), 0) for n in range(10, 30)])
    job = str(shop.job(tmp_path, target, alias, partition_by="id", partitions=partitions))
    _run("reindex", job)
    shop.run("DELETE FROM {order_lines} WHERE id = 3")                        # order 3 loses its only line
    shop.run("UPDATE {order_lines} SET qty = 8, updated_at = ? WHERE id = 110", at(50))
    shop.run("DELETE FROM {orders} WHERE id = 2")                             # a parent gone: a document to delete
    _run("sync", job)
    assert indexed(alias)["10"]["lines"][0]["qty"] == 8  # the changed line's order is rewritten...
    assert indexed(alias)["3"]["lines"] != [] and "2" in indexed(alias)  # ...the hard deletes are invisible to sync

    found = _run("reconcile", job)

    assert (found["changed"], found["to_delete"], found["to_index"]) == (1, 1, 0)
    assert indexed(alias) == shop.expected() and indexed(alias)["3"]["lines"] == []
    again = _run("reconcile", job)
    assert (again["changed"], again["to_delete"], again["unchanged"]) == (0, 0, len(shop.expected()))


def test_a_child_table_empty_at_the_reindex_is_read_from_its_start_by_the_next_sync(shop, tmp_path, target, alias):
    shop.run("DELETE FROM {shipments}")
    job = str(shop.job(tmp_path, target, alias))
    _run("reindex", job)
    assert stored_state(alias)["children"]["shipment"]["watermark"] is None
    shop.insert("shipments", [(2, "late", at(2))])  # older than every other watermark: no since would find it

    _run("sync", job)

    assert indexed(alias)["2"]["shipment"] == {"carrier": "late", "updated_at": at(2).isoformat()}
    assert indexed(alias) == shop.expected() and _run("sync", job)["sent"] == 0


def test_the_transform_sees_whole_documents_and_may_rename_or_drop_child_fields(shop, tmp_path, target, alias):
    code = ("def transform(docs):\n    for doc in docs:\n        doc['items'] = [{k: v for k, v in ln.items() if k != 'qty'}"
            " for ln in doc.pop('lines')]\n        yield doc\n")
    job = str(shop.job(tmp_path, target, alias, transform=harness._transform_module(tmp_path, "nested", code)))

    _run("reindex", job)
    shop.run("UPDATE {order_lines} SET qty = 9, product_id = 10, updated_at = ? WHERE id = 3", at(60))
    _run("sync", job)

    expected = {k: {**{f: v for f, v in d.items() if f != "lines"},
                    "items": [{f: v for f, v in ln.items() if f != "qty"} for ln in d["lines"]]}
                for k, d in shop.expected().items()}
    assert indexed(alias) == expected and indexed(alias)["3"]["items"][0]["product"]["sku"] == "A-10"
