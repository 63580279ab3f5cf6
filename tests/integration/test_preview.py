"""`indexer preview` on purpose-made tables (SQLite and PostgreSQL) against the real node: it finds each
problem on purpose, passes a clean job, writes nothing to the alias or the state, and leaves no
throwaway index behind, also when interrupted."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid

import pytest

from indexer.commands.preview import preview
from indexer.jobfile import load_job
from indexer.run import utc_now
from indexer.scratch import SCRATCH_PREFIX, scratch_name
from tests.support.harness import (
    alias_targets, http, indices, pg_source, run_indexer, slow_transform, sql, sql_many, sqlite_source, start_indexer,
    wait_until, write_job,
)

MAPPINGS = {
    "dynamic": "strict",
    "properties": {
        "code": {"type": "keyword"},
        "qty": {"type": "integer"},
        "changed": {"type": "date", "format": "strict_date_optional_time||yyyy-MM-dd HH:mm:ss"},
        "meta": {"properties": {"source": {"type": "keyword"}}},
    },
}
CLEAN = [("a1", 1, "2026-01-01 10:00:00", "crm"), ("a2", 2, "2026-01-02 10:00:00", "erp"),
         ("a3", 3, "2026-01-03 10:00:00", None)]
QUERY = 'SELECT code, qty, changed, origin AS "meta.source" FROM items'


@pytest.fixture
def template(alias):
    """An index template for ``<alias>-*`` with the strict mappings above; deleted afterwards."""
    status, body = http("PUT", f"/_index_template/{alias}", {
        "index_patterns": [f"{alias}-*"], "priority": 500,
        "template": {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": MAPPINGS}})
    assert status == 200, body
    yield alias
    http("DELETE", f"/_index_template/{alias}")


def sqlite_items(tmp_path, rows) -> str:
    path = tmp_path / "items.db"
    sql(path, "CREATE TABLE items (code TEXT, qty INTEGER, changed TEXT, origin TEXT, extra TEXT DEFAULT 'x')")
    sql_many(path, "INSERT INTO items (code, qty, changed, origin) VALUES (?, ?, ?, ?)", rows)
    return path


def items_job(tmp_path, target, alias, rows, query=QUERY, **settings):
    return write_job(tmp_path / "items.toml", sqlite_source(sqlite_items(tmp_path, rows)), target,
                     {"alias": alias, "key": ["code"], "query": query, "watermark": "changed", **settings})


def scratch_indices() -> set[str]:
    return set(indices(SCRATCH_PREFIX + "*"))


def run_preview(job, *args):
    before = scratch_indices()
    result = run_indexer("preview", str(job), "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    assert scratch_indices() <= before  # no throwaway index left behind
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else None


def test_a_clean_job_shows_its_documents_and_index_and_exits_0(tmp_path, target, alias, template):
    job = items_job(tmp_path, target, alias, CLEAN)
    code, found = run_preview(job, "--limit", "2")
    assert code == 0, found
    assert found["problems"] == []
    assert found["documents"] == [
        {"_id": "a1", "_source": {"code": "a1", "qty": 1, "changed": "2026-01-01 10:00:00", "meta": {"source": "crm"}}},
        {"_id": "a2", "_source": {"code": "a2", "qty": 2, "changed": "2026-01-02 10:00:00", "meta": {"source": "erp"}}},
    ]
    assert found["index"].startswith(f"{alias}-") and len(found["index"]) == len(alias) + 15
    assert found["mappings"] == MAPPINGS and found["settings"]["index"]["number_of_shards"] == "1"
    assert found["watermark"] == {"column": "changed", "kind": "ISO text", "stored": None, "since": None,
                                  "note": "no watermark stored yet: run reindex first"}
    # nothing written: no alias, no index of the alias's, no state
    assert alias_targets(alias) == [] and indices(f"{alias}*") == []
    assert http("GET", f"/indexer-state/_doc/{alias}")[0] == 404


def test_the_text_form_prints_documents_settings_and_no_problems(tmp_path, target, alias, template):
    result = run_indexer("preview", str(items_job(tmp_path, target, alias, CLEAN)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[1])["_id"] == "a1"
    assert any(line.startswith(f"index {alias}-") for line in lines)
    assert lines[-1] == "no problems found"


def test_each_problem_is_found_on_purpose(tmp_path, target, alias, template):
    rows = [("b1", 1, "2026-01-01 10:00:00", "crm"), ("b2", "many", "2026-01-02 10:00:00", "crm"),
            ("b1", 3, "2026-01-03 10:00:00", "crm"), (None, 4, "2026-01-04 10:00:00", "crm")]
    job = items_job(tmp_path, target, alias, rows, query=QUERY.replace(" FROM", ", extra FROM"))
    code, found = run_preview(job)
    assert code == 1
    problems = "\n".join(found["problems"])
    assert "field 'extra' is not in the mappings" in problems and "3 of 3 documents" in problems  # strict mapping
    assert "document 'b2' is refused by the mappings" in problems and "qty" in problems           # text in an integer
    assert "id 'b1' is given to 2 rows of the sample" in problems                                  # duplicate ids
    assert "row 4: key column 'code' is NULL" in problems                                          # a NULL key
    assert len(found["problems"]) == 4, problems  # the strict refusals are not repeated per document
    assert alias_targets(alias) == [] and indices(f"{alias}*") == []


def test_a_nested_field_a_strict_mapping_lacks_is_a_problem(tmp_path, target, alias, template):
    job = items_job(tmp_path, target, alias, CLEAN, query=QUERY.replace('"meta.source"', '"meta.origin"'))
    code, found = run_preview(job)
    assert code == 1 and len(found["problems"]) == 1 and "field 'meta.origin'" in found["problems"][0]


def test_without_a_template_it_says_to_bootstrap(tmp_path, target, alias):
    code, found = run_preview(items_job(tmp_path, target, alias, CLEAN))
    assert code == 1
    assert found["problems"] == [f"no index template matches {found['index']}: run indexer bootstrap"]
    assert found["templates"] == "the cluster's index templates"
    assert found["settings"] == {} and found["mappings"] == {}


def test_an_index_with_the_alias_name_is_a_problem_and_is_left_alone(tmp_path, target, alias, template):
    assert http("PUT", f"/{alias}", {"settings": {"number_of_replicas": 0}})[0] == 200
    try:
        code, found = run_preview(items_job(tmp_path, target, alias, CLEAN))
        assert code == 1 and found["problems"] == [
            f"{alias!r} is an index, not an alias: a reindex refuses to run until it is renamed or deleted"]
        assert indices(alias) == [alias]
    finally:
        http("DELETE", f"/{alias}")


def test_a_missing_key_column_is_a_problem(tmp_path, target, alias, template):
    job = items_job(tmp_path, target, alias, CLEAN, key=["id"])
    code, found = run_preview(job)
    assert code == 1 and found["documents"] == []
    assert "key column 'id' is not in the query result" in found["problems"][0]
    assert "rows 1, 2, 3: key column 'id' is missing from the document" in found["problems"][1]


def test_old_leftover_throwaway_indices_are_deleted_and_young_ones_kept(tmp_path, target, alias, template):
    old = f"{SCRATCH_PREFIX}20200101000000_{uuid.uuid4().hex[:8]}"
    young = scratch_name(utc_now())
    for name in (old, young):
        assert http("PUT", f"/{name}", {"settings": {"number_of_replicas": 0}})[0] == 200
    try:
        code, _ = run_preview(items_job(tmp_path, target, alias, CLEAN))
        assert code == 0
        assert old not in scratch_indices() and young in scratch_indices()
    finally:
        http("DELETE", f"/{old}")
        http("DELETE", f"/{young}")


def test_a_cancelled_preview_deletes_its_throwaway_index(tmp_path, target, alias, template):
    job = load_job(items_job(tmp_path, target, alias, CLEAN, transform=slow_transform(tmp_path, 4)))
    before = scratch_indices()

    async def scenario() -> str:
        task = asyncio.create_task(preview(job))

        def new_scratch() -> set[str]:
            assert not task.done(), "the preview ended before its throwaway index appeared"
            return scratch_indices() - before

        # the throwaway index exists while the rows are read (the transform sleeps 4 s)
        made = (await asyncio.to_thread(wait_until, new_scratch, "the throwaway index")).pop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return made

    made = asyncio.run(scenario())
    assert made not in scratch_indices()
    assert alias_targets(alias) == [] and indices(f"{alias}*") == []


def test_preview_stopped_by_sigterm_deletes_its_throwaway_index(tmp_path, target, alias, template):
    job = items_job(tmp_path, target, alias, CLEAN, transform=slow_transform(tmp_path, 4))
    before = scratch_indices()
    proc = start_indexer("preview", str(job))
    made = wait_until(lambda: scratch_indices() - before, "the throwaway index", proc).pop()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err, err
    assert made not in scratch_indices()


# ------------------------------------------------------------------ PostgreSQL


@pytest.fixture
def pg_items(pg_tables) -> str:
    return pg_tables.create("code text, qty text, changed timestamp, origin text", [
        ("p1", "1", "2026-01-01 10:00:00", "crm"), ("p2", "2", "2026-01-02 10:00:00", "crm"),
        ("p3", "3", "2026-01-03 10:00:00", None)], prefix="items")


def pg_job(tmp_path, target, alias, table):
    return write_job(tmp_path / "pg.toml", pg_source(), target, {
        "alias": alias, "key": ["code"], "watermark": "changed",
        "query": f'SELECT code, qty, changed, origin AS "meta.source" FROM {table} ORDER BY code'})


def test_postgres_clean_then_after_a_reindex_shows_the_since_a_sync_would_use(tmp_path, target, alias, template, pg_items):
    job, state = pg_job(tmp_path, target, alias, pg_items), tmp_path / "state.json"
    code, found = run_preview(job, "--state-file", str(state))
    assert code == 0, found
    assert [d["_id"] for d in found["documents"]] == ["p1", "p2", "p3"]
    assert found["documents"][0]["_source"] == {"code": "p1", "qty": "1", "changed": "2026-01-01T10:00:00",
                                                "meta": {"source": "crm"}}
    assert found["watermark"]["kind"] == "timestamp" and found["watermark"]["stored"] is None
    assert not state.exists()

    result = run_indexer("reindex", str(job), "--state-file", str(state))
    assert result.returncode == 0, result.stderr
    served, stored = alias_targets(alias), state.read_text()
    code, found = run_preview(job, "--state-file", str(state), "--limit", "1")
    assert code == 0, found
    assert len(found["documents"]) == 1
    assert found["watermark"] == {"column": "changed", "kind": "timestamp", "stored": "2026-01-03T10:00:00",
                                  "since": "2026-01-03T09:55:00"}
    assert alias_targets(alias) == served and state.read_text() == stored  # alias and state unchanged


def test_postgres_problems_are_found_on_purpose(tmp_path, target, alias, template, pg_items, pg_tables):
    pg_tables.execute(f"UPDATE {pg_items} SET qty = 'lots' WHERE code = 'p2'")
    pg_tables.execute(f"UPDATE {pg_items} SET code = NULL, changed = NULL WHERE code = 'p3'")
    pg_tables.execute(f"INSERT INTO {pg_items} VALUES ('p1', '4', '2026-01-04 10:00:00', 'crm')")
    code, found = run_preview(pg_job(tmp_path, target, alias, pg_items), "--limit", "10")
    assert code == 1
    problems = "\n".join(found["problems"])
    assert "document 'p2' is refused by the mappings" in problems
    assert "id 'p1' is given to 2 rows of the sample" in problems
    assert "row 4: key column 'code' is NULL" in problems
    assert "1 of 4 rows have a NULL or unusable 'changed'" in problems
    assert alias_targets(alias) == [] and indices(f"{alias}*") == []


def test_postgres_reads_only_the_rows_it_shows(tmp_path, target, alias, template):
    # 1 / (g - 2000) fails once the server reaches row 2000: a preview of 5 rows never gets there.
    job = write_job(tmp_path / "pg.toml", pg_source(), target, {"alias": alias, "key": ["code"], "query":
                    "SELECT g::text AS code, 1 / (g - 2000) AS qty FROM generate_series(1, 3000) g"})
    code, found = run_preview(job)
    assert code == 0, found
    assert [d["_id"] for d in found["documents"]] == ["1", "2", "3", "4", "5"]


# ------------------------------------------------------------------ issue 17, 5: big samples, scrubbed reasons, the job's own templates


@pytest.mark.parametrize("rows", [60, 110])
def test_a_sample_larger_than_the_node_takes_in_one_request_is_sent_in_pieces(tmp_path, target, alias, rows):
    # Rows of 1 MB. 60 MB in one request pass Elasticsearch's indexing pressure limit on the test nodes
    # (10% of a 512 MB heap: a 429 retried until max_retry_time); 110 MB pass every node's
    # http.max_content_length (100mb: a 413). preview sends requests of at most job.chunk_bytes.
    path = tmp_path / "big.db"
    sql(path, "CREATE TABLE big (code TEXT, payload TEXT)")
    sql_many(path, "INSERT INTO big VALUES (?, ?)", ((f"b{n:03d}", "x" * 1_000_000) for n in range(rows)))
    mappings = {"dynamic": "strict", "properties": {"code": {"type": "keyword"},
                                                    "payload": {"type": "object", "enabled": False}}}
    assert http("PUT", f"/_index_template/{alias}", {"index_patterns": [f"{alias}-*"], "priority": 500,
                                                     "template": {"mappings": mappings}})[0] == 200
    try:
        job = write_job(tmp_path / "big.toml", sqlite_source(path), {**target, "max_retry_time": 10},
                        {"alias": alias, "key": ["code"], "query": "SELECT code, payload FROM big"})
        before = scratch_indices()
        found = asyncio.run(preview(load_job(job), limit=rows))
        assert found.problems == [] and len(found.documents) == rows
        assert scratch_indices() <= before
    finally:
        http("DELETE", f"/_index_template/{alias}")


def test_problem_lines_never_quote_the_row_values_the_engine_quotes(tmp_path, target, alias, template):
    rows = [("s1", "secret-4711", "2026-01-01 10:00:00", "crm"), ("s2", 2, "2026-99-99 secret-0815", "crm")]
    job = write_job(tmp_path / "items.toml", sqlite_source(sqlite_items(tmp_path, rows)), target,
                    {"alias": alias, "key": ["code"], "query": QUERY})
    code, found = run_preview(job)
    assert code == 1
    assert [p.split(":")[0] for p in found["problems"]] == ["document 's1' is refused by the mappings",
                                                            "document 's2' is refused by the mappings"]
    assert "qty" in found["problems"][0] and "changed" in found["problems"][1]
    text = run_indexer("preview", str(job))
    assert text.returncode == 1 and "document 's2' is refused" in text.stdout
    for output in (json.dumps(found["problems"]), "\n".join(l for l in text.stdout.splitlines() if l.startswith("problem"))):
        assert "secret" not in output and "4711" not in output and "0815" not in output, output


def _templates_folder(root, alias, mappings=MAPPINGS, settings=None):
    """A job's templates folder: a mappings component, a settings component and the index template for <alias>-*."""
    for kind, name, body in (
            ("component", f"{alias}-mappings", {"template": {"mappings": mappings}}),
            ("component", f"{alias}-settings", {"template": {"settings": settings or {"number_of_shards": 1}}}),
            ("index", alias, {"index_patterns": [f"{alias}-*"], "priority": 500,
                              "composed_of": [f"{alias}-settings", f"{alias}-mappings"]})):
        (root / kind).mkdir(parents=True, exist_ok=True)
        (root / kind / f"{name}.json").write_text(json.dumps(body))
    return root


def test_before_bootstrap_the_jobs_own_templates_give_the_index_and_check_the_values(tmp_path, target, alias):
    _templates_folder(tmp_path / "templates", alias)
    rows = [*CLEAN, ("a4", "many", "2026-01-04 10:00:00", "crm")]
    job = items_job(tmp_path, target, alias, rows, mappings="templates")  # relative to the job file
    code, found = run_preview(job)
    assert found["mappings"] == MAPPINGS and found["settings"]["index"]["number_of_shards"] == "1"
    assert found["templates"].startswith(f"the templates in {tmp_path / 'templates'}; the cluster has no index "
                                         "template for it yet")
    assert code == 1 and len(found["problems"]) == 1 and "document 'a4' is refused by the mappings" in found["problems"][0]
    # nothing written: no template, no index
    assert http("GET", f"/_index_template/{alias}")[0] == 404 and indices(f"{alias}*") == []


def test_a_templates_folder_given_to_preview_wins_over_the_cluster_and_a_difference_is_a_problem(tmp_path, target, alias, template):
    job = load_job(items_job(tmp_path, target, alias, CLEAN))
    same = _templates_folder(tmp_path / "same", alias, settings={"number_of_shards": 1, "number_of_replicas": 0})
    found = asyncio.run(preview(job, mappings=same))
    assert found.problems == [] and found.templates == f"the templates in {same}"

    wider = {**MAPPINGS, "properties": {**MAPPINGS["properties"], "note": {"type": "keyword"}}}
    other = _templates_folder(tmp_path / "other", alias, wider, {"number_of_shards": 1, "refresh_interval": "5s"})
    found = asyncio.run(preview(job, mappings=other))
    assert found.mappings == wider and found.settings["index"]["refresh_interval"] == "5s"
    assert found.problems == [f"the cluster's index templates give {found.index} other settings or mappings than "
                              f"the templates in {other}: a reindex now would use the cluster's (run indexer bootstrap)"]


def test_a_templates_folder_with_no_template_for_the_alias_is_a_problem(tmp_path, target, alias):
    folder = _templates_folder(tmp_path / "templates", "elsewhere")
    job = load_job(items_job(tmp_path, target, alias, CLEAN))
    found = asyncio.run(preview(job, mappings=folder))
    assert found.problems == [f"no index template in {folder} matches {found.index} (by its index_patterns)"]
