"""A table as its database's catalogue describes it, for ``indexer init``: columns, types, primary key.

::

    "SCHEMA.NAME" --parse_table--> TableName --Catalogue(dbtype).queries--> (sql, binds) ...
        --read_table(conn)--> Table (columns in order, primary key in key order)

One ``Catalogue`` per database holds its catalogue SQL (schema and table names are always bound,
never pasted), how its rows read, and how it quotes a name in the generated query. An unquoted part
of ``--table`` must be a plain name (letters, digits, ``_``, ``$``, ``#``), and a name PostgreSQL
cannot read is an option error too (ConfigError, exit 2). The SQL type -> mapping table is the last
part of this module (``field_mapping``; docs/init.md); every keyword it gives has ``ignore_above``.
Oracle and MSSQL are exercised by unit tests on literal catalogue rows (no server runs here); SQLite
and PostgreSQL end to end. (About 470 lines: a fifth of it is data, the reserved words and the four
type tables, kept beside the rules that read them.)
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from indexer.errors import ConfigError, SourceError
from indexer.source import Connection

# Names that are safe unquoted in every database, once in the database's own case. Over-quoting
# is always correct (the name is the catalogue's own spelling), so this set only keeps the query
# readable: any name in it, or not a plain identifier, is quoted.
# (A leading "_" is quoted: Oracle reads no unquoted name that starts with one.)
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
RESERVED = frozenset("""
access add all alter analyse analyze and any array as asc asymmetric audit authorization backup begin between
binary both break browse bulk by cascade case cast char character check checkpoint close cluster coalesce
collate collation column comment commit compress compute concurrently connect constraint contains continue
convert create cross current current_catalog current_date current_role current_schema current_time
current_timestamp current_user cursor database date dbcc deallocate decimal declare default deferrable delete
deny desc disk distinct distributed do double drop dump else end errlvl escape except exclusive exec execute
exists exit external false fetch file fillfactor float for foreign freeze freetext from full function get goto
grant group having holdlock identified identity if ilike immediate in increment index initial initially inner
insert integer intersect into is isnull join key kill lateral leading left level like limit lineno load
localtime localtimestamp lock long maxextents merge minus mlslabel mode modify national natural noaudit
nocheck nocompress not notnull nowait null nullif number of off offline offsets offset on online only open
option or order outer over overlaps pctfree percent pivot placing plan precision primary print prior proc
procedure public raiserror raw read readtext reconfigure references rename replication resource restore
restrict returning revert revoke right rollback row rowcount rowguidcol rowid rownum rows rule save schema
securityaudit select session session_user set setuser share shutdown similar size smallint some start
statistics successful symmetric synonym sysdate system_user table tablesample textsize then to top trailing
tran transaction trigger true truncate try_convert uid union unique unpivot update updatetext use user using
validate values varchar varchar2 variadic varying verbose view waitfor when whenever where while window with
within writetext
""".split())


def plain(name: str) -> bool:
    """A name every database reads the same unquoted, up to case: usable as an alias and a job field."""
    return bool(_PLAIN.match(name)) and name.lower() not in RESERVED


@dataclass(frozen=True)
class Column:
    """One column as the catalogue spells it; ``type`` in lower case ("numeric", "varchar2", "int4")."""

    name: str
    type: str
    length: int | None = None      # declared characters (None: unbounded or not a string)
    precision: int | None = None   # decimal digits of a numeric (binary bits for MSSQL float)
    scale: int | None = None
    is_date: bool = False          # SQLite only: text whose sampled values are ISO 8601 dates/times


@dataclass(frozen=True)
class TableName:
    """``--table`` split into its parts, each as the catalogue stores it (quotes removed, case folded)."""

    schema: str | None
    name: str
    given: str


@dataclass(frozen=True)
class Table:
    name: TableName
    columns: tuple[Column, ...]
    key: tuple[str, ...]   # primary key columns in key order, catalogue spelling (empty: none)


_PART = re.compile(r'"((?:[^"]|"")+)"|\[((?:[^\]]|\]\])+)\]|([^."\[\]]+)')
# An unquoted part of --table: what every database reads as one plain name (MSSQL's #temp, Oracle's A$B).
_BARE_PART = re.compile(r"[\w$#]+")


class Catalogue:
    """What differs between the databases' catalogues; one subclass per ``dbtype``."""

    dbtype: str
    open_quote, close_quote = '"', '"'
    case_sensitive = False  # do names compare with their case (PostgreSQL, Oracle) or without?

    def fold(self, name: str) -> str:
        """How the database stores an unquoted name."""
        return name

    def parse_table(self, text: str, user: str | None = None) -> TableName:
        """``NAME`` or ``SCHEMA.NAME``; a quoted part is kept exactly, an unquoted one folded."""
        bad = ConfigError(f"--table {text!r}: expected NAME or SCHEMA.NAME (quote a part with \"...\")")
        parts, pos = [], 0
        while True:
            match = _PART.match(text, pos)
            if not match:
                raise bad
            quoted, bracketed, bare = match.groups()
            if quoted is not None:
                parts.append(quoted.replace('""', '"'))
            elif bracketed is not None:
                parts.append(bracketed.replace("]]", "]"))
            else:
                if not _BARE_PART.fullmatch(bare.strip()):
                    raise ConfigError(f"--table {text!r}: {bare.strip()!r} is not a plain name (letters, digits, "
                                      f"_, $, #): quote it, as in SQL (\"{bare.strip()}\")")
                parts.append(self.fold(bare.strip()))
            pos = match.end()
            if pos == len(text):
                break
            if text[pos] != ".":
                raise bad
            pos += 1
        if len(parts) > 2 or not all(p.strip() for p in parts) or any(ch < " " for p in parts for ch in p):
            raise bad
        schema = parts[0] if len(parts) == 2 else self.default_schema(user)
        return TableName(schema, parts[-1], text)

    def default_schema(self, user: str | None) -> str | None:
        return None

    def quote(self, name: str) -> str:
        """``name`` as the generated query writes it: bare when that means the same, else quoted."""
        if plain(name) and self.fold(name) == name:
            return name
        inner = name.replace(self.close_quote, self.close_quote * 2)
        return f"{self.open_quote}{inner}{self.close_quote}"

    def needs_alias(self, name: str, field: str) -> bool:
        """Whether the unquoted ``q.<field>`` the tool writes around the query misses a column called ``name``."""
        return self.case_sensitive and self.fold(field) != name

    def qualified(self, table: TableName) -> str:
        return ".".join(self.quote(p) for p in (table.schema, table.name) if p is not None)

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        raise NotImplementedError

    def key_query(self, table: TableName) -> tuple[str, Any]:
        raise NotImplementedError

    def parse_columns(self, rows: list[tuple]) -> tuple[Column, ...]:
        """Rows of (name, type, length, precision, scale)."""
        return tuple(Column(str(name), str(type_).lower(), _positive(length), _int(precision), _int(scale))
                     for name, type_, length, precision, scale in rows)

    def parse_key(self, rows: list[tuple]) -> tuple[str, ...]:
        return tuple(str(row[0]) for row in rows)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _positive(value: Any) -> int | None:
    """A declared length; 0 and -1 (Oracle's non-character columns, MSSQL's ``max``) mean none."""
    return int(value) if value is not None and int(value) > 0 else None


class SQLiteCatalogue(Catalogue):
    dbtype = "SQLITE"

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        if table.schema is None:
            return "SELECT name, type, pk FROM pragma_table_info(:name) ORDER BY cid", {"name": table.name}
        return ("SELECT name, type, pk FROM pragma_table_info(:name, :schema) ORDER BY cid",
                {"name": table.name, "schema": table.schema})

    def parse_columns(self, rows: list[tuple]) -> tuple[Column, ...]:
        """SQLite rows are (name, declared type, position in the primary key); "VARCHAR(10)" gives length 10."""
        columns = []
        for name, declared, _ in rows:
            size = re.search(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", declared or "")
            first, second = (int(size.group(1)), _int(size.group(2))) if size else (None, None)
            columns.append(Column(str(name), (declared or "").lower(), first, first, second))
        return tuple(columns)

    def key_from_columns(self, rows: list[tuple]) -> tuple[str, ...]:
        return tuple(str(name) for name, _, pk in sorted((r for r in rows if r[2]), key=lambda r: r[2]))


class PostgresCatalogue(Catalogue):
    """information_schema, reached through the schema and name ``to_regclass`` resolves (search path,
    quoting and case exactly as PostgreSQL reads ``--table``). Types by ``udt_name`` (int4, _text...)."""

    dbtype, case_sensitive = "PG", True

    def fold(self, name: str) -> str:
        return name.lower()

    def resolve_query(self, text: str) -> tuple[str, Any]:
        return ("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = pg_catalog.to_regclass(%(name)s)", {"name": text})

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        return ("SELECT column_name, udt_name, character_maximum_length, numeric_precision, numeric_scale "
                "FROM information_schema.columns WHERE table_schema = %(schema)s AND table_name = %(name)s "
                "ORDER BY ordinal_position", {"schema": table.schema, "name": table.name})

    def key_query(self, table: TableName) -> tuple[str, Any]:
        return ("SELECT kcu.column_name FROM information_schema.table_constraints tc "
                "JOIN information_schema.key_column_usage kcu ON kcu.constraint_schema = tc.constraint_schema "
                "AND kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name "
                "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = %(schema)s "
                "AND tc.table_name = %(name)s ORDER BY kcu.ordinal_position",
                {"schema": table.schema, "name": table.name})


class OracleCatalogue(Catalogue):
    """ALL_TAB_COLUMNS and the primary key constraint; the owner is the schema given, else the user."""

    dbtype, case_sensitive = "ORACLE", True

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


class MSSQLCatalogue(Catalogue):
    """INFORMATION_SCHEMA with positional ``?``; no schema given: the user's default, ``SCHEMA_NAME()``."""

    dbtype = "MSSQL"
    open_quote, close_quote = "[", "]"

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


_CATALOGUES = {c.dbtype: c for c in (SQLiteCatalogue(), PostgresCatalogue(), OracleCatalogue(), MSSQLCatalogue())}


def catalogue(dbtype: str) -> Catalogue:
    return _CATALOGUES[dbtype]


# SQLSTATEs of a --table text PostgreSQL cannot read as a name: invalid_name, syntax_error (a.b.c.d).
_PG_BAD_NAME = ("42602", "42601")


def _fetch(conn: Connection, sql: str, binds: Any) -> list[tuple]:
    """Every row of one catalogue query; a driver error is a SourceError naming the catalogue."""
    cursor = conn.raw.cursor()
    try:
        cursor.execute(sql, binds)
        return list(cursor.fetchall())
    except conn.dialect.errors as exc:
        with contextlib.suppress(Exception):
            conn.raw.rollback()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"reading the {conn.dialect.dbtype} catalogue failed: {first}") from exc
    finally:
        cursor.close()


def read_table(conn: Connection, table: TableName) -> Table:
    """The table's columns and primary key; ConfigError when the catalogue does not know it."""
    cat = catalogue(conn.dialect.dbtype)
    if isinstance(cat, PostgresCatalogue):
        try:
            found = _fetch(conn, *cat.resolve_query(table.given))
        except SourceError as exc:
            # to_regclass reads --table as SQL would: a text it cannot read as a name is an option error
            if getattr(exc.__cause__, "pgcode", None) not in _PG_BAD_NAME:
                raise
            reason = str(exc.__cause__).strip().splitlines()[0]
            raise ConfigError(f"--table {table.given!r}: PostgreSQL reads no table name in it ({reason}): "
                              'quote a part that is not a plain name, as in SQL: schema."Name"') from None
        if not found:
            raise ConfigError(f"table {table.given} not found (PostgreSQL looks in the search_path and reads "
                              'unquoted names in lower case: give SCHEMA.NAME, quoting a mixed-case part: '
                              'schema."Name")')
        table = TableName(found[0][0], found[0][1], table.given)
    rows = _fetch(conn, *cat.columns_query(table))
    if not rows:
        raise ConfigError(f"table {table.given} not found (or it has no columns this user may read)")
    if isinstance(cat, SQLiteCatalogue):
        return Table(table, cat.parse_columns(rows), cat.key_from_columns(rows))
    return Table(table, cat.parse_columns(rows), cat.parse_key(_fetch(conn, *cat.key_query(table))))


# ------------------------------------------------------------------ SQL type -> mapping (docs/init.md)

# What the indexer writes for dates (datetime.isoformat(): naive, or with its offset) and the layouts
# SQLite keeps as text (its datetime() and strftime('%f') forms). Tested on the real node.
DATE_FORMAT = "strict_date_optional_time||yyyy-MM-dd HH:mm:ss||yyyy-MM-dd HH:mm:ss.SSS||yyyy-MM-dd HH:mm:ss.SSSSSS"
# SQLite text that DATE_FORMAT accepts (a sample must match it before a text column is called a date).
ISO_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})?"
                      r"| \d{2}:\d{2}:\d{2}(?:\.\d{3}|\.\d{6})?)?$")
KEYWORD_MAX_CHARS = 64   # declared length up to which a string is a code: keyword, not text
# A keyword of at most 8191 characters can never exceed Lucene's 32766-byte term limit (4 bytes a character).
# Every keyword init writes has it: a longer value is then not indexed for that field (it stays in
# _source) instead of failing the whole document.
SAFE_KEYWORD = {"type": "keyword", "ignore_above": 8191}


def text_mapping() -> dict:
    """Full text, with a keyword sub-field ``raw`` for sorting and exact matches (values up to 256 characters)."""
    return {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}


_PG_KINDS = {
    "int2": "short", "int4": "integer", "int8": "long", "oid": "long", "float4": "float", "float8": "double",
    "numeric": "numeric", "bool": "boolean", "date": "date", "timestamp": "date", "timestamptz": "date",
    "bytea": "binary", "json": "json", "jsonb": "json", "varchar": "string", "bpchar": "string",
    "text": "string", "citext": "string", "name": "string", "xml": "text", "interval": "double",
    "uuid": "keyword", "time": "keyword", "timetz": "keyword", "money": "keyword", "inet": "keyword",
    "cidr": "keyword", "macaddr": "keyword", "char": "keyword",
}
_ORACLE_KINDS = {
    "number": "numeric", "float": "double", "binary_float": "float", "binary_double": "double",
    "varchar2": "string", "nvarchar2": "string", "char": "string", "nchar": "string", "varchar": "string",
    "clob": "text", "nclob": "text", "long": "text", "xmltype": "text", "date": "date", "raw": "binary",
    "blob": "binary", "long raw": "binary", "json": "json", "boolean": "boolean", "rowid": "keyword",
    "urowid": "keyword",
}
_MSSQL_KINDS = {
    "tinyint": "short", "smallint": "short", "int": "integer", "bigint": "long", "bit": "boolean",
    "decimal": "numeric", "numeric": "numeric", "money": "numeric", "smallmoney": "numeric", "real": "float",
    "float": "double", "date": "date", "datetime": "date", "datetime2": "date", "smalldatetime": "date",
    "datetimeoffset": "date", "time": "keyword", "char": "string", "varchar": "string", "nchar": "string",
    "nvarchar": "string", "text": "text", "ntext": "text", "xml": "text", "binary": "binary",
    "varbinary": "binary", "image": "binary", "timestamp": "binary", "rowversion": "binary",
    "uniqueidentifier": "keyword",
}


def _sqlite_kind(column: Column) -> str | None:
    """By SQLite's affinity rules on the declared type (which SQLite does not enforce)."""
    declared = column.type
    if column.is_date:
        return "date"
    rules = (("bool", "long"), ("int", "long"), ("json", "json"), ("char", "string"), ("clob", "string"),
             ("text", "string"), ("blob", "binary"), ("real", "double"), ("floa", "double"),
             ("doub", "double"), ("dec", "double"), ("num", "double"))
    return next((kind for part, kind in rules if part in declared), None)


def _kind(dbtype: str, column: Column) -> str | None:
    """The kind of a column's values ("integer", "string", "date"...); None for a type not known here."""
    if dbtype == "SQLITE":
        return _sqlite_kind(column)
    if dbtype == "PG":
        return _PG_KINDS.get(column.type.removeprefix("_"))  # _int4: an array of int4, same mapping
    if dbtype == "ORACLE":
        if column.type.startswith("timestamp"):
            return "date"
        return "double" if column.type.startswith("interval day") else _ORACLE_KINDS.get(column.type)
    if dbtype == "MSSQL" and column.type == "float" and (column.precision or 53) <= 24:
        return "float"
    return _MSSQL_KINDS.get(column.type)


def _integer(digits: int) -> dict:
    for limit, kind in ((2, "byte"), (4, "short"), (9, "integer"), (18, "long")):
        if digits <= limit:
            return {"type": kind}
    return dict(SAFE_KEYWORD)  # wider than a long: exact as text (the indexer writes such values as strings)


def _numeric(precision: int | None, scale: int | None) -> dict:
    """Decimals with a scale: double. The indexer writes a Decimal as a JSON number when the double
    prints it exactly, else as a string; double takes both (coerce), and the exact value stays in
    _source. Not scaled_float: it lives in the mapper-extras module, which a minimal node may lack
    (the tests' Elasticsearch node does), and a generated file must install on every engine.
    """
    if precision is None:
        return {"type": "long"} if scale == 0 else {"type": "double"}  # Oracle INTEGER; unconstrained NUMERIC
    if not scale or scale < 0:
        return _integer(precision - (scale or 0))
    return {"type": "double"}


def field_mapping(dbtype: str, column: Column, is_key: bool = False) -> dict | None:
    """The mapping of one column's field; None when its type is not known here (the caller decides)."""
    kind = _kind(dbtype, column)
    if kind is None:
        return None
    if kind == "numeric":
        return _numeric(column.precision, column.scale)
    if kind == "string":
        if column.length is not None and column.length <= KEYWORD_MAX_CHARS:
            # A declared length is no promise (SQLite enforces none): a longer value must not fail the row.
            return dict(SAFE_KEYWORD)
        return dict(SAFE_KEYWORD) if is_key else text_mapping()
    if kind == "text":
        return text_mapping()
    if kind == "date":
        return {"type": "date", "format": DATE_FORMAT}
    if kind == "json":
        return {"type": "object", "enabled": False}  # any JSON shape, kept in _source, not searched
    return dict(SAFE_KEYWORD) if kind == "keyword" else {"type": kind}


def _is_array(dbtype: str, column: Column) -> bool:
    return dbtype == "PG" and column.type.startswith("_")


def is_date(dbtype: str, column: Column) -> bool:
    """A date or timestamp column (one value per row): what a watermark can be."""
    return _kind(dbtype, column) == "date" and not _is_array(dbtype, column)


def is_flag(dbtype: str, column: Column) -> bool:
    """A boolean, an integer, or a one-character string (Y/N): what a soft-delete flag can be."""
    kind = None if _is_array(dbtype, column) else _kind(dbtype, column)
    if kind == "numeric":
        return column.scale in (None, 0) and column.precision is not None and column.precision <= 9
    if kind == "string":
        return column.length == 1
    return kind in ("boolean", "short", "integer", "long")


_DATE_NAME = re.compile(r"date|time|_at$|_on$|updat|modif|creat|chang")


def sqlite_date_columns(conn: Connection, table: TableName, columns: tuple[Column, ...], sample: int = 100) -> set[str]:
    """SQLite keeps dates as text: the columns declared as dates, or text named like one, whose first
    ``sample`` non-NULL values are all ISO 8601 that DATE_FORMAT reads (declared ones may be empty)."""
    cat, found = catalogue("SQLITE"), set()
    for column in columns:
        declared = "date" in column.type or "time" in column.type
        texty = column.type == "" or _sqlite_kind(column) == "string"
        if not (declared or (texty and _DATE_NAME.search(column.name.lower()))):
            continue
        name = cat.quote(column.name)
        # bandit B608 accepted: identifiers quoted from the catalogue's own names; nothing else in the text
        sql = f"SELECT {name} FROM {cat.qualified(table)} WHERE {name} IS NOT NULL LIMIT {int(sample)}"  # nosec B608
        values = [row[0] for row in _fetch(conn, sql, ())]
        if (values or declared) and all(isinstance(v, str) and ISO_TEXT.match(v) for v in values):
            found.add(column.name)
    return found
