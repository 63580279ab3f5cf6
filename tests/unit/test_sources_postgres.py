"""PostgreSQL without a server (indexer.sources.postgres): ``%(name)s`` binds and the literal ``%``, the date
and time casters, the catalogue's name resolution and types. End to end: tests/integration/test_source_errors.py,
test_pg_streaming.py and test_init.py."""

import datetime as dt

import pytest

from indexer.sources import Column, dialect
from indexer.sources.postgres import pg_time_caster
from indexer.values import DbText, Unconvertible

# ---------------------------------------------------------------- the literal % and binds


def test_postgres_sync_query_doubles_a_literal_percent_of_a_query_without_parameters():
    query = "SELECT code, changed FROM t WHERE code LIKE 'SEN000001%'"
    assert dialect("PG").sync_query(query, "changed") == (
        "SELECT * FROM (SELECT code, changed FROM t WHERE code LIKE 'SEN000001%%') q "
        "WHERE q.changed >= %(since)s ORDER BY q.changed")


def test_postgres_sync_query_keeps_the_percent_of_a_query_with_parameters_as_written():
    # With parameters of its own the user already wrote psycopg2's %% for a literal %.
    query = "SELECT code, changed FROM t WHERE code LIKE 'SEN%%' AND site = %(site)s"
    assert dialect("PG").sync_query(query, "changed").startswith(f"SELECT * FROM ({query}) q")
    assert "%%%%" not in dialect("PG").sync_query(query, "changed", has_user_params=True)
    assert "LIKE 'SEN%%%%'" in dialect("PG").sync_query(query, "changed", has_user_params=False)


def test_a_query_binding_nothing_has_its_percent_doubled_only_inside_a_query_that_binds():
    pg = dialect("PG")
    assert pg.own("SELECT * FROM t WHERE c LIKE 'A%'", adding_binds=True) == "SELECT * FROM t WHERE c LIKE 'A%%'"
    assert pg.own("SELECT * FROM t WHERE c LIKE 'A%'", adding_binds=False) == "SELECT * FROM t WHERE c LIKE 'A%'"
    assert pg.own("SELECT * FROM t WHERE s = %(s)s", adding_binds=True) == "SELECT * FROM t WHERE s = %(s)s"


def test_params_keep_only_the_names_the_query_binds_in_pyformat():
    values = {"site": "eu", "limit": 5, "since": 3}
    assert dialect("PG").params(values, "SELECT * FROM t WHERE site = %(site)s") == {"site": "eu"}
    # psycopg2 reads a %(name)s everywhere, in a literal too; %% is a literal %
    assert dialect("PG").binds("SELECT '%(a)s', %%(b)s, %(c)s, %(a)s") == ("a", "c")


def test_driver_errors_are_psycopg2s_exception_classes():
    import psycopg2

    assert dialect("PG").errors == (psycopg2.Error, psycopg2.Warning)


# ---------------------------------------------------------------- values the driver would change


@pytest.mark.parametrize("name, base, text, expected", [
    ("timestamp", "PYDATETIME", "infinity", DbText("infinity")),
    ("timestamp", "PYDATETIME", "-infinity", DbText("-infinity")),
    ("date", "PYDATE", "infinity", DbText("infinity")),
    ("date", "PYDATE", "10000-01-01", DbText("10000-01-01")),       # psycopg2: ValueError, the whole fetch lost
    ("date", "PYDATE", "0044-03-15 BC", DbText("0044-03-15 BC")),
    ("time", "PYTIME", "24:00:00", DbText("24:00:00")),             # psycopg2: time(0, 0), another real value
    ("timetz", "PYTIME", "24:00:00+02", DbText("24:00:00+02")),
    ("interval", "PYINTERVAL", "1000000000 days", Unconvertible(
        "an interval beyond Python's range of +-999,999,999 days; "
        "convert it in the query (e.g. EXTRACT(EPOCH FROM ...))")),
    ("timestamp", "PYDATETIME", "2024-01-02 03:04:05", dt.datetime(2024, 1, 2, 3, 4, 5)),
    ("date", "PYDATE", "2024-01-02", dt.date(2024, 1, 2)),
    ("time", "PYTIME", "23:59:59.5", dt.time(23, 59, 59, 500000)),
    ("interval", "PYINTERVAL", "1 day 02:00:00", dt.timedelta(days=1, hours=2)),
    ("timestamp", "PYDATETIME", None, None),
])
def test_postgres_casters_keep_what_psycopg2_would_change_or_choke_on(name, base, text, expected):
    import psycopg2.extensions

    value = pg_time_caster(name, getattr(psycopg2.extensions, base))(text, None)  # no cursor: never a zone here
    assert value == expected and type(value) is type(expected)


# ---------------------------------------------------------------- catalogue and types


class _PgError(Exception):
    def __init__(self, text, pgcode):
        super().__init__(text)
        self.pgcode = pgcode


def test_a_table_text_postgres_reads_as_no_name_is_said_so_and_other_errors_are_not():
    pg = dialect("PG")
    assert pg.unreadable_name(_PgError('invalid name syntax\nLINE 1', "42602")) == (
        'PostgreSQL reads no table name in it (invalid name syntax): quote a part that is not a plain name, '
        'as in SQL: schema."Name"')
    assert pg.unreadable_name(_PgError("permission denied", "42501")) is None
    assert pg.unreadable_name(None) is None


def test_names_fold_to_lower_case_and_compare_with_their_case():
    assert dialect("PG").fold("Orders") == "orders" and dialect("PG").case_sensitive


def test_an_array_maps_as_its_items_but_is_an_array():
    pg = dialect("PG")
    assert pg.kind(Column("c", "_int4")) == pg.kind(Column("c", "int4")) == "integer"
    assert pg.is_array(Column("c", "_int4")) and not pg.is_array(Column("c", "int4"))
    assert pg.kind(Column("c", "tsvector")) is None
