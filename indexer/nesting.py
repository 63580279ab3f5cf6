"""Documents from several tables: child rows merged into their parent rows, pure.

::

    parent rows (ordered by job.key) + one stream of rows per child (ordered by its key, which starts with
    its parent_key) --merge()--> (parent row, its family, a problem or None), one parent at a time
    ordered(rows, key): the order checked as the rows stream by (SourceError, never a wrong join)

Bounded memory: one row of look-ahead per stream, plus the family of the parent in hand (which holds all of
its children: one document cannot be smaller). Rows are dicts of column -> value (the row mapper's).
Nothing here reads a database or writes a document: ``assemble`` feeds it and ``extract`` encodes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from indexer.config import ChildSettings
from indexer.documents import is_true
from indexer.errors import SourceError

Row = dict[str, Any]


def ordered(rows: Iterable[Row], key: Sequence[str], what: str) -> Iterator[Row]:
    """``rows`` as they come, checked to be in ascending ``key`` order (Python's, which the readers ask the
    database for in byte order); SourceError at the first row out of order or whose key cannot be compared."""
    last: tuple | None = None
    key_of = _key_getter(key)
    for number, row in enumerate(rows, 1):
        now = key_of(row)
        if None in now:
            yield row  # a NULL key joins nothing (the readers leave such child rows out; a parent's is rejected)
            continue
        _in_order(last, now, number, what)
        last = now
        yield row


@dataclass
class Tally:
    """What the merge met besides families: child rows without a parent in the parent stream."""

    child_rows: int = 0
    orphans: int = 0


@dataclass
class _Stream:
    """One child's rows with one row of look-ahead, and the child's settings."""

    child: ChildSettings
    rows: Iterator[Row]
    head: Row | None = None
    done: bool = False
    below: list[_Stream] = field(default_factory=list)

    def peek(self) -> Row | None:
        if self.head is None and not self.done:
            self.head = next(self.rows, None)
            self.done = self.head is None
        return self.head

    def __post_init__(self) -> None:
        self.parent_key = _key_getter(self.child.parent_key)
        self.own_key = _key_getter(self.child.key)
        self.dropped = list(dict.fromkeys([*self.child.parent_key, *([self.child.deleted] if self.child.deleted
                                                                        else [])]))  # not in its object

    def take(self, key: tuple, tally: Tally) -> list[Row]:
        """The rows whose parent_key equals ``key``; rows before it (no such parent) are counted as orphans."""
        taken = []
        parent_key = self.parent_key
        while (row := self.peek()) is not None:
            theirs = parent_key(row)
            try:
                before = None in theirs or theirs < key
            except TypeError:
                raise SourceError(f"children {self.child.name!r}: parent_key {self.child.parent_key} cannot be "
                                  "compared with its parent's key (numbers beside text, or timestamps with and "
                                  "without a zone): cast the columns to one type in the queries") from None
            if before:
                tally.orphans += 1
            elif theirs == key:
                taken.append(row)
                tally.child_rows += 1
            else:
                break
            self.head = None
        return taken


def _key_getter(columns: Sequence[str]) -> Callable[[Row], tuple]:
    """A function giving a row's key tuple (``operator.itemgetter``, always a tuple)."""
    if len(columns) == 1:
        one = columns[0]
        return lambda row: (row[one],)
    return itemgetter(*columns)


def streams(children: Sequence[ChildSettings], rows_of: dict[str, Iterator[Row]], prefix: str = "") -> list[_Stream]:
    """One stream per child at every depth; ``rows_of`` by path (``lines``, ``lines.product``)."""
    made = []
    for child in children:
        path = f"{prefix}{child.name}"
        made.append(_Stream(child, rows_of[path], below=streams(child.children, rows_of, f"{path}.")))
    return made


def _in_order(last: tuple | None, now: tuple, number: int, what: str) -> None:
    """SourceError unless ``now`` comes at or after ``last`` (the row ``number`` of ``what``)."""
    try:
        backwards = last is not None and now < last
    except TypeError:
        raise SourceError(f"{what}: row {number:,} has a key that cannot be compared with the row before "
                          "(numbers beside text, or timestamps with and without a zone)") from None
    if backwards:
        raise SourceError(f"{what}: rows are not in key order at row {number:,} (the database's order differs "
                          "from byte order): collate or cast the key in the query")


class Merger:
    """The families of a whole read's parent keys, in ascending order (checked across every call: a parent out
    of order would lose its children silently), from the child streams."""

    def __init__(self, children: list[_Stream], tally: Tally, what: str = "job.query") -> None:
        self.children, self.tally, self.what = children, tally, what
        self.number = 0
        self.last: tuple | None = None
        self.previous: tuple[dict[str, Any], str | None] = ({}, None)

    def family(self, key: tuple | None) -> tuple[dict[str, Any], str | None]:
        """The family of ``key`` ({child name: [objects] | object | None}) and a problem (why the document cannot
        be built: a ``many = false`` child with two rows); a key with a NULL gets an empty one."""
        self.number += 1
        if key is None or None in key:
            return {}, None  # no id: rejected downstream as today; it takes no children
        if key == self.last:  # a parent key given twice: each of its rows gets the family
            return copy.deepcopy(self.previous)
        _in_order(self.last, key, self.number, self.what)
        self.last = key
        problems: list[str] = []
        self.previous = (_family(key, self.children, self.tally, problems), problems[0] if problems else None)
        return self.previous

    def families(self, keys: Iterable[tuple | None]) -> Iterator[tuple[dict[str, Any], str | None]]:
        return map(self.family, keys)


def families(keys: Iterable[tuple | None], children: list[_Stream], tally: Tally,
             what: str = "job.query") -> Iterator[tuple[dict[str, Any], str | None]]:
    """For each parent key, in order, its family and problem (``Merger.family``)."""
    return Merger(children, tally, what).families(keys)


def merge(parents: Iterable[Row], key: Sequence[str], children: list[_Stream],
          tally: Tally) -> Iterator[tuple[Row, dict[str, Any], str | None]]:
    """Each parent row (a dict) with its family and problem (``families``), in the parents' order."""
    rows = list(parents)
    keyed = (tuple(row[c] for c in key) for row in rows)
    for row, (family, problem) in zip(rows, families(keyed, children, tally), strict=True):
        yield row, family, problem


def rest(children: list[_Stream]) -> int:
    """The rows left in ``children``'s streams at every depth (read to the end: orphans)."""
    left = 0
    for stream in children:
        while stream.peek() is not None:
            stream.head = None
            left += 1
        left += rest(stream.below)
    return left


def _family(key: tuple, children: list[_Stream], tally: Tally, problems: list[str]) -> dict[str, Any]:
    family: dict[str, Any] = {}
    for stream in children:
        child = stream.child
        objects = []
        dropped, deleted = stream.dropped, child.deleted
        for row in stream.take(key, tally):
            if stream.below:  # consumed even when the row is left out; a NULL in its key joins nothing
                own = stream.own_key(row)
                nested = _family(own, stream.below, tally, problems) if None not in own else \
                    {s.child.name: [] if s.child.many else None for s in stream.below}
            if deleted and is_true(row[deleted]):
                continue  # a soft-deleted child row: left out (its own children were consumed with it)
            for column in dropped:  # the row (read once, ours) becomes the object
                del row[column]
            if stream.below:
                row.update(nested)
            objects.append(row)
        if child.many:
            family[child.name] = objects
        else:
            if len(objects) > 1:
                problems.append(f"children {child.name!r}: {len(objects)} rows for one parent, many = false")
            family[child.name] = objects[0] if objects else None
    return family


def pieces(families: Iterator[tuple[dict[str, Any], str | None]], count: int, limit: int,
           tally: Tally) -> Iterator[tuple[int, int, list, int, int]]:
    """The families of ``count`` parent rows cut into pieces of at most ``limit`` rows of all tables (a family is
    never cut: one larger than that is a piece of its own), so that memory is bounded by rows whatever the number
    of children per parent. Each piece: its rows' bounds, their families, and the child rows and orphans
    ``tally`` met making them, which is also how a family is measured (read ahead by key lists, a batch's rows
    are counted with its first family: the pieces are cut sooner, never later, and the sums are exact)."""
    got: list[tuple[dict[str, Any], str | None]] = []  # the piece in hand: its families, rows, what tally met
    start, size, met = 0, 0, (0, 0)
    seen = (tally.child_rows, tally.orphans)
    for i, family in enumerate(families):
        brought = (tally.child_rows - seen[0], tally.orphans - seen[1])  # this family's rows (key lists: a batch's)
        seen = (tally.child_rows, tally.orphans)
        if got and size + 1 + brought[0] > limit:
            yield start, i, got, *met
            start, got, size, met = i, [], 0, (0, 0)
        got.append(family)
        size += 1 + brought[0]
        met = (met[0] + brought[0], met[1] + brought[1])
    yield start, count, got, *met


SHOWN = 3  # items of an array a terminal line shows


def shortened(doc: Any) -> Any:
    """``doc`` with every array longer than ``SHOWN`` cut to its first items and a note of how many more (for
    a terminal line: a document of 100,000 children stays readable; ``--json`` shows it whole)."""
    if isinstance(doc, dict):
        return {k: shortened(v) for k, v in doc.items()}
    if isinstance(doc, list):
        head = [shortened(v) for v in doc[:SHOWN]]
        return head + ([f"... {len(doc) - SHOWN:,} more"] if len(doc) > SHOWN else [])
    return doc


def nested_objects(doc: dict, mapping: dict) -> int:
    """How many objects of ``doc`` the engine stores as hidden nested documents (fields mapped ``nested``, at
    any depth): what ``index.mapping.nested_objects.limit`` caps per document."""
    count = 0
    fields = mapping.get("properties") or {}
    for key, value in doc.items():
        field = fields.get(key)
        if not isinstance(field, dict):
            continue
        items = value if isinstance(value, list) else [value]
        objects = [item for item in items if isinstance(item, dict)]
        if field.get("type") == "nested":
            count += len(objects)
        count += sum(nested_objects(item, field) for item in objects)
    return count
