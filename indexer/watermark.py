"""Watermark values: typed, compared in their own type, stored exactly. Pure, no clock.

A watermark keeps the type the database gave it:

* ``datetime`` (naive compared as naive, aware as aware), ``date``;
* ISO-8601 text (how SQLite usually stores timestamps): parsed to apply the
  lookback and written back in the column's own layout;
* numbers (an increasing version or SCN column): ``int`` or ``Decimal``; the
  lookback is then a number;
* other text (a sortable version code): compared as text; the lookback must be 0.

Stored form: ``{"type": ..., "value": <text>}``; the text round-trips exactly
(ISO 8601 with microseconds, integers and decimals as strings, never floats).

One run compares values of one kind: the stored watermark's, or the first non-NULL value's.
``keys_of`` turns each chunk's values into comparable keys and names the first value that
does not fit (``WatermarkValueError.position`` and ``.reason``), so that the caller can report
a row instead of a Python TypeError. Decisions:

* ISO text with a UTC offset and ISO text without one in the same column is an error ("mixes
  timestamps with and without a UTC offset"): a naive time is not silently taken as UTC, since
  the database's own time zone is unknown here. Timestamps alike (a column changed to
  ``timestamptz`` after a reindex stored a naive watermark).
* Empty text is never a watermark; text that is not ISO 8601 among ISO-8601 text is an error
  (text among plain text compares as text).
* Numbers compare with numbers whatever their type (int, Decimal, float; not NaN).
* NULL has no key (None): a reindex indexes such rows, a sync never sees them (``col >= since``).
* A value that is no point in time or on a scale (:class:`NotAPointError`) is never a watermark:
  NaN, an infinite number, PostgreSQL's ``±infinity`` and other values Python cannot hold
  (``values.DbText``), and the drivers' stand-ins for infinity (``datetime.max``/``min``,
  ``date.max``/``min``). Stored, ``datetime.max`` froze sync for good (nothing is ever later).
  Reindex and sync index such rows and name them in a warning; the watermark moves past them only
  by the other rows' values.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from indexer.errors import ConfigError, SourceError
from indexer.values import DbText, Unconvertible

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_ISO_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def parse_duration(text: str | int | float) -> dt.timedelta:
    """``"5m"``, ``"90s"``, ``"1h"``, ``"2d"`` (a bare number is seconds)."""
    if isinstance(text, (int, float)):
        return dt.timedelta(seconds=text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 2d")
    return dt.timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


class Mark(NamedTuple):
    """A row inside the lookback window, remembered by its watermark and the fingerprint of
    its bulk action, so that a sync re-reading it unchanged does not send it again."""

    value: Any
    fingerprint: str


class WatermarkValueError(SourceError):
    """A watermark value that cannot be compared with the run's others: ``position`` in the
    values given (None for a single value) and a short ``reason`` without the value itself."""

    def __init__(self, reason: str, position: int | None = None) -> None:
        super().__init__(f"job.watermark value: {reason}" if position is None
                         else f"job.watermark value {position + 1} of the chunk: {reason}")
        self.reason = reason
        self.position = position

    def placed(self, position: int | None) -> WatermarkValueError:
        """The same error (same class), at ``position``."""
        return type(self)(self.reason, position)


class NotAPointError(WatermarkValueError):
    """A value that is no point in time or on a scale (NaN, infinity, a driver's stand-in for it): never
    stored as a watermark; the row itself is indexed and named in a warning."""


_STAND_INS = frozenset({dt.datetime.max, dt.datetime.min})
_DATE_STAND_INS = frozenset({dt.date.max, dt.date.min})

class Kind(StrEnum):
    """Which values compare with which: one run's watermarks are all of one kind (values in messages)."""

    TIMESTAMP = "timestamp"
    TIMESTAMP_TZ = "timestamp with offset"
    DATE = "date"
    NUMBER = "number"
    ISO_TEXT = "ISO text"                   # ISO-8601 text (how SQLite keeps timestamps), parsed to compare
    ISO_TEXT_TZ = "ISO text with offset"
    TEXT = "text"                           # any other text: compared as text

    @property
    def iso(self) -> bool:
        return self in (Kind.ISO_TEXT, Kind.ISO_TEXT_TZ)


class Type(StrEnum):
    """The Python type a watermark value is kept in, and its tag in the stored form. The tags are the
    stored form's, as earlier versions wrote them: ``text`` is ISO-8601 text, ``string`` any other."""

    DATETIME = "datetime"
    DATE = "date"
    INT = "int"
    DECIMAL = "decimal"
    FLOAT = "float"
    ISO_TEXT = "text"
    TEXT = "string"

    @property
    def number(self) -> bool:
        return self in (Type.INT, Type.DECIMAL, Type.FLOAT)


_NOUN = {Kind.TIMESTAMP: "a timestamp", Kind.TIMESTAMP_TZ: "a timestamp with a UTC offset", Kind.DATE: "a date",
         Kind.NUMBER: "a number", Kind.ISO_TEXT: "ISO-8601 text", Kind.ISO_TEXT_TZ: "ISO-8601 text with a UTC offset",
         Kind.TEXT: "text"}
_PLURAL = {Kind.TIMESTAMP: "timestamps", Kind.TIMESTAMP_TZ: "timestamps", Kind.DATE: "dates", Kind.NUMBER: "numbers",
           Kind.ISO_TEXT: "ISO-8601 text", Kind.ISO_TEXT_TZ: "ISO-8601 text", Kind.TEXT: "text"}
_OFFSET_PAIRS = ({Kind.TIMESTAMP, Kind.TIMESTAMP_TZ}, {Kind.ISO_TEXT, Kind.ISO_TEXT_TZ})


def value_kind(value: Any) -> Kind:
    """The comparable kind of one non-NULL value; WatermarkValueError when it can be no watermark
    (NotAPointError when it is no point in time or on a scale)."""
    if isinstance(value, dt.datetime):
        if value.replace(tzinfo=None) in _STAND_INS:
            raise NotAPointError("no point in time (the driver's stand-in for infinity: year 9999's last or "
                                 "year 1's first instant)")
        return Kind.TIMESTAMP if value.utcoffset() is None else Kind.TIMESTAMP_TZ
    if isinstance(value, dt.date):
        if value in _DATE_STAND_INS:
            raise NotAPointError("no point in time (the driver's stand-in for infinity: 9999-12-31 or 0001-01-01)")
        return Kind.DATE
    if isinstance(value, bool):
        raise WatermarkValueError("a boolean (a boolean column cannot be a watermark)")
    if isinstance(value, (int, Decimal, float)):
        if isinstance(value, Decimal) and value.is_nan() or isinstance(value, float) and math.isnan(value):
            raise NotAPointError("NaN")  # compares false with everything (a Decimal NaN raises)
        if isinstance(value, (Decimal, float)) and value in (math.inf, -math.inf):
            raise NotAPointError("no point on a scale (infinite)")
        return Kind.NUMBER
    if isinstance(value, (DbText, Unconvertible)):
        raise NotAPointError("no point in time (PostgreSQL's infinity, 24:00 or a year outside 1-9999)")
    if isinstance(value, str):
        if not value.strip():
            raise WatermarkValueError("empty text")
        match = _ISO_TEXT.match(value)
        if not match:
            return Kind.TEXT
        return Kind.ISO_TEXT_TZ if match.group(4) else Kind.ISO_TEXT
    raise WatermarkValueError(f"{type(value).__name__}, not a timestamp, date, number or text")


def run_kind(values: Any, kind: Kind | None = None) -> Kind | None:
    """``kind`` when known, else the kind of the first non-NULL value (None when all are NULL)."""
    if kind is not None:
        return kind
    for position, value in enumerate(values):
        if value is not None:
            try:
                return value_kind(value)
            except WatermarkValueError as exc:
                raise exc.placed(position) from None  # the same error, now placed
    return None


def _key(value: Any, kind: Kind) -> Any:
    """The comparable key of ``value`` in a run of ``kind``; WatermarkValueError (no position) if it does not fit."""
    own = value_kind(value)
    if own != kind:
        if {own, kind} in _OFFSET_PAIRS:
            raise WatermarkValueError("mixes timestamps with and without a UTC offset")
        if kind.iso and own == Kind.TEXT:
            raise WatermarkValueError("not ISO-8601 text")
        if not (kind == Kind.TEXT and own.iso):  # ISO-looking text among plain text: text
            raise WatermarkValueError(f"{_NOUN[own]} among {_PLURAL[kind]}")
    if own.iso and kind.iso:
        try:
            return _parse_text(value)
        except ValueError:  # from None: the parser's text quotes the row value
            raise WatermarkValueError("not a valid ISO-8601 date or time") from None
    return value


def keys_of(values: Any, kind: Kind | None = None) -> list:
    """Comparable keys for one chunk's watermark values, None for NULL.

    ``kind`` is the run's (see ``run_kind``; None: the first non-NULL value's). The first value
    that does not fit raises WatermarkValueError with its ``position`` in ``values``.
    """
    kind = run_kind(values, Kind(kind) if kind is not None else None)
    fast = _fast_keys(values, kind)
    if fast is not None or kind is None:  # no kind: every value is NULL
        return fast if fast is not None else [None] * len(values)
    keys = []
    for position, value in enumerate(values):
        try:
            keys.append(None if value is None else _key(value, kind))
        except WatermarkValueError as exc:
            raise exc.placed(position) from None  # the same error, now placed
    return keys


def _fast_keys(values: Any, kind: Kind | None) -> list | None:
    """The keys of a chunk whose values all fit ``kind``, found without classifying each value
    (one parse per ISO text, one type check per value); None when one may not fit, so that
    ``keys_of`` finds which and why."""
    try:
        if kind in (Kind.ISO_TEXT, Kind.ISO_TEXT_TZ):
            keys = [None if v is None else _parse_text(v) for v in values]
            aware = kind == Kind.ISO_TEXT_TZ
            ok = all((k.tzinfo is not None) == aware for k in keys if k is not None)
            return keys if ok and all(v is None or v.strip() for v in values) else None
        if kind in (Kind.TIMESTAMP, Kind.TIMESTAMP_TZ):
            aware = kind == Kind.TIMESTAMP_TZ
            ok = all(v is None or (type(v) is dt.datetime and (v.utcoffset() is not None) == aware) for v in values)
            return list(values) if ok and not _extremes(values, _STAND_INS) else None
        if kind == Kind.NUMBER:
            ok = all(v is None or (type(v) in (int, Decimal, float) and v == v) for v in values)  # v == v: not NaN
            return list(values) if ok and math.inf not in values and -math.inf not in values else None
        if kind == Kind.DATE:
            ok = all(v is None or type(v) is dt.date for v in values)
            return list(values) if ok and not _extremes(values, _DATE_STAND_INS) else None
    except (ValueError, TypeError, AttributeError):  # not text, or not a date: the slow path names it
        return None
    return None


def _extremes(values: Any, stand_ins: frozenset) -> bool:
    """Whether the smallest or largest of ``values`` (timestamps or dates, NULLs ignored) is a stand-in."""
    present = [v for v in values if v is not None]
    if not present:
        return False
    return bool({getattr(v, "tzinfo", None) and v.replace(tzinfo=None) or v for v in (min(present), max(present))}
                & stand_ins)


def type_of(value: Any) -> Type:
    """The type a watermark value is kept in (and stored as)."""
    if isinstance(value, dt.datetime):
        return Type.DATETIME
    if isinstance(value, dt.date):
        return Type.DATE
    if isinstance(value, bool):
        raise SourceError("a boolean column cannot be a watermark")
    if isinstance(value, int):
        return Type.INT
    if isinstance(value, Decimal):
        return Type.DECIMAL
    if isinstance(value, float):
        return Type.FLOAT
    if isinstance(value, str):
        return Type.ISO_TEXT if _ISO_TEXT.match(value) else Type.TEXT
    raise SourceError("watermark values must be timestamps, dates, ISO-8601 text or numbers, "
                      f"not {type(value).__name__}")


def to_state(value: Any) -> dict:
    kind = type_of(value)
    if kind in (Type.DATETIME, Type.DATE):
        return {"type": str(kind), "value": value.isoformat()}
    if kind == Type.FLOAT:
        return {"type": str(kind), "value": repr(value)}
    return {"type": str(kind), "value": str(value)}


def from_state(state: dict | None) -> Any:
    """The stored watermark; ConfigError when the stored text is not of its recorded type."""
    if not state:
        return None
    try:
        return _from_state(state["type"], state["value"])
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError("the stored watermark is not valid; run `indexer reindex` to record a new one") from exc


def _from_state(tag: str, text: str) -> Any:
    kind = Type(tag)  # ValueError for a tag this version does not know
    if kind == Type.ISO_TEXT and not _ISO_TEXT.match(text):
        raise ValueError(text)
    if kind == Type.DATETIME:
        return dt.datetime.fromisoformat(text)
    if kind == Type.DATE:
        return dt.date.fromisoformat(text)
    if kind == Type.INT:
        return int(text)
    if kind == Type.DECIMAL:
        return Decimal(text)
    if kind == Type.FLOAT:
        return float(text)
    return text


def _parse_text(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_like(template: str, value: dt.datetime) -> str:
    """Write ``value`` in the layout of ``template`` (separator, precision, offset)."""
    if len(template) == 10:
        return value.date().isoformat()
    match = _ISO_TEXT.match(template)
    if match is None:  # the template is a watermark value of kind ISO text: it matched before
        raise ValueError(f"not ISO-8601 text: {template!r}")
    sep = template[10]
    frac, tz = match.group(3), match.group(4)
    layout = "%H:%M" if match.group(2) is None else "%H:%M:%S"
    text = value.strftime(f"%Y-%m-%d{sep}{layout}")
    if frac:
        digits = len(frac) - 1
        text += "." + f"{value.microsecond:06d}"[:digits].ljust(digits, "0")
    if tz:
        if tz == "Z":
            text += "Z"
        else:
            offset = value.strftime("%z")
            text += offset if ":" not in tz else f"{offset[:3]}:{offset[3:]}"
    return text


def minus(value: Any, lookback: Any) -> Any:
    """``value - lookback`` in the value's own type and layout."""
    value_kind(value)  # empty text, NaN...: WatermarkValueError rather than a Python error below
    try:
        return _minus(value, lookback)
    except OverflowError as exc:
        raise WatermarkValueError("out of range once job.lookback is subtracted") from exc


def _minus(value: Any, lookback: Any) -> Any:
    kind = type_of(value)
    if kind == Type.TEXT:
        if lookback not in (0, "0", "0s") and parse_duration(lookback).total_seconds() != 0:
            raise ConfigError("job.lookback must be 0 for a text watermark that is not a timestamp")
        return value
    if kind.number:
        if not isinstance(lookback, (int, float, Decimal)):
            raise ConfigError("job.lookback must be a number for a numeric watermark")
        result = value - (type(value)(str(lookback)) if kind == Type.DECIMAL else lookback)
        return int(result) if kind == Type.INT and isinstance(result, float) and result.is_integer() else result
    if isinstance(lookback, (int, float)) and not isinstance(lookback, bool):
        delta = dt.timedelta(seconds=lookback)
    else:
        delta = parse_duration(lookback) if not isinstance(lookback, dt.timedelta) else lookback
    if kind == Type.DATETIME:
        return value - delta
    if kind == Type.DATE:
        return value - dt.timedelta(days=-(-delta.total_seconds() // 86400))
    try:
        parsed = _parse_text(value)
    except ValueError:  # ISO-looking text that is no date (2024-02-30); from None: its text quotes the row value
        raise WatermarkValueError("not a valid ISO-8601 date or time") from None
    return _format_like(value, parsed - delta)


def newer(a: Any, b: Any) -> Any:
    """The later of two watermark values of the same kind (None counts as oldest)."""
    if a is None:
        return b
    if b is None:
        return a
    key_a, key_b = _pair(a, b)
    return a if key_a >= key_b else b


def at_least(value: Any, floor: Any) -> bool:
    """``value >= floor`` in the watermark's own type (the floor's kind decides)."""
    key_floor, key_value = _pair(floor, value)
    return key_value >= key_floor


def _pair(first: Any, second: Any) -> list:
    """Keys of two values of one kind (the first's); the error names no position."""
    try:
        return keys_of([first, second])
    except WatermarkValueError as exc:
        raise exc.placed(None) from None  # the same error, without a position
