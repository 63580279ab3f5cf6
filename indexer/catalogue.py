"""A table as its database's catalogue describes it, for ``indexer init``: columns, types, primary key,
and the mapping each column's field gets.

::

    "SCHEMA.NAME" --catalogue(dbtype).parse_table--> TableName (quotes removed, case folded as the database does)
        --read_table(conn)--> [the database's resolve_query: the name as it reads it]
                              --its columns_query, key_query (names bound)--> Table (columns, primary key)
        --read_foreign_keys(conn)--> its foreign_keys_query (names bound) --> ForeignKeys (indexer init --child)
    Column --field_mapping(dbtype)--> its kind (the database's type facts) --> the mapping (rules here)

What is the same for every database lives here: names (parsing ``--table``, quoting, the reserved
words), the flow of ``read_table``, and the kind -> mapping rules (docs/init.md; every keyword has
``ignore_above``). What differs comes from the database's module in ``indexer.sources``: its catalogue
SQL (schema and table names always bound, never pasted), how it folds and quotes names, how its rows
read, where its primary key is, and its SQL type -> kind table. An unquoted part of ``--table`` must be
a plain name (letters, digits, ``_``, ``$``, ``#``), and a name the database cannot read is an option
error too (ConfigError, exit 2). Oracle and MSSQL are exercised by unit tests on literal catalogue rows
(no server runs here); SQLite and PostgreSQL end to end.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from indexer.errors import ConfigError, SourceError
from indexer.sources import Column, Connection, Dialect, TableName, dialect
from indexer.sources.base import first_line_of

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
class Table:
    name: TableName
    columns: tuple[Column, ...]
    key: tuple[str, ...]   # primary key columns in key order, catalogue spelling (empty: none)


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key a table declares, as its catalogue spells it."""

    name: str | None                   # the constraint's name (SQLite keeps none)
    columns: tuple[str, ...]           # the declaring table's columns, in the constraint's order
    refers_to: TableName               # schema None: the declaring table's own (SQLite)
    ref_columns: tuple[str | None, ...]  # paired with columns; None: the referenced table's primary key (SQLite)

    @property
    def label(self) -> str:
        """How errors name it: its name, else its columns."""
        return self.name or f"({', '.join(self.columns)})"


_PART = re.compile(r'"((?:[^"]|"")+)"|\[((?:[^\]]|\]\])+)\]|([^."\[\]]+)')
# An unquoted part of --table: what every database reads as one plain name (MSSQL's #temp, Oracle's A$B).
_BARE_PART = re.compile(r"[\w$#]+")


class Catalogue:
    """One database's catalogue as ``init`` reads it: the rules every database shares, applied with the facts
    of its dialect (``indexer.sources``), which also writes its catalogue SQL."""

    def __init__(self, db: Dialect) -> None:
        self.db = db

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
                parts.append(self.db.fold(bare.strip()))
            pos = match.end()
            if pos == len(text):
                break
            if text[pos] != ".":
                raise bad
            pos += 1
        if len(parts) > 2 or not all(p.strip() for p in parts) or any(ch < " " for p in parts for ch in p):
            raise bad
        schema = parts[0] if len(parts) == 2 else self.db.default_schema(user)
        return TableName(schema, parts[-1], text)

    def quote(self, name: str) -> str:
        """``name`` as the generated query writes it: bare when that means the same, else quoted."""
        if plain(name) and self.db.fold(name) == name:
            return name
        inner = name.replace(self.db.close_quote, self.db.close_quote * 2)
        return f"{self.db.open_quote}{inner}{self.db.close_quote}"

    def needs_alias(self, name: str, field: str) -> bool:
        """Whether the unquoted ``q.<field>`` the tool writes around the query misses a column called ``name``."""
        return self.db.case_sensitive and self.db.fold(field) != name

    def qualified(self, table: TableName) -> str:
        return ".".join(self.quote(p) for p in (table.schema, table.name) if p is not None)

    def parse_columns(self, rows: list[tuple]) -> tuple[Column, ...]:
        """The columns query's rows as Columns, read as the database's rows read."""
        return tuple(Column(*row) for row in self.db.read_columns(rows))



def catalogue(dbtype: str) -> Catalogue:
    return Catalogue(dialect(dbtype))


def _fetch(conn: Connection, sql: str, binds: Any) -> list[tuple]:
    """Every row of one catalogue query; a driver error is a SourceError naming the catalogue."""
    cursor = conn.raw.cursor()
    try:
        cursor.execute(sql, binds)
        return list(cursor.fetchall())
    except conn.dialect.errors as exc:
        with contextlib.suppress(Exception):
            conn.raw.rollback()
        raise SourceError(f"reading the {conn.dialect.dbtype} catalogue failed: {first_line_of(exc)}") from exc
    finally:
        cursor.close()


def read_table(conn: Connection, table: TableName) -> Table:
    """The table's columns and primary key, read as its database's rows read; ConfigError when the catalogue
    does not know it."""
    db = conn.dialect
    resolve = db.resolve_query(table.given)
    if resolve is not None:  # the database reads --table itself (PostgreSQL: search path, quoting, case)
        try:
            found = _fetch(conn, *resolve)
        except SourceError as exc:
            reason = db.unreadable_name(exc.__cause__)
            if reason is None:
                raise
            raise ConfigError(f"--table {table.given!r}: {reason}") from None
        if not found:
            raise ConfigError(f"table {table.given} not found ({db.resolve_hint})")
        table = TableName(found[0][0], found[0][1], table.given)
    rows = _fetch(conn, *db.columns_query(table))
    if not rows:
        raise ConfigError(f"table {table.given} not found (or it has no columns this user may read)")
    key_query = db.key_query(table)
    key = db.key_from_columns(rows) if key_query is None else db.read_key(_fetch(conn, *key_query))
    return Table(table, Catalogue(db).parse_columns(rows), key)


def read_foreign_keys(conn: Connection, table: TableName) -> tuple[ForeignKey, ...]:
    """The foreign keys ``table`` (as ``read_table`` found it: the schema the database resolved) declares."""
    rows = _fetch(conn, *conn.dialect.foreign_keys_query(table))
    return tuple(ForeignKey(name, columns, TableName(schema, ref_table, ref_table), ref_columns)
                 for name, columns, schema, ref_table, ref_columns in conn.dialect.read_foreign_keys(rows))


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


# The kinds a database's type table (its dialect's ``kinds``) may give, each mapped by field_mapping below.
KINDS = frozenset({"short", "integer", "long", "float", "double", "numeric", "boolean", "date", "binary", "json",
                   "string", "text", "keyword"})


def text_mapping() -> dict:
    """Full text, with a keyword sub-field ``raw`` for sorting and exact matches (values up to 256 characters)."""
    return {"type": "text", "fields": {"raw": {"type": "keyword", "ignore_above": 256}}}


def _kind(dbtype: str, column: Column) -> str | None:
    """The kind of a column's values ("integer", "string", "date"...) by its database's type facts; None for a
    type not known there."""
    return dialect(dbtype).kind(column)


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
    return dialect(dbtype).is_array(column)


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


def text_date_columns(conn: Connection, table: TableName, columns: tuple[Column, ...], sample: int = 100) -> set[str]:
    """Dates kept as text (SQLite): the columns the dialect calls worth sampling (declared as dates, or text named
    like one) whose first ``sample`` non-NULL values are all ISO 8601 that DATE_FORMAT reads (declared ones may
    be empty). A database with date types samples nothing (its dialect calls no column worth it)."""
    db, cat, found = conn.dialect, Catalogue(conn.dialect), set()
    for column in columns:
        if not db.may_hold_dates(column):
            continue
        sql = db.sample_query(cat.quote(column.name), cat.qualified(table), sample)
        values = [row[0] for row in _fetch(conn, sql, ())]
        if (values or db.declares_date(column)) and all(isinstance(v, str) and ISO_TEXT.match(v) for v in values):
            found.add(column.name)
    return found
