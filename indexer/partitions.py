"""The slices of a partitioned reindex: disjoint ranges of ``job.partition_by`` that cover every row once.

::

    job.query --bounds (one aggregate: MIN, MAX, NULLs, rows)--> plan_slices() --> Plan([Slice, ...], rows)
    Slice --slice_query()--> SELECT * FROM (<query>) q WHERE q.<column> >= :slice_lo AND q.<column> < :slice_hi
                             (no lower bound for the first range, no upper bound for the last; IS NULL for
                             the NULL slice), in the driver's bind style

Decisions (docs/partitions.md says more):

* Equal-width ranges between MIN and MAX: one cheap aggregate query (as Sqoop and Spark JDBC do),
  where quantiles would cost a sort of the whole result on most databases. Skew is absorbed by asking
  for more partitions than workers: a worker takes the next slice when it finishes one.
* The ranges are open-ended: the first has no lower bound and the last no upper bound, the others are
  half-open, ``[lo, hi)``, each starting where the previous one ends with the very same bound value.
  So every non-NULL value is in exactly one range, whatever it is: PostgreSQL's ``±infinity`` (which
  psycopg2 once read as ``datetime.max`` and no closed range held), NaN (above every number in
  PostgreSQL and Oracle), a value written after the plan was made, text in an SQLite integer column.
  The split points come from the smallest and largest *finite* values (asked again past an infinite
  MIN or MAX); a column with no finite value is one slice, ``IS NOT NULL``. Integers, dates and
  timestamps split on whole units (microseconds for timestamps), never into empty ranges; fewer
  distinct values than partitions give fewer slices.
* Rows whose column is NULL are in no range: one more slice reads them, only when there are some.
* The aggregate also counts the query's rows: the coordinator checks the slices' total against it
  (and counts again when they differ, to tell a changing table from a lost row).
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

from indexer import sources
from indexer import watermark as wm
from indexer.config import Job
from indexer.errors import ConfigError
from indexer.extract import user_params
from indexer.values import is_finite
from indexer.watermark import Type


@dataclass(frozen=True)
class Slice:
    """One slice of the query: a range of the partition column (open at either end), or its NULLs."""

    number: int            # 0-based; the NULL slice (if any) is the last one
    count: int             # how many slices in the run (for messages: "slice 2 of 5")
    lo: Any = None         # inclusive lower bound, bound as a parameter; None: no lower bound
    hi: Any = None         # exclusive upper bound; None: no upper bound
    nulls: bool = False    # rows whose partition column is NULL

    def describe(self, column: str) -> str:
        """``id < 100``, ``id >= 100 and < 200``, ``id >= 200``, ``id is not NULL``, ``id is NULL``."""
        if self.nulls:
            return f"{column} is NULL"
        if self.lo is None and self.hi is None:
            return f"{column} is not NULL"
        if self.lo is None:
            return f"{column} < {self.hi}"
        return f"{column} >= {self.lo}" + (f" and < {self.hi}" if self.hi is not None else "")

    def name(self) -> str:
        """``slice 2 of 5`` (1-based, for people)."""
        return f"slice {self.number + 1} of {self.count}"


@dataclass(frozen=True)
class Plan:
    """The slices of a run and the rows the query returned when they were planned."""

    slices: list[Slice]
    rows: int


def plan_slices(job: Job, partitions: int) -> Plan:
    """Blocking: the slices of ``job.query`` by ``job.partition_by``, from its finite MIN and MAX, its NULL
    count and its row count.

    At most ``partitions`` ranges, plus the NULL slice when NULLs exist; none for an empty result.
    A column that is not among the query's columns, or whose values cannot be ranged (text, booleans),
    is a ConfigError.
    """
    settings, column = job.job, job.job.partition_by
    if column is None:  # the job file's check covers partitions > 1; this one job.cluster too
        raise ConfigError("job.cluster needs job.partition_by (the column the slices are ranges of)")
    params = user_params(job)  # the names partitions bind are refused as job parameters (config.RESERVED_BINDS)
    with sources.connect(job.source, settings.chunk_size) as conn:
        columns = sources.columns_of(conn, settings.query, params)
        if column not in columns:
            raise ConfigError(f"job.partition_by: column {column!r} is not among the query's columns "
                              f"({', '.join(columns)})")
        low, high, nulls, rows = sources.bounds(conn, settings.query, params, column)
        if low is not None and not is_finite(low):
            low = sources.usable_extreme(conn, settings.query, params, column, "MIN", is_finite)
        if high is not None and not is_finite(high):
            high = sources.usable_extreme(conn, settings.query, params, column, "MAX", is_finite)
    if (low is None) != (high is None):  # no finite value left at one end: one range from the other
        low = high = low if low is not None else high
    return Plan(slices_between(low, high, nulls > 0, partitions, column, rows > nulls), rows)


def slices_between(low: Any, high: Any, nulls: bool, partitions: int, column: str = "partition_by",
                   others: bool = True) -> list[Slice]:
    """The slices for a column whose finite values run from ``low`` to ``high`` (pure: the planning itself).

    ``others``: whether there are non-NULL values at all (all of them infinite when ``low`` is None)."""
    starts = [] if low is None else range_starts(low, high, partitions, column)
    if not starts and others:
        starts = [None]  # no finite value to split on: one slice of every non-NULL row
    count = len(starts) + nulls
    ranges = [Slice(n, count, lo if n else None, starts[n + 1] if n + 1 < len(starts) else None)
              for n, lo in enumerate(starts)]
    return ranges + ([Slice(len(starts), count, nulls=True)] if nulls else [])


def range_starts(low: Any, high: Any, partitions: int, column: str = "partition_by") -> list[Any]:
    """The first value of each range: ``low``, then strictly increasing values below ``high``."""
    kind = _type_of(low, high, column)
    if kind == Type.INT:
        return _int_starts(low, high, partitions)
    if kind == Type.DECIMAL:
        if low == low.to_integral_value() and high == high.to_integral_value():
            return [Decimal(n) for n in _int_starts(int(low), int(high), partitions)]
        return _increasing(low, high, [low + (high - low) * i / partitions for i in range(1, partitions)])
    if kind == Type.FLOAT:
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ConfigError(f"job.partition_by: column {column!r} holds an infinite or NaN value; "
                              "its ranges cannot be computed (partition by another column)")
        inner = [low * ((partitions - i) / partitions) + high * (i / partitions) for i in range(1, partitions)]
        return _increasing(low, high, inner)
    if kind == Type.DATE:
        return [dt.date.fromordinal(n) for n in _int_starts(low.toordinal(), high.toordinal(), partitions)]
    if kind == Type.DATETIME:
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


def _type_of(low: Any, high: Any, column: str) -> Type:
    """The type both bounds share, in watermark's vocabulary (numbers of different types share the widest),
    or a ConfigError."""
    types = {_range_type(low, column), _range_type(high, column)}
    if len(types) == 1:
        kind = types.pop()
    elif all(t.number for t in types):
        kind = Type.FLOAT if Type.FLOAT in types else Type.DECIMAL
    else:
        raise ConfigError(f"job.partition_by: column {column!r} mixes {' and '.join(sorted(types))} values; "
                          "its ranges cannot be computed (partition by another column)")
    if kind == Type.DATETIME and (low.utcoffset() is None) != (high.utcoffset() is None):
        raise ConfigError(f"job.partition_by: column {column!r} mixes timestamps with and without a UTC offset")
    return kind


def _range_type(value: Any, column: str) -> Type:
    """The type of a bound a range can be cut on (``watermark.type_of``), or a ConfigError."""
    kind = None if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, dt.date, str)) \
        else wm.type_of(value)
    if kind in (Type.INT, Type.FLOAT, Type.DATETIME, Type.DATE) or (kind == Type.DECIMAL and value.is_finite()) \
            or (kind == Type.ISO_TEXT and _iso_timestamp(value)):
        return kind
    raise ConfigError(f"job.partition_by: column {column!r} holds {type(value).__name__} values "
                      f"({'text that is not ISO 8601' if isinstance(value, str) else 'not a range type'}); "
                      "partitions need an integer, numeric, date or timestamp column")


def _iso_timestamp(text: str) -> bool:
    try:
        return wm.value_kind(text).iso and bool(dt.datetime.fromisoformat(text))
    except (wm.WatermarkValueError, ValueError):
        return False


def slice_query(job: Job, s: Slice) -> tuple[str, Any]:
    """The SQL of one slice and its parameters in the driver's shape: the job's own, then the bounds."""
    settings, column = job.job, job.job.partition_by
    if column is None:  # plan_slices refused it already
        raise ConfigError("job.partitions needs job.partition_by (the column the slices are ranges of)")
    db = sources.dialect(job.source.dbtype)
    sql = db.slice_query(settings.query, column, lower=s.lo is not None, upper=s.hi is not None, nulls=s.nulls)
    bounds = {name: value for name, value in ((sources.SLICE_LO, s.lo), (sources.SLICE_HI, s.hi)) if value is not None}
    return sql, db.params({**settings.params, **bounds}, sql)
