"""The database side: the only module that imports etlhelper and the drivers.

::

    dbtype --dialect()--> Dialect (one class per database, chosen once): placeholders, parameter
                          shapes, the sync and slice wrappers, how to connect, which exceptions are the driver's
    SourceConfig --connect()--> Connection (DB-API connection + its Dialect; PostgreSQL's casters registered)
                 --iter_row_chunks()--> (columns, [tuple row, ...]) ...
                 --columns_of / count_rows / max_value / count_by / bounds--> one answer each
                 --usable_extreme()--> MIN/MAX asked again past a value that is no usable extreme (infinity)

Rows are streamed with ``etlhelper.iter_chunks`` and plain tuples (the cheapest
row shape); column names come from the cursor description. Connections are
opened with keyword arguments, never with a connection string, so a password
with spaces, ``@`` or ``%`` is neither mangled nor echoed in a driver error.
Nothing outside this module asks which database it is: a new database is one
more ``Dialect`` subclass here. (About 530 lines: the dialects, PostgreSQL's date and time casters
among them, stay next to the queries they serve, in the one module allowed to import the drivers;
issue 18 gives each database a module of its own.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import importlib
import itertools
import os
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import etlhelper
from etlhelper.exceptions import ETLHelperError

from indexer.config import RESERVED_BINDS, SINCE, SourceConfig, bind_names, same_bind_name
from indexer.errors import ConfigError, SourceError
from indexer.redact import first_line
from indexer.values import DbText, Unconvertible

# The names indexer binds around the job's query (config.RESERVED_BINDS: refused as job parameters):
BEYOND, SLICE_LO, SLICE_HI = RESERVED_BINDS  # an aggregate asked again past a value; a slice's bounds
_MAX_UNUSABLE_EXTREMES = 8  # NaN, then +infinity, then a driver's stand-in...: each asked past once


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

    def own(self, query: str, adding_binds: bool) -> str:
        """``query`` as written inside a query of ours that binds parameters (``adding_binds``) of its own."""
        return query

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

    def with_param(self, params: Any, name: str, value: Any) -> Any:
        """Driver-shaped ``params`` (``params()``'s answer, None when nothing is bound) with one more
        parameter, bound last."""
        return {**(params or {}), name: value}

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

    def own(self, query: str, adding_binds: bool) -> str:
        """A query binding nothing has its ``%`` doubled once we bind something around it (as above)."""
        return query.replace("%", "%%") if adding_binds and not self.binds(query) else query

    def connect(self, source: SourceConfig, password: str | None, chunk_size: int) -> Any:
        try:
            import psycopg2
        except ImportError as exc:
            raise ConfigError("PostgreSQL needs psycopg2: pip install 'indexer[postgres]'") from exc
        try:
            conn = psycopg2.connect(
                host=source.host, port=source.port, dbname=source.dbname, user=source.user,
                password=password, connect_timeout=10, application_name="indexer",
                cursor_factory=_server_side_cursor(),
            )
        except psycopg2.Error as exc:
            # from None: the driver's error may quote the password (so may its traceback under --debug)
            raise SourceError(f"cannot connect to PostgreSQL at {source.host}:{source.port}: "
                              f"{_first_line(exc)}") from None
        for caster in _pg_casters():
            psycopg2.extensions.register_type(caster, conn)
        return conn

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


# PostgreSQL's date and time types by OID: (name, OID, array OID, psycopg2's own caster's name).
_PG_TIME_TYPES = (
    ("date", 1082, 1182, "PYDATE"), ("time", 1083, 1183, "PYTIME"), ("timetz", 1266, 1270, "PYTIME"),
    ("timestamp", 1114, 1115, "PYDATETIME"), ("timestamptz", 1184, 1185, "PYDATETIMETZ"),
    ("interval", 1186, 1187, "PYINTERVAL"),
)
_PG_SPECIAL = frozenset({"infinity", "-infinity"})
# Python's ISO-8601 parsers read PostgreSQL's ISO output (the default DateStyle) exactly, and in C:
# measured faster than psycopg2's own casters (1M timestamps: 0.32 s CPU against 0.46 s), so the
# common value costs less than before, not more. Anything else goes to psycopg2's caster.
_ISO_PARSERS = {"date": dt.date.fromisoformat, "time": dt.time.fromisoformat, "timetz": dt.time.fromisoformat,
                "timestamp": dt.datetime.fromisoformat, "timestamptz": dt.datetime.fromisoformat}


def pg_time_caster(name: str, base: Any) -> Any:
    """A caster of PostgreSQL type ``name`` that keeps what psycopg2's own (``base``) would change or fail
    on (indexer.values): ``±infinity`` (it gives datetime.max/min), ``24:00:00`` (it gives 00:00) and a
    year outside 1-9999 (ValueError) become the text PostgreSQL printed (DbText); an interval beyond
    timedelta's range (OverflowError) becomes Unconvertible, a dead letter naming its column."""
    parse = _ISO_PARSERS.get(name)
    is_time = name in ("time", "timetz")

    def cast(text: str | None, cursor: Any) -> Any:
        if text is None:
            return None
        if parse is not None:
            try:
                return parse(text)
            except ValueError:
                pass  # infinity, 24:00, a year outside 1-9999, another DateStyle: below
        if text in _PG_SPECIAL or (is_time and text.startswith("24:")):
            return DbText(text)
        try:
            return base(text, cursor)
        except (ValueError, OverflowError):
            if name == "interval":
                return Unconvertible("an interval beyond Python's range of +-999,999,999 days; "
                                     "convert it in the query (e.g. EXTRACT(EPOCH FROM ...))")
            return DbText(text)

    return cast


@functools.cache
def _pg_casters() -> tuple:
    """The casters every PostgreSQL connection registers (per connection, never globally): the date and
    time types and their arrays (psycopg2 parses an array's items with the item type's caster)."""
    import psycopg2.extensions as ext

    casters = []
    for name, oid, array_oid, base in _PG_TIME_TYPES:
        item = ext.new_type((oid,), f"INDEXER_{name.upper()}", pg_time_caster(name, getattr(ext, base)))
        casters += [item, ext.new_array_type((array_oid,), f"INDEXER_{name.upper()}_ARRAY", item)]
    return tuple(casters)


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
                              f"{_first_line(exc)}") from None


class MSSQL(Dialect):
    """Through etlhelper's pyodbc helper; not run here (no server, no pyodbc)."""

    dbtype, placeholder, driver = "MSSQL", "?", "pyodbc"

    def params(self, values: dict[str, Any], query: str | None = None) -> tuple | None:
        """Positional: ``[job.params]`` in file order, ``since`` last (it is added last)."""
        return tuple(values.values()) or None

    def with_param(self, params: Any, name: str, value: Any) -> tuple:
        """Positional: the bound value after the job's own."""
        return (*(params or ()), value)

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
                              f"{_first_line(exc)}") from None


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


def _first_line(exc: BaseException) -> str:
    """The first line of a driver's error, secrets redacted by structure (indexer.redact)."""
    return first_line(str(exc)) or type(exc).__name__


_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')


def _is_data_error(exc: BaseException) -> bool:
    """SQLSTATE class 22 (a bad cast, an out-of-range value): the driver's text quotes a row value."""
    return str(getattr(exc, "pgcode", "") or "").startswith("22")


def _driver_message(exc: BaseException) -> str:
    """One line from a driver error, a data error's quoted text masked."""
    text = _first_line(exc)
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
    except (ValueError, OverflowError, ArithmeticError) as exc:
        # The driver could not turn a value into Python (a type our casters do not know): the fetch
        # ends. from None: the text quotes the value.
        raise SourceError(f"reading rows failed ({what}): the driver could not convert a value "
                          f"({type(exc).__name__}); convert the column in the query") from None
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


def max_value(conn: Connection, query: str, params: Any, column: str, what: str = "job.query") -> Any:
    """The largest value of ``column`` among the query's rows (None when there are none)."""
    return extreme(conn, query, params, column, "MAX", what=what)


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
