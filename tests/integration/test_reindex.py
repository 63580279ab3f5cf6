"""`indexer reindex` against the real node: SQLite and PostgreSQL sources, both client paths."""

from __future__ import annotations

import datetime as dt
import json

from tests.support.harness import (
    SENSORS, SENSORS_QUERY, alias_targets, count, documents, indices, pg_documents, run_indexer, sensors_job, sql,
    sql_many, sqlite_rows, sqlite_source, write_job,
)


def _reindex(job, *extra):
    result = run_indexer("reindex", str(job), "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_sqlite_row_becomes_a_document_with_its_key_as_id(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, chunk_size=700)
    summary = _reindex(job)

    assert summary["outcome"] == "ok" and summary["engine"] == target["engine"]
    assert summary["rows_read"] == summary["indexed"] == 3000
    assert alias_targets(alias) == [summary["index"]]
    assert documents(alias) == sqlite_rows(sqlite_sensors)


def test_reindex_twice_gives_the_same_ids_and_swaps_the_alias(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias)
    first = _reindex(job)
    before = documents(alias)
    second = _reindex(job)

    assert second["index"] != first["index"]
    assert second["previous"] == [first["index"]]
    assert alias_targets(alias) == [second["index"]]
    assert documents(alias) == before
    # keep = 1: the previous index stays for rollback; a third run drops the oldest.
    assert indices(f"{alias}-*") == sorted([first["index"], second["index"]])
    third = _reindex(job)
    assert third["deleted_indices"] == [first["index"]]
    assert indices(f"{alias}-*") == sorted([second["index"], third["index"]])


def test_postgres_rows_become_documents(tmp_path, target, alias, pg_table, pg_tables):
    job = sensors_job(tmp_path, pg_table, target, alias, chunk_size=1000, params={"since": dt.datetime(2000, 1, 1)},
                      query=f"SELECT {SENSORS} FROM {pg_table} WHERE date_updated >= %(since)s")
    summary = _reindex(job)

    assert summary["indexed"] == 3000
    assert documents(alias) == pg_documents(pg_tables.conn, pg_table)


def test_composite_keys_dotted_columns_and_a_transform(tmp_path, target, alias):
    db = tmp_path / "parts.db"
    sql(db, "CREATE TABLE parts (a TEXT, b TEXT, src TEXT)")
    sql_many(db, "INSERT INTO parts VALUES (?, ?, ?)", [("a|b", "c", "x"), ("a", "b|c", "y"), ("a\\", "|c", "z")])
    (tmp_path / "shape.py").write_text(
        "def add_label(docs):\n"
        "    return [{**d, 'label': d['a'] + '/' + d['b']} for d in docs]\n"
    )
    job = write_job(tmp_path / "job.toml", sqlite_source(db), target, {
        "alias": alias, "key": ["a", "b"], "transform": "shape:add_label",
        "query": 'SELECT a AS "A", b, src AS "metadata.source" FROM parts',
    })
    _reindex(job)

    docs = documents(alias)
    assert sorted(docs) == sorted(["a\\|b|c", "a|b\\|c", "a\\\\|\\|c"])
    assert docs["a\\|b|c"] == {"a": "a|b", "b": "c", "metadata": {"source": "x"}, "label": "a|b/c"}


def test_params_from_the_command_line_override_the_job_file(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, query=SENSORS_QUERY + " WHERE site = :site",
                      params={"site": "NOWHERE"})
    summary = _reindex(job, "--param", "site=KEYWORTH")

    expected = {k: v for k, v in sqlite_rows(sqlite_sensors).items() if v["site"] == "KEYWORTH"}
    assert 0 < summary["indexed"] == len(expected)
    assert documents(alias) == expected


def test_an_empty_result_still_builds_an_empty_index_and_alias(tmp_path, target, alias, sqlite_sensors):
    job = sensors_job(tmp_path, sqlite_sensors, target, alias, query=SENSORS_QUERY + " WHERE 1 = 0")
    summary = _reindex(job)
    assert summary["indexed"] == 0
    assert count(alias) == 0
