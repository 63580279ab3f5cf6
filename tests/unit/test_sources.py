"""The database side every database shares (indexer.sources): the registry and what a database module must
define, the SQL the tool wraps around the user's query, the errors the user sees, secrets. Run on SQLite;
each database's own behaviour is in tests/unit/test_sources_<database>.py."""

import importlib
import math
import re
import sqlite3
import types
import typing

import pytest

from indexer import catalogue, sources
from indexer.config import SourceConfig
from indexer.errors import ConfigError, SourceError
from indexer.sources import (
    DBTYPES,
    columns_of,
    connect,
    count_by,
    count_rows,
    dialect,
    extreme,
    iter_row_chunks,
    password_for,
    usable_extreme,
)
from indexer.sources.base import Dialect, colon_binds

PG = dict(dbtype="PG", host="db.example", port=5432, dbname="plant", user="reader", password_env="PLANT_DB_PASSWORD")

# Evaluating this column on any row raises "integer overflow" in SQLite: a query that selects it
# succeeds only when no row is read.
BOOM = "abs(-9223372036854775807 - 1 + 0 * id) AS Boom"


def one_line_error(call) -> str:
    with pytest.raises(SourceError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- the registry: a new database is its module

# What a database module must define itself (the package docstring's list): no default in Dialect.
MUST_DEFINE = ("dbtype", "required", "placeholder", "driver", "kinds", "binds", "connect", "columns_query",
               "key_query", "foreign_keys_query")


def defines_all_a_database_module_must(db: Dialect) -> None:
    cls = type(db)
    missing = [name for name in MUST_DEFINE if getattr(cls, name, None) is getattr(Dialect, name, None)]
    assert not missing, f"{cls.__name__} does not define {missing}"
    assert db.dbtype == db.dbtype.upper() and db.driver and db.bind("since")
    assert set(db.required) <= set(SourceConfig.model_fields) - {"dbtype", "password_env"}
    # its type table speaks the catalogue's vocabulary of kinds
    assert db.kinds and set(db.kinds.values()) <= catalogue.KINDS, set(db.kinds.values()) - catalogue.KINDS
    table = sources.TableName("s", "t", "s.t")
    for sql, _ in (db.columns_query(table), db.foreign_keys_query(table)):
        assert "'t'" not in sql and "'s'" not in sql  # schema and name bound, never pasted
    if db.key_query(table) is None:  # the key is read from the columns' rows
        assert cls.key_from_columns is not Dialect.key_from_columns


@pytest.mark.parametrize("dbtype", DBTYPES)
def test_every_registered_database_defines_all_a_database_module_must_in_its_own_module(dbtype):
    db = dialect(dbtype)
    module = importlib.import_module(type(db).__module__)
    assert module.__name__.startswith("indexer.sources.") and module.DIALECT is db and db.dbtype == dbtype
    defines_all_a_database_module_must(db)


class Toy(Dialect):
    """A new database defined by nothing but what a database module must define (sqlite3 underneath)."""

    dbtype, placeholder, driver = "TOY", ":{name}", "sqlite3"
    required = ("filename",)
    kinds = {"integer": "long", "text": "string"}

    def binds(self, query):
        return colon_binds(query)

    def connect(self, source, password, chunk_size):
        return sqlite3.connect(source.filename)

    def columns_query(self, table):
        return ("SELECT name, lower(type), NULL, NULL, NULL FROM pragma_table_info(:name) ORDER BY cid",
                {"name": table.name})

    def key_query(self, table):
        return "SELECT name FROM pragma_table_info(:name) WHERE pk > 0 ORDER BY pk", {"name": table.name}

    def foreign_keys_query(self, table):
        return ('SELECT id, "from", NULL, "table", "to" FROM pragma_foreign_key_list(:name) ORDER BY id, seq',
                {"name": table.name})


def test_a_new_database_needs_only_its_module_and_its_registration(tmp_path, monkeypatch):
    toy = Toy()
    defines_all_a_database_module_must(toy)
    monkeypatch.setitem(sources._DIALECTS, "TOY", toy)  # what its line in sources._REGISTERED does
    path = tmp_path / "toy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b"), (3, None)])
        conn.execute("CREATE TABLE u (t_id INTEGER REFERENCES t (id), n INTEGER, PRIMARY KEY (t_id, n))")
    conn.close()
    source = types.SimpleNamespace(dbtype="TOY", filename=path, password_env=None)  # SourceConfig's fields
    query = "SELECT id, name FROM t WHERE id >= :lo"
    assert dialect("TOY").binds(query) == ("lo",)
    with connect(source) as conn:
        params = conn.dialect.params({"lo": 2, "unused": 0}, query)
        assert count_rows(conn, query, params) == 2 and extreme(conn, query, params, "id", "MAX") == 3
        sync = conn.dialect.sync_query(query, "id")
        assert [r for _, rows in iter_row_chunks(conn, sync, conn.dialect.params({"lo": 1, "since": 3}, sync), 10)
                for r in rows] == [(3, None)]
        table = catalogue.read_table(conn, catalogue.catalogue("TOY").parse_table("t"))
        (fk,) = catalogue.read_foreign_keys(conn, catalogue.catalogue("TOY").parse_table("u"))
    assert (fk.columns, fk.refers_to.name, fk.ref_columns) == (("t_id",), "t", ("id",))
    assert table.key == ("id",)
    assert [catalogue.field_mapping("TOY", c) for c in table.columns] == [{"type": "long"}, catalogue.text_mapping()]


def test_the_job_files_dbtype_choices_and_required_fields_come_from_the_registry():
    assert typing.get_args(SourceConfig.model_fields["dbtype"].annotation) == DBTYPES == (
        "ORACLE", "PG", "SQLITE", "MSSQL")  # the order docs/config-reference.md lists
    for dbtype in DBTYPES:
        with pytest.raises(ValueError, match=f"dbtype {dbtype} needs {', '.join(dialect(dbtype).required)}"):
            SourceConfig(dbtype=dbtype.lower())


def test_each_required_source_field_says_which_databases_require_it():
    """The descriptions are the job-file reference's words: a new database named in none would be undocumented."""
    for field, info in SourceConfig.model_fields.items():
        needing = {d for d in DBTYPES if field in dialect(d).required
                   or (field == "password_env" and dialect(d).needs_password)}
        required_for = (info.description or "").partition("Required for ")[2]
        assert set(re.findall(r"\b[A-Z]+\b", required_for)) & set(DBTYPES) == needing, (field, needing)


def test_bind_names_and_their_case_are_each_databases():
    assert dialect("SQLITE").binds("SELECT :a, ':b', :a -- :c") == ("a",)
    assert dialect("PG").binds("SELECT %(a)s, '%(b)s', %%(c)s") == ("a", "b")
    assert dialect("MSSQL").binds("SELECT ? WHERE :a") == ()
    assert dialect("ORACLE").same_bind("Site", "SITE") and not dialect("PG").same_bind("Site", "SITE")


def test_the_names_indexer_binds_are_the_ones_the_job_file_refuses():
    from indexer import jobfile

    assert jobfile.RESERVED_BINDS == (sources.BEYOND, sources.SLICE_LO, sources.SLICE_HI) == sources.RESERVED_BINDS
    assert jobfile.SINCE == sources.SINCE == "since"


# ---------------------------------------------------------------- what every dialect writes


@pytest.mark.parametrize("dbtype, placeholder", [("SQLITE", ":since"), ("ORACLE", ":since"), ("PG", "%(since)s"),
                                                 ("MSSQL", "?")])
def test_each_dialect_writes_its_drivers_placeholder(dbtype, placeholder):
    assert dialect(dbtype).bind("since") == placeholder
    assert dialect(dbtype).sync_query("SELECT code, changed FROM t", "changed") == (
        f"SELECT * FROM (SELECT code, changed FROM t) q WHERE q.changed >= {placeholder} ORDER BY q.changed")


def test_bind_styles_by_driver_for_every_database_a_job_file_may_name():
    dbtypes = typing.get_args(SourceConfig.model_fields["dbtype"].annotation)
    assert {db: dialect(db).bind("since") for db in dbtypes} == {
        "ORACLE": ":since", "SQLITE": ":since", "PG": "%(since)s", "MSSQL": "?",
    }


@pytest.mark.parametrize("dbtype", ["SQLITE", "ORACLE"])
def test_a_literal_percent_is_never_doubled_outside_postgres(dbtype):
    assert "LIKE 'SEN%')" in dialect(dbtype).sync_query("SELECT * FROM t WHERE code LIKE 'SEN%'", "changed")


@pytest.mark.parametrize("dbtype, params, expected", [
    ("SQLITE", None, {"indexer_beyond": 5}),
    ("PG", {"site": "eu"}, {"site": "eu", "indexer_beyond": 5}),
    ("MSSQL", None, (5,)),                 # positional: never a dict for a "?"
    ("MSSQL", ("eu", 3), ("eu", 3, 5)),
])
def test_the_added_bound_is_in_each_drivers_shape(dbtype, params, expected):
    assert dialect(dbtype).with_param(params, "indexer_beyond", 5) == expected


# ---------------------------------------------------------------- secrets


def test_password_is_read_from_the_named_variable():
    assert password_for(SourceConfig(**PG), env={"PLANT_DB_PASSWORD": "hunter2"}) == "hunter2"


def test_missing_password_variable_is_a_config_error_naming_it_without_secrets():
    env = {"PGPASSWORD": "hunter2", "OTHER_SECRET": "s3cr3t"}
    with pytest.raises(ConfigError) as info:
        password_for(SourceConfig(**PG), env=env)
    message = str(info.value)
    assert "PLANT_DB_PASSWORD" in message and "not set" in message
    assert "hunter2" not in message and "s3cr3t" not in message


# ---------------------------------------------------------------- streaming rows


def test_rows_stream_as_tuples_in_chunks_of_chunk_size_with_the_description(readings_db):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        chunks = list(iter_row_chunks(conn, "SELECT id, Site, reading FROM readings ORDER BY id", None, 3))
    assert [len(rows) for _, rows in chunks] == [3, 3, 1]
    assert [col[0] for col in chunks[0][0]] == ["id", "Site", "reading"]
    assert all(type(row) is tuple for _, rows in chunks for row in rows)
    assert [row for _, rows in chunks for row in rows][:2] == [(1, "eu", 0.5), (2, "us", 1.0)]


def test_a_query_with_no_rows_yields_no_chunks(readings_db):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        assert list(iter_row_chunks(conn, "SELECT id FROM readings WHERE id < 0", None, 3)) == []


@pytest.mark.parametrize("query, cause", [("SELECT * FROM no_such_table", "no such table"),
                                          ("SELEC id FROM readings", "syntax error")])
def test_a_bad_query_is_a_one_line_source_error(readings_db, query, cause):
    with connect(SourceConfig(dbtype="SQLITE", filename=readings_db)) as conn:
        with pytest.raises(SourceError) as info:
            list(iter_row_chunks(conn, query, None, 3))
    message = str(info.value)
    assert cause in message and "\n" not in message


def test_a_value_the_driver_cannot_convert_ends_the_fetch_in_one_line(tmp_path):
    """A conversion error that is not the driver's own class was a 40-line traceback."""
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES ('x')")
    conn.close()
    with connect(SourceConfig(dbtype="SQLITE", filename=path)) as conn:
        # what a driver's converter raising on a value looks like from the fetch loop
        conn.raw.row_factory = lambda cursor, row: (_ for _ in ()).throw(OverflowError(f"{row[0]} too big"))
        message = one_line_error(lambda: list(iter_row_chunks(conn, "SELECT v FROM t", None, 10)))
    assert message == ("reading rows failed (job.query): the driver could not convert a value (OverflowError); "
                       "convert the column in the query")
    assert "x too big" not in message  # the value is not quoted


# ---------------------------------------------------------------- columns_of


def test_columns_of_names_the_query_columns_lower_cased_without_reading_a_row(db):
    with connect(db) as conn:
        assert columns_of(conn, f"SELECT id, Site, {BOOM} FROM readings", None) == ("id", "site", "boom")
        # the same query reading its rows fails: columns_of did not read any
        with pytest.raises(SourceError, match="integer overflow"):
            list(iter_row_chunks(conn, f"SELECT id, Site, {BOOM} FROM readings", None, 10))


def test_columns_of_binds_the_query_parameters(db):
    with connect(db) as conn:
        assert columns_of(conn, "SELECT id, code FROM readings WHERE Site = :site", {"site": "eu"}) == ("id", "code")


def test_columns_of_a_failing_query_is_the_users_query_failing(db):
    with connect(db) as conn:
        message = one_line_error(lambda: columns_of(conn, "SELECT id FROM sensorz", None))
    assert message == "job.query failed: no such table: sensorz"


def test_a_failing_query_keeps_the_drivers_error_as_its_cause_for_debug(db):
    with connect(db) as conn:
        for call in (lambda: columns_of(conn, "SELECT id FROM sensorz", None),
                     lambda: list(iter_row_chunks(conn, "SELECT id FROM sensorz", None, 10))):
            with pytest.raises(SourceError) as info:
                call()
            assert isinstance(info.value.__cause__, sqlite3.OperationalError)


# ---------------------------------------------------------------- errors quote the user's query


@pytest.mark.parametrize("call", [
    lambda conn, q: count_rows(conn, q, None),
    lambda conn, q: extreme(conn, q, None, "id", "MAX"),
    lambda conn, q: count_by(conn, q, None, "id"),
    lambda conn, q: list(iter_row_chunks(conn, q, None, 10)),
])
def test_a_failing_query_is_reported_as_job_query_failing_without_generated_sql(db, call):
    with connect(db) as conn:
        message = one_line_error(lambda: call(conn, "SELECT id FROM sensorz"))
    assert message == "job.query failed: no such table: sensorz"


def test_the_failing_query_is_named_as_the_caller_says(db):
    with connect(db) as conn:
        message = one_line_error(lambda: list(iter_row_chunks(conn, "SELECT id FROM sensorz", {}, 10,
                                                              what="job.sync_query")))
    assert message == "job.sync_query failed: no such table: sensorz"


@pytest.mark.parametrize("params", [None, {}, ()])
def test_counts_and_maxima_run_without_parameters(db, params):
    with connect(db) as conn:
        assert count_rows(conn, "SELECT id FROM readings WHERE code LIKE 'SEN00000%'", params) == 7
        assert extreme(conn, "SELECT id, changed FROM readings", params, "changed", "MAX") == "2024-01-07 10:00:00"
        assert sorted(count_by(conn, "SELECT Site FROM readings", params, "site")) == [("eu", 4), ("us", 3)]
        assert columns_of(conn, "SELECT code FROM readings", params) == ("code",)


# ---------------------------------------------------------------- an aggregate asked again past an unusable extreme


@pytest.fixture
def floats(tmp_path):
    path = tmp_path / "f.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE f (id INTEGER, v REAL)")
        conn.executemany("INSERT INTO f VALUES (?, ?)", [(1, float("-inf")), (2, 1.5), (3, 7.0), (4, float("inf")),
                                                         (5, None)])
    conn.close()
    return SourceConfig(dbtype="SQLITE", filename=path)


def test_usable_extreme_asks_again_past_each_value_that_is_not_usable(floats):
    with connect(floats) as conn:
        assert extreme(conn, "SELECT id, v FROM f", None, "v", "MAX") == math.inf
        assert usable_extreme(conn, "SELECT id, v FROM f", None, "v", "MAX", math.isfinite) == 7.0
        assert usable_extreme(conn, "SELECT id, v FROM f", None, "v", "MIN", math.isfinite) == 1.5
        # the job's own parameters are bound before the one indexer adds
        query = "SELECT id, v FROM f WHERE id < :top"
        assert usable_extreme(conn, query, {"top": 3}, "v", "MAX", math.isfinite) == 1.5
        assert usable_extreme(conn, "SELECT id, v FROM f WHERE id = 1", None, "v", "MAX", math.isfinite) is None
