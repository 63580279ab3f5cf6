"""SQLite: a file opened read-only, ``:name`` binds, a catalogue in ``pragma_table_info``, dates kept as text.

::

    source.filename --connect--> sqlite3 connection (mode=ro; a missing file is the job file's error)
    --table --columns_query--> pragma_table_info(:name[, :schema]) rows (name, declared type, pk)
        --read_columns--> "VARCHAR(10)" as length 10   --key_from_columns--> the pk positions, in key order
    --table --foreign_keys_query--> pragma_foreign_key_list rows (id, column, table, column or NULL: its key)
    a declared type --kind--> SQLite's affinity rules (it enforces none of them)
    text named or declared like a date --sample_query--> its first values, checked for ISO 8601 by init
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from indexer.errors import ConfigError
from indexer.sources.base import Column, Dialect, ForeignKeyRow, SourceParams, TableName, colon_binds, integer

_SIZE = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")
# Column names that suggest a date kept as text.
_DATE_NAME = re.compile(r"date|time|_at$|_on$|updat|modif|creat|chang")


class SQLite(Dialect):
    dbtype, placeholder, driver = "SQLITE", ":{name}", "sqlite3"
    required = ("filename",)
    needs_password = False
    # By SQLite's affinity rules on the declared type: the first of these found in it gives the kind.
    kinds = {"bool": "long", "int": "long", "json": "json", "char": "string", "clob": "string", "text": "string",
             "blob": "binary", "real": "double", "floa": "double", "doub": "double", "dec": "double",
             "num": "double"}

    def text_columns(self, conn: Any, description: Any) -> set[str]:
        """Every column (its type is per value): ``byte_order`` collates them all anyway."""
        return {str(col[0]).lower() for col in description or ()}

    def byte_order(self, column: str, collatable: bool) -> str:
        """BINARY on any column (a no-op on numbers): a NOCASE or RTRIM column otherwise sorts its own way.
        An index on a BINARY text key still serves it (measured on SQLite 3.40: SCAN ... USING INDEX)."""
        return f"q.{column} COLLATE BINARY"

    def binds(self, query: str) -> tuple[str, ...]:
        return colon_binds(query)

    def connect(self, source: SourceParams, password: str | None, chunk_size: int) -> Any:
        if not source.filename or not source.filename.is_file():
            # A path in the job file that names nothing is the job file's problem (exit 2).
            raise ConfigError(f"source.filename: SQLite database file not found: {source.filename}")
        # Open read-only: a typo must never create an empty database file.
        return sqlite3.connect(f"file:{source.filename}?mode=ro", uri=True)

    # ------------------------------------------------------------------ catalogue

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        if table.schema is None:
            return "SELECT name, type, pk FROM pragma_table_info(:name) ORDER BY cid", {"name": table.name}
        return ("SELECT name, type, pk FROM pragma_table_info(:name, :schema) ORDER BY cid",
                {"name": table.name, "schema": table.schema})

    def key_query(self, table: TableName) -> None:
        return None  # pragma_table_info's pk column holds it

    def foreign_keys_query(self, table: TableName) -> tuple[str, Any]:
        sql = 'SELECT id, "from", "table", "to" FROM pragma_foreign_key_list(:name{}) ORDER BY id, seq'
        if table.schema is None:
            return sql.format(""), {"name": table.name}
        return sql.format(", :schema"), {"name": table.name, "schema": table.schema}

    def read_foreign_keys(self, rows: list[tuple]) -> tuple[ForeignKeyRow, ...]:
        """SQLite rows are (id, column, referenced table, referenced column): no constraint name, the referenced
        table in the same schema, and no referenced column when the constraint names none (``REFERENCES orders``:
        its primary key)."""
        found: dict[int, ForeignKeyRow] = {}
        for fk_id, column, ref_table, ref_column in rows:
            _, columns, _, _, ref_columns = found.get(fk_id, (None, (), None, "", ()))
            found[fk_id] = (None, (*columns, str(column)), None, str(ref_table),
                            (*ref_columns, None if ref_column is None else str(ref_column)))
        return tuple(found.values())

    def read_columns(self, rows: list[tuple]) -> tuple[tuple[str, str, int | None, int | None, int | None], ...]:
        """SQLite rows are (name, declared type, position in the primary key); "VARCHAR(10)" gives length 10."""
        columns = []
        for name, declared, _ in rows:
            size = _SIZE.search(declared or "")
            first, second = (int(size.group(1)), integer(size.group(2))) if size else (None, None)
            columns.append((str(name), (declared or "").lower(), first, first, second))
        return tuple(columns)

    def key_from_columns(self, rows: list[tuple]) -> tuple[str, ...]:
        return tuple(str(name) for name, _, pk in sorted((r for r in rows if r[2]), key=lambda r: r[2]))

    # ------------------------------------------------------------------ types

    def kind(self, column: Column) -> str | None:
        if column.is_date:
            return "date"
        return next((kind for part, kind in self.kinds.items() if part in column.type), None)

    def may_hold_dates(self, column: Column) -> bool:
        """Declared as a date or a time, or text (or untyped) named like one."""
        texty = column.type == "" or self.kind(column) == "string"
        return self.declares_date(column) or (texty and bool(_DATE_NAME.search(column.name.lower())))

    def declares_date(self, column: Column) -> bool:
        return "date" in column.type or "time" in column.type

    def sample_query(self, column: str, table: str, rows: int) -> str:
        # bandit B608 accepted: identifiers quoted from the catalogue's own names; nothing else in the text
        return f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL LIMIT {int(rows)}"  # nosec B608


DIALECT = SQLite()
