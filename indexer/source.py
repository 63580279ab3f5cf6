"""The database side: the only module that imports etlhelper and the drivers.

::

    SourceConfig --connect()--> DB-API connection --iter_row_chunks()--> (columns, [tuple row, ...]) ...

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

from indexer.config import SourceConfig
from indexer.errors import ConfigError, SourceError

# Placeholder styles by driver, for queries the tool writes itself.
BIND_STYLE = {"ORACLE": ":{name}", "SQLITE": ":{name}", "PG": "%({name})s", "MSSQL": "?"}


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
            raise SourceError(f"SQLite database file not found: {source.filename}")
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


def iter_row_chunks(
    conn: Any, query: str, params: dict[str, Any] | None, chunk_size: int
) -> Iterator[tuple[Sequence[Sequence[Any]], list[tuple]]]:
    """Yield ``(cursor.description, rows)`` per chunk of at most ``chunk_size`` tuple rows."""
    factory = _Columns()
    chunks = etlhelper.iter_chunks(query, conn, parameters=params or {}, row_factory=factory, chunk_size=chunk_size)
    try:
        for rows in chunks:
            yield factory.description, list(rows)
    except ETLHelperError as exc:
        cause = exc.__context__ or exc
        raise SourceError(f"query failed: {_driver_message(cause)}") from None
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        raise SourceError(f"reading rows failed: {type(exc).__name__}: {_driver_message(exc)}") from None
    finally:
        chunks.close()



def _is_driver_error(exc: BaseException) -> bool:
    """True for DB-API driver errors (connection lost mid-stream, cancelled query...)."""
    module = type(exc).__module__.split(".")[0]
    return module in {"sqlite3", "psycopg2", "oracledb", "pyodbc"}


def _fetch_all(conn: Any, sql: str, params: Any) -> list[tuple]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, params or {})
        return cursor.fetchall()
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        with contextlib.suppress(Exception):
            conn.rollback()
        raise SourceError(f"query failed: {_driver_message(exc)}") from None
    finally:
        cursor.close()


def count_rows(conn: Any, query: str, params: Any) -> int:
    """How many rows ``query`` returns (for progress totals and ``status``)."""
    # bandit B608 accepted: the job's own query; values bound
    return int(_fetch_all(conn, f"SELECT COUNT(*) FROM ({query}) q", params)[0][0])  # nosec B608


def max_value(conn: Any, query: str, params: Any, column: str) -> Any:
    """The largest value of ``column`` among the query's rows (None when there are none)."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    return _fetch_all(conn, f"SELECT MAX(q.{column}) FROM ({query}) q", params)[0][0]  # nosec B608


def count_by(conn: Any, query: str, params: Any, column: str) -> list[tuple[Any, int]]:
    """``(value, rows)`` for each distinct value of ``column`` among the query's rows."""
    # bandit B608 accepted: column passed config.SQL_IDENTIFIER
    sql = f"SELECT q.{column}, COUNT(*) FROM ({query}) q GROUP BY q.{column}"  # nosec B608
    return [(v, int(n)) for v, n in _fetch_all(conn, sql, params)]
