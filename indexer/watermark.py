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

# The comparable kinds: which values compare with which (used in messages, so readable).
_NOUN = {"timestamp": "a timestamp", "timestamp with offset": "a timestamp with a UTC offset", "date": "a date",
         "number": "a number", "ISO text": "ISO-8601 text", "ISO text with offset": "ISO-8601 text with a UTC offset",
         "text": "text"}
_PLURAL = {"timestamp": "timestamps", "timestamp with offset": "timestamps", "date": "dates", "number": "numbers",
           "ISO text": "ISO-8601 text", "ISO text with offset": "ISO-8601 text", "text": "text"}
_OFFSET_PAIRS = ({"timestamp", "timestamp with offset"}, {"ISO text", "ISO text with offset"})


def value_kind(value: Any) -> str:
    """The comparable kind of one non-NULL value; WatermarkValueError when it can be no watermark
    (NotAPointError when it is no point in time or on a scale)."""
    if isinstance(value, dt.datetime):
        if value.replace(tzinfo=None) in _STAND_INS:
            raise NotAPointError("no point in time (the driver's stand-in for infinity: year 9999's last or "
                                 "year 1's first instant)")
        return "timestamp" if value.utcoffset() is None else "timestamp with offset"
    if isinstance(value, dt.date):
        if value in _DATE_STAND_INS:
            raise NotAPointError("no point in time (the driver's stand-in for infinity: 9999-12-31 or 0001-01-01)")
        return "date"
    if isinstance(value, bool):
        raise WatermarkValueError("a boolean (a boolean column cannot be a watermark)")
    if isinstance(value, (int, Decimal, float)):
        if isinstance(value, Decimal) and value.is_nan() or isinstance(value, float) and math.isnan(value):
            raise NotAPointError("NaN")  # compares false with everything (a Decimal NaN raises)
        if isinstance(value, (Decimal, float)) and value in (math.inf, -math.inf):
            raise NotAPointError("no point on a scale (infinite)")
        return "number"
    if isinstance(value, (DbText, Unconvertible)):
        raise NotAPointError("no point in time (PostgreSQL's infinity, 24:00 or a year outside 1-9999)")
    if isinstance(value, str):
        if not value.strip():
            raise WatermarkValueError("empty text")
        match = _ISO_TEXT.match(value)
        if not match:
            return "text"
        return "ISO text with offset" if match.group(4) else "ISO text"
    raise WatermarkValueError(f"{type(value).__name__}, not a timestamp, date, number or text")


def run_kind(values: Any, kind: str | None = None) -> str | None:
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


def _key(value: Any, kind: str) -> Any:
    """The comparable key of ``value`` in a run of ``kind``; WatermarkValueError (no position) if it does not fit."""
    own = value_kind(value)
    if own != kind:
        if {own, kind} in _OFFSET_PAIRS:
            raise WatermarkValueError("mixes timestamps with and without a UTC offset")
        if kind.startswith("ISO") and own == "text":
            raise WatermarkValueError("not ISO-8601 text")
        if not (kind == "text" and own.startswith("ISO")):  # ISO-looking text among plain text: text
            raise WatermarkValueError(f"{_NOUN[own]} among {_PLURAL[kind]}")
    if own.startswith("ISO") and kind.startswith("ISO"):
        try:
            return _parse_text(value)
        except ValueError:  # from None: the parser's text quotes the row value
            raise WatermarkValueError("not a valid ISO-8601 date or time") from None
    return value


def keys_of(values: Any, kind: str | None = None) -> list:
    """Comparable keys for one chunk's watermark values, None for NULL.

    ``kind`` is the run's (see ``run_kind``; None: the first non-NULL value's). The first value
    that does not fit raises WatermarkValueError with its ``position`` in ``values``.
    """
    kind = run_kind(values, kind)
    fast = _fast_keys(values, kind)
    if fast is not None:
        return fast
    keys = []
    for position, value in enumerate(values):
        try:
            keys.append(None if value is None else _key(value, kind))
        except WatermarkValueError as exc:
            raise exc.placed(position) from None  # the same error, now placed
    return keys


def _fast_keys(values: Any, kind: str | None) -> list | None:
    """The keys of a chunk whose values all fit ``kind``, found without classifying each value
    (one parse per ISO text, one type check per value); None when one may not fit, so that
    ``keys_of`` finds which and why."""
    try:
        if kind in ("ISO text", "ISO text with offset"):
            keys = [None if v is None else _parse_text(v) for v in values]
            aware = kind == "ISO text with offset"
            ok = all((k.tzinfo is not None) == aware for k in keys if k is not None)
            return keys if ok and all(v is None or v.strip() for v in values) else None
        if kind in ("timestamp", "timestamp with offset"):
            aware = kind == "timestamp with offset"
            ok = all(v is None or (type(v) is dt.datetime and (v.utcoffset() is not None) == aware) for v in values)
            return list(values) if ok and not _extremes(values, _STAND_INS) else None
        if kind == "number":
            ok = all(v is None or (type(v) in (int, Decimal, float) and v == v) for v in values)  # v == v: not NaN
            return list(values) if ok and math.inf not in values and -math.inf not in values else None
        if kind == "date":
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


def kind_of(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return "datetime"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, bool):
        raise SourceError("a boolean column cannot be a watermark")
    if isinstance(value, int):
        return "int"
    if isinstance(value, Decimal):
        return "decimal"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "text" if _ISO_TEXT.match(value) else "string"
    raise SourceError("watermark values must be timestamps, dates, ISO-8601 text or numbers, "
                      f"not {type(value).__name__}")


def to_state(value: Any) -> dict:
    kind = kind_of(value)
    if kind in ("datetime", "date"):
        return {"type": kind, "value": value.isoformat()}
    if kind == "float":
        return {"type": kind, "value": repr(value)}
    return {"type": kind, "value": str(value)}


def from_state(state: dict | None) -> Any:
    """The stored watermark; ConfigError when the stored text is not of its recorded type."""
    if not state:
        return None
    try:
        return _from_state(state["type"], state["value"])
    except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
        raise ConfigError("the stored watermark is not valid; run `indexer reindex` to record a new one") from exc


def _from_state(kind: str, text: str) -> Any:
    if kind == "text" and not _ISO_TEXT.match(text):
        raise ValueError(text)
    if kind == "datetime":
        return dt.datetime.fromisoformat(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "int":
        return int(text)
    if kind == "decimal":
        return Decimal(text)
    if kind == "float":
        return float(text)
    if kind in ("text", "string"):
        return text
    raise ValueError(kind)


def _parse_text(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _format_like(template: str, value: dt.datetime) -> str:
    """Write ``value`` in the layout of ``template`` (separator, precision, offset)."""
    if len(template) == 10:
        return value.date().isoformat()
    match = _ISO_TEXT.match(template)
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
    kind = kind_of(value)
    if kind == "string":
        if lookback not in (0, "0", "0s") and parse_duration(lookback).total_seconds() != 0:
            raise ConfigError("job.lookback must be 0 for a text watermark that is not a timestamp")
        return value
    if kind in ("int", "decimal", "float"):
        if not isinstance(lookback, (int, float, Decimal)):
            raise ConfigError("job.lookback must be a number for a numeric watermark")
        result = value - (type(value)(str(lookback)) if kind == "decimal" else lookback)
        return int(result) if kind == "int" and isinstance(result, float) and result.is_integer() else result
    if isinstance(lookback, (int, float)) and not isinstance(lookback, bool):
        delta = dt.timedelta(seconds=lookback)
    else:
        delta = parse_duration(lookback) if not isinstance(lookback, dt.timedelta) else lookback
    if kind == "datetime":
        return value - delta
    if kind == "date":
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
