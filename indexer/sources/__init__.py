"""The database side: the only package that imports etlhelper and the drivers, one module per database.

::

    dbtype --dialect()--> Dialect (one per database, chosen once, from its module): placeholders, parameter
                          shapes, the sync and slice wrappers, how to connect, which exceptions are the driver's,
                          its catalogue and its type facts (read by indexer.catalogue for ``indexer init``)
    SourceParams --connect()--> Connection (DB-API connection + its Dialect; PostgreSQL's casters registered)
                 --iter_row_chunks()--> (columns, [tuple row, ...]) ...
                 --columns_of / count_rows / extreme / count_by / bounds--> one answer each
                 --usable_extreme()--> MIN/MAX asked again past a value that is no usable extreme (infinity)

Rows are streamed with ``etlhelper.iter_chunks`` and plain tuples (the cheapest row shape); column
names come from the cursor description. Connections are opened with keyword arguments, never with a
connection string, so a password with spaces, ``@`` or ``%`` is neither mangled nor echoed in a
driver error. Nothing outside this package asks which database it is.

Layout: ``base.py`` (the ``Dialect`` base class, the names indexer binds, the driver-error wording),
``sqlite.py``, ``postgres.py``, ``oracle.py``, ``mssql.py`` (one database each), and here the registry,
``connect`` and the query functions every command shares.

Imports: ``indexer.config`` imports this package (the job file's ``dbtype`` choices, the fields each
database requires, its bind style), ``indexer.jobfile`` its names (``SINCE``, ``RESERVED_BINDS``) and
``indexer.catalogue`` its words (``Column``, ``TableName``); this package imports none of them: it
speaks in ``base.SourceParams``, which config's ``SourceConfig`` fulfils. Below it: ``errors``,
``redact``, ``values``.

A new database (say MySQL) is one module, its registration, and its tests:

1. ``indexer/sources/mysql.py`` with a ``Dialect`` subclass and ``DIALECT = MySQL()``, defining:
   ``dbtype`` (upper case, as the job file names it), ``required`` (the source fields it connects with),
   ``placeholder`` (one bind parameter, with ``{name}``), ``driver`` (the DB-API module whose ``Error`` and
   ``Warning`` are its errors), ``binds(query)`` (its bind style: the names a query binds),
   ``connect(source, password, chunk_size)`` (keyword arguments; a SourceError that never quotes the
   password), ``columns_query(table)`` and ``key_query(table)`` (catalogue SQL with the schema and name bound;
   ``key_query`` None when ``key_from_columns`` reads the key from the columns' rows), ``foreign_keys_query(table)``
   (the foreign keys it declares: ``indexer init --child``), and ``kinds`` (its SQL
   type -> kind table, docs/init.md). Override what differs from the base: ``needs_password``,
   ``binds_ignore_case``, ``positional``/``params``/``with_param`` (positional parameters), ``sync_query``/``own``/
   ``execute_params`` (driver quirks), ``fold``/``case_sensitive``/``open_quote``/``close_quote``/
   ``default_schema``/``resolve_query`` (how it reads names), ``read_columns``, ``kind``/``is_array``.
2. Its registration: import it below and add ``mysql.DIALECT`` to ``_REGISTERED`` (the order is the job
   file's list of choices, in docs/config-reference.md).
3. Its tests: ``tests/unit/test_sources_mysql.py``; ``tests/unit/test_sources.py`` checks that every
   registered database defines everything above in its own module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from typing import Any

import etlhelper
from etlhelper.exceptions import ETLHelperError

from indexer.errors import ConfigError, SourceError
from indexer.sources import mssql, oracle, postgres, sqlite
from indexer.sources.base import (
    BEYOND,
    RESERVED_BINDS,
    SINCE,
    SLICE_HI,
    SLICE_LO,
    Column,
    Connection,
    Dialect,
    SourceParams,
    TableName,
    cause,
    driver_message,
)

__all__ = [
    "BEYOND", "DBTYPES", "RESERVED_BINDS", "SINCE", "SLICE_HI", "SLICE_LO", "Column", "Connection", "Dialect",
    "SourceParams", "TableName", "bounds", "columns_of", "connect", "count_by", "count_rows", "dialect", "extreme",
    "iter_row_chunks", "password_for", "rows_by_keys", "text_columns", "usable_extreme",
]

# The registry: one entry per database module, in the order the job file's reference lists them.
_REGISTERED: tuple[Dialect, ...] = (oracle.DIALECT, postgres.DIALECT, sqlite.DIALECT, mssql.DIALECT)
_DIALECTS = {d.dbtype: d for d in _REGISTERED}
DBTYPES = tuple(_DIALECTS)  # what source.dbtype may be

_MAX_UNUSABLE_EXTREMES = 8  # NaN, then +infinity, then a driver's stand-in...: each asked past once


def dialect(dbtype: str) -> Dialect:
    """The dialect of a validated ``source.dbtype`` (one instance per database, shared)."""
    return _DIALECTS[dbtype]


def password_for(source: SourceParams, env: Mapping[str, str] | None = None) -> str | None:
    if source.password_env is None:
        return None
    value = (os.environ if env is None else env).get(source.password_env)
    if value is None:
        raise ConfigError(f"environment variable {source.password_env} (source.password_env) is not set")
    return value


@contextlib.contextmanager
def connect(source: SourceParams, chunk_size: int = 5000) -> Iterator[Connection]:
    db = dialect(source.dbtype)
    raw = db.connect(source, password_for(source), chunk_size)
    try:
        yield Connection(raw, db)
    finally:
        with contextlib.suppress(Exception):
            raw.close()


# ------------------------------------------------------------------ streaming rows


class _Columns:
    """A row factory that keeps rows as tuples and remembers the cursor, for its column names.

    A named (server-side) cursor has no description until the first fetch, so the
    names are read when the first chunk arrives, not when etlhelper asks for the factory.
    """

    def __init__(self) -> None:
        self.cursor: Any = None

    @property
    def description(self) -> Sequence[Sequence[Any]]:
        return self.cursor.description  # etlhelper hands over the cursor before it fetches a row

    def __call__(self, cursor: Any) -> Callable[[Any], Any]:
        self.cursor = cursor
        return _identity


def _identity(row: Any) -> Any:
    return row


def iter_row_chunks(
    conn: Connection, query: str, params: Any, chunk_size: int, what: str = "job.query"
) -> Generator[tuple[Sequence[Sequence[Any]], list[tuple]], None, None]:
    """Yield ``(cursor.description, rows)`` per chunk of at most ``chunk_size`` tuple rows.

    ``what`` names the query in errors (``job.query``, ``job.sync_query``): the user's words,
    not the SQL the tool wrapped around them.
    """
    factory = _Columns()
    args = conn.dialect.execute_params(conn.raw, query, params, what)
    chunks = etlhelper.iter_chunks(query, conn.raw, parameters=args, row_factory=factory, chunk_size=chunk_size)
    try:
        for rows in chunks:
            yield factory.description, list(rows)
    except ETLHelperError as exc:  # the query failed at execute; etlhelper wraps the driver's error
        driver_error = exc.__context__ or exc
        raise SourceError(f"{what} failed: {driver_message(driver_error)}") from cause(driver_error)
    except conn.dialect.errors as exc:  # later: connection lost mid-stream, cancelled query...
        message = f"reading rows failed ({what}): {type(exc).__name__}: {driver_message(exc)}"
        raise SourceError(message) from cause(exc)
    except (ValueError, OverflowError, ArithmeticError) as exc:
        # The driver could not turn a value into Python (a type our casters do not know): the fetch
        # ends. from None: the text quotes the value.
        raise SourceError(f"reading rows failed ({what}): the driver could not convert a value "
                          f"({type(exc).__name__}); convert the column in the query") from None
    finally:
        chunks.close()


# ------------------------------------------------------------------ one answer each, from the job's query wrapped


def _fetch(conn: Connection, sql: str, params: Any, what: str) -> tuple[list[tuple], Any]:
    """All rows of ``sql`` (which wraps the user's query) and the cursor's description.

    A failure is reported as ``what`` failing, with the driver's first line, never the SQL we generated.
    """
    args = conn.dialect.execute_params(conn.raw, sql, params, what)
    cursor = conn.raw.cursor()
    try:
        cursor.execute(sql, args)
        rows = cursor.fetchall()
        return rows, cursor.description  # a named (PG) cursor has a description only after a fetch
    except conn.dialect.errors as exc:
        with contextlib.suppress(Exception):
            conn.raw.rollback()
        raise SourceError(f"{what} failed: {driver_message(exc)}") from cause(exc)
    except (ValueError, OverflowError, ArithmeticError) as exc:  # as in iter_row_chunks; from None: it quotes the value
        raise SourceError(f"{what} failed: the driver could not convert a value ({type(exc).__name__})") from None
    finally:
        cursor.close()


def columns_of(conn: Connection, query: str, params: Any, what: str = "job.query") -> tuple[str, ...]:
    """The lower-cased column names of ``query``, read without reading its rows.

    Run before any other wrapped query, so that a misspelt watermark, deleted or key column
    is reported as the job file's field, not as the database's "no such column: q.x".
    """
    # bandit B608 accepted: the job's own query; values bound
    _, description = _fetch(conn, f"SELECT * FROM ({query}) q WHERE 1=0", params, what)  # nosec B608
    return tuple(str(col[0]).lower() for col in description or ())


def text_columns(conn: Connection, query: str, params: Any, what: str = "job.query") -> set[str]:
    """The columns of ``query`` that hold text (where a byte-order read collates), read without its rows."""
    # bandit B608 accepted: the job's own query; values bound
    _, description = _fetch(conn, f"SELECT * FROM ({query}) q WHERE 1=0", params, what)  # nosec B608
    return conn.dialect.text_columns(conn.raw, description)


def rows_by_keys(conn: Connection, query: str, params: Any, columns: list[str], keys: Sequence[tuple],
                 what: str) -> Iterator[tuple[Sequence[Sequence[Any]], list[tuple]]]:
    """``(description, rows)`` of ``query``'s rows whose ``columns`` equal one of ``keys``: one statement per
    batch of keys, as many as its bind limit allows (never one query per key)."""
    own = len(params) if params else 0
    per = max(1, (conn.dialect.max_binds - own) // len(columns))
    for start in range(0, len(keys), per):
        batch = list(keys[start:start + per])
        sql = conn.dialect.key_list_query(query, columns, len(batch))
        rows, description = _fetch(conn, sql, conn.dialect.key_list_params(params, batch), what)
        yield description, rows


def _fetch_all(conn: Connection, sql: str, params: Any, what: str) -> list[tuple]:
    return _fetch(conn, sql, params, what)[0]


def count_rows(conn: Connection, query: str, params: Any, what: str = "job.query") -> int:
    """How many rows ``query`` returns (for progress totals and ``status``)."""
    # bandit B608 accepted: the job's own query; values bound
    return int(_fetch_all(conn, f"SELECT COUNT(*) FROM ({query}) q", params, what)[0][0])  # nosec B608


def extreme(conn: Connection, query: str, params: Any, column: str, which: str, beyond: Any = None,
            what: str = "job.query") -> Any:
    """MIN or MAX (``which``) of ``column`` among the query's rows; with ``beyond``, among those below it (MAX)
    or above it (MIN). None when there are none."""
    if beyond is None:
        sql = f"SELECT {which}(q.{column}) FROM ({query}) q"  # nosec B608 (column passed SQL_IDENTIFIER)
    else:
        bound = f"q.{column} {'<' if which == 'MAX' else '>'} {conn.dialect.bind(BEYOND)}"
        # bandit B608 accepted: column passed config.SQL_IDENTIFIER; the value is bound
        sql = f"SELECT {which}(q.{column}) FROM ({conn.dialect.own(query, True)}) q WHERE {bound}"  # nosec B608
        params = conn.dialect.with_param(params, BEYOND, beyond)
    return _fetch_all(conn, sql, params, what)[0][0]


def usable_extreme(conn: Connection, query: str, params: Any, column: str, which: str,
                   usable: Callable[[Any], bool], what: str = "job.query") -> Any:
    """The MIN or MAX of ``column`` among values that are ``usable``: asked again past each value that is not
    (PostgreSQL's infinity sorts above every timestamp, NaN above every number); None when there is none."""
    value = extreme(conn, query, params, column, which, what=what)
    for _ in range(_MAX_UNUSABLE_EXTREMES):
        if value is None or usable(value):
            return value
        value = extreme(conn, query, params, column, which, beyond=value, what=what)
    return value if value is None or usable(value) else None


def bounds(conn: Connection, query: str, params: Any, column: str,
           what: str = "job.query") -> tuple[Any, Any, int, int]:
    """MIN and MAX of ``column`` among the query's rows, how many of them have it NULL, and how many rows
    there are: one aggregate."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    sql = f"SELECT MIN(q.{column}), MAX(q.{column}), COUNT(*) - COUNT(q.{column}), COUNT(*) FROM ({query}) q"  # nosec B608
    low, high, nulls, total = _fetch_all(conn, sql, params, what)[0]
    return low, high, int(nulls), int(total)


def count_by(conn: Connection, query: str, params: Any, column: str, what: str = "job.query") -> list[tuple[Any, int]]:
    """``(value, rows)`` for each distinct value of ``column`` among the query's rows."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    sql = f"SELECT q.{column}, COUNT(*) FROM ({query}) q GROUP BY q.{column}"  # nosec B608
    return [(v, int(n)) for v, n in _fetch_all(conn, sql, params, what)]
