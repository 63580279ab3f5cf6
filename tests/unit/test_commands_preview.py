"""indexer.commands.preview without a cluster: its pure parts (the strict-mapping check, the problem lines,
the output forms, the job's own templates against the cluster's) and its sample reader on real SQLite files.
Against the real node: tests/integration/test_preview.py."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from decimal import Decimal

import orjson

from indexer import extract
from indexer.commands import preview
from indexer.config import Job
from indexer.documents import Action, Rejected
from indexer.extract import ReadPlan

STRICT = {
    "dynamic": "strict",
    "properties": {
        "code": {"type": "keyword"},
        "meta": {"properties": {"source": {"type": "keyword"}}},
        "loose": {"dynamic": True, "properties": {"a": {"type": "keyword"}}},
        "tags": {"type": "nested", "properties": {"name": {"type": "keyword"}}},
    },
}


def test_fields_a_strict_mapping_lacks_are_found_at_every_level():
    doc = {"code": "a", "extra": 1, "meta": {"source": "x", "origin": "y"}, "loose": {"b": 2},
           "tags": [{"name": "t"}, {"colour": "red"}], "meta.site": "dotted"}
    assert preview.unmapped(doc, STRICT) == ["extra", "meta.origin", "tags.colour", "meta.site"]


def test_a_mapping_that_is_not_strict_lacks_nothing():
    assert preview.unmapped({"anything": {"at": "all"}}, {"properties": {}}) == []
    assert preview.unmapped({"x": 1}, {"dynamic": False}) == []


def test_an_object_may_be_strict_under_a_dynamic_root():
    mapping = {"properties": {"meta": {"dynamic": "strict", "properties": {}}}}
    assert preview.unmapped({"top": 1, "meta": {"x": 1}}, mapping) == ["meta.x"]


def test_an_object_with_enabled_false_takes_any_shape_under_a_strict_root():
    mapping = {"dynamic": "strict", "properties": {"j": {"type": "object", "enabled": False}}}
    assert preview.unmapped({"j": {"a": 1, "b": {"c": [1]}}}, mapping) == []
    assert preview.unmapped({"j": {"a": 1}}, {"dynamic": "strict", "properties": {"j": {"properties": {}}}}) == ["j.a"]


def test_unmapped_fields_are_one_line_each_with_how_many_documents_have_them():
    lines = preview.unmapped_fields([{"code": "a", "extra": 1}, {"code": "b", "extra": 2}, {"code": "c"}], STRICT, "t-1")
    assert len(lines) == 1 and "'extra'" in lines[0] and "2 of 3 documents" in lines[0]


def test_rejected_rows_are_grouped_by_reason_and_counted_from_one():
    lines = preview.rejected_rows([Rejected(2, "key column 'code' is NULL", None), Rejected(4, "key column 'code' is NULL", None),
                                   Rejected(0, "field 'v' is NaN or Infinity", None)])
    assert lines[0].startswith("rows 3, 5: key column 'code' is NULL")
    assert lines[1].startswith("row 1: field 'v' is NaN or Infinity")


def test_duplicate_ids_are_named_once_with_their_count():
    actions = [Action(i, b"", n) for n, i in enumerate(["a", "b", "a", "a"])]
    assert preview.duplicate_ids(actions) == ["id 'a' is given to 3 rows of the sample: job.key does not identify a row"]


def report(**changes) -> preview.Preview:
    values = dict(job="j", alias="a", documents=[{"_id": "1", "_source": {"code": "1"}}], index="a-20260101000000",
                  settings={"index": {"number_of_shards": "1"}}, mappings=STRICT,
                  watermark={"column": "changed", "kind": "timestamp", "stored": dt.datetime(2026, 1, 1, 12),
                             "since": dt.datetime(2026, 1, 1, 11, 55)}, problems=[])
    return preview.Preview(**{**values, **changes})


def test_as_dict_is_json_with_dates_as_iso_text():
    data = report(watermark={"column": "v", "kind": "number", "stored": Decimal("10.5"), "since": Decimal("5.5")}).as_dict()
    assert data["watermark"]["stored"] == "10.5"
    data = report().as_dict()
    assert json.loads(orjson.dumps(data))["watermark"] == {"column": "changed", "kind": "timestamp",
                                                           "stored": "2026-01-01T12:00:00", "since": "2026-01-01T11:55:00"}


def test_lines_show_documents_then_settings_and_mappings_then_problems():
    lines = report().lines()
    assert json.loads(lines[1]) == {"_id": "1", "_source": {"code": "1"}}
    assert json.loads(lines[3]) == {"index": {"number_of_shards": "1"}} and json.loads(lines[5]) == STRICT
    assert "stored 2026-01-01T12:00:00; a sync now reads rows from 2026-01-01T11:55:00" in lines[6]
    assert lines[-1] == "no problems found"
    assert report(problems=["x", "y"]).lines()[-2:] == ["problem: x", "problem: y"]
    unstored = report(watermark={"column": "c", "kind": None, "stored": None, "since": None,
                                 "note": "no watermark stored yet: run reindex first"}).lines()
    assert "no watermark stored yet: run reindex first" in unstored[6]


# ------------------------------------------------------------------ the sample, from real SQLite files


def sqlite_job(tmp_path, rows, query="SELECT code, qty, changed FROM items", **settings) -> Job:
    path = tmp_path / "items.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (code TEXT, qty, changed TEXT, gone INTEGER DEFAULT 0)")
    conn.executemany("INSERT INTO items (code, qty, changed, gone) VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    job = {"alias": "items", "key": ["code"], "query": query, "watermark": "changed", **settings}
    return Job(source={"dbtype": "SQLITE", "filename": path}, job=job, base_dir=tmp_path)


def test_the_sample_is_the_first_rows_encoded_byte_for_byte_as_a_reindex_encodes_them(tmp_path):
    rows = [(f"c{i}", i, f"2026-01-01 00:00:{i:02d}", 0) for i in range(20)]
    job = sqlite_job(tmp_path, rows)
    sample = preview.read_sample(job, 5)
    full = next(iter(extract.read_chunks(job, ReadPlan(job.job.query, None, "reindex"))))
    assert [a.line for a in sample.actions] == [a.line for a in full.actions[:5]]
    assert (sample.rows, sample.kind, sample.largest) == (5, "ISO text", "2026-01-01 00:00:04")


def test_the_sample_stops_reading_after_its_rows(tmp_path):
    # abs() of the smallest integer fails when SQLite reaches row 9: the preview of 5 rows never gets there.
    rows = [(f"c{i}", i, "2026-01-01", 0) for i in range(10)]
    job = sqlite_job(tmp_path, rows, query="SELECT code, CASE WHEN qty > 7 THEN abs(-9223372036854775807 - 1) "
                                           "ELSE qty END AS qty, changed FROM items")
    assert len(preview.read_sample(job, 5).actions) == 5


def test_a_null_key_and_a_missing_watermark_column_are_problems_not_errors(tmp_path):
    job = sqlite_job(tmp_path, [("a", 1, "2026-01-01", 0), (None, 2, "2026-01-02", 0)],
                     query="SELECT code, qty FROM items")
    sample = preview.read_sample(job, 5)
    assert [a.id for a in sample.actions] == ["a"]
    assert [r.reason for r in sample.rejected] == ["key column 'code' is NULL"]
    assert sample.problems and "job.watermark: column 'changed' is not among the query's columns" in sample.problems[0]


def test_null_watermarks_are_counted_and_soft_deleted_rows_left_out_as_a_reindex_does(tmp_path):
    job = sqlite_job(tmp_path, [("a", 1, None, 0), ("b", 2, "2026-01-02", 1), ("c", 3, "2026-01-03", 0)],
                     query="SELECT code, qty, changed, gone FROM items", deleted="gone")
    sample = preview.read_sample(job, 5)
    assert [a.id for a in sample.actions] == ["a", "c"]
    assert sample.null_watermarks == 1 and sample.largest == "2026-01-03"


# ------------------------------------------------------------------ the job's own templates against the cluster's


def test_the_files_result_equals_the_clusters_unless_a_setting_or_a_mapping_differs():
    settings = {"index": {"number_of_shards": "1", "refresh_interval": "1s"}}
    cluster = {"settings": {"index": {"number_of_shards": "1", "refresh_interval": "1s"}}, "mappings": STRICT, "aliases": {}}
    assert preview.same_result(settings, STRICT, cluster)
    assert preview.same_result({"number_of_shards": 1, "index.refresh_interval": "1s"}, STRICT, cluster)  # any shape
    # Elasticsearch's data tiers add a setting to every simulated index: not a difference
    tiered = {**cluster, "settings": {"index": {**cluster["settings"]["index"],
                                                "routing": {"allocation": {"include": {"_tier_preference": "data_content"}}}}}}
    assert preview.same_result(settings, STRICT, tiered)
    assert not preview.same_result({"index": {"number_of_shards": "1", "refresh_interval": "5s"}}, STRICT, cluster)
    assert not preview.same_result(settings, {**STRICT, "dynamic": "false"}, cluster)


def test_the_settings_line_says_where_the_settings_and_mappings_come_from():
    assert report().lines()[2] == "index a-20260101000000 would get these settings (from the cluster's index templates):"
    assert "(from the templates in jobs/mappings):" in report(templates="the templates in jobs/mappings").lines()[2]
    assert report().as_dict()["templates"] == "the cluster's index templates"
