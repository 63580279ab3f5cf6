"""Nested documents' child rows, read from the database and handed to ``nesting`` (``[[job.children]]``).

::

    merge (reindex): the parent query ORDER BY job.key ------------------------------\\
                     each child's query ORDER BY its key (byte order), NULL parent_key out  -- nesting.families
                     one connection and cursor per stream, each checked in order as read     --> a family per parent
    keys (sync, preview): chosen parent keys --> each child's rows WHERE <root key> IN (...), batches of binds
                     --> sorted in Python --> nesting.families over the sorted keys --> a family per key

Decisions (docs/nested.md):

* **Merge for a whole read.** One pass over every stream, one row of look-ahead each: memory bounded by
  the fetch buffers and the family of the parent in hand, whatever the number of children per parent,
  never one query per parent. Text keys are sorted in byte order (``Dialect.byte_order``: Python's order)
  and every stream's order is checked as it is read, so a database that sorts otherwise stops the run
  (nothing is swapped) instead of building documents without their children.
* **Key lists for chosen parents** (a sync's changed rows, a preview's sample): the children of up to
  ``Dialect.max_binds`` parents per statement, filtered on the root key columns every descendant carries
  (a child's key starts with its parent_key, so a grandchild's rows hold the root document's key).
* Each stream has its own connection: PostgreSQL's server-side cursors live in their connection's
  transaction, which one stream's reader must never end under another's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from indexer import documents, nesting, sources
from indexer.config import ChildSettings, Job
from indexer.errors import ConfigError
from indexer.nesting import Tally
from indexer.sources import SLICE_HI, SLICE_LO

Family = tuple[dict[str, Any], str | None]  # {child name: objects}, and why the document cannot be built


@dataclass(frozen=True)
class Descendant:
    """A child at any depth, with its path (``lines``, ``lines.product``) and the root key's columns in its rows."""

    path: str
    child: ChildSettings
    root: list[str]           # its parent_key's first len(job.key) columns: equal to the document's key


def descendants(job: Job) -> list[Descendant]:
    """Every child of the job, parents before their children."""
    width = len(job.job.key)
    found: list[Descendant] = []

    def walk(children: list[ChildSettings], prefix: str) -> None:
        for child in children:
            found.append(Descendant(f"{prefix}{child.name}", child, child.parent_key[:width]))
            walk(child.children, f"{prefix}{child.name}.")
    walk(job.job.children, "")
    return found


def what(path: str) -> str:
    """How errors name a child's query."""
    return f"children {path!r}"


def check_columns(job: Job, conn: sources.Connection, parent_columns: tuple[str, ...]) -> None:
    """Before any row is read: the parent's key is made of its columns, no child's name is one of them, and
    each child query returns its parent_key, key, watermark and deleted columns."""
    settings = job.job
    for column in settings.key:
        if column not in parent_columns:
            raise ConfigError(f"job.key: with children the key must be columns of job.query ({column!r} is not), "
                              "since children join before the transform")
    columns_of: dict[str, tuple[str, ...]] = {"": parent_columns}
    for d in descendants(job):
        if d.child.name in columns_of[d.path.rpartition(".")[0]]:
            raise ConfigError(f"{what(d.path)}: the parent query already returns a column {d.child.name!r}")
        columns = columns_of[d.path] = sources.columns_of(conn, d.child.query, params(job, d.child.query),
                                                          what(d.path))
        named = [("parent_key", c) for c in d.child.parent_key] + [("key", c) for c in d.child.key] \
            + [(f, getattr(d.child, f)) for f in ("watermark", "deleted") if getattr(d.child, f)]
        for field, column in named:
            if column not in columns:
                raise ConfigError(f"{what(d.path)}: {field} column {column!r} is not among the query's columns "
                                  f"({', '.join(columns)})")


def params(job: Job, query: str, extra: dict[str, Any] | None = None) -> Any:
    """The job's parameters (and ``extra``) that ``query`` binds, in its driver's shape."""
    return sources.dialect(job.source.dbtype).params({**job.job.params, **(extra or {})}, query)


def _dicts(chunks: Iterable[tuple[Sequence[Sequence[Any]], list[tuple]]]) -> Iterator[dict]:
    mapper = None
    for description, rows in chunks:
        if mapper is None:
            mapper = documents.make_row_mapper(documents.column_names(description))
        yield from map(mapper, rows)


class Merged:
    """The child streams of one whole read (merge mode), open until the context ends."""

    def __init__(self, job: Job, stack: contextlib.ExitStack, bounds: tuple[Any, Any, bool] | None = None) -> None:
        """``bounds``: a partitioned reindex's slice (lo, hi, nulls) on ``job.partition_by`` = ``job.key[0]``,
        applied to each child's ``parent_key[0]``."""
        self.tally = Tally()
        rows_of: dict[str, Iterator[dict]] = {}
        for d in descendants(job):
            rows_of[d.path] = self._stream(job, stack, d, bounds)
        self.streams = nesting.streams(job.job.children, rows_of)
        self.merger = nesting.Merger(self.streams, self.tally)

    @staticmethod
    def _stream(job: Job, stack: contextlib.ExitStack, d: Descendant,
                bounds: tuple[Any, Any, bool] | None) -> Iterator[dict]:
        if bounds is not None and bounds[2]:
            return iter(())  # the slice of NULL partition keys: parents without an id take no children
        db = sources.dialect(job.source.dbtype)
        query, extra = d.child.query, {}
        if bounds is not None:
            lo, hi, _ = bounds
            query = db.slice_query(query, d.child.parent_key[0], lower=lo is not None, upper=hi is not None)
            extra = {name: value for name, value in ((SLICE_LO, lo), (SLICE_HI, hi)) if value is not None}
        conn = stack.enter_context(sources.connect(job.source, job.job.chunk_size))
        bound = params(job, query, extra)
        text = sources.text_columns(conn, query, bound, what(d.path))
        sql = db.ordered_query(query, d.child.key, d.child.parent_key, text)
        chunks = stack.enter_context(contextlib.closing(
            sources.iter_row_chunks(conn, sql, bound, job.job.chunk_size, what(d.path))))
        return nesting.ordered(_dicts(chunks), d.child.key, what(d.path))

    def families(self, keys: Iterable[tuple | None]) -> Iterator[Family]:
        """Families of the next parents of the read (their keys ascend across calls: checked)."""
        return self.merger.families(keys)

    def rest(self) -> int:
        """Once the parents are done: the child rows left in every stream (orphans), read to count them."""
        return nesting.rest(self.streams)


def parent_query(job: Job, conn: sources.Connection, query: str, bound: Any) -> str:
    """``query`` (the job's, or a slice of it) in ``job.key`` order, text in byte order, for the merge."""
    text = sources.text_columns(conn, query, bound)
    return conn.dialect.ordered_query(query, job.job.key, [], text)


def _sort_key(row: dict, key: list[str]) -> tuple:
    return tuple((row[c] is not None, row[c]) for c in key)  # NULLs first, never compared with a value


def by_keys(job: Job, conn: sources.Connection, keys: Sequence[tuple],
            tally: Tally) -> tuple[dict[tuple, Family], dict[tuple, int]]:
    """The family of each of ``keys`` (document keys, no NULL), read by key lists on ``conn``, and the child rows
    each took (``tally`` counts them all)."""
    ordered = sorted(set(keys))
    rows_of: dict[str, Iterator[dict]] = {}
    for d in descendants(job):
        chunks = sources.rows_by_keys(conn, d.child.query, params(job, d.child.query), d.root, ordered, what(d.path))
        rows = [row for row in _dicts(chunks) if None not in (row[c] for c in d.child.parent_key)]
        rows.sort(key=lambda row, k=d.child.key: _sort_key(row, k))  # type: ignore[misc]
        rows_of[d.path] = iter(rows)
    streams = nesting.streams(job.job.children, rows_of)
    found: dict[tuple, Family] = {}
    sizes: dict[tuple, int] = {}
    before = tally.child_rows
    for key, family in zip(ordered, nesting.families(ordered, streams, tally), strict=True):  # one at a time
        found[key], sizes[key], before = family, tally.child_rows - before, tally.child_rows
    return found, sizes
