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

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.config import ChildSettings
from indexer.documents import is_true
from indexer.errors import SourceError

Row = dict[str, Any]


def ordered(rows: Iterable[Row], key: Sequence[str], what: str) -> Iterator[Row]:
    """``rows`` as they come, checked to be in ascending ``key`` order (Python's, which the readers ask the
    database for in byte order); SourceError at the first row out of order or whose key cannot be compared."""
    last: tuple | None = None
    for number, row in enumerate(rows, 1):
        now = tuple(row[c] for c in key)
        if None in now:
            yield row  # a NULL key joins nothing (the readers leave such child rows out; a parent's is rejected)
            continue
        try:
            backwards = last is not None and now < last
        except TypeError:
            raise SourceError(f"{what}: row {number:,} has a key that cannot be compared with the row before "
                              "(numbers beside text, or timestamps with and without a zone)") from None
        if backwards:
            raise SourceError(f"{what}: rows are not in key order at row {number:,} (the database's order differs "
                              "from byte order): collate or cast the key in the query")
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

    def take(self, key: tuple, tally: Tally) -> list[Row]:
        """The rows whose parent_key equals ``key``; rows before it (no such parent) are counted as orphans."""
        taken = []
        while (row := self.peek()) is not None:
            theirs = tuple(row[c] for c in self.child.parent_key)
            if None in theirs or theirs < key:
                tally.orphans += 1
            elif theirs == key:
                taken.append(row)
                tally.child_rows += 1
            else:
                break
            self.head = None
        return taken


def streams(children: Sequence[ChildSettings], rows_of: dict[str, Iterator[Row]], prefix: str = "") -> list[_Stream]:
    """One stream per child at every depth; ``rows_of`` by path (``lines``, ``lines.product``)."""
    made = []
    for child in children:
        path = f"{prefix}{child.name}"
        made.append(_Stream(child, rows_of[path], below=streams(child.children, rows_of, f"{path}.")))
    return made


def families(keys: Iterable[tuple | None], children: list[_Stream], tally: Tally,
             what: str = "job.query") -> Iterator[tuple[dict[str, Any], str | None]]:
    """For each parent key, in order, its family ({child name: [objects] | object | None}) and a problem (why
    the document cannot be built: a ``many = false`` child with two rows). The keys must ascend (checked: a
    parent out of order would lose its children silently); a key with a NULL gets an empty family."""
    last: tuple | None = None
    for number, key in enumerate(keys, 1):
        if key is None or None in key:
            yield {}, None  # no id: rejected downstream as today; it takes no children
            continue
        try:
            backwards = last is not None and key < last
        except TypeError:
            raise SourceError(f"{what}: row {number:,} has a key that cannot be compared with the row before "
                              "(numbers beside text, or timestamps with and without a zone)") from None
        if backwards:
            raise SourceError(f"{what}: rows are not in key order at row {number:,} (the database's order differs "
                              "from byte order): collate or cast the key in the query")
        last = key
        problems: list[str] = []
        family = _family(key, children, tally, problems)
        yield family, problems[0] if problems else None


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
        for row in stream.take(key, tally):
            own = tuple(row[c] for c in child.key)
            nested = _family(own, stream.below, tally, problems)
            if child.deleted and is_true(row.get(child.deleted)):
                continue  # a soft-deleted child row: left out (its own children were consumed with it)
            objects.append({**{c: v for c, v in row.items() if c not in child.parent_key and c != child.deleted},
                            **nested})
        if child.many:
            family[child.name] = objects
        else:
            if len(objects) > 1:
                problems.append(f"children {child.name!r}: {len(objects)} rows for one parent, many = false")
            family[child.name] = objects[0] if objects else None
    return family


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
