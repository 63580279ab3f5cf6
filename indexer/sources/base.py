"""What every database module builds on: the ``Dialect`` base class, the names indexer binds, how bind
parameters are read, and how a driver's error is put into one line.

::

    sqlite.py, postgres.py, oracle.py, mssql.py --subclass--> Dialect --registered in--> sources/__init__.py
    Dialect: what the job file needs (required fields, bind style)      -> config.SourceConfig, config's --param checks
             how to connect, bind, wrap a query, which errors are its    -> sources.connect, the query functions
             its catalogue (SQL with bound names, folding, quoting, rows) -> catalogue.read_table (indexer init)
             its type facts (SQL type -> kind)                            -> catalogue.field_mapping (indexer init)

The base gives what most databases share (named parameters in a dict, a ``"``-quoted catalogue, the
catalogue rows read as (name, type, length, precision, scale)); a database module overrides what
differs and defines what has no default (the list: ``sources/__init__.py``'s docstring). Here too the
words the dialects speak in: ``SourceParams`` (the source fields they read, which config's
``SourceConfig`` has), ``TableName`` and ``Column`` (a table's name and columns as its catalogue spells
them, which ``indexer.catalogue`` builds). This module imports neither etlhelper nor a driver, nor
``indexer.config`` or ``indexer.catalogue`` (both import the sources: see the package docstring).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path
from typing import Any, Protocol

from indexer.redact import first_line

# The parameter sync binds to the stored watermark (minus the lookback).
SINCE = "since"
# The parameters indexer binds around the job's query in every command (an aggregate asked again past a
# value that is no usable extreme, a partitioned reindex's bounds): a job parameter of the same name
# would be overwritten inside the job's own query, so the job file's reader (indexer.jobfile) refuses it.
RESERVED_BINDS = ("indexer_beyond", "slice_lo", "slice_hi")
BEYOND, SLICE_LO, SLICE_HI = RESERVED_BINDS
# Key lists (nested documents: the rows of chosen parents) bind indexer_k0, indexer_k1...: the prefix is reserved.
KEY_BIND_PREFIX = "indexer_"

# Bind parameters as the drivers read them. For :name, string literals, quoted names and comments are
# blanked first (a '12:30' literal binds nothing); psycopg2 substitutes %(name)s everywhere, so
# PostgreSQL queries are read as they are.
_SQL_NOISE = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|/\*.*?\*/", re.S)
_COLON_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PYFORMAT_BIND = re.compile(r"(?<!%)%\((\w+)\)s")


class SourceParams(Protocol):
    """The job file's ``[source]`` as the dialects read it (``config.SourceConfig`` is one)."""

    @property
    def dbtype(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def port(self) -> int | None: ...
    @property
    def dbname(self) -> str | None: ...
    @property
    def user(self) -> str | None: ...
    @property
    def filename(self) -> Path | None: ...
    @property
    def odbc_driver(self) -> str | None: ...
    @property
    def password_env(self) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class TableName:
    """``--table`` split into its parts, each as the catalogue stores it (quotes removed, case folded)."""

    schema: str | None
    name: str
    given: str


@dataclasses.dataclass(frozen=True)
class Column:
    """One column as the catalogue spells it; ``type`` in lower case ("numeric", "varchar2", "int4")."""

    name: str
    type: str
    length: int | None = None      # declared characters (None: unbounded or not a string)
    precision: int | None = None   # decimal digits of a numeric (binary bits for MSSQL float)
    scale: int | None = None
    is_date: bool = False          # SQLite only: text whose sampled values are ISO 8601 dates/times


# One foreign key as a dialect reads it from its catalogue: (constraint name, None where the database keeps none;
# its columns; the referenced schema, None: the table's own; the referenced table; the referenced columns, None:
# the referenced table's primary key), columns in constraint order. indexer.catalogue makes ForeignKeys of them.
ForeignKeyRow = tuple[str | None, tuple[str, ...], str | None, str, tuple[str | None, ...]]


def colon_binds(query: str) -> tuple[str, ...]:
    """The ``:name`` parameters ``query`` binds, in order of first use (sqlite3, oracledb)."""
    return tuple(dict.fromkeys(_COLON_BIND.findall(_SQL_NOISE.sub(" ", query))))


def pyformat_binds(query: str) -> tuple[str, ...]:
    """The ``%(name)s`` parameters ``query`` binds, in order of first use (psycopg2)."""
    return tuple(dict.fromkeys(_PYFORMAT_BIND.findall(query)))


class Dialect:
    """What differs between the databases; one subclass per ``dbtype``, one instance each.

    Parameters are given as one dict (``[job.params]`` plus ``since``); ``params`` turns it into
    what the driver takes: a dict of the names the query binds (a tuple for MSSQL's positional
    ``?``), or None when there is nothing to bind, so that a query without parameters runs
    exactly as written (psycopg2 reads ``%`` as a placeholder only when parameters are passed).
    """

    # ---- no default: every database module defines these (test_sources.py checks it)
    dbtype: str                  # the job file's source.dbtype, in upper case
    required: tuple[str, ...]    # the source fields it connects with (etlhelper's DbParams fields)
    placeholder: str             # str.format template of one bind parameter, with {name}
    driver: str                  # the DB-API module: its Error and Warning are the driver's errors
    kinds: dict[str, str]        # its SQL type (lower case) -> kind ("integer", "string", "date"...)

    # ---- defaults a database module overrides when it differs
    needs_password = True        # source.password_env is required
    binds_ignore_case = False    # Oracle's bind names ignore case
    positional = False           # binds by position (MSSQL's ?): a query names no parameter
    open_quote, close_quote = '"', '"'
    case_sensitive = False       # do names compare with their case (PostgreSQL, Oracle) or without?
    resolve_hint = ""            # with resolve_query: what a "not found" says about how the name was read
    max_binds = 999              # parameters one statement binds at most (key lists are cut to fit)

    # ------------------------------------------------------------------ the job file's binds

    def binds(self, query: str) -> tuple[str, ...]:
        """The parameter names ``query`` binds, in order of first use (none for a positional ``?``)."""
        raise NotImplementedError

    def same_bind(self, a: str, b: str) -> bool:
        """Whether two names are one parameter to the driver."""
        return a.upper() == b.upper() if self.binds_ignore_case else a == b

    def bind(self, name: str) -> str:
        """The placeholder for parameter ``name``."""
        return self.placeholder.format(name=name)

    def params(self, values: dict[str, Any], query: str | None = None) -> dict[str, Any] | tuple | None:
        """``values`` in the driver's shape; with ``query``, only the names it binds (Oracle refuses others)."""
        if query is not None:
            used = self.binds(query)
            values = {k: v for k, v in values.items() if any(self.same_bind(k, b) for b in used)}
        return dict(values) or None

    def with_param(self, params: Any, name: str, value: Any) -> Any:
        """Driver-shaped ``params`` (``params()``'s answer, None when nothing is bound) with one more
        parameter, bound last."""
        return {**(params or {}), name: value}

    # ------------------------------------------------------------------ queries of ours around the job's

    def sync_query(self, query: str, column: str, has_user_params: bool | None = None) -> str:
        """``query``'s rows whose ``column`` is at or after the bound ``since``, in watermark order.

        ``has_user_params`` (default: whether ``query`` binds any name) matters to PostgreSQL only.
        """
        # bandit B608 accepted: column passed config.SQL_IDENTIFIER; the value is bound
        return f"SELECT * FROM ({query}) q WHERE q.{column} >= {self.bind(SINCE)} ORDER BY q.{column}"  # nosec B608

    def own(self, query: str, adding_binds: bool) -> str:
        """``query`` as written inside a query of ours that binds parameters (``adding_binds``) of its own."""
        return query

    def byte_order(self, column: str, collatable: bool) -> str:
        """The ORDER BY term that sorts ``q.column`` in byte order (Python's ``str`` order for UTF-8 text);
        ``collatable``: the column is text, where a collation applies (elsewhere it is an error)."""
        return f"q.{column}"

    def ordered_query(self, query: str, key: list[str], not_null: list[str], collatable: set[str]) -> str:
        """``query``'s rows whose ``not_null`` columns are all set, in ``key`` order, byte order for text
        (``collatable``): how a child stream is read for the merge (``nesting``), which checks the order too."""
        where = " AND ".join(f"q.{c} IS NOT NULL" for c in not_null)
        order = ", ".join(self.byte_order(c, c in collatable) for c in key)
        # bandit B608 accepted: every column passed config.SQL_IDENTIFIER
        return f"SELECT * FROM ({query}) q" + (f" WHERE {where}" if where else "") + f" ORDER BY {order}"  # nosec B608

    def text_columns(self, conn: Any, description: Any) -> set[str]:
        """The columns of a cursor ``description`` that hold text (where ``byte_order`` collates): those the driver
        gives as ``str`` by default (pyodbc's type codes are Python types)."""
        return {str(col[0]).lower() for col in description or () if col[1] is str}

    def key_list_query(self, query: str, columns: list[str], count: int) -> str:
        """``query``'s rows whose ``columns`` equal one of ``count`` key tuples, bound as ``indexer_k0``,
        ``indexer_k1``... in order (``key_list_params``): how chosen parents and their children are re-read."""
        if len(columns) == 1:
            where = f"q.{columns[0]} IN ({', '.join(self.bind(f'{KEY_BIND_PREFIX}k{i}') for i in range(count))})"
        else:
            width = len(columns)
            tuples = ", ".join("(" + ", ".join(self.bind(f"{KEY_BIND_PREFIX}k{n * width + i}") for i in range(width))
                               + ")" for n in range(count))
            where = f"({', '.join(f'q.{c}' for c in columns)}) IN ({tuples})"
        # bandit B608 accepted: columns passed config.SQL_IDENTIFIER; the values are bound
        return f"SELECT * FROM ({self.own(query, True)}) q WHERE {where}"  # nosec B608

    def key_list_params(self, params: Any, keys: list[tuple]) -> Any:
        """``params`` (driver-shaped) with the key tuples bound after them, in ``key_list_query``'s order."""
        for n, value in enumerate(v for key in keys for v in key):
            params = self.with_param(params, f"{KEY_BIND_PREFIX}k{n}", value)
        return params

    def slice_query(self, query: str, column: str, *, lower: bool, upper: bool, nulls: bool = False) -> str:
        """``query``'s rows whose ``column`` is at or above the bound ``slice_lo`` (``lower``) and below the bound
        ``slice_hi`` (``upper``); without either bound, every row where it is not NULL; with ``nulls``, the rows
        where it is NULL. Open ends take in every value beyond the bounds, whatever it is (infinity, NaN)."""
        if nulls:
            where = f"q.{column} IS NULL"
        else:
            where = " AND ".join([f"q.{column} >= {self.bind(SLICE_LO)}"] * lower
                                 + [f"q.{column} < {self.bind(SLICE_HI)}"] * upper) or f"q.{column} IS NOT NULL"
        # bandit B608 accepted: column passed config.SQL_IDENTIFIER; values bound
        return f"SELECT * FROM ({self.own(query, lower or upper)}) q WHERE {where}"  # nosec B608

    # ------------------------------------------------------------------ the driver

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's base exception classes, for ``except``.

        Imported when asked, i.e. once a connection exists: a missing optional driver
        (psycopg2, oracledb, pyodbc) is then no import error of this package.
        """
        module = importlib.import_module(self.driver)
        return (module.Error, module.Warning)

    def connect(self, source: SourceParams, password: str | None, chunk_size: int) -> Any:
        """A DB-API connection to ``source``; SourceError (never quoting the password) if refused."""
        raise NotImplementedError

    def execute_params(self, conn: Any, sql: str, params: Any, what: str) -> Any:
        """``params`` as the driver's ``execute`` takes them (sqlite3 refuses None: an empty tuple)."""
        return params if params else ()

    # ------------------------------------------------------------------ its catalogue (indexer init)

    def fold(self, name: str) -> str:
        """How the database stores an unquoted name."""
        return name

    def default_schema(self, user: str | None) -> str | None:
        """The schema of a ``--table`` given without one (None: the database's own default)."""
        return None

    def resolve_query(self, text: str) -> tuple[str, Any] | None:
        """A query whose one row is the (schema, name) the database reads ``--table`` as; None: read it here."""
        return None

    def unreadable_name(self, exc: BaseException | None) -> str | None:
        """With ``resolve_query``: why a driver error means ``--table`` is no name at all (None: another error)."""
        return None

    def columns_query(self, table: TableName) -> tuple[str, Any]:
        """The catalogue query of ``table``'s columns in order, schema and name bound, and its parameters."""
        raise NotImplementedError

    def key_query(self, table: TableName) -> tuple[str, Any] | None:
        """The catalogue query of the primary key's columns in key order; None: the columns' rows hold it
        (``key_from_columns``)."""
        raise NotImplementedError

    def read_columns(self, rows: list[tuple]) -> tuple[tuple[str, str, int | None, int | None, int | None], ...]:
        """The columns query's rows as (name, type in lower case, length, precision, scale)."""
        return tuple((str(name), str(type_).lower(), positive(length), integer(precision), integer(scale))
                     for name, type_, length, precision, scale in rows)

    def foreign_keys_query(self, table: TableName) -> tuple[str, Any]:
        """The catalogue query of the foreign keys ``table`` declares, schema and name bound: rows of (constraint,
        column, referenced schema, referenced table, referenced column), by constraint, in constraint order."""
        raise NotImplementedError

    def read_foreign_keys(self, rows: list[tuple]) -> tuple[ForeignKeyRow, ...]:
        """The foreign keys query's rows as one (name, columns, referenced schema, referenced table, referenced
        columns) per constraint, each in its constraint's order."""
        found: dict[str, ForeignKeyRow] = {}
        for name, column, ref_schema, ref_table, ref_column in rows:
            _, columns, _, _, ref_columns = found.get(str(name), (name, (), None, "", ()))
            found[str(name)] = (str(name), (*columns, str(column)), None if ref_schema is None else str(ref_schema),
                                str(ref_table), (*ref_columns, str(ref_column)))
        return tuple(found.values())

    def read_key(self, rows: list[tuple]) -> tuple[str, ...]:
        """The key query's rows as column names."""
        return tuple(str(row[0]) for row in rows)

    def key_from_columns(self, rows: list[tuple]) -> tuple[str, ...]:
        """The primary key from the columns query's rows, when ``key_query`` is None."""
        raise NotImplementedError

    # ------------------------------------------------------------------ its types (indexer init)

    def kind(self, column: Column) -> str | None:
        """The kind of a column's values (a value of ``kinds``); None for a type not known here."""
        return self.kinds.get(column.type)

    def is_array(self, column: Column) -> bool:
        """An array of values (PostgreSQL): never a watermark or a flag."""
        return False

    # SQLite keeps dates as text: init samples such a column's values before calling it a date
    # (catalogue.text_date_columns). A database with date types samples nothing.

    def may_hold_dates(self, column: Column) -> bool:
        """A column whose values are worth sampling for ISO 8601 text."""
        return False

    def declares_date(self, column: Column) -> bool:
        """Declared as a date or a time (then an empty one is a date too)."""
        return False

    def sample_query(self, column: str, table: str, rows: int) -> str:
        """The first ``rows`` non-NULL values of ``column`` (quoted) in ``table`` (qualified)."""
        raise NotImplementedError


def integer(value: Any) -> int | None:
    return None if value is None else int(value)


def positive(value: Any) -> int | None:
    """A declared length; 0 and -1 (Oracle's non-character columns, MSSQL's ``max``) mean none."""
    return int(value) if value is not None and int(value) > 0 else None


@dataclasses.dataclass(frozen=True)
class Connection:
    """An open DB-API connection and the dialect it was opened with (what the query functions take)."""

    raw: Any
    dialect: Dialect


# ------------------------------------------------------------------ a driver's error in one line


def first_line_of(exc: BaseException) -> str:
    """The first line of a driver's error, secrets redacted by structure (indexer.redact)."""
    return first_line(str(exc)) or type(exc).__name__


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def _is_data_error(exc: BaseException) -> bool:
    """SQLSTATE class 22 (a bad cast, an out-of-range value): the driver's text quotes a row value."""
    return str(getattr(exc, "pgcode", "") or "").startswith("22")


def driver_message(exc: BaseException) -> str:
    """One line from a driver error, a data error's quoted text masked."""
    text = first_line_of(exc)
    return _QUOTED.sub('"…"', text) if _is_data_error(exc) else text


def cause(exc: BaseException) -> BaseException | None:
    """The driver's error, kept as the cause for --debug; None for a data error, whose text quotes
    the row value the one-line message masks (row values never reach the terminal)."""
    return None if _is_data_error(exc) else exc
