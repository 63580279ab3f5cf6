"""indexer.commands.init without a server: what ``indexer init`` makes of a table as each database's
catalogue describes it: the query, the key, the mappings and guesses, the job file's text and the
templates, the four files written all or none.

Oracle and MSSQL catalogue rows are turned into jobs here (no server runs here); SQLite and PostgreSQL run
end to end in tests/integration/test_init.py. The catalogue itself (names, quoting, catalogue SQL, the type
mappings): tests/unit/test_catalogue.py.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path

import pytest

from indexer.catalogue import (
    DATE_FORMAT,
    Column,
    Table,
    TableName,
    catalogue,
)
from indexer.commands.init import _alias, init_job, plan, render_job, render_templates, toml_string
from indexer.config import Job, SourceConfig, TargetConfig
from indexer.errors import ConfigError
from tests.support.builders import KEYWORD


def _table(dbtype: str, name: TableName, rows: list[tuple], key_rows: list[tuple]) -> Table:
    cat = catalogue(dbtype)
    return Table(name, cat.parse_columns(rows), cat.db.read_key(key_rows))


# ---------------------------------------------------------------- Oracle and MSSQL catalogue rows -> a job

ORACLE_COLUMNS = [  # ALL_TAB_COLUMNS: column_name, data_type, char_length, data_precision, data_scale
    ("SAMPLE_ID", "NUMBER", 0, 10, 0), ("LINE_NO", "NUMBER", 0, 4, 0), ("CODE", "VARCHAR2", 20, None, None),
    ("DESCRIPTION", "VARCHAR2", 4000, None, None), ("NOTES", "CLOB", 0, None, None),
    ("VALUE", "NUMBER", 0, 10, 3), ("READING", "NUMBER", 0, None, None), ("COUNTER", "NUMBER", 0, None, 0),
    ("BIG", "NUMBER", 0, 38, 0), ("RATIO", "BINARY_DOUBLE", 0, None, None), ("TAKEN", "DATE", 0, None, None),
    ("UpdatedAt", "TIMESTAMP(6) WITH TIME ZONE", 0, None, 6), ("PHOTO", "BLOB", 0, None, None),
    ("IS_DELETED", "CHAR", 1, None, None), ("LEVEL", "NUMBER", 0, 2, 0), ("DOC", "JSON", 0, None, None),
    ("SPAN", "INTERVAL DAY(2) TO SECOND(6)", 0, 2, 6), ("GEOM", "SDO_GEOMETRY", 0, None, None),
]


def test_oracle_rows_become_a_query_key_mappings_and_guesses():
    name = catalogue("ORACLE").parse_table("bgs.samples", "reader")
    table = _table("ORACLE", name, ORACLE_COLUMNS, [("SAMPLE_ID",), ("LINE_NO",)])
    job = plan("ORACLE", table, "samples")
    assert job.key == ["sample_id", "line_no"]
    assert job.query.startswith("SELECT\n  SAMPLE_ID,\n  LINE_NO,") and job.query.endswith("FROM BGS.SAMPLES")
    assert '"UpdatedAt" AS updatedat' in job.query and '"LEVEL"' in job.query
    assert (job.watermark, job.deleted) == ("updatedat", "is_deleted")
    p = job.properties
    assert p["sample_id"] == {"type": "long"} and p["line_no"] == {"type": "short"} and p["level"] == {"type": "byte"}
    assert p["code"] == KEYWORD and p["description"]["type"] == "text" and p["notes"]["type"] == "text"
    assert p["value"] == {"type": "double"}
    assert p["reading"] == {"type": "double"} and p["counter"] == {"type": "long"} and p["big"] == KEYWORD
    assert p["taken"] == p["updatedat"] == {"type": "date", "format": DATE_FORMAT}
    assert p["photo"] == {"type": "binary"} and p["doc"] == {"type": "object", "enabled": False}
    assert p["span"] == {"type": "double"}
    assert p["geom"] == {"type": "keyword", "ignore_above": 8191} and job.unknown == [("geom", "sdo_geometry")]


MSSQL_COLUMNS = [  # INFORMATION_SCHEMA.COLUMNS: name, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE
    ("OrderId", "int", None, 10, 0), ("Order Date", "datetime2", None, None, None), ("Notes", "nvarchar", -1, None, None),
    ("Code", "varchar", 10, None, None), ("Price", "money", None, 19, 4), ("Rate", "decimal", None, 9, 2),
    ("Ratio", "float", None, 53, None), ("Small", "real", None, 24, None), ("Tiny", "tinyint", None, 3, 0),
    ("Deleted", "bit", None, None, None), ("Guid", "uniqueidentifier", None, None, None),
    ("Blob", "varbinary", -1, None, None), ("Modified", "datetimeoffset", None, None, None),
]


def test_mssql_rows_become_a_query_key_mappings_and_guesses():
    cat = catalogue("MSSQL")
    job = plan("MSSQL", _table("MSSQL", cat.parse_table("dbo.[Orders]"), MSSQL_COLUMNS, [("OrderId",)]), "orders")
    assert job.key == ["orderid"] and job.query.endswith("FROM dbo.Orders") and "[Order Date]" in job.query
    assert " AS " not in job.query  # MSSQL names ignore case: q.modified finds Modified
    assert (job.watermark, job.deleted) == ("modified", "deleted")
    p = job.properties
    assert p["orderid"] == {"type": "integer"} and p["order date"]["type"] == "date" and p["notes"]["type"] == "text"
    assert p["code"] == KEYWORD and p["price"] == {"type": "double"}
    assert p["rate"] == {"type": "double"}
    assert p["ratio"] == {"type": "double"} and p["small"] == {"type": "float"} and p["tiny"] == {"type": "short"}
    assert p["deleted"] == {"type": "boolean"} and p["guid"] == KEYWORD and p["blob"] == {"type": "binary"}
    assert job.unknown == []


# ---------------------------------------------------------------- keys, names, errors


def _pg_table(columns: list[tuple], key: tuple = ()) -> Table:
    return Table(TableName("public", "t", "t"), tuple(Column(*c) for c in columns), key)


def test_no_primary_key_and_no_key_option_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"^table t has no primary key: name the key columns with --key COL$"):
        plan("PG", _pg_table([("a", "int4")]), "t")


def test_a_key_option_names_columns_in_any_case_and_an_unknown_one_is_refused():
    assert plan("PG", _pg_table([("Site", "text"), ("n", "int4")]), "t", ["SITE", "n"]).key == ["site", "n"]
    with pytest.raises(ConfigError, match=r"--key nope: table t has no column nope \(columns: site, n\)"):
        plan("PG", _pg_table([("Site", "text"), ("n", "int4")]), "t", ["nope"])


def test_columns_that_become_the_same_field_are_refused():
    with pytest.raises(ConfigError, match="more than once"):
        plan("PG", _pg_table([("Code", "text"), ("code", "text")], ("code",)), "t")


def test_a_dotted_column_nests_its_mapping_as_documents_nest_its_value():
    job = plan("PG", _pg_table([("id", "int4"), ("metadata.source", "varchar", 20)], ("id",)), "t")
    assert job.properties["metadata"] == {"properties": {"source": KEYWORD}}


def test_the_default_alias_is_the_table_name_made_valid():
    assert _alias(None, "Order Items") == "order-items"
    with pytest.raises(ConfigError, match="--alias: alias 'Bad' contains 'B'"):
        _alias("Bad", "t")


# ---------------------------------------------------------------- the files' text


@pytest.mark.parametrize("text", ['plain', 'a "quoted" \\ back', "tab\tnew\nline", "\x00\x1f\x7f", "é ü 😀"])
def test_toml_strings_read_back_exactly(text):
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


def test_the_job_file_reads_back_as_the_tool_reads_it_and_holds_no_password(tmp_path):
    source = SourceConfig(dbtype="PG", host="db", port=5432, dbname="d", user="u", password_env="DB_PASSWORD")
    table = _pg_table([("id", "int4"), ("Say ''' hi", "text"), ("updated_at", "timestamptz")], ("id",))
    job = plan("PG", table, "t")
    text = render_job(source, TargetConfig(), job, 'public."t"', tmp_path)
    loaded = Job(**tomllib.loads(text))
    assert loaded.job.query == job.query and loaded.job.key == ["id"] and loaded.job.watermark == "updated_at"
    assert loaded.source.password_env == "DB_PASSWORD" and loaded.target.url == "http://127.0.0.1:9200"
    assert "# guessed" in text


def test_the_index_template_composes_both_components_above_the_demos_priority():
    job = plan("PG", _pg_table([("id", "int4")], ("id",)), "orders")
    texts = render_templates(job, "PG", "orders")
    assert '"id": {"type": "integer"}' in texts[0]  # one line per field, as a person reads and edits it
    mappings, settings, index = (json.loads(t) for t in texts)
    assert mappings["template"]["mappings"]["dynamic"] == "strict"
    assert settings["template"]["settings"]["number_of_shards"] == 1
    assert index["index_patterns"] == ["orders-*"] and index["composed_of"] == ["orders-settings", "orders-mappings"]
    assert index["priority"] == 206 != 100
    longer = json.loads(render_templates(plan("PG", _pg_table([("id", "int4")], ("id",)), "orders-eu"), "PG", "x")[2])
    assert longer["priority"] > index["priority"]  # "orders-eu-*" overlaps "orders-*": never the same priority


def test_a_bad_source_option_is_one_line_naming_the_option(tmp_path):
    with pytest.raises(ConfigError, match=r"^--password-env: must be the name of an environment variable"):
        init_job({"dbtype": "PG", "host": "h", "port": 1, "dbname": "d", "user": "u", "password_env": "not a name"},
                 "t", out=tmp_path)
    with pytest.raises(ConfigError, match=r"^dbtype PG needs host"):
        init_job({"dbtype": "PG"}, "t", out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_folder_that_cannot_be_made_is_one_line_and_leaves_no_file(tmp_path, monkeypatch):
    db = tmp_path / "t.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    conn.close()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"^cannot write .*afile/jobs: Not a directory$"):
        init_job({"dbtype": "SQLITE", "filename": str(db)}, "t", out=tmp_path / "afile" / "jobs")
    written = init_job({"dbtype": "SQLITE", "filename": str(db)}, "t", out=tmp_path / "jobs")
    assert [p.name for p in written] == ["t.toml", "t-mappings.json", "t-settings.json", "t.json"]
    assert tomllib.loads(written[0].read_text())["source"]["filename"] == str(db)  # absolute: as given
    monkeypatch.chdir(tmp_path)  # a relative path is relative to the current folder, and then to the job file
    written = init_job({"dbtype": "SQLITE", "filename": "t.db"}, "t", out=tmp_path / "again")
    assert tomllib.loads(written[0].read_text())["source"]["filename"] == "../t.db"


# ---------------------------------------------------------------- metadata field names, keywords, --table (issue 17, 5)


def test_a_column_named_like_a_metadata_field_is_renamed_in_the_query_the_mappings_and_the_key():
    table = _pg_table([("_id", "int4"), ("id_", "text"), ("_source", "text"), ("_Routing", "varchar", 10),
                       ("_type", "text"), ("_index.name", "varchar", 10), ("_index.site", "varchar", 10)], ("_id",))
    job = plan("PG", table, "t")
    assert job.key == ["id__"]  # id_ is taken by a column of its own
    assert '"_id" AS id__' in job.query and '"_source" AS source_' in job.query and '"_Routing" AS routing_' in job.query
    assert '"_index.name" AS "index_.name"' in job.query and '"_index.site" AS "index_.site"' in job.query
    assert '"_type",' in job.query  # the engines take _type in a document: kept
    assert set(job.properties) == {"id__", "id_", "source_", "routing_", "_type", "index_"}
    assert job.properties["index_"] == {"properties": {"name": KEYWORD, "site": KEYWORD}}
    assert plan("PG", table, "t", ["_ID"]).key == ["id__"]  # --key names the column, in any case

    text = render_job(SourceConfig(dbtype="SQLITE", filename="x.db"), TargetConfig(), job, "t", Path("."))
    assert '# column "_id" is renamed "id__" in the query: _id is a metadata field name' in text
    assert '# column "_index.site" is renamed "index_.site"' in text
    loaded = Job(**tomllib.loads(text))
    assert loaded.job.key == ["id__"] and loaded.job.query == job.query and loaded.job.mappings == Path("mappings")


def test_a_renamed_column_is_aliased_bare_where_the_database_folds_names():
    table = Table(TableName("APP", "T", "t"), (Column("_ID", "number", None, 9, 0), Column("CODE", "varchar2", 5)), ("_ID",))
    job = plan("ORACLE", table, "t")
    assert job.query.startswith('SELECT\n  "_ID" AS id_,\n  CODE\n') and job.key == ["id_"]  # Oracle: no bare _ID


def test_every_keyword_init_writes_has_ignore_above():
    columns = [("c", "varchar", 10), ("k", "text"), ("u", "uuid"), ("t", "time"), ("n", "numeric", None, 30, 0),
               ("g", "geometry"), ("a", "_varchar", 3), ("b", "text")]
    job = plan("PG", _pg_table(columns, ("k",)), "t")

    def keywords(node):
        for mapping in node.values():
            if mapping.get("type") == "keyword":
                yield mapping
            yield from keywords(mapping.get("properties") or {})
            yield from keywords(mapping.get("fields") or {})

    found = list(keywords(job.properties))
    assert len(found) == 8 and all("ignore_above" in m and m["ignore_above"] <= 8191 for m in found)


