"""Values a database holds that no Python type holds as they are. Pure, no I/O.

::

    PostgreSQL text --(source: the dialect's casters)--> DbText("infinity")   the text PostgreSQL prints
                                                     --> Unconvertible(...)   nothing faithful to give
    documents:  DbText is indexed as its text; an Unconvertible rejects the row, naming its field
    watermark:  neither is a point in time: never stored as a watermark
    partitions: neither is a bound; slices are open-ended, so their rows are still read

Decisions (docs/documents.md):

* psycopg2 turns ``infinity`` into ``datetime.max`` and ``time '24:00'`` into ``00:00``: a different,
  real value, indexed without a word, and ``datetime.max`` stored as a watermark froze sync for good.
  A value Python's own type would change or cannot hold (``±infinity``, ``24:00:00``, a year outside
  1-9999 such as ``10000-01-01`` or ``0044-03-15 BC``) is kept as the text PostgreSQL prints for it.
  A ``date`` field refuses that text (the row is a dead letter, never a wrong date); a ``keyword``
  field, or ``ignore_malformed``, keeps it.
* An interval beyond Python's ``timedelta`` (±999,999,999 days) has no faithful number of seconds in
  reach of the driver's conversion: the row is a dead letter naming the column.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any


class DbText(str):
    """A value as the database prints it, where the driver's Python value would be a different one."""

    __slots__ = ()


class Unconvertible:
    """A value the driver could not convert; ``reason`` says why without quoting the value."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unconvertible({self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unconvertible) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(self.reason)


def is_finite(value: Any) -> bool:
    """A value arithmetic can split on: not a DbText or Unconvertible, not NaN or infinite."""
    if isinstance(value, (DbText, Unconvertible)):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_finite()
    return True
