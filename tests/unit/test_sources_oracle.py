"""Oracle without a server (indexer.sources.oracle): driver defaults, ``:name`` binds that ignore case, the
catalogue's names and types. No Oracle server runs here: nothing else of it is run."""

import oracledb
import pytest

from indexer.sources import Column, TableName, dialect


@pytest.fixture
def oracle_defaults():
    """Driver-wide settings are process-wide: put them back afterwards."""
    names = ("fetch_lobs", "fetch_decimals", "arraysize", "prefetchrows")
    saved = {n: getattr(oracledb.defaults, n) for n in names}
    yield oracledb.defaults
    for name, value in saved.items():
        setattr(oracledb.defaults, name, value)


# ---------------------------------------------------------------- Oracle driver defaults


def test_the_oracle_dialect_fetches_lobs_as_values_numbers_as_decimals_and_one_chunk_per_round_trip(oracle_defaults):
    dialect("ORACLE").configure(5000)
    assert oracle_defaults.fetch_lobs is False
    assert oracle_defaults.fetch_decimals is True
    assert oracle_defaults.arraysize == 5000
    assert oracle_defaults.prefetchrows == 5000


def test_the_oracle_dialect_follows_the_chunk_size(oracle_defaults):
    dialect("ORACLE").configure(250)
    assert (oracle_defaults.arraysize, oracle_defaults.prefetchrows) == (250, 250)


def test_driver_errors_are_oracledbs_exception_classes():
    assert dialect("ORACLE").errors == (oracledb.Error, oracledb.Warning)


# ---------------------------------------------------------------- binds


def test_params_keep_the_names_the_query_binds_in_any_case():
    values = {"site": "eu", "limit": 5, "since": 3}
    assert dialect("ORACLE").params(values, "SELECT * FROM t WHERE site = :SITE") == {"site": "eu"}
    assert dialect("ORACLE").same_bind("StartDate", "STARTDATE")


# ---------------------------------------------------------------- catalogue and types


def test_unquoted_names_are_upper_case_and_the_owner_defaults_to_the_user():
    ora = dialect("ORACLE")
    assert ora.fold("sensors") == "SENSORS" and ora.default_schema("reader") == "READER"
    assert ora.default_schema(None) is None


def test_the_catalogue_rows_read_a_zero_length_as_none():
    rows = [("CODE", "VARCHAR2", 20, None, None), ("N", "NUMBER", 0, 10, 0)]
    assert dialect("ORACLE").read_columns(rows) == (("CODE", "varchar2", 20, None, None), ("N", "number", None, 10, 0))
    assert dialect("ORACLE").read_key([("SAMPLE_ID",), ("LINE_NO",)]) == ("SAMPLE_ID", "LINE_NO")
    assert dialect("ORACLE").key_query(TableName("BGS", "T", "t"))[1] == {"owner": "BGS", "name": "T"}


@pytest.mark.parametrize("data_type, kind", [
    ("timestamp(6) with time zone", "date"), ("interval day(2) to second(6)", "double"),
    ("interval year(2) to month", None), ("number", "numeric"), ("sdo_geometry", None),
])
def test_types_with_a_precision_in_their_name_map_by_their_prefix(data_type, kind):
    assert dialect("ORACLE").kind(Column("c", data_type)) == kind
