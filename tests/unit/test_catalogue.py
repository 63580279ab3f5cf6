"""What every database's catalogue shares (indexer.catalogue): plain names and quoting, the flow of read_table,
and the kind -> mapping rules. The facts of each database are in tests/unit/test_sources_<database>.py; init's
use of them in tests/unit/test_commands_init.py."""

import sqlite3

import pytest

from indexer import catalogue as cat_module
from indexer.catalogue import (
    DATE_FORMAT,
    ISO_TEXT,
    KINDS,
    SAFE_KEYWORD,
    Column,
    TableName,
    catalogue,
    field_mapping,
    is_date,
    is_flag,
    plain,
    read_table,
    text_date_columns,
    text_mapping,
)
from indexer.config import SourceConfig
from indexer.errors import ConfigError, SourceError
from indexer.sources import DBTYPES, Connection, connect, dialect
from indexer.sources.postgres import Postgres
from tests.support.builders import KEYWORD

# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name, ok", [("code", True), ("Code2", True), ("_id", False), ("2x", False), ("a b", False),
                                      ("select", False), ("SELECT", False), ("varchar2", False), ("é", False)])
def test_a_plain_name_is_an_ascii_identifier_that_no_database_reserves(name, ok):
    assert plain(name) is ok


@pytest.mark.parametrize("dbtype", DBTYPES)
def test_every_database_quotes_with_its_own_marks_doubling_the_closing_one(dbtype):
    db = dialect(dbtype)
    name = f"a{db.close_quote}b"
    assert catalogue(dbtype).quote(name) == f"{db.open_quote}a{db.close_quote * 2}b{db.close_quote}"
    assert catalogue(dbtype).quote(db.fold("code")) == db.fold("code")  # bare when bare means the same


@pytest.mark.parametrize("dbtype", DBTYPES)
def test_a_wrapped_name_needs_an_alias_only_where_names_keep_their_case(dbtype):
    assert catalogue(dbtype).needs_alias("UpdatedAt", "updatedat") is dialect(dbtype).case_sensitive


def test_a_qualified_name_leaves_out_a_missing_schema():
    assert catalogue("PG").qualified(TableName(None, "Orders", "x")) == '"Orders"'
    assert catalogue("PG").qualified(TableName("sales", "orders", "x")) == "sales.orders"


# ---------------------------------------------------------------- read_table's flow, on a database's answers


class _Error(Exception):
    def __init__(self, text, pgcode=None):
        super().__init__(text)
        self.pgcode = pgcode


class _Scripted(Postgres):
    """PostgreSQL's facts, answered from a script instead of a server."""

    errors = (_Error,)


class _Cursor:
    def __init__(self, answers, seen):
        self.answers, self.seen = answers, seen

    def execute(self, sql, binds):
        self.seen.append(binds)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        self.rows = answer

    def fetchall(self):
        return self.rows

    def close(self):
        pass


class _Raw:
    def __init__(self, *answers):
        self.answers, self.seen = list(answers), []

    def cursor(self):
        return _Cursor(self.answers, self.seen)

    def rollback(self):
        pass


def test_a_name_the_database_resolves_is_read_as_it_resolves_it_then_bound():
    raw = _Raw([("sales", "Order Items")], [("id", "int4", None, 32, 0), ("Note", "text", None, None, None)], [("id",)])
    table = read_table(Connection(raw, _Scripted()), TableName(None, "x", 'sales."Order Items"'))
    assert table.name == TableName("sales", "Order Items", 'sales."Order Items"')
    assert table.columns == (Column("id", "int4", None, 32, 0), Column("Note", "text")) and table.key == ("id",)
    assert raw.seen == [{"name": 'sales."Order Items"'}] + [{"schema": "sales", "name": "Order Items"}] * 2


def test_a_table_the_database_cannot_find_or_read_as_a_name_is_an_option_error():
    with pytest.raises(ConfigError, match=r"^table nope not found \(PostgreSQL looks in the search_path"):
        read_table(Connection(_Raw([]), _Scripted()), TableName(None, "nope", "nope"))
    with pytest.raises(ConfigError, match=r"^--table 'a.b.c.d': PostgreSQL reads no table name in it \(improper\)"):
        read_table(Connection(_Raw(_Error("improper\nLINE 1", "42601")), _Scripted()), TableName(None, "d", "a.b.c.d"))
    with pytest.raises(ConfigError, match=r"^table t not found \(or it has no columns this user may read\)$"):
        read_table(Connection(_Raw([("public", "t")], []), _Scripted()), TableName(None, "t", "t"))


def test_any_other_catalogue_error_is_a_source_error_naming_the_catalogue():
    with pytest.raises(SourceError, match=r"^reading the PG catalogue failed: permission denied$"):
        read_table(Connection(_Raw(_Error("permission denied", "42501")), _Scripted()), TableName(None, "t", "t"))


def test_a_database_with_date_types_samples_no_text_for_dates():
    raw = _Raw()
    columns = (Column("updated_at", "text"), Column("taken", "date"))
    assert text_date_columns(Connection(raw, _Scripted()), TableName("public", "t", "t"), columns) == set()
    assert raw.seen == []


# ---------------------------------------------------------------- kind -> mapping


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_a_database_may_give_has_a_mapping(kind, monkeypatch):
    monkeypatch.setattr(cat_module, "_kind", lambda dbtype, column: kind)
    mapping = field_mapping("PG", Column("c", "x", None, 10, 0))
    assert mapping and (mapping.get("type") != "keyword" or mapping == SAFE_KEYWORD)


@pytest.mark.parametrize("precision, scale, mapping", [
    (2, 0, {"type": "byte"}), (4, 0, {"type": "short"}), (9, 0, {"type": "integer"}), (18, 0, {"type": "long"}),
    (19, 0, SAFE_KEYWORD), (5, -2, {"type": "integer"}), (10, 2, {"type": "double"}), (None, 0, {"type": "long"}),
    (None, None, {"type": "double"}),
])
def test_a_numeric_is_the_narrowest_integer_that_holds_its_digits_or_a_double(precision, scale, mapping):
    assert field_mapping("ORACLE", Column("n", "number", None, precision, scale)) == mapping


def test_a_short_string_is_a_keyword_a_long_one_text_unless_it_is_the_key():
    assert field_mapping("PG", Column("c", "varchar", 64)) == SAFE_KEYWORD
    assert field_mapping("PG", Column("c", "varchar", 65)) == text_mapping()
    assert field_mapping("PG", Column("c", "varchar", 65), is_key=True) == SAFE_KEYWORD


def test_a_watermark_is_a_date_and_never_an_array():
    assert is_date("PG", Column("c", "timestamptz")) and not is_date("PG", Column("c", "_timestamptz"))
    assert field_mapping("PG", Column("c", "_timestamptz")) == {"type": "date", "format": DATE_FORMAT}
    assert is_flag("MSSQL", Column("d", "bit")) and is_flag("PG", Column("d", "numeric", None, 9, 0))
    assert not is_flag("PG", Column("d", "numeric", None, 10, 0))


# ---------------------------------------------------------------- moved from init's tests: the catalogue alone


@pytest.mark.parametrize("dbtype, text, user, expected", [
    ("PG", 'public."Order Items"', None, ("public", "Order Items")),
    ("PG", "Sales.Orders", None, ("sales", "orders")),
    ("ORACLE", "bgs.dic_sen_sensor", "reader", ("BGS", "DIC_SEN_SENSOR")),
    ("ORACLE", '"MixedCase"', "reader", ("READER", "MixedCase")),
    ("MSSQL", "[dbo].[Order Items]", None, ("dbo", "Order Items")),
    ("MSSQL", "Orders", None, (None, "Orders")),
    ("SQLITE", '"a ""quoted"" name"', None, (None, 'a "quoted" name')),
    ("SQLITE", "main.sensors", None, ("main", "sensors")),
])
def test_a_table_name_is_split_unquoted_and_folded_as_the_database_reads_it(dbtype, text, user, expected):
    name = catalogue(dbtype).parse_table(text, user)
    assert (name.schema, name.name) == expected


@pytest.mark.parametrize("text", ["a.b.c", "", "a.", '"unclosed', "."])
def test_a_table_name_with_more_than_two_parts_or_an_empty_part_is_refused(text):
    with pytest.raises(ConfigError, match="expected NAME or SCHEMA.NAME"):
        catalogue("PG").parse_table(text)


@pytest.mark.parametrize("dbtype, name, quoted", [
    ("PG", "code", "code"), ("PG", "Order Date", '"Order Date"'), ("PG", "OrderId", '"OrderId"'),
    ("PG", "select", '"select"'), ("PG", 'say "hi"', '"say ""hi"""'),
    ("ORACLE", "CODE", "CODE"), ("ORACLE", "code", '"code"'), ("ORACLE", "DATE", '"DATE"'),
    ("MSSQL", "Code", "Code"), ("MSSQL", "Order Date", "[Order Date]"), ("MSSQL", "a]b", "[a]]b]"),
    ("MSSQL", "key", "[key]"), ("SQLITE", "Code", "Code"), ("SQLITE", "order", '"order"'),
])
def test_a_name_is_quoted_when_bare_it_would_mean_something_else(dbtype, name, quoted):
    assert catalogue(dbtype).quote(name) == quoted


def test_oracle_catalogue_queries_bind_the_owner_and_the_table():
    name = catalogue("ORACLE").parse_table("bgs.sensors", "reader")
    sql, binds = dialect("ORACLE").columns_query(name)
    assert "FROM all_tab_columns WHERE owner = :owner AND table_name = :name ORDER BY column_id" in sql
    assert binds == {"owner": "BGS", "name": "SENSORS"}
    sql, binds = dialect("ORACLE").key_query(name)
    assert "c.constraint_type = 'P'" in sql and sql.endswith("ORDER BY cc.position")
    assert binds == {"owner": "BGS", "name": "SENSORS"} and "BGS" not in sql


def test_mssql_catalogue_queries_bind_positionally_and_default_to_the_users_schema():
    cat = catalogue("MSSQL")
    sql, binds = cat.db.columns_query(cat.parse_table("Orders"))
    assert "TABLE_SCHEMA = COALESCE(?, SCHEMA_NAME()) AND TABLE_NAME = ?" in sql and binds == (None, "Orders")
    sql, binds = cat.db.key_query(cat.parse_table("sales.[Order Lines]"))
    assert "tc.TABLE_SCHEMA = COALESCE(?, SCHEMA_NAME()) AND tc.TABLE_NAME = ?" in sql
    assert sql.endswith("ORDER BY kcu.ORDINAL_POSITION")
    assert binds == ("sales", "Order Lines") and "Order Lines" not in sql


def test_postgres_resolves_the_name_as_postgres_reads_it_then_binds_schema_and_table():
    cat = catalogue("PG")
    sql, binds = cat.db.resolve_query('public."Order Items"')
    assert "to_regclass(%(name)s)" in sql and binds == {"name": 'public."Order Items"'}
    sql, binds = cat.db.columns_query(TableName("public", "Order Items", ""))
    assert binds == {"schema": "public", "name": "Order Items"} and "Order Items" not in sql


@pytest.mark.parametrize("udt, length, precision, scale, mapping", [
    ("int2", None, 16, 0, {"type": "short"}), ("int4", None, 32, 0, {"type": "integer"}),
    ("int8", None, 64, 0, {"type": "long"}), ("numeric", None, 10, 2, {"type": "double"}),
    ("numeric", None, 15, 5, {"type": "double"}),
    ("numeric", None, 16, 2, {"type": "double"}), ("numeric", None, None, None, {"type": "double"}),
    ("numeric", None, 9, 0, {"type": "integer"}), ("numeric", None, 19, 0, KEYWORD),
    ("float4", None, None, None, {"type": "float"}), ("float8", None, None, None, {"type": "double"}),
    ("varchar", 64, None, None, KEYWORD), ("bpchar", 3, None, None, KEYWORD),
    ("varchar", 65, None, None, {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}),
    ("text", None, None, None, {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}),
    ("timestamptz", None, None, None, {"type": "date", "format": DATE_FORMAT}),
    ("bool", None, None, None, {"type": "boolean"}), ("bytea", None, None, None, {"type": "binary"}),
    ("jsonb", None, None, None, {"type": "object", "enabled": False}), ("_int4", None, None, None, {"type": "integer"}),
    ("uuid", None, None, None, KEYWORD), ("tsvector", None, None, None, None),
])
def test_postgres_types_map_by_size_precision_and_length(udt, length, precision, scale, mapping):
    assert field_mapping("PG", Column("c", udt, length, precision, scale)) == mapping


def test_a_long_string_key_is_a_keyword_that_can_never_be_an_immense_term():
    assert field_mapping("PG", Column("c", "text"), is_key=True) == {"type": "keyword", "ignore_above": 8191}


@pytest.mark.parametrize("declared, mapping", [
    ("INTEGER", {"type": "long"}), ("BOOLEAN", {"type": "long"}), ("VARCHAR(10)", KEYWORD),
    ("TEXT", {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}),
    ("REAL", {"type": "double"}), ("DECIMAL(10,2)", {"type": "double"}), ("BLOB", {"type": "binary"}),
    ("JSON", {"type": "object", "enabled": False}), ("", None), ("DATETIME", None),
])
def test_sqlite_types_follow_its_affinity_rules(declared, mapping):
    column = catalogue("SQLITE").parse_columns([("c", declared, 0)])[0]
    assert field_mapping("SQLITE", column) == mapping


def test_flags_are_booleans_integers_or_one_character_strings():
    assert is_flag("PG", Column("d", "bool")) and is_flag("ORACLE", Column("d", "number", None, 1, 0))
    assert is_flag("ORACLE", Column("d", "char", 1)) and not is_flag("ORACLE", Column("d", "char", 3))
    assert not is_flag("PG", Column("d", "timestamptz")) and not is_flag("ORACLE", Column("d", "number"))
    assert not is_flag("PG", Column("d", "_bool"))  # an array is no flag (nor a watermark)


@pytest.mark.parametrize("text, ok", [
    ("2024-01-02", True), ("2024-01-02T03:04:05", True), ("2024-01-02T03:04:05.123456+05:30", True),
    ("2024-01-02 03:04:05", True), ("2024-01-02 03:04:05.123", True), ("2024-01-02 03:04:05.1234", False),
    ("02/01/2024", False), ("2024-01-02 03:04", False), ("yesterday", False),
])
def test_sqlite_text_is_called_a_date_only_in_layouts_the_date_format_reads(text, ok):
    assert bool(ISO_TEXT.match(text)) is ok


def test_a_sqlite_catalogue_reads_columns_and_a_composite_key_in_key_order(tmp_path):
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute('CREATE TABLE lines (b TEXT, "Line No" INTEGER, a INTEGER, PRIMARY KEY (a, "Line No"))')
    conn.close()
    with connect(SourceConfig(dbtype="SQLITE", filename=path)) as db:
        table = read_table(db, catalogue("SQLITE").parse_table("LINES"))
        with pytest.raises(ConfigError, match="table nope not found"):
            read_table(db, catalogue("SQLITE").parse_table("nope"))
    assert [c.name for c in table.columns] == ["b", "Line No", "a"] and table.key == ("a", "Line No")


@pytest.mark.parametrize("dbtype", ["PG", "SQLITE", "ORACLE", "MSSQL"])
@pytest.mark.parametrize("text", ["a; drop table a", "public.a b", "a--x", "x.a'b", "a)"])
def test_an_unquoted_table_part_that_is_not_a_plain_name_must_be_quoted(dbtype, text):
    with pytest.raises(ConfigError, match=r"is not a plain name \(letters, digits, _, \$, #\): quote it"):
        catalogue(dbtype).parse_table(text)


@pytest.mark.parametrize("text, expected", [("a$b", "a$b"), ("#tmp", "#tmp"), ("dbo . orders", "orders"),
                                            ("é_table", "é_table")])
def test_plain_table_parts_are_letters_digits_underscore_dollar_and_hash(text, expected):
    assert catalogue("MSSQL").parse_table(text).name == expected


def test_a_control_character_in_a_quoted_table_part_is_refused():
    with pytest.raises(ConfigError, match="expected NAME or SCHEMA.NAME"):
        catalogue("PG").parse_table('"a\x00b"')
