"""The slices of a partitioned reindex: disjoint ranges of ``job.partition_by`` that cover every row once.

::

    job.query --bounds (one aggregate: MIN, MAX, NULLs)--> plan_slices() --> [Slice, ...]
    Slice --slice_query()--> SELECT * FROM (<query>) q WHERE q.<column> >= :slice_lo AND q.<column> < :slice_hi
                             (<= for the last range; IS NULL for the NULL slice), in the driver's bind style

Decisions (docs/partitions.md says more):

* Equal-width ranges between MIN and MAX: one cheap aggregate query (as Sqoop and Spark JDBC do),
  where quantiles would cost a sort of the whole result on most databases. Skew is absorbed by asking
  for more partitions than workers: a worker takes the next slice when it finishes one.
* Ranges are half-open, ``[lo, hi)``, and the last is closed, ``[lo, MAX]``; each range starts where
  the previous one ends, with the very same bound value, so no row is lost or read twice whatever the
  rounding of the bounds. Integers, dates and timestamps split on whole units (microseconds for
  timestamps), never into empty ranges; fewer distinct values than partitions give fewer slices.
* Rows whose column is NULL are in no range: one more slice reads them, only when there are some.
* ISO-8601 text (how SQLite stores timestamps) splits as timestamps and its bounds are written in
  the column's own layout; the database compares them as text, and text ranges between the text MIN
  and MAX still cover every value exactly once, even a value in another layout.
* Bounds are bind parameters (``slice_lo``, ``slice_hi``), never SQL text.

Pure but for :func:`plan_slices`, which asks the database.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from indexer import source
from indexer import watermark as wm
from indexer.config import Job, same_bind_name
from indexer.errors import ConfigError
from indexer.extract import user_params

_NUMBERS = ("int", "decimal", "float")


@dataclass(frozen=True)
class Slice:
    """One slice of the query: a range of the partition column, or its NULLs."""

    number: int            # 0-based; the NULL slice (if any) is the last one
    count: int             # how many slices in the run (for messages: "slice 2 of 5")
    lo: Any = None         # inclusive lower bound, bound as a parameter (None for the NULL slice)
    hi: Any = None         # upper bound, exclusive; inclusive when ``last``
    last: bool = False
    nulls: bool = False    # rows whose partition column is NULL

    def describe(self, column: str) -> str:
        """``id >= 100 and < 200``, ``id >= 200 and <= 250``, ``id is NULL``."""
        if self.nulls:
            return f"{column} is NULL"
        return f"{column} >= {self.lo} and {'<=' if self.last else '<'} {self.hi}"

    def name(self) -> str:
        """``slice 2 of 5`` (1-based, for people)."""
        return f"slice {self.number + 1} of {self.count}"


def plan_slices(job: Job, partitions: int) -> list[Slice]:
    """Blocking: the slices of ``job.query`` by ``job.partition_by``, from its MIN, MAX and NULL count.

    At most ``partitions`` ranges, plus the NULL slice when NULLs exist; none for an empty result.
    A column that is not among the query's columns, or whose values cannot be ranged (text, booleans),
    is a ConfigError.
    """
    settings, column = job.job, job.job.partition_by
    if column is None:  # the job file's check covers partitions > 1; this one job.cluster too
        raise ConfigError("job.cluster needs job.partition_by (the column the slices are ranges of)")
    db = source.dialect(job.source.dbtype)
    taken = [n for n in (*settings.params, *db.binds(settings.query))
             if any(same_bind_name(job.source.dbtype, n, own) for own in (source.SLICE_LO, source.SLICE_HI))]
    if taken:
        raise ConfigError(f"job.params: {taken[0]!r} is the name a partitioned reindex binds its bounds to; rename it")
    with source.connect(job.source, settings.chunk_size) as conn:
        columns = source.columns_of(conn, settings.query, user_params(job))
        if column not in columns:
            raise ConfigError(f"job.partition_by: column {column!r} is not among the query's columns "
                              f"({', '.join(columns)})")
        low, high, nulls = source.bounds(conn, settings.query, user_params(job), column)
    return slices_between(low, high, nulls > 0, partitions, column)


def slices_between(low: Any, high: Any, nulls: bool, partitions: int, column: str = "partition_by") -> list[Slice]:
    """The slices for a column whose values run from ``low`` to ``high`` (pure: the planning itself)."""
    starts = [] if low is None else range_starts(low, high, partitions, column)
    count = len(starts) + nulls
    ranges = [Slice(n, count, lo, starts[n + 1] if n + 1 < len(starts) else high, last=n + 1 == len(starts))
              for n, lo in enumerate(starts)]
    return ranges + ([Slice(len(starts), count, nulls=True)] if nulls else [])


def range_starts(low: Any, high: Any, partitions: int, column: str = "partition_by") -> list[Any]:
    """The first value of each range: ``low``, then strictly increasing values below ``high``."""
    kind = _kind_of(low, high, column)
    if kind == "int":
        return _int_starts(low, high, partitions)
    if kind == "decimal":
        if low == low.to_integral_value() and high == high.to_integral_value():
            return [Decimal(n) for n in _int_starts(int(low), int(high), partitions)]
        return _increasing(low, high, [low + (high - low) * i / partitions for i in range(1, partitions)])
    if kind == "float":
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigError(f"job.partition_by: column {column!r} holds an infinite or NaN value; "
                              "its ranges cannot be computed (partition by another column)")
        inner = [low * ((partitions - i) / partitions) + high * (i / partitions) for i in range(1, partitions)]
        return _increasing(low, high, inner)
    if kind == "date":
        return [dt.date.fromordinal(n) for n in _int_starts(low.toordinal(), high.toordinal(), partitions)]
    if kind == "datetime":
        micro = dt.timedelta(microseconds=1)
        return [low + n * micro for n in _int_starts(0, (high - low) // micro, partitions)]
    return _text_starts(low, high, partitions)


def _int_starts(low: int, high: int, partitions: int) -> list[int]:
    """``partitions`` (at most one per value) equal ranges of the integers from ``low`` to ``high``."""
    span = high - low + 1
    parts = min(partitions, span)
    return [low + span * i // parts for i in range(parts)]


def _increasing(low: Any, high: Any, inner: list[Any]) -> list[Any]:
    """``low`` and the inner bounds strictly between ``low`` and ``high``, each above the previous."""
    starts = [low]
    for value in inner:
        if starts[-1] < value < high:
            starts.append(value)
    return starts


def _text_starts(low: str, high: str, partitions: int) -> list[str]:
    """ISO-8601 text: split as timestamps, bounds written in ``low``'s layout, kept in text order."""
    first, last = dt.datetime.fromisoformat(low), dt.datetime.fromisoformat(high)
    if (first.utcoffset() is None) != (last.utcoffset() is None):
        raise ConfigError("job.partition_by: the column mixes ISO-8601 text with and without a UTC offset")
    micro = dt.timedelta(microseconds=1)
    offsets = _int_starts(0, max((last - first) // micro, 0), partitions)[1:]
    # wm.minus writes a timestamp back in the text's own layout; minus a negative span is plus it
    return _increasing(low, high, [wm.minus(low, -n * micro) for n in offsets])


def _kind_of(low: Any, high: Any, column: str) -> str:
    """The kind both bounds share (numbers of different types share the widest), or a ConfigError."""
    kinds = {_value_kind(low, column), _value_kind(high, column)}
    if len(kinds) == 1:
        kind = kinds.pop()
    elif kinds <= set(_NUMBERS):
        kind = "float" if "float" in kinds else "decimal"
    else:
        raise ConfigError(f"job.partition_by: column {column!r} mixes {' and '.join(sorted(kinds))} values; "
                          "its ranges cannot be computed (partition by another column)")
    if kind == "datetime" and (low.utcoffset() is None) != (high.utcoffset() is None):
        raise ConfigError(f"job.partition_by: column {column!r} mixes timestamps with and without a UTC offset")
    return kind


def _value_kind(value: Any, column: str) -> str:
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return "int"
    elif isinstance(value, Decimal) and value.is_finite():
        return "decimal"
    elif isinstance(value, float):
        return "float"
    elif isinstance(value, dt.datetime):
        return "datetime"
    elif isinstance(value, dt.date):
        return "date"
    elif isinstance(value, str) and _iso_timestamp(value):
        return "iso text"
    raise ConfigError(f"job.partition_by: column {column!r} holds {type(value).__name__} values "
                      f"({'text that is not ISO 8601' if isinstance(value, str) else 'not a range type'}); "
                      "partitions need an integer, numeric, date or timestamp column")


def _iso_timestamp(text: str) -> bool:
    try:
        return wm.value_kind(text).startswith("ISO text") and bool(dt.datetime.fromisoformat(text))
    except (wm.WatermarkValueError, ValueError):
        return False


def slice_query(job: Job, s: Slice) -> tuple[str, Any]:
    """The SQL of one slice and its parameters in the driver's shape: the job's own, then the bounds."""
    settings = job.job
    db = source.dialect(job.source.dbtype)
    if s.nulls:
        sql = db.slice_query(settings.query, settings.partition_by, None)
        return sql, db.params(dict(settings.params), sql)
    sql = db.slice_query(settings.query, settings.partition_by, "<=" if s.last else "<")
    return sql, db.params({**settings.params, source.SLICE_LO: s.lo, source.SLICE_HI: s.hi}, sql)
