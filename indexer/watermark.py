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
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any, Callable

from indexer.errors import ConfigError, SourceError

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
    raise SourceError(f"watermark values must be timestamps, dates, ISO-8601 text or numbers, not {type(value).__name__}")


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
    except (KeyError, TypeError, ValueError, ArithmeticError):
        raise ConfigError("the stored watermark is not valid; run `indexer reindex` to record a new one") from None


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
    return _format_like(value, _parse_text(value) - delta)


def comparable(sample: Any) -> Callable[[Any], Any]:
    """A key function that orders values of ``sample``'s kind (ISO text is parsed), for whole chunks at once."""
    return _parse_text if kind_of(sample) == "text" else _identity


def _identity(value: Any) -> Any:
    return value


def newer(a: Any, b: Any) -> Any:
    """The later of two watermark values of the same kind (None counts as oldest)."""
    if a is None:
        return b
    if b is None:
        return a
    if kind_of(a) == "text":
        return a if _parse_text(a) >= _parse_text(b) else b
    return a if a >= b else b


def at_least(value: Any, floor: Any) -> bool:
    """``value >= floor`` in the watermark's own type."""
    if kind_of(value) == "text":
        return _parse_text(value) >= _parse_text(floor)
    return value >= floor
