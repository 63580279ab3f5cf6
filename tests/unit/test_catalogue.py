"""What every database's catalogue shares (indexer.catalogue): plain names and quoting, the flow of read_table,
and the kind -> mapping rules. The facts of each database are in tests/unit/test_sources_<database>.py; init's
use of them in tests/unit/test_scaffold.py."""

import pytest

from indexer import catalogue as cat_module
from indexer.catalogue import (
    DATE_FORMAT,
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
    sqlite_date_columns,
    text_mapping,
)
from indexer.errors import ConfigError, SourceError
from indexer.sources import DBTYPES, Connection, dialect
from indexer.sources.postgres import Postgres

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
    assert sqlite_date_columns(Connection(raw, _Scripted()), TableName("public", "t", "t"), columns) == set()
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
