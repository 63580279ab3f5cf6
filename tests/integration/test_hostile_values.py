"""Values the driver used to clamp, wrap or choke on, on real PostgreSQL and the real node: PostgreSQL's
``±infinity`` (psycopg2 read them as datetime.max/min), ``time '24:00'`` (read as 00:00), years outside
1-9999, intervals beyond timedelta, ``timetz``, numeric ``NaN``. None of them may be lost without a word:
each is indexed as the text PostgreSQL prints, or is a dead letter naming its column; a partitioned reindex
reads every row; a watermark that is no point in time is never stored, so sync never freezes."""

from __future__ import annotations

import json

import pytest

from tests.support.harness import (
    alias_targets, documents, http, pg_connect, pg_source, run_indexer, stored_state, write_job,
)


@pytest.fixture
def pg(pg_tables):
    """``pg(columns, *rows)``: a scratch table whose rows are written as PostgreSQL reads them in SQL
    (``'infinity'``, ``'24:00'``, ``'0044-03-15 BC'``: no Python value holds them); its name."""
    def table(ddl: str, *rows: str) -> str:
        name = pg_tables.create(ddl, prefix="hostile")
        for row in rows:
            pg_tables.execute(f"INSERT INTO {name} VALUES {row}")
        return name

    return table


@pytest.fixture
def keyword_template(alias):
    """Every field of ``<alias>-*`` a keyword: the engine refuses no value, so what arrives is what we sent."""
    status, body = http("PUT", f"/_index_template/{alias}", {
        "index_patterns": [f"{alias}-*"], "priority": 500,
        "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                     "mappings": {"dynamic_templates": [{"all": {"match": "*", "mapping": {"type": "keyword"}}}]}}})
    assert status == 200, body
    yield alias
    http("DELETE", f"/_index_template/{alias}")


def _job(tmp_path, target, alias, query, name="job", **job):
    return write_job(tmp_path / f"{name}.toml", pg_source(), target,
                     {"alias": alias, "key": ["id"], "query": query, **job})


def _run(*args):
    result = run_indexer(*args, "--json")
    summary = json.loads(result.stdout.splitlines()[-1]) if result.stdout.strip() else {}
    return result, summary


def _dead_letters(job_path) -> list[dict]:
    path = job_path.with_name(job_path.stem + ".dead-letters.ndjson")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- partitioned reindex


def test_a_partitioned_reindex_reads_the_infinity_rows_no_range_held(tmp_path, target, keyword_template, pg):
    """The issue's repro: 4 rows in the source, 2 in the index, exit 0 and the alias swapped."""
    alias = keyword_template
    table = pg("id int PRIMARY KEY, ts timestamp, updated_at timestamp",
               "(1, '2024-01-01', '2024-01-01')", "(2, '2024-06-01', '2024-01-01')",
               "(3, 'infinity', '2024-01-01')", "(4, '-infinity', '2024-01-01')")
    job = _job(tmp_path, target, alias, f"SELECT id, ts, updated_at FROM {table}", partition_by="ts",
               watermark="updated_at")
    result, summary = _run("reindex", str(job), "--partitions", "2")
    assert result.returncode == 0, result.stderr
    assert (summary["rows_read"], summary["indexed"], summary["partitions"]) == (4, 4, 2)
    docs = documents(alias)
    assert {i: d["ts"] for i, d in docs.items()} == {
        "1": "2024-01-01T00:00:00", "2": "2024-06-01T00:00:00", "3": "infinity", "4": "-infinity"}
    assert alias_targets(alias) == [summary["index"]]


def test_a_partitioned_reindex_reads_the_nan_row_and_dead_letters_it_by_name(tmp_path, target, alias, pg):
    table = pg("id int PRIMARY KEY, n numeric", "(1, 1)", "(2, 2.5)", "(3, 'NaN')", "(4, NULL)", "(5, 10)")
    job = _job(tmp_path, target, alias, f"SELECT id, n FROM {table}", partition_by="n", max_error_rate=1)
    result, summary = _run("reindex", str(job), "--partitions", "2")
    assert result.returncode == 3, result.stderr   # finished, one dead letter
    assert (summary["rows_read"], summary["indexed"], summary["rejected"]) == (5, 4, 1)
    assert sorted(documents(alias)) == ["1", "2", "4", "5"]
    [dead] = _dead_letters(job)
    assert dead["row"] and dead["key"] == {"id": 3} and "'n'" in dead["error"]["reason"]


# ---------------------------------------------------------------- values changed without a word


def test_values_python_cannot_hold_are_indexed_as_postgresql_prints_them(tmp_path, target, keyword_template, pg):
    alias = keyword_template
    table = pg("id int PRIMARY KEY, ts timestamp, tstz timestamptz, d date, t time, ttz timetz, iv interval",
               "(1, 'infinity', 'infinity', 'infinity', '24:00', '24:00+02', '1 day')",
               "(2, '-infinity', '-infinity', '-infinity', '12:30', '12:30+02', '-2 hours')",
               "(3, '2024-01-01 10:00', '2024-01-01 10:00+00', '10000-01-01', '00:00', '00:00+00', '3 seconds')",
               "(4, NULL, NULL, '0044-03-15 BC', NULL, NULL, '1000000000 days')")
    job = _job(tmp_path, target, alias, f"SELECT * FROM {table}", max_error_rate=1)
    result, summary = _run("reindex", str(job))
    assert result.returncode == 3, result.stderr
    assert (summary["rows_read"], summary["indexed"], summary["rejected"]) == (4, 3, 1)
    docs = documents(alias)
    assert docs["1"] == {"id": 1, "ts": "infinity", "tstz": "infinity", "d": "infinity", "t": "24:00:00",
                         "ttz": "24:00:00+02", "iv": 86400.0}
    assert docs["2"] == {"id": 2, "ts": "-infinity", "tstz": "-infinity", "d": "-infinity", "t": "12:30:00",
                         "ttz": "12:30:00+02:00", "iv": -7200.0}
    assert docs["3"]["d"] == "10000-01-01" and docs["3"]["t"] == "00:00:00" and docs["3"]["ttz"] == "00:00:00+00:00"
    # the interval beyond Python's range: a dead letter naming the column, never a traceback
    [dead] = _dead_letters(job)
    assert dead["key"] == {"id": 4} and dead["error"]["reason"].startswith("field 'iv': an interval beyond")
    assert "Traceback" not in result.stderr


def test_arrays_of_such_values_are_kept_too(tmp_path, target, keyword_template, pg):
    alias = keyword_template
    table = pg("id int PRIMARY KEY, tss timestamp[]", "(1, ARRAY['infinity'::timestamp, '2024-01-01'])")
    result, summary = _run("reindex", str(_job(tmp_path, target, alias, f"SELECT * FROM {table}")))
    assert result.returncode == 0, result.stderr
    assert documents(alias)["1"]["tss"] == ["infinity", "2024-01-01T00:00:00"]


# ---------------------------------------------------------------- the watermark never freezes


def test_an_infinity_watermark_is_indexed_and_named_but_never_stored(tmp_path, target, keyword_template, pg, pg_tables):
    alias = keyword_template  # a date field would refuse the text "infinity" (a dead letter, never a wrong date)
    table = pg("id int PRIMARY KEY, note text, updated_at timestamp",
               "(1, 'a', '2024-01-01 10:00')", "(2, 'b', '2024-01-02 10:00')", "(3, 'c', 'infinity')")
    job = _job(tmp_path, target, alias, f"SELECT id, note, updated_at FROM {table}", watermark="updated_at",
               lookback="0s")
    result, summary = _run("reindex", str(job))
    assert result.returncode == 0, result.stderr
    assert summary["indexed"] == 3 and summary["watermark"] == "2024-01-02 10:00:00"
    assert stored_state(alias)["watermark"] == {"type": "datetime", "value": "2024-01-02T10:00:00"}
    assert summary["null_watermarks"] == 1 and any("no point in time" in w for w in summary["warnings"])

    # a sync reads the infinity row again (it is >= any watermark), indexes it and names it, never storing it
    pg_tables.execute(f"INSERT INTO {table} VALUES (4, 'd', 'infinity')")
    result, summary = _run("sync", str(job))
    assert result.returncode == 0, result.stderr
    assert summary["indexed"] == 2 and summary["null_watermarks"] == 2
    warnings = " | ".join(summary["warnings"])
    assert "2 row(s) whose 'updated_at' is no point in time" in warnings and "(key '3')" in warnings, warnings
    text = run_indexer("sync", str(job))  # without --json: the warnings on stderr, one line each
    assert "warning: 2 row(s) whose 'updated_at' is no point in time" in text.stderr, text.stderr
    assert stored_state(alias)["watermark"]["value"] == "2024-01-02T10:00:00"

    # and the next real change is read: the watermark moved on, not frozen at 9999-12-31
    pg_tables.execute(f"UPDATE {table} SET note = 'a2', updated_at = '2030-01-01 00:00' WHERE id = 1")
    result, summary = _run("sync", str(job))
    assert result.returncode == 0, result.stderr
    assert stored_state(alias)["watermark"]["value"] == "2030-01-01T00:00:00"
    assert documents(alias)["1"]["note"] == "a2" and len(documents(alias)) == 4


def test_a_stored_stand_in_for_infinity_is_refused_with_what_to_do(tmp_path, target, alias, pg):
    """A watermark an earlier version stored (psycopg2's datetime.max for 'infinity') froze sync for good."""
    table = pg("id int PRIMARY KEY, updated_at timestamp", "(1, '2024-01-01 10:00')")
    job = _job(tmp_path, target, alias, f"SELECT id, updated_at FROM {table}", watermark="updated_at")
    assert run_indexer("reindex", str(job)).returncode == 0
    status, body = http("POST", f"/indexer-state/_update/{alias}?refresh=true", {"doc": {"state": {"watermark": {
        "type": "datetime", "value": "9999-12-31T23:59:59.999999"}}}})
    assert status == 200, body
    result = run_indexer("sync", str(job))
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "stored watermark" in result.stderr and "no point in time" in result.stderr
    assert "indexer reindex" in result.stderr


def test_preview_reports_a_watermark_that_is_no_point_in_time(tmp_path, target, keyword_template, pg):
    alias = keyword_template
    table = pg("id int PRIMARY KEY, updated_at timestamp", "(1, '2024-01-01 10:00')", "(2, 'infinity')")
    job = _job(tmp_path, target, alias, f"SELECT id, updated_at FROM {table} ORDER BY id", watermark="updated_at")
    result = run_indexer("preview", str(job), "--json")
    assert result.returncode == 1, result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert any("no point in time" in p and "(key '2')" in p for p in problems), problems


def test_ordinary_values_come_back_exactly_as_psycopg2s_own_casters_give_them():
    """Our casters parse with datetime.fromisoformat (faster); for every ordinary value the result must be
    psycopg2's own: offsets with minutes and seconds, fractions, zones on times, arrays."""
    import psycopg2

    from indexer.config import SourceConfig
    from indexer.sources import connect

    values = ("'2024-01-02 03:04:05'::timestamp, '2024-01-02 03:04:05.123456'::timestamp, "
              "'2024-01-02 03:04:05.5+05:30'::timestamptz, '1901-01-01 00:00:00+05:53:28'::timestamptz, "
              "'2024-06-01 12:00-08'::timestamptz, '0001-01-01'::date, '9999-12-30'::date, '23:59:59.999999'::time, "
              "'12:30:15.25-03:30'::timetz, '1 day 02:03:04.5'::interval, '-3 mons'::interval, "
              "ARRAY['2024-01-01 10:00'::timestamp, NULL], NULL::timestamptz")
    sql = f"SELECT {values}"
    plain = pg_connect()
    with plain.cursor() as cur:
        cur.execute("SET TIME ZONE 'Asia/Kolkata'")  # a session zone with minutes: the offsets it prints
        cur.execute(sql)
        theirs = cur.fetchone()
    plain.close()
    with connect(SourceConfig(**pg_source()), 10) as conn:
        cur = psycopg2.extensions.cursor(conn.raw)  # a plain cursor: SET cannot run in a named one
        cur.execute("SET TIME ZONE 'Asia/Kolkata'")
        cur.execute(sql)
        ours = cur.fetchone()
        cur.close()
    assert [type(v) for v in ours] == [type(v) for v in theirs] and ours == theirs
    assert [v.utcoffset() for v in (ours[2], ours[3], ours[4])] == [v.utcoffset() for v in (theirs[2], theirs[3], theirs[4])]
    assert ours[8].utcoffset() == theirs[8].utcoffset()
