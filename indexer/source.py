"""The database side: the only module that imports etlhelper and the drivers.

::

    dbtype --dialect()--> Dialect (one class per database, chosen once): placeholders, parameter
                          shapes, the sync and slice wrappers, how to connect, which exceptions are the driver's
    SourceConfig --connect()--> Connection (DB-API connection + its Dialect)
                 --iter_row_chunks()--> (columns, [tuple row, ...]) ...
                 --columns_of / count_rows / max_value / count_by / bounds--> one answer each

Rows are streamed with ``etlhelper.iter_chunks`` and plain tuples (the cheapest
row shape); column names come from the cursor description. Connections are
opened with keyword arguments, never with a connection string, so a password
with spaces, ``@`` or ``%`` is neither mangled nor echoed in a driver error.
Nothing outside this module asks which database it is: a new database is one
more ``Dialect`` subclass here. (About 420 lines: the dialects stay next to the
queries they serve, in the one module allowed to import the drivers.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import itertools
import os
import re
import sqlite3
from typing import Any, Iterator, Sequence

import etlhelper
from etlhelper.exceptions import ETLHelperError

from indexer.config import SINCE, SourceConfig, bind_names, same_bind_name

SLICE_LO, SLICE_HI = "slice_lo", "slice_hi"  # a partitioned reindex's bounds (bind names Oracle accepts too)
from indexer.errors import ConfigError, SourceError


class Dialect:
    """What differs between the databases; one subclass per ``dbtype``, one instance each.

    Parameters are given as one dict (``[job.params]`` plus ``since``); ``params`` turns it into
    what the driver takes: a dict of the names the query binds (a tuple for MSSQL's positional
    ``?``), or None when there is nothing to bind, so that a query without parameters runs
    exactly as written (psycopg2 reads ``%`` as a placeholder only when parameters are passed).
    """

    dbtype: str
    placeholder: str  # str.format template of one bind parameter, with {name}
    driver: str       # the DB-API module: its Error and Warning are the driver's errors

    def bind(self, name: str) -> str:
        """The placeholder for parameter ``name``."""
        return self.placeholder.format(name=name)

    def binds(self, query: str) -> tuple[str, ...]:
        """The parameter names ``query`` binds (none for the positional ``?``)."""
        return bind_names(self.dbtype, query)

    def params(self, values: dict[str, Any], query: str | None = None) -> dict[str, Any] | tuple | None:
        """``values`` in the driver's shape; with ``query``, only the names it binds (Oracle refuses others)."""
        if query is not None:
            used = self.binds(query)
            values = {k: v for k, v in values.items() if any(same_bind_name(self.dbtype, k, b) for b in used)}
        return dict(values) or None

    def sync_query(self, query: str, column: str, has_user_params: bool | None = None) -> str:
        """``query``'s rows whose ``column`` is at or after the bound ``since``, in watermark order.

        ``has_user_params`` (default: whether ``query`` binds any name) matters to PostgreSQL only.
        """
        # bandit B608 accepted: column passed config.SQL_IDENTIFIER; the value is bound
        return f"SELECT * FROM ({query}) q WHERE q.{column} >= {self.bind(SINCE)} ORDER BY q.{column}"  # nosec B608

    def slice_query(self, query: str, column: str, upper: str | None) -> str:
        """``query``'s rows from the bound ``slice_lo`` up to the bound ``slice_hi`` of ``column`` (``upper``:
        ``<`` or ``<=``); with ``upper`` None, its rows where ``column`` is NULL (nothing more bound)."""
        if upper is None:  # bandit B608 accepted (both): column passed config.SQL_IDENTIFIER; values bound
            return f"SELECT * FROM ({query}) q WHERE q.{column} IS NULL"  # nosec B608
        return (f"SELECT * FROM ({query}) q WHERE q.{column} >= {self.bind(SLICE_LO)} "  # nosec B608
                f"AND q.{column} {upper} {self.bind(SLICE_HI)}")

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's base exception classes, for ``except``.

        Imported when asked, i.e. once a connection exists: a missing optional driver
        (psycopg2, oracledb, pyodbc) is then no import error of this module.
        """
        module = importlib.import_module(self.driver)
        return (module.Error, module.Warning)

    def connect(self, source: SourceConfig, password: str | None, chunk_size: int) -> Any:
        """A DB-API connection to ``source``; SourceError (never quoting the password) if refused."""
        raise NotImplementedError

    def execute_params(self, conn: Any, sql: str, params: Any, what: str) -> Any:
        """``params`` as the driver's ``execute`` takes them (sqlite3 refuses None: an empty tuple)."""
        return params if params else ()


class SQLite(Dialect):
    dbtype, placeholder, driver = "SQLITE", ":{name}", "sqlite3"

    def connect(self, source: SourceConfig, password: str | None, chunk_size: int) -> Any:
        if not source.filename or not source.filename.is_file():
            # A path in the job file that names nothing is the job file's problem (exit 2).
            raise ConfigError(f"source.filename: SQLite database file not found: {source.filename}")
        # Open read-only: a typo must never create an empty database file.
        return sqlite3.connect(f"file:{source.filename}?mode=ro", uri=True)


class Postgres(Dialect):
    dbtype, placeholder, driver = "PG", "%({name})s", "psycopg2"

    def sync_query(self, query: str, column: str, has_user_params: bool | None = None) -> str:
        """As the base's; a query that runs without parameters on its own has its literal ``%``
        (``LIKE 'SEN%'``) doubled, since psycopg2 reads ``%`` as a placeholder once ``since`` is passed."""
        if has_user_params is None:
            has_user_params = bool(self.binds(query))
        return super().sync_query(query if has_user_params else query.replace("%", "%%"), column)

    def slice_query(self, query: str, column: str, upper: str | None) -> str:
        """As the base's; a range binds its bounds, so a query binding nothing has its ``%`` doubled (as above)."""
        return super().slice_query(query if upper is None or self.binds(query) else query.replace("%", "%%"),
                                   column, upper)

    def connect(self, source: SourceConfig, password: str | None, chunk_size: int) -> Any:
        try:
            import psycopg2
        except ImportError as exc:
            raise ConfigError("PostgreSQL needs psycopg2: pip install 'indexer[postgres]'") from exc
        try:
            return psycopg2.connect(
                host=source.host, port=source.port, dbname=source.dbname, user=source.user,
                password=password, connect_timeout=10, application_name="indexer",
                cursor_factory=_server_side_cursor(),
            )
        except psycopg2.Error as exc:
            # from None: the driver's error may quote the password (so may its traceback under --debug)
            raise SourceError(f"cannot connect to PostgreSQL at {source.host}:{source.port}: "
                              f"{_scrub(str(exc), password)}") from None

    def execute_params(self, conn: Any, sql: str, params: Any, what: str) -> Any:
        """Only the names ``sql`` binds, or None when it binds none, checked by placing them.

        psycopg2 reads every ``%`` as a placeholder as soon as any parameters are passed, even an
        empty dict, so it gets None when ``sql`` binds no name (a ``LIKE 'SEN%'`` then runs as
        written). psycopg2 also places the values itself, before the server sees the query: its
        TypeError/KeyError for a literal ``%`` in a query that does bind parameters becomes the
        user's query failing, not a traceback.
        """
        if isinstance(params, dict):
            used = bind_names(self.dbtype, sql)
            params = {k: v for k, v in params.items() if k in used}
        if not params:
            return None
        cursor = conn.cursor()
        try:
            cursor.mogrify(sql, params)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise SourceError(f"{what} failed: the parameters cannot be placed ({type(exc).__name__}: {exc}); "
                              "in a query with bind parameters write a literal % as %%") from exc
        except self.errors as exc:  # e.g. a value it cannot adapt
            raise SourceError(f"{what} failed: {_driver_message(exc)}") from _cause(exc)
        finally:
            cursor.close()
        return params


@functools.cache
def _server_side_cursor() -> type:
    """psycopg2's cursor class, named (server-side) unless given a name: the connection's ``cursor_factory``.

    A plain psycopg2 cursor loads the whole result at ``execute``; a named cursor fetches
    ``chunk_size`` rows per ``fetchmany``, so memory stays flat in the table size. Set as the
    connection's ``cursor_factory`` (psycopg2's public API), every ``conn.cursor()`` is one,
    etlhelper's included, and etlhelper still sees a plain psycopg2 connection. etlhelper
    commits before closing the cursor, which ends a named cursor's portal, so that late
    ``close()`` is made harmless.
    """
    import psycopg2
    import psycopg2.extensions

    names = itertools.count()

    class ServerSideCursor(psycopg2.extensions.cursor):
        def __init__(self, conn: Any, name: str | None = None) -> None:
            super().__init__(conn, name or f"indexer_{next(names)}")

        def close(self) -> None:
            with contextlib.suppress(psycopg2.Error):
                super().close()

    return ServerSideCursor


class Oracle(Dialect):
    dbtype, placeholder, driver = "ORACLE", ":{name}", "oracledb"

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

    def connect(self, source: SourceConfig, password: str | None, chunk_size: int) -> Any:
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
                              f"{_scrub(str(exc), password)}") from None


class MSSQL(Dialect):
    """Through etlhelper's pyodbc helper; not run here (no server, no pyodbc)."""

    dbtype, placeholder, driver = "MSSQL", "?", "pyodbc"

    def params(self, values: dict[str, Any], query: str | None = None) -> tuple | None:
        """Positional: ``[job.params]`` in file order, ``since`` last (it is added last)."""
        return tuple(values.values()) or None

    def connect(self, source: SourceConfig, password: str | None, chunk_size: int) -> Any:
        params = etlhelper.DbParams(
            dbtype="MSSQL", host=source.host, port=str(source.port), dbname=source.dbname,
            user=source.user, odbc_driver=source.odbc_driver,
        )
        try:
            return params.connect(source.password_env)
        except ETLHelperError as exc:
            # from None: etlhelper's error and its cause may quote the connection string, password included
            raise SourceError(f"cannot connect to MSSQL at {source.host}:{source.port}: "
                              f"{_scrub(str(exc), password)}") from None


_DIALECTS = {d.dbtype: d for d in (SQLite(), Postgres(), Oracle(), MSSQL())}


def dialect(dbtype: str) -> Dialect:
    """The dialect of a validated ``source.dbtype`` (one instance per database, shared)."""
    return _DIALECTS[dbtype]


@dataclasses.dataclass(frozen=True)
class Connection:
    """An open DB-API connection and the dialect it was opened with (what the functions below take)."""

    raw: Any
    dialect: Dialect


def password_for(source: SourceConfig, env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if source.password_env is None:
        return None
    value = env.get(source.password_env)
    if value is None:
        raise ConfigError(f"environment variable {source.password_env} (source.password_env) is not set")
    return value


@contextlib.contextmanager
def connect(source: SourceConfig, chunk_size: int = 5000) -> Iterator[Connection]:
    db = dialect(source.dbtype)
    raw = db.connect(source, password_for(source), chunk_size)
    try:
        yield Connection(raw, db)
    finally:
        with contextlib.suppress(Exception):
            raw.close()


def _scrub(text: str, secret: str | None) -> str:
    text = text.strip().splitlines()[0] if text.strip() else text
    return text.replace(secret, "***") if secret else text


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def _is_data_error(exc: BaseException) -> bool:
    """SQLSTATE class 22 (a bad cast, an out-of-range value): the driver's text quotes a row value."""
    return str(getattr(exc, "pgcode", "") or "").startswith("22")


def _driver_message(exc: BaseException) -> str:
    """One line from a driver error, a data error's quoted text masked."""
    text = _scrub(str(exc), None)
    return _QUOTED.sub('"…"', text) if _is_data_error(exc) else text


def _cause(exc: BaseException) -> BaseException | None:
    """The driver's error, kept as the cause for --debug; None for a data error, whose text quotes
    the row value the one-line message masks (row values never reach the terminal)."""
    return None if _is_data_error(exc) else exc


class _Columns:
    """A row factory that keeps rows as tuples and remembers the cursor, for its column names.

    A named (server-side) cursor has no description until the first fetch, so the
    names are read when the first chunk arrives, not when etlhelper asks for the factory.
    """

    def __init__(self) -> None:
        self.cursor: Any = None

    @property
    def description(self) -> Sequence[Sequence[Any]] | None:
        return self.cursor.description if self.cursor is not None else None

    def __call__(self, cursor: Any):
        self.cursor = cursor
        return _identity


def _identity(row: Any) -> Any:
    return row


def iter_row_chunks(
    conn: Connection, query: str, params: Any, chunk_size: int, what: str = "job.query"
) -> Iterator[tuple[Sequence[Sequence[Any]], list[tuple]]]:
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
        raise SourceError(f"{what} failed: {_driver_message(driver_error)}") from _cause(driver_error)
    except conn.dialect.errors as exc:  # later: connection lost mid-stream, cancelled query...
        message = f"reading rows failed ({what}): {type(exc).__name__}: {_driver_message(exc)}"
        raise SourceError(message) from _cause(exc)
    finally:
        chunks.close()


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
        raise SourceError(f"{what} failed: {_driver_message(exc)}") from _cause(exc)
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


def _fetch_all(conn: Connection, sql: str, params: Any, what: str) -> list[tuple]:
    return _fetch(conn, sql, params, what)[0]


def count_rows(conn: Connection, query: str, params: Any, what: str = "job.query") -> int:
    """How many rows ``query`` returns (for progress totals and ``status``)."""
    # bandit B608 accepted: the job's own query; values bound
    return int(_fetch_all(conn, f"SELECT COUNT(*) FROM ({query}) q", params, what)[0][0])  # nosec B608


def max_value(conn: Connection, query: str, params: Any, column: str, what: str = "job.query") -> Any:
    """The largest value of ``column`` among the query's rows (None when there are none)."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    return _fetch_all(conn, f"SELECT MAX(q.{column}) FROM ({query}) q", params, what)[0][0]  # nosec B608


def bounds(conn: Connection, query: str, params: Any, column: str, what: str = "job.query") -> tuple[Any, Any, int]:
    """MIN and MAX of ``column`` among the query's rows, and how many of them have it NULL: one aggregate."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    sql = f"SELECT MIN(q.{column}), MAX(q.{column}), COUNT(*) - COUNT(q.{column}) FROM ({query}) q"  # nosec B608
    low, high, nulls = _fetch_all(conn, sql, params, what)[0]
    return low, high, int(nulls)


def count_by(conn: Connection, query: str, params: Any, column: str, what: str = "job.query") -> list[tuple[Any, int]]:
    """``(value, rows)`` for each distinct value of ``column`` among the query's rows."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    sql = f"SELECT q.{column}, COUNT(*) FROM ({query}) q GROUP BY q.{column}"  # nosec B608
    return [(v, int(n)) for v, n in _fetch_all(conn, sql, params, what)]
