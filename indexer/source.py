"""The database side: the only module that imports etlhelper and the drivers.

::

    SourceConfig --connect()--> DB-API connection --iter_row_chunks()--> (columns, [tuple row, ...]) ...
    dbtype --dialect()--> Dialect: placeholders, parameter shapes and the SQL the tool wraps around job.query

Rows are streamed with ``etlhelper.iter_chunks`` and plain tuples (the cheapest
row shape); column names come from the cursor description. Connections are
opened with keyword arguments, never with a connection string, so a password
with spaces, ``@`` or ``%`` is neither mangled nor echoed in a driver error.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from typing import Any, Iterator, Sequence

import etlhelper
from etlhelper.exceptions import ETLHelperError

from indexer.config import SINCE, SourceConfig, bind_names, same_bind_name
from indexer.errors import ConfigError, SourceError

# Placeholder styles by driver, for queries the tool writes itself (Dialect.bind reads them).
BIND_STYLE = {"ORACLE": ":{name}", "SQLITE": ":{name}", "PG": "%({name})s", "MSSQL": "?"}


class Dialect:
    """What differs between the databases in the SQL the tool writes and the parameters it passes.

    Parameters are given as one dict (``[job.params]`` plus ``since``); ``params`` turns it into
    what the driver takes: a dict of the names the query binds, a tuple for MSSQL's positional
    ``?`` (``[job.params]`` in file order, ``since`` last), or None when there is nothing to bind,
    so that a query without parameters runs exactly as written (psycopg2 reads ``%`` as a
    placeholder only when parameters are passed).
    """

    def __init__(self, dbtype: str) -> None:
        self.dbtype = dbtype
        self.style = BIND_STYLE[dbtype]

    def bind(self, name: str) -> str:
        """The placeholder for parameter ``name``."""
        return self.style.format(name=name)

    def binds(self, query: str) -> tuple[str, ...]:
        """The parameter names ``query`` binds (none for the positional ``?``)."""
        return bind_names(self.dbtype, query)

    def params(self, values: dict[str, Any], query: str | None = None) -> dict[str, Any] | tuple | None:
        """``values`` in the driver's shape; with ``query``, only the names it binds (Oracle refuses others)."""
        if self.style == "?":
            return tuple(values.values()) or None
        if query is not None:
            used = self.binds(query)
            values = {k: v for k, v in values.items() if any(same_bind_name(self.dbtype, k, b) for b in used)}
        return dict(values) or None

    def sync_query(self, query: str, column: str, has_user_params: bool | None = None) -> str:
        """``query``'s rows whose ``column`` is at or after the bound ``since``, in watermark order.

        ``has_user_params`` (default: whether ``query`` binds any name) says whether the user's
        query runs with parameters on its own; if not, its literal ``%`` (``LIKE 'SEN%'``) is
        doubled for psycopg2, which reads ``%`` as a placeholder once ``since`` is passed.
        """
        if has_user_params is None:
            has_user_params = bool(self.binds(query))
        if self.dbtype == "PG" and not has_user_params:
            query = query.replace("%", "%%")
        # bandit B608 accepted: column passed config.SQL_IDENTIFIER; the value is bound
        return f"SELECT * FROM ({query}) q WHERE q.{column} >= {self.bind(SINCE)} ORDER BY q.{column}"  # nosec B608


_DIALECTS = {dbtype: Dialect(dbtype) for dbtype in BIND_STYLE}


def dialect(dbtype: str) -> Dialect:
    return _DIALECTS[dbtype]


def password_for(source: SourceConfig, env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if source.password_env is None:
        return None
    value = env.get(source.password_env)
    if value is None:
        raise ConfigError(f"environment variable {source.password_env} (source.password_env) is not set")
    return value


def _scrub(text: str, secret: str | None) -> str:
    text = text.strip().splitlines()[0] if text.strip() else text
    return text.replace(secret, "***") if secret else text


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def _driver_message(exc: BaseException) -> str:
    """One line from a driver error. Data errors (SQLSTATE class 22: a bad cast, an
    out-of-range value) quote the offending row value, so their quoted text is masked."""
    text = _scrub(str(exc), None)
    if str(getattr(exc, "pgcode", "") or "").startswith("22"):
        text = _QUOTED.sub('"…"', text)
    return text


def configure_oracle(chunk_size: int) -> None:
    """Driver-wide defaults for Oracle, set before connecting.

    LOBs arrive as str/bytes (no locator round trips), NUMBER as Decimal (exact,
    converted by the documents rules), and each round trip fetches one chunk.
    """
    import oracledb

    oracledb.defaults.fetch_lobs = False
    oracledb.defaults.fetch_decimals = True
    oracledb.defaults.arraysize = chunk_size
    oracledb.defaults.prefetchrows = chunk_size


def _connect_raw(source: SourceConfig, password: str | None, chunk_size: int) -> Any:
    if source.dbtype == "SQLITE":
        if not source.filename or not source.filename.is_file():
            # A path in the job file that names nothing is the job file's problem (exit 2).
            raise ConfigError(f"source.filename: SQLite database file not found: {source.filename}")
        # Open read-only: a typo must never create an empty database file.
        return sqlite3.connect(f"file:{source.filename}?mode=ro", uri=True)
    if source.dbtype == "PG":
        try:
            import psycopg2
        except ImportError:
            raise ConfigError("PostgreSQL needs psycopg2: pip install 'indexer[postgres]'") from None
        try:
            return psycopg2.connect(
                host=source.host, port=source.port, dbname=source.dbname, user=source.user,
                password=password, connect_timeout=10, application_name="indexer",
                connection_factory=_streaming_pg_connection(),
            )
        except psycopg2.Error as exc:
            raise SourceError(f"cannot connect to PostgreSQL at {source.host}:{source.port}: {_scrub(str(exc), password)}") from None
    if source.dbtype == "ORACLE":
        import oracledb

        configure_oracle(chunk_size)
        try:
            return oracledb.connect(
                user=source.user, password=password, host=source.host, port=source.port,
                service_name=source.dbname, tcp_connect_timeout=10,
            )
        except oracledb.Error as exc:
            raise SourceError(f"cannot connect to Oracle at {source.host}:{source.port}: {_scrub(str(exc), password)}") from None
    # MSSQL: through etlhelper's helper (pyodbc connection string); not run here.
    params = etlhelper.DbParams(
        dbtype="MSSQL", host=source.host, port=str(source.port), dbname=source.dbname,
        user=source.user, odbc_driver=source.odbc_driver,
    )
    try:
        return params.connect(source.password_env)
    except ETLHelperError as exc:
        raise SourceError(f"cannot connect to MSSQL at {source.host}:{source.port}: {_scrub(str(exc), password)}") from None


@contextlib.contextmanager
def connect(source: SourceConfig, chunk_size: int = 5000) -> Iterator[Any]:
    password = password_for(source)
    conn = _connect_raw(source, password, chunk_size)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.close()


_PG_CONNECTION: Any = None


def _streaming_pg_connection() -> Any:
    """A psycopg2 connection whose cursors are server-side (named), registered with etlhelper.

    A plain psycopg2 cursor loads the whole result at ``execute``; a named cursor
    fetches ``chunk_size`` rows per ``fetchmany``, so memory stays flat in the table
    size. etlhelper picks its helper by the connection's class name, so the
    subclass is registered as PG; etlhelper commits before closing the cursor,
    which ends a named cursor's portal, so that late ``close()`` is made harmless.
    """
    global _PG_CONNECTION
    if _PG_CONNECTION is not None:
        return _PG_CONNECTION
    import itertools

    import psycopg2
    import psycopg2.extensions
    from etlhelper.db_helper_factory import DB_HELPER_FACTORY
    from etlhelper.db_helpers.postgres import PostgresDbHelper

    names = itertools.count()

    class ServerSideCursor(psycopg2.extensions.cursor):
        def close(self) -> None:
            with contextlib.suppress(psycopg2.Error):
                super().close()

    class StreamingConnection(psycopg2.extensions.connection):
        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("name", f"indexer_{next(names)}")
            kwargs.setdefault("cursor_factory", ServerSideCursor)
            return super().cursor(*args, **kwargs)

    DB_HELPER_FACTORY.register_helper("PG", str(StreamingConnection), PostgresDbHelper)
    _PG_CONNECTION = StreamingConnection
    return StreamingConnection


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


def _is_pg(conn: Any) -> bool:
    return any(k.__module__.split(".")[0] == "psycopg2" for k in type(conn).__mro__)


def _args(conn: Any, sql: str, params: Any, what: str) -> Any:
    """``params`` as the driver's execute takes them, checked against ``sql`` for psycopg2.

    psycopg2 reads every ``%`` as a placeholder as soon as any parameters are passed, even an
    empty dict, so it gets None when ``sql`` binds no name (a ``LIKE 'SEN%'`` then runs as
    written); the other drivers get an empty tuple (sqlite3 refuses None). psycopg2 also places
    the values itself, before the server sees the query: its TypeError/KeyError for a literal
    ``%`` in a query that does bind parameters becomes the user's query failing, not a traceback.
    """
    if not _is_pg(conn):
        return params if params else ()
    if isinstance(params, dict):
        used = bind_names("PG", sql)
        params = {k: v for k, v in params.items() if k in used}
    if not params:
        return None
    cursor = conn.cursor()
    try:
        cursor.mogrify(sql, params)
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise SourceError(f"{what} failed: the parameters cannot be placed ({type(exc).__name__}: {exc}); "
                          "in a query with bind parameters write a literal % as %%") from None
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        raise SourceError(f"{what} failed: {_driver_message(exc)}") from None  # e.g. a value it cannot adapt
    finally:
        cursor.close()
    return params


def iter_row_chunks(
    conn: Any, query: str, params: Any, chunk_size: int, what: str = "job.query"
) -> Iterator[tuple[Sequence[Sequence[Any]], list[tuple]]]:
    """Yield ``(cursor.description, rows)`` per chunk of at most ``chunk_size`` tuple rows.

    ``what`` names the query in errors (``job.query``, ``job.sync_query``): the user's words,
    not the SQL the tool wrapped around them.
    """
    factory = _Columns()
    chunks = etlhelper.iter_chunks(query, conn, parameters=_args(conn, query, params, what), row_factory=factory,
                                   chunk_size=chunk_size)
    try:
        for rows in chunks:
            yield factory.description, list(rows)
    except ETLHelperError as exc:
        cause = exc.__context__ or exc
        raise SourceError(f"{what} failed: {_driver_message(cause)}") from None
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        raise SourceError(f"reading rows failed ({what}): {type(exc).__name__}: {_driver_message(exc)}") from None
    finally:
        chunks.close()


def _is_driver_error(exc: BaseException) -> bool:
    """True for DB-API driver errors (connection lost mid-stream, cancelled query...)."""
    module = type(exc).__module__.split(".")[0]
    return module in {"sqlite3", "psycopg2", "oracledb", "pyodbc"}


def _fetch(conn: Any, sql: str, params: Any, what: str) -> tuple[list[tuple], Any]:
    """All rows of ``sql`` (which wraps the user's query) and the cursor's description.

    A failure is reported as ``what`` failing, with the driver's first line, never the SQL we generated.
    """
    args = _args(conn, sql, params, what)
    cursor = conn.cursor()
    try:
        cursor.execute(sql, args)
        rows = cursor.fetchall()
        return rows, cursor.description  # a named (PG) cursor has a description only after a fetch
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        with contextlib.suppress(Exception):
            conn.rollback()
        raise SourceError(f"{what} failed: {_driver_message(exc)}") from None
    finally:
        cursor.close()


def columns_of(conn: Any, query: str, params: Any, what: str = "job.query") -> tuple[str, ...]:
    """The lower-cased column names of ``query``, read without reading its rows.

    Run before any other wrapped query, so that a misspelt watermark, deleted or key column
    is reported as the job file's field, not as the database's "no such column: q.x".
    """
    # bandit B608 accepted: the job's own query; values bound
    _, description = _fetch(conn, f"SELECT * FROM ({query}) q WHERE 1=0", params, what)  # nosec B608
    return tuple(str(col[0]).lower() for col in description or ())


def _fetch_all(conn: Any, sql: str, params: Any, what: str) -> list[tuple]:
    return _fetch(conn, sql, params, what)[0]


def count_rows(conn: Any, query: str, params: Any, what: str = "job.query") -> int:
    """How many rows ``query`` returns (for progress totals and ``status``)."""
    # bandit B608 accepted: the job's own query; values bound
    return int(_fetch_all(conn, f"SELECT COUNT(*) FROM ({query}) q", params, what)[0][0])  # nosec B608


def max_value(conn: Any, query: str, params: Any, column: str, what: str = "job.query") -> Any:
    """The largest value of ``column`` among the query's rows (None when there are none)."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    return _fetch_all(conn, f"SELECT MAX(q.{column}) FROM ({query}) q", params, what)[0][0]  # nosec B608


def count_by(conn: Any, query: str, params: Any, column: str, what: str = "job.query") -> list[tuple[Any, int]]:
    """``(value, rows)`` for each distinct value of ``column`` among the query's rows."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    sql = f"SELECT q.{column}, COUNT(*) FROM ({query}) q GROUP BY q.{column}"  # nosec B608
    return [(v, int(n)) for v, n in _fetch_all(conn, sql, params, what)]
