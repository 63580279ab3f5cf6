"""MSSQL without a server or pyodbc (indexer.sources.mssql): positional parameters, ``[name]`` quoting, the
catalogue's binds and types."""

from indexer.catalogue import catalogue
from indexer.config import SourceConfig
from indexer.sources import Column, dialect


def test_mssql_params_are_positional_in_file_order_with_since_last():
    assert dialect("MSSQL").params({"site": "eu", "limit": 5, "since": 3}) == ("eu", 5, 3)
    assert dialect("MSSQL").params({}) is None


def test_a_positional_query_binds_no_names():
    assert dialect("MSSQL").binds("SELECT * FROM t WHERE d >= ? AND c = ':x'") == ()


def test_mssql_needs_an_odbc_driver_and_a_password_variable():
    source = SourceConfig(dbtype="MSSQL", host="db", port=1433, dbname="d", user="u", password_env="P",
                          odbc_driver="ODBC Driver 18 for SQL Server")
    assert source.odbc_driver and dialect("MSSQL").needs_password


def test_names_are_bracketed_and_compare_without_their_case():
    cat = catalogue("MSSQL")
    assert cat.quote("Order Date") == "[Order Date]" and not cat.db.case_sensitive
    assert not cat.needs_alias("Modified", "modified")


def test_a_float_of_up_to_24_bits_is_a_float_and_wider_a_double():
    mssql = dialect("MSSQL")
    assert mssql.kind(Column("c", "float", None, 24)) == "float"
    assert mssql.kind(Column("c", "float", None, 53)) == mssql.kind(Column("c", "float")) == "double"
