"""Oracle through oracledb (thin mode): ``:name`` binds that ignore case, driver-wide fetch defaults, and a
catalogue in ALL_TAB_COLUMNS. Not run against a server here (none runs on these machines): unit tests
check it on the driver's defaults and on literal catalogue rows.

::

    source (host, port, dbname = the service name, user) --configure(chunk_size)--> oracledb.defaults
        --connect--> oracledb.connect(user=, password=, host=, port=, service_name=), keyword arguments only
    --table --fold (upper case) / default_schema (the user)--> (owner, name)
        --columns_query / key_query--> ALL_TAB_COLUMNS, the primary key constraint; owner and name bound
        --foreign_keys_query--> ALL_CONSTRAINTS type 'R' and the key each refers to, ALL_CONS_COLUMNS by position
"""

from __future__ import annotations

from typing import Any

from indexer.errors import SourceError
from indexer.sources.base import Column, Dialect, SourceParams, TableName, colon_binds, first_line_of


class Oracle(Dialect):
    dbtype, placeholder, driver = "ORACLE", ":{name}", "oracledb"
    required = ("host", "port", "dbname", "user")
    binds_ignore_case = True
    case_sensitive = True
    # By data_type; TIMESTAMP(n)... and INTERVAL DAY... by their prefix (kind()).
    kinds = {
        "number": "numeric", "float": "double", "binary_float": "float", "binary_double": "double",
        "varchar2": "string", "nvarchar2": "string", "char": "string", "nchar": "string", "varchar": "string",
        "clob": "text", "nclob": "text", "long": "text", "xmltype": "text", "date": "date", "raw": "binary",
        "blob": "binary", "long raw": "binary", "json": "json", "boolean": "boolean", "rowid": "keyword",
        "urowid": "keyword",
    }

    def binds(self, query: str) -> tuple[str, ...]:
        return colon_binds(query)

    max_binds = 1000  # an IN list holds at most 1,000 expressions (ORA-01795)

    def text_columns(self, conn: Any, description: Any) -> set[str]:
        """Character columns (VARCHAR2, NVARCHAR2, CHAR, NCHAR, LONG; a CLOB is no key)."""
        import oracledb
        text = {oracledb.DB_TYPE_VARCHAR, oracledb.DB_TYPE_NVARCHAR, oracledb.DB_TYPE_CHAR, oracledb.DB_TYPE_NCHAR,
                oracledb.DB_TYPE_LONG}
        return {str(col[0]).lower() for col in description or () if col[1] in text}

    def byte_order(self, column: str, collatable: bool) -> str:
        """NLSSORT(..., 'NLS_SORT = BINARY') on text: the session's linguistic sort otherwise decides."""
        return f"NLSSORT(q.{column}, 'NLS_SORT = BINARY')" if collatable else f"q.{column}"

    @staticmethod
    def configure(chunk_size: int) -> None:
        """Driver-wide defaults for Oracle, set before connecting.

        LOBs arrive as str/bytes (no locator round trips), NUMBER as Decimal (exact,
        converted by the documents rules), and each round trip fetches one chunk.
        """
        import oracledb

        oracledb.defaults.fetch_lobs = False
        oracledb.defaults.fetch_decimals = True
        oracledb.defaults.arraysize = chunk_size
        oracledb.defaults.prefetchrows = chunk_size

    def connect(self, source: SourceParams, password: str | None, chunk_size: int) -> Any:
        import oracledb

        self.configure(chunk_size)
        try:
            return oracledb.connect(
                user=source.user, password=password, host=source.host, port=source.port,
                service_name=source.dbname, tcp_connect_timeout=10,
            )
        except oracledb.Error as exc:
            # from None: the driver's error may quote the password (so may its traceback under --debug)
            raise SourceError(f"cannot connect to Oracle at {source.host}:{source.port}: "
                              f"{first_line_of(exc)}") from None

    # ------------------------------------------------------------------ catalogue: ALL_TAB_COLUMNS and the primary
    # key constraint; the owner is the schema given, else the user

    def fold(self, name: str) -> str:
        return name.upper()

    def default_schema(self, user: str | None) -> str | None:
        return user.upper() if user else None

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        return ("SELECT column_name, data_type, char_length, data_precision, data_scale FROM all_tab_columns "
                "WHERE owner = :owner AND table_name = :name ORDER BY column_id",
                {"owner": table.schema, "name": table.name})

    def key_query(self, table: TableName) -> tuple[str, Any]:
        return ("SELECT cc.column_name FROM all_constraints c JOIN all_cons_columns cc "
                "ON cc.owner = c.owner AND cc.constraint_name = c.constraint_name AND cc.table_name = c.table_name "
                "WHERE c.constraint_type = 'P' AND c.owner = :owner AND c.table_name = :name ORDER BY cc.position",
                {"owner": table.schema, "name": table.name})

    def foreign_keys_query(self, table: TableName) -> tuple[str, Any]:
        # A referential constraint ('R') names the key it refers to (r_owner, r_constraint_name): its columns pair
        # with the constraint's by position.
        return ("SELECT c.constraint_name, cc.column_name, r.owner, r.table_name, rc.column_name "
                "FROM all_constraints c JOIN all_cons_columns cc ON cc.owner = c.owner "
                "AND cc.constraint_name = c.constraint_name AND cc.table_name = c.table_name "
                "JOIN all_constraints r ON r.owner = c.r_owner AND r.constraint_name = c.r_constraint_name "
                "JOIN all_cons_columns rc ON rc.owner = r.owner AND rc.constraint_name = r.constraint_name "
                "AND rc.table_name = r.table_name AND rc.position = cc.position "
                "WHERE c.constraint_type = 'R' AND c.owner = :owner AND c.table_name = :name "
                "ORDER BY c.constraint_name, cc.position", {"owner": table.schema, "name": table.name})

    # ------------------------------------------------------------------ types

    def kind(self, column: Column) -> str | None:
        if column.type.startswith("timestamp"):
            return "date"
        return "double" if column.type.startswith("interval day") else self.kinds.get(column.type)


DIALECT = Oracle()
