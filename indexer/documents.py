"""Rows become documents: pure functions, no clock, no I/O.

::

    tuple row --(columns)--> dict --(nest dotted names)--> document
        --(user transform, optional)--> document --(doc_id, encode)--> NDJSON bytes

Rules (also in docs/documents.md):

* Column names are lower-cased; a dotted name (``"metadata.source"``) becomes a
  nested object. ``a`` and ``a.b`` in one query conflict.
* ``Decimal``: integral values become JSON integers when they fit a signed 64-bit
  long, else strings of the integer; other values become JSON numbers when the
  shortest double prints exactly the same number, else strings (no silent loss).
* ``int`` outside the signed 64-bit range: the decimal string.
* ``datetime``/``date``/``time``: ISO 8601 (naive stays naive, aware keeps its
  offset, a time with a zone too); ``timedelta``: seconds as a number.
* ``values.DbText`` (PostgreSQL's ``infinity``, ``24:00:00``, a year outside 1-9999): its text,
  as PostgreSQL prints it; ``values.Unconvertible``: the row is rejected, naming the field.
* ``bytes``: base64 (standard alphabet, padded). Oracle LOBs are read whole.
* ``float`` NaN or Infinity (and ``Decimal`` NaN/Infinity): the row is rejected
  with a :class:`RowError`; nothing invalid is ever written.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import orjson

from indexer import digest as digests
from indexer.errors import ConfigError, RowError
from indexer.values import Unconvertible

MAX_ID_BYTES = 512
_SHORT_ID = MAX_ID_BYTES // 4  # characters: never over MAX_ID_BYTES in UTF-8
_INT64 = 2**63
Transform = Callable[[list[dict]], list[dict]]


# ---------------------------------------------------------------- columns and nesting

# Metadata field names: a document holding one at its top level is refused ("failed to parse field
# [_id] of type [_id]", "is a metadata field and cannot be added inside a document") and a mapping
# defining one is refused ("Field [_id] is defined more than once"). Tried on OpenSearch 2.19,
# Elasticsearch 8.19 and 9.2 for 50 underscore names: these 13 are refused by at least one of them
# (_feature by OpenSearch's mapper-extras, _ignored_source by Elasticsearch 8.15+) ...
METADATA_FIELDS = frozenset({
    "_id", "_source", "_index", "_routing", "_field_names", "_ignored", "_seq_no", "_version", "_doc_count",
    "_data_stream_timestamp", "_nested_path", "_feature", "_ignored_source",
    # ... and these come from modules the test nodes lack: _tier (Elasticsearch's data tiers, in every
    # default distribution), _size (the mapper-size plugin of both engines). Names the engines accept
    # (_type, _uid, _parent, _all, _meta, _primary_term, _tsid in a standard index...) are not here.
    "_tier", "_size",
})


def renamed(name: str) -> str:
    """The name init gives a column called like a metadata field: ``_id`` -> ``id_``."""
    return name.lstrip("_") + "_"



def column_names(description: Sequence[Sequence[Any]]) -> tuple[str, ...]:
    """Lower-cased names from a DB-API ``cursor.description``."""
    return tuple(str(col[0]).lower() for col in description)


def make_row_mapper(columns: Sequence[str]) -> Callable[[Sequence[Any]], dict]:
    """Return ``row -> document`` for rows with these (lower-cased) columns.

    Flat columns take the fast path (``dict(zip(...))``); dotted ones are nested.
    Raises ConfigError when names repeat or conflict (``a`` and ``a.b``).
    """
    columns = tuple(columns)
    if len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise ConfigError(f"query returns column {dupes[0]!r} more than once (alias the columns)")
    paths = [tuple(c.split(".")) for c in columns]
    if all(len(p) == 1 for p in paths):
        return lambda row: dict(zip(columns, row, strict=True))

    leaves = set(paths)
    for path in paths:
        for i in range(1, len(path)):
            if path[:i] in leaves:
                raise ConfigError(f"query columns {'.'.join(path[:i])!r} and {'.'.join(path)!r} conflict")
        if any(not part for part in path):
            raise ConfigError(f"query column {'.'.join(path)!r} has an empty part")

    def nested(row: Sequence[Any]) -> dict:
        doc: dict = {}
        for path, value in zip(paths, row, strict=True):
            node = doc
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        return doc

    return nested


# ---------------------------------------------------------------- ids


def _key_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowError("key value is NaN or Infinity")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise RowError("key value is NaN or Infinity")
        if value == value.to_integral_value():
            return str(int(value))
        return format(value.normalize(), "f")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, Unconvertible):
        raise RowError(f"key value: {value.reason}")
    return str(value)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _lookup(doc: dict, field: str) -> Any:
    if field in doc:
        return doc[field]
    node: Any = doc
    for part in field.split("."):
        if not isinstance(node, dict) or part not in node:
            raise RowError(f"key column {field!r} is missing from the document")
        node = node[part]
    return node


def key_values(doc: dict, key: Sequence[str]) -> dict[str, Any]:
    """The key columns' values of a document (missing ones as None), for reports."""
    values = {}
    for field in key:
        try:
            values[field] = _lookup(doc, field)
        except RowError:
            values[field] = None
    return values


def doc_id(doc: dict, key: Sequence[str]) -> str:
    """The deterministic ``_id`` of a document (docs/documents.md).

    One key column: its value as text. Several: each value as text with ``\\`` and
    ``|`` escaped by a backslash, joined by ``|`` (so ``("a|b","c")`` and
    ``("a","b|c")`` differ). An id over 512 UTF-8 bytes becomes ``#`` + the
    SHA-256 hex digest of that text. A NULL key value rejects the row.
    """
    parts = []
    for field in key:
        value = _lookup(doc, field)
        if value is None:
            raise RowError(f"key column {field!r} is NULL")
        parts.append(_key_text(value))
    text = parts[0] if len(parts) == 1 else "|".join(_escape(p) for p in parts)
    if len(text) > _SHORT_ID and len(text.encode("utf-8")) > MAX_ID_BYTES:
        return "#" + hashlib.sha256(text.encode("utf-8")).hexdigest()
    return text


# ---------------------------------------------------------------- values


def decimal_to_json(value: Decimal) -> int | float | str:
    if not value.is_finite():
        raise RowError("a Decimal value is NaN or Infinity")
    if value == value.to_integral_value():
        as_int = int(value)
        return as_int if -_INT64 <= as_int < _INT64 else str(as_int)
    as_float = float(value)
    if Decimal(repr(as_float)) == value:
        return as_float
    return format(value, "f")


def _default(value: Any) -> Any:
    """orjson's hook for the types it does not write natively."""
    if isinstance(value, Decimal):
        return decimal_to_json(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if callable(getattr(value, "read", None)):  # Oracle LOB (when fetched as a locator)
        return value.read()
    raise TypeError(f"cannot convert a {type(value).__name__} value")


def _normalise(value: Any, path: str) -> Any:
    """Slow path: walk a value, rejecting NaN/Infinity and widening big ints."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RowError(f"field {path!r} is NaN or Infinity")
        return value
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, dict):
        return {k: _normalise(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v, path) for v in value]
    if isinstance(value, Decimal):
        try:
            return decimal_to_json(value)
        except RowError as exc:
            raise RowError(f"field {path!r} is NaN or Infinity") from exc
    if callable(getattr(value, "read", None)):
        return _normalise(value.read(), path)
    if isinstance(value, dt.time) and value.tzinfo is not None:
        return value.isoformat()  # orjson refuses a time with a zone; ISO 8601 writes its offset
    if isinstance(value, Unconvertible):
        raise RowError(f"field {path!r}: {value.reason}")
    return value


def dumps(doc: dict) -> bytes:
    """Serialise one document by the rules above; RowError when it cannot be."""
    try:
        # OPT_STRICT_INTEGER sends ints beyond 2**53 to the slow path, which keeps
        # those that fit a signed long and writes larger ones as strings.
        body = orjson.dumps(doc, default=_default, option=orjson.OPT_STRICT_INTEGER)
    except orjson.JSONEncodeError:
        body = None  # the slow path below names the field or converts the value
    # orjson writes NaN/Infinity as null: only a body containing null can hide one.
    if body is not None and b"null" not in body:
        return body
    try:
        return orjson.dumps(_normalise(doc, ""), default=_default)
    except orjson.JSONEncodeError as exc:
        if isinstance(exc.__cause__, RowError):
            raise exc.__cause__ from None  # the RowError is the story; orjson's wrapper adds nothing
        raise RowError(f"cannot convert the row to JSON: {exc.__cause__ or exc}") from exc


def index_action(id_: str, body: bytes, version: int | None = None) -> bytes:
    """One bulk ``index`` action: the action line and the source line, newline-terminated.

    With a ``version`` the action carries ``version_type: external_gte``: the cluster keeps
    the document with the highest version whatever order requests arrive in (a resend of
    the same action is accepted again, an older row of the same key is refused with 409).
    """
    if version is None:
        return b'{"index":{"_id":' + orjson.dumps(id_) + b"}}\n" + body + b"\n"
    return (b'{"index":{"_id":' + orjson.dumps(id_) + b',"version":' + str(version).encode()
            + b',"version_type":"external_gte"}}\n' + body + b"\n")


def delete_action(id_: str) -> bytes:
    return b'{"delete":{"_id":' + orjson.dumps(id_) + b"}}\n"


# ---------------------------------------------------------------- a chunk


class Action(NamedTuple):
    """One bulk action, kept with its id and the position of the document it came from."""

    id: str
    line: bytes   # the action line (and source line), newline-terminated
    at: int       # the document's position in the list given to encode_chunk; -1 for a delete added later


_new_action = tuple.__new__


class Rejected(NamedTuple):
    """A row that could not become a document: its row number in the run, why, and the document."""

    row: int
    reason: str
    doc: dict | None


class Encoded:
    """The NDJSON actions of one chunk of documents, in order, and the rejected rows."""

    __slots__ = ("actions", "nbytes", "rejected")

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.nbytes = 0
        self.rejected: list[Rejected] = []


def stamped(doc: dict) -> bytes:
    """:func:`dumps` with the document's digest as its last field (``digest.stamp``); a document that
    already has that field is rejected, naming it (the digest would be ambiguous, reconcile wrong)."""
    if digests.FIELD in doc:
        raise RowError(f"the document has a field {digests.FIELD!r}, the name job.digest stores the digest under "
                       "(rename it, or set job.digest = false)")
    return digests.stamp(dumps(doc))


def encode_chunk(
    docs: Iterable[dict], key: Sequence[str], first_row: int = 0, version_base: int | None = None,
    digest: bool = False,
) -> Encoded:
    """Encode documents as bulk ``index`` actions; bad rows are collected, not raised.

    ``version_base`` (when given) versions the actions ``version_base + position``, in
    source order (see :func:`index_action`). ``digest``: each document carries its digest
    (:func:`stamped`), for reconcile to compare content.

    The loop is the hottest in the tool (once per row), so the common case is written out:
    one key column whose value is a short ``str`` or an ``int`` (what :func:`doc_id` returns
    unchanged), no version. Everything else goes through :func:`doc_id` and :func:`index_action`.
    Measured in BENCHMARKS.md; tests/unit/test_documents.py checks both paths give the same bytes.
    """
    out = Encoded()
    actions, rejected = out.actions, out.rejected
    single = key[0] if len(key) == 1 and version_base is None else None
    quote, new_action, encode = orjson.dumps, _new_action, stamped if digest else dumps
    nbytes = 0
    for n, doc in enumerate(docs):
        try:
            value = doc.get(single) if single is not None else None
            kind = type(value)
            id_ = value if kind is str else str(value) if kind is int else None
            if id_ is not None and len(id_) <= _SHORT_ID:
                line = b'{"index":{"_id":' + quote(id_) + b"}}\n" + encode(doc) + b"\n"
            else:
                id_ = doc_id(doc, key)
                line = index_action(id_, encode(doc), None if version_base is None else version_base + n)
        except RowError as exc:
            rejected.append(Rejected(first_row + n, str(exc), doc))
            continue
        actions.append(new_action(Action, (id_, line, n)))  # Action(...) at half the cost, per row
        nbytes += len(line)
    out.nbytes = nbytes
    return out


def check_key_columns(columns: Sequence[str], key: Sequence[str], has_transform: bool) -> None:
    """Fail fast (before any write) when a key column is not in the query result, or a column is named
    like a metadata field (the engines refuse every such document: a run of dead letters)."""
    if has_transform:
        return  # the transform decides the document's fields; checked per row instead
    top = {c.split(".")[0] for c in columns} | set(columns)
    reserved = sorted(c for c in columns if c.split(".")[0] in METADATA_FIELDS)
    if reserved:
        raise ConfigError(f"the query returns column {reserved[0]!r}, a metadata field name the engines refuse "
                          f"inside a document: rename it in the query (\"{reserved[0]}\" AS {renamed(reserved[0])})")
    for field in key:
        if field not in top:
            raise ConfigError(f"key column {field!r} is not in the query result (columns: {', '.join(columns)})")


def byte_batches(actions: Sequence[Action], max_bytes: int) -> Iterator[list[Action]]:
    """Consecutive slices of at most ``max_bytes`` (a single larger action stands alone)."""
    batch: list[Action] = []
    size = 0
    for action in actions:
        if batch and size + len(action.line) > max_bytes:
            yield batch
            batch, size = [], 0
        batch.append(action)
        size += len(action.line)
    if batch:
        yield batch


_TRUE = {"1", "y", "yes", "t", "true"}


def is_true(value: Any) -> bool:
    """A soft-delete flag: True, non-zero numbers, and '1', 'Y', 'yes', 'T', 'true' (any case)."""
    if value is None:
        return False
    if isinstance(value, (bool, int, float, Decimal)):
        return bool(value)
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    return str(value).strip().lower() in _TRUE
