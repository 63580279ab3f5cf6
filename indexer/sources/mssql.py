"""MSSQL through etlhelper's pyodbc helper: positional ``?`` binds, ``[name]`` quoting, INFORMATION_SCHEMA.
Not run here (no server, no pyodbc): unit tests check it on its parameters and literal catalogue rows.

::

    source (host, port, dbname, user, odbc_driver) --connect--> etlhelper.DbParams(...).connect(password_env)
    [job.params] in file order, since last --params--> a tuple (``?`` has no names: nothing is filtered)
    --table --columns_query / key_query--> INFORMATION_SCHEMA, schema and name bound positionally;
        no schema given: the user's default, SCHEMA_NAME()
        --foreign_keys_query--> sys.foreign_keys and sys.foreign_key_columns (pairs of columns, in order)
"""

from __future__ import annotations

from typing import Any

import etlhelper
from etlhelper.exceptions import ETLHelperError

from indexer.errors import SourceError
from indexer.sources.base import Column, Dialect, SourceParams, TableName, first_line_of


class MSSQL(Dialect):
    """Through etlhelper's pyodbc helper; not run here (no server, no pyodbc)."""

    dbtype, placeholder, driver = "MSSQL", "?", "pyodbc"
    required = ("host", "port", "dbname", "user", "odbc_driver")
    open_quote, close_quote = "[", "]"
    positional = True

    def byte_order(self, column: str, collatable: bool) -> str:
        """A binary code-point collation on text (BIN2; UTF-16 code units, so characters past U+FFFF may still
        differ from Python's order: the merge's order check catches them)."""
        return f"q.{column} COLLATE Latin1_General_100_BIN2" if collatable else f"q.{column}"
    max_binds = 2000  # of the 2,100 a statement may bind

    def key_list_query(self, query: str, columns: list[str], count: int) -> str:
        """No row values in T-SQL: ``(q.a = ? AND q.b = ?) OR ...``, binding in key order as the base does."""
        if len(columns) == 1:
            return super().key_list_query(query, columns, count)
        one = "(" + " AND ".join(f"q.{c} = ?" for c in columns) + ")"
        # bandit B608 accepted: columns passed config.SQL_IDENTIFIER; the values are bound
        return f"SELECT * FROM ({query}) q WHERE " + " OR ".join([one] * count)  # nosec B608
    # By DATA_TYPE; float(n) up to 24 bits is a float (kind()).
    kinds = {
        "tinyint": "short", "smallint": "short", "int": "integer", "bigint": "long", "bit": "boolean",
        "decimal": "numeric", "numeric": "numeric", "money": "numeric", "smallmoney": "numeric", "real": "float",
        "float": "double", "date": "date", "datetime": "date", "datetime2": "date", "smalldatetime": "date",
        "datetimeoffset": "date", "time": "keyword", "char": "string", "varchar": "string", "nchar": "string",
        "nvarchar": "string", "text": "text", "ntext": "text", "xml": "text", "binary": "binary",
        "varbinary": "binary", "image": "binary", "timestamp": "binary", "rowversion": "binary",
        "uniqueidentifier": "keyword",
    }

    def binds(self, query: str) -> tuple[str, ...]:
        return ()  # positional: no names

    def params(self, values: dict[str, Any], query: str | None = None) -> tuple | None:
        """Positional: ``[job.params]`` in file order, ``since`` last (it is added last)."""
        return tuple(values.values()) or None

    def with_param(self, params: Any, name: str, value: Any) -> tuple:
        """Positional: the bound value after the job's own."""
        return (*(params or ()), value)

    def connect(self, source: SourceParams, password: str | None, chunk_size: int) -> Any:
        params = etlhelper.DbParams(
            dbtype="MSSQL", host=source.host, port=str(source.port), dbname=source.dbname,
            user=source.user, odbc_driver=source.odbc_driver,
        )
        try:
            return params.connect(source.password_env)
        except ETLHelperError as exc:
            # from None: etlhelper's error and its cause may quote the connection string, password included
            raise SourceError(f"cannot connect to MSSQL at {source.host}:{source.port}: "
                              f"{first_line_of(exc)}") from None

    # ------------------------------------------------------------------ catalogue: INFORMATION_SCHEMA

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        return ("SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
                "FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, SCHEMA_NAME()) AND TABLE_NAME = ? "
                "ORDER BY ORDINAL_POSITION", (table.schema, table.name))

    def key_query(self, table: TableName) -> tuple[str, Any]:
        return ("SELECT kcu.COLUMN_NAME FROM INFORMATION_SCHEMA.TABLE_CONSTRAINTS tc "
                "JOIN INFORMATION_SCHEMA.KEY_COLUMN_USAGE kcu ON kcu.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA "
                "AND kcu.CONSTRAINT_NAME = tc.CONSTRAINT_NAME AND kcu.TABLE_NAME = tc.TABLE_NAME "
                "WHERE tc.CONSTRAINT_TYPE = 'PRIMARY KEY' AND tc.TABLE_SCHEMA = COALESCE(?, SCHEMA_NAME()) "
                "AND tc.TABLE_NAME = ? ORDER BY kcu.ORDINAL_POSITION", (table.schema, table.name))

    def foreign_keys_query(self, table: TableName) -> tuple[str, Any]:
        # INFORMATION_SCHEMA pairs a foreign key's columns with the referenced ones only through the unique
        # constraint's name; sys.foreign_key_columns pairs them itself, column by column.
        return ("SELECT fk.name, pc.name, SCHEMA_NAME(rt.schema_id), rt.name, rc.name FROM sys.foreign_keys fk "
                "JOIN sys.tables t ON t.object_id = fk.parent_object_id "
                "JOIN sys.foreign_key_columns fkc ON fkc.constraint_object_id = fk.object_id "
                "JOIN sys.columns pc ON pc.object_id = fkc.parent_object_id AND pc.column_id = fkc.parent_column_id "
                "JOIN sys.tables rt ON rt.object_id = fkc.referenced_object_id "
                "JOIN sys.columns rc ON rc.object_id = fkc.referenced_object_id "
                "AND rc.column_id = fkc.referenced_column_id "
                "WHERE SCHEMA_NAME(t.schema_id) = COALESCE(?, SCHEMA_NAME()) AND t.name = ? "
                "ORDER BY fk.name, fkc.constraint_column_id", (table.schema, table.name))

    # ------------------------------------------------------------------ types

    def kind(self, column: Column) -> str | None:
        if column.type == "float" and (column.precision or 53) <= 24:
            return "float"
        return self.kinds.get(column.type)


DIALECT = MSSQL()
