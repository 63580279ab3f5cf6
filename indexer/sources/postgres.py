"""PostgreSQL through psycopg2: ``%(name)s`` binds, a server-side cursor, casters that keep what psycopg2
would change, and a catalogue reached through ``to_regclass``.

::

    source (host, port, dbname, user) --connect--> psycopg2 connection, keyword arguments only
        cursor_factory: a named (server-side) cursor, so memory stays flat in the table size
        casters: date and time types (and arrays) read by Python's ISO parsers; infinity, 24:00 and
                 years outside 1-9999 kept as the text PostgreSQL printed (DbText)
    params --execute_params--> only the names the SQL binds, placed once by psycopg2 to check them
    --table --resolve_query--> to_regclass: (schema, name) as PostgreSQL reads it
        --columns_query / key_query--> information_schema, schema and name bound; types by udt_name
        --foreign_keys_query--> pg_constraint (contype 'f'), its column pairs in order

A literal ``%`` is psycopg2's business: read as a placeholder as soon as any parameter is passed,
so a query binding nothing has its ``%`` doubled when indexer binds something around it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
from typing import Any

from indexer.errors import ConfigError, SourceError
from indexer.sources.base import (
    Column,
    Dialect,
    SourceParams,
    TableName,
    cause,
    driver_message,
    first_line_of,
    pyformat_binds,
)
from indexer.values import DbText, Unconvertible

# SQLSTATEs of a --table text PostgreSQL cannot read as a name: invalid_name, syntax_error (a.b.c.d).
_BAD_NAME = ("42602", "42601")


class Postgres(Dialect):
    dbtype, placeholder, driver = "PG", "%({name})s", "psycopg2"
    required = ("host", "port", "dbname", "user")
    case_sensitive = True
    # By udt_name; an array (_int4) maps as its items do.
    kinds = {
        "int2": "short", "int4": "integer", "int8": "long", "oid": "long", "float4": "float", "float8": "double",
        "numeric": "numeric", "bool": "boolean", "date": "date", "timestamp": "date", "timestamptz": "date",
        "bytea": "binary", "json": "json", "jsonb": "json", "varchar": "string", "bpchar": "string",
        "text": "string", "citext": "string", "name": "string", "xml": "text", "interval": "double",
        "uuid": "keyword", "time": "keyword", "timetz": "keyword", "money": "keyword", "inet": "keyword",
        "cidr": "keyword", "macaddr": "keyword", "char": "keyword",
    }
    resolve_hint = ("PostgreSQL looks in the search_path and reads unquoted names in lower case: give SCHEMA.NAME, "
                    'quoting a mixed-case part: schema."Name"')

    def binds(self, query: str) -> tuple[str, ...]:
        # psycopg2 substitutes %(name)s everywhere, in literals and comments too: read as it reads them
        return pyformat_binds(query)

    def sync_query(self, query: str, column: str, has_user_params: bool | None = None) -> str:
        """As the base's; a query that runs without parameters on its own has its literal ``%``
        (``LIKE 'SEN%'``) doubled, since psycopg2 reads ``%`` as a placeholder once ``since`` is passed."""
        if has_user_params is None:
            has_user_params = bool(self.binds(query))
        return super().sync_query(query if has_user_params else query.replace("%", "%%"), column)

    max_binds = 10_000  # psycopg2 places values in the text client-side: a bound on the statement's length

    def text_columns(self, conn: Any, description: Any) -> set[str]:
        """Columns of a collatable type (text, varchar, char, citext, their domains), from the catalogue."""
        oids = sorted({col[1] for col in description or ()})
        with conn.cursor() as cursor:
            cursor.execute("SELECT oid FROM pg_type WHERE oid = ANY(%s) AND typcollation <> 0", (oids,))
            text = {row[0] for row in cursor.fetchall()}
        return {str(col[0]).lower() for col in description or () if col[1] in text}

    def byte_order(self, column: str, collatable: bool) -> str:
        """"C" on text (UTF-8 bytes: code points, Python's order; a database's en_US order puts 'a' before 'B');
        a COLLATE on a number or a date would be an error."""
        return f'q.{column} COLLATE "C"' if collatable else f"q.{column}"

    def own(self, query: str, adding_binds: bool) -> str:
        """A query binding nothing has its ``%`` doubled once we bind something around it (as above)."""
        return query.replace("%", "%%") if adding_binds and not self.binds(query) else query

    def connect(self, source: SourceParams, password: str | None, chunk_size: int) -> Any:
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
                              f"{first_line_of(exc)}") from None
        for caster in _casters():
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
            used = self.binds(sql)
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
            raise SourceError(f"{what} failed: {driver_message(exc)}") from cause(exc)
        finally:
            cursor.close()
        return params

    # ------------------------------------------------------------------ catalogue: information_schema, reached
    # through the schema and name to_regclass resolves (search path, quoting and case exactly as PostgreSQL
    # reads --table)

    def fold(self, name: str) -> str:
        return name.lower()

    def resolve_query(self, text: str) -> tuple[str, Any]:
        return ("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.oid = pg_catalog.to_regclass(%(name)s)", {"name": text})

    def unreadable_name(self, exc: BaseException | None) -> str | None:
        # to_regclass reads --table as SQL would: a text it cannot read as a name is an option error
        if getattr(exc, "pgcode", None) not in _BAD_NAME:
            return None
        reason = str(exc).strip().splitlines()[0]
        return (f"PostgreSQL reads no table name in it ({reason}): "
                'quote a part that is not a plain name, as in SQL: schema."Name"')

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

    def foreign_keys_query(self, table: TableName) -> tuple[str, Any]:
        # pg_constraint, not information_schema: its referential_constraints names only the unique constraint
        # referred to, and a constraint's name is unique per table, not per schema. conkey and confkey pair up
        # position by position.
        return ("SELECT c.conname, a.attname, rn.nspname, r.relname, ra.attname FROM pg_catalog.pg_constraint c "
                "JOIN pg_catalog.pg_class t ON t.oid = c.conrelid "
                "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
                "JOIN pg_catalog.pg_class r ON r.oid = c.confrelid "
                "JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace "
                "CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(attnum, refnum, pos) "
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum "
                "JOIN pg_catalog.pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = k.refnum "
                "WHERE c.contype = 'f' AND n.nspname = %(schema)s AND t.relname = %(name)s "
                "ORDER BY c.conname, k.pos", {"schema": table.schema, "name": table.name})

    # ------------------------------------------------------------------ types

    def kind(self, column: Column) -> str | None:
        return self.kinds.get(column.type.removeprefix("_"))  # _int4: an array of int4, same mapping

    def is_array(self, column: Column) -> bool:
        return column.type.startswith("_")


DIALECT = Postgres()


# ------------------------------------------------------------------ date and time casters

# PostgreSQL's date and time types by OID: (name, OID, array OID, psycopg2's own caster's name).
_TIME_TYPES = (
    ("date", 1082, 1182, "PYDATE"), ("time", 1083, 1183, "PYTIME"), ("timetz", 1266, 1270, "PYTIME"),
    ("timestamp", 1114, 1115, "PYDATETIME"), ("timestamptz", 1184, 1185, "PYDATETIMETZ"),
    ("interval", 1186, 1187, "PYINTERVAL"),
)
_SPECIAL = frozenset({"infinity", "-infinity"})
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
        if text in _SPECIAL or (is_time and text.startswith("24:")):
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
def _casters() -> tuple:
    """The casters every PostgreSQL connection registers (per connection, never globally): the date and
    time types and their arrays (psycopg2 parses an array's items with the item type's caster)."""
    import psycopg2.extensions as ext

    casters = []
    for name, oid, array_oid, base in _TIME_TYPES:
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
