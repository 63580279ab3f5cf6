"""``indexer init --child``: ``[[job.children]]`` entries and their mappings, planned from the foreign keys in the
catalogue.

::

    --child [NAME=]TABLE[:FOREIGN_KEY][/...] --parse--> Specs (a/b: b under a; paths sharing a prefix merge)
        --read (catalogue.read_table, read_foreign_keys)--> Found: each table, its foreign keys, its children
    Parent (the table above: root or child) + Found --link--> the one foreign key between them, either way
        child -> parent: its rows, parent_key = the key's columns in the parent key's order, key = parent_key + the
                         rest of its primary key, many unless the foreign key covers its primary key
        parent -> child (a lookup, order_lines.product_id -> products): the row pointed to, one object, read
                         through a join that returns the parent's key
        --the planner (init's plan(): query, mappings, guesses)--> Child (and its children, one level down)
    Child --toml_lines--> [[job.children]] tables   --mappings--> nested / object mappings of its fields

Pure but for ``read``; the planner comes from ``indexer.commands.init`` (this module imports no command).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Protocol

from indexer import catalogue
from indexer.catalogue import Catalogue, ForeignKey, Table, TableName
from indexer.config import MAX_CHILD_DEPTH, SQL_IDENTIFIER
from indexer.errors import ConfigError
from indexer.sources import Connection
from indexer.tomltext import toml_query, toml_string, toml_value

HAND = "write [[job.children]] by hand (docs/nested.md)"


# ------------------------------------------------------------------ --child, as given


@dataclasses.dataclass
class Spec:
    """One ``--child`` segment: the table as given, the field's name and the foreign key when given."""

    table: str
    name: str | None = None
    via: str | None = None
    children: list[Spec] = dataclasses.field(default_factory=list)

    @property
    def ident(self) -> str:
        return self.name or self.table


def _cut(text: str, separators: str) -> list[tuple[str, str]]:
    """``text`` cut at each separator outside quotes (``"..."``, ``[...]``): (the separator before, the part)."""
    parts: list[tuple[str, str]] = []
    current, before, closing = "", "", ""
    for ch in text:
        if closing:
            closing = "" if ch == closing else closing
        elif ch in '"[':
            closing = '"' if ch == '"' else "]"
        elif ch in separators:
            parts.append((before, current))
            current, before = "", ch
            continue
        current += ch
    return [*parts, (before, current)]


def _segment(segment: str, text: str) -> Spec:
    pieces = _cut(segment, "=:")
    separators = "".join(sep for sep, _ in pieces)
    values = [part.strip() for _, part in pieces]
    if separators not in ("", "=", ":", "=:") or not all(values):
        raise ConfigError(f"--child {text!r}: expected [NAME=]TABLE[:FOREIGN_KEY], a grandchild after a / "
                          "(order_lines/line_notes)")
    name = values[0] if separators.startswith("=") else None
    if name is not None and not SQL_IDENTIFIER.match(name):
        raise ConfigError(f"--child {text!r}: the name {name!r} must be a plain name (letters, digits, _)")
    return Spec(values[1] if name else values[0], name.lower() if name else None,
                values[-1] if separators.endswith(":") else None)


def parse(texts: list[str]) -> list[Spec]:
    """The ``--child`` options as a tree: ``a/b`` puts b under a; options naming the same child merge."""
    roots: list[Spec] = []
    for text in texts:
        level, path = roots, _cut(text, "/")
        if len(path) > MAX_CHILD_DEPTH:
            raise ConfigError(f"--child {text!r}: children nest at most {MAX_CHILD_DEPTH} levels")
        for _, segment in path:
            spec = _segment(segment, text)
            same = next((s for s in level if s.ident == spec.ident), None)
            if same is None:
                level.append(spec)
                same = spec
            elif spec.via and same.via and spec.via != same.via:
                raise ConfigError(f"--child {text!r}: {spec.table} is given twice, through {same.via} and "
                                  f"{spec.via}: name each, --child NAME=TABLE:FOREIGN_KEY")
            else:
                same.via = same.via or spec.via
            level = same.children
    return roots


@dataclasses.dataclass(frozen=True)
class Found:
    """A ``--child`` table as the catalogue describes it, with the foreign keys it declares."""

    spec: Spec
    table: Table
    foreign_keys: tuple[ForeignKey, ...]
    children: tuple[Found, ...]


def read(conn: Connection, specs: list[Spec], parse_table: Callable[[str], TableName],
         read_table: Callable[[TableName], Table]) -> tuple[Found, ...]:
    """Each ``--child`` table's columns, key and foreign keys, at every depth."""
    found = []
    for spec in specs:
        table = read_table(parse_table(spec.table))
        found.append(Found(spec, table, catalogue.read_foreign_keys(conn, table.name),
                           read(conn, spec.children, parse_table, read_table)))
    return tuple(found)


# ------------------------------------------------------------------ deciding (pure)


class Planned(Protocol):
    """What init's ``plan()`` decides for a table (``commands.init.Plan``)."""

    @property
    def key(self) -> list[str]: ...
    @property
    def query(self) -> str: ...
    @property
    def properties(self) -> dict: ...
    @property
    def watermark(self) -> str | None: ...
    @property
    def deleted(self) -> str | None: ...
    @property
    def unknown(self) -> list[tuple[str, str]]: ...
    @property
    def renamed(self) -> list[tuple[str, str]]: ...
    @property
    def fields(self) -> dict[str, str]: ...
    @property
    def items(self) -> tuple[str, ...]: ...


# init's plan() for a table and its key columns (catalogue spelling): query, mappings, guesses.
Planner = Callable[[Table, list[str]], Planned]


@dataclasses.dataclass(frozen=True)
class Parent:
    """The table children hang under: the job's, or a child's (its key: the key of its rows)."""

    table: Table
    foreign_keys: tuple[ForeignKey, ...]
    key: tuple[str, ...]         # its key's columns, catalogue spelling, in key order
    key_fields: tuple[str, ...]  # the same as its query names them (its children's parent_key pairs with these)
    fields: frozenset[str]       # its query's top-level fields: a child's name must be none of them

    @classmethod
    def of(cls, table: Table, foreign_keys: tuple[ForeignKey, ...], planned: Planned) -> Parent:
        columns = {field: column for column, field in planned.fields.items()}
        return cls(table, foreign_keys, tuple(columns[f] for f in planned.key), tuple(planned.key),
                   frozenset(f.split(".")[0] for f in planned.fields.values()))


@dataclasses.dataclass(frozen=True)
class Child:
    """One ``[[job.children]]`` entry, with what its comments and mappings say."""

    name: str
    query: str
    parent_key: list[str]
    key: list[str]
    many: bool
    watermark: str | None
    deleted: str | None
    properties: dict                  # the child object's fields: parent_key and deleted left out
    source: str                       # where it comes from, for the comment above it
    joins: str                        # the columns the foreign key pairs, for parent_key's comment
    lookup: bool = False
    unknown: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    renamed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    children: tuple[Child, ...] = ()


@dataclasses.dataclass(frozen=True)
class _Link:
    fk: ForeignKey
    lookup: bool                          # the parent declares it (points at the child's row)
    pairs: tuple[tuple[str, str], ...]    # (parent column, child column)


def default_name(table: str, parent: str) -> str:
    """The table's name in lower case, without the words it shares in front with its parent's (``shop_orders``:
    ``shop_shipments`` -> ``shipments``), nor then the parent's first or last word, in the plural or not
    (``orders``: ``order_lines`` -> ``lines``; ``order_lines``: ``line_notes`` -> ``notes``)."""
    words = re.sub(r"[^a-z0-9_]+", "_", table.lower()).strip("_").split("_")
    above = re.sub(r"[^a-z0-9_]+", "_", parent.lower()).strip("_").split("_")
    shared = 0
    while shared < min(len(words) - 1, len(above)) and words[shared] == above[shared]:
        shared += 1
    words, above = words[shared:], above[shared:]
    forms = {form for word in above[:1] + above[-1:] for form in (word, word.removesuffix("s"))}
    if len(words) > 1 and words[0] in forms:
        words = words[1:]
    return "_".join(words)


def plan_children(cat: Catalogue, parent: Parent, found: tuple[Found, ...], planner: Planner) -> tuple[Child, ...]:
    """The ``[[job.children]]`` entries of ``found`` under ``parent`` (ConfigError, one line, when init cannot
    tell: no foreign key, several, no primary key...)."""
    children: list[Child] = []
    for item in found:
        child = _plan_child(cat, parent, item, planner)
        taken = "a column of " + parent.table.name.given if child.name in parent.fields else (
            "another child's" if child.name in {c.name for c in children} else "")
        if taken:
            raise ConfigError(f"--child {item.spec.table}: the name {child.name!r} is {taken}: name it, "
                              f"--child NAME={item.spec.table}")
        children.append(child)
    return tuple(children)


def _fold(cat: Catalogue, name: str) -> str:
    return name if cat.db.case_sensitive else name.casefold()


def _is(cat: Catalogue, ref: TableName, table: TableName) -> bool:
    """Whether a foreign key's ``ref`` is ``table`` (a schema left out on either side matches any)."""
    return _fold(cat, ref.name) == _fold(cat, table.name) and (
        ref.schema is None or table.schema is None or _fold(cat, ref.schema) == _fold(cat, table.schema))


def _link(cat: Catalogue, parent: Parent, item: Found) -> _Link:
    child, via, names = item.table, item.spec.via, f"{item.spec.table} and {parent.table.name.given}"
    down = [(fk, False) for fk in item.foreign_keys if _is(cat, fk.refers_to, parent.table.name)]
    up = [(fk, True) for fk in parent.foreign_keys if _is(cat, fk.refers_to, child.name)
          and not _is(cat, child.name, parent.table.name)]
    found = down + up
    if via is not None:
        found = [(fk, lookup) for fk, lookup in found
                 if via.casefold() in ((fk.name or "").casefold(), ",".join(fk.columns).casefold())]
        if not found:
            labels = ", ".join(fk.label for fk, _ in down + up) or "none"
            raise ConfigError(f"no foreign key {via} between {names} (there are: {labels})")
    if not found:
        raise ConfigError(f"no foreign key between {names}: {HAND}")
    if len(found) > 1:
        raise ConfigError(f"{len(found)} foreign keys between {names} ({', '.join(fk.label for fk, _ in found)}): "
                          f"pick one, --child {item.spec.table}:FOREIGN_KEY (its name, or its columns: a,b)")
    fk, lookup = found[0]
    # A referenced column left out (SQLite's REFERENCES orders) is the referenced table's primary key.
    implicit = (child if lookup else parent.table).key
    refs = [r or (implicit[i] if i < len(implicit) else "") for i, r in enumerate(fk.ref_columns)]
    if not all(refs):
        raise ConfigError(f"foreign key {fk.label} of {item.spec.table} names no referenced column: {HAND}")
    if lookup:  # the parent's columns point at the child's (a unique key): one row at most, through a join
        return _Link(fk, True, tuple(zip(fk.columns, refs, strict=True)))
    by_ref = {_fold(cat, r): c for r, c in zip(refs, fk.columns, strict=True)}
    if sorted(by_ref) != sorted(_fold(cat, k) for k in parent.key):
        raise ConfigError(f"foreign key {fk.label} of {item.spec.table} refers to {parent.table.name.given}"
                          f"({', '.join(r for r in refs if r)}), not to its key ({', '.join(parent.key)}): {HAND}")
    return _Link(fk, False, tuple((k, by_ref[_fold(cat, k)]) for k in parent.key))


def _plain_key(planned: Planned, table: str) -> None:
    bad = [f for f in planned.key if not SQL_IDENTIFIER.match(f)]
    if bad:
        raise ConfigError(f"--child {table}: the key column {bad[0]!r} is no plain name (letters, digits, _): "
                          f"{HAND}, aliasing it in the query")


def _plan_child(cat: Catalogue, parent: Parent, item: Found, planner: Planner) -> Child:
    link, child = _link(cat, parent, item), item.table
    name = item.spec.name or default_name(child.name.name, parent.table.name.name)
    if not SQL_IDENTIFIER.match(name):
        raise ConfigError(f"--child {item.spec.table}: {name!r} is no plain name for a field: name it, "
                          f"--child NAME={item.spec.table}")
    source = f"from table {item.spec.table}, foreign key {link.fk.label}"
    joins = " AND ".join(f"{child.name.name}.{c} = {parent.table.name.name}.{p}" for p, c in link.pairs)
    if link.lookup:
        if item.children:
            raise ConfigError(f"--child {item.spec.table}: {name} is a lookup (the row {parent.table.name.given} "
                              f"points to): children under it are not planned; {HAND}")
        return _lookup(cat, parent, item, link, planner(child, [c for _, c in link.pairs]), name, source, joins)
    if not child.key:
        raise ConfigError(f"table {item.spec.table} has no primary key: init cannot tell its rows apart; {HAND}")
    references = [c for _, c in link.pairs]
    folded = {_fold(cat, c) for c in references}
    many = not {_fold(cat, c) for c in child.key} <= folded
    rest = [c for c in child.key if _fold(cat, c) not in folded] if many else []
    planned = planner(child, references + rest)
    _plain_key(planned, item.spec.table)
    parent_key = planned.key[:len(references)]
    node = Parent.of(child, item.foreign_keys, planned)
    return Child(name, planned.query, parent_key, planned.key, many, planned.watermark, planned.deleted,
                 _object(planned, parent_key), source, joins, False, planned.unknown, planned.renamed,
                 plan_children(cat, node, item.children, planner))


def _object(planned: Planned, left_out: list[str]) -> dict:
    return {f: m for f, m in planned.properties.items() if f not in left_out and f != planned.deleted}


def _lookup(cat: Catalogue, parent: Parent, item: Found, link: _Link, planned: Planned, name: str, source: str,
            joins: str) -> Child:
    """The row the parent points to, read through a join that returns the parent's key first."""
    taken = {f.split(".")[0] for f in planned.fields.values()}
    keys = []
    for field in parent.key_fields:
        alias = field
        while alias in taken:
            alias = "parent_" + alias
        if not SQL_IDENTIFIER.match(alias):
            raise ConfigError(f"--child {item.spec.table}: the key column {field!r} of {parent.table.name.given} is "
                              f"no plain name (letters, digits, _): {HAND}")
        taken.add(alias)
        keys.append(alias)
    items = [f"p.{cat.quote(column)} AS {alias}" for column, alias in zip(parent.key, keys, strict=True)]
    on = " AND ".join(f"c.{cat.quote(c)} = p.{cat.quote(p)}" for p, c in link.pairs)
    # bandit B608 accepted: every name is the catalogue's own, quoted for the database
    query = ("SELECT\n  " + ",\n  ".join(items + [f"c.{i}" for i in planned.items])  # nosec B608
             + f"\nFROM {cat.qualified(parent.table.name)} p\nJOIN {cat.qualified(item.table.name)} c ON {on}")
    return Child(name, query, keys, keys, False, planned.watermark, planned.deleted, _object(planned, []), source,
                 joins, True, planned.unknown, planned.renamed)


def unwatched(children: tuple[Child, ...]) -> str | None:
    """The first child, at any depth, with no watermark guessed (then job.watermark cannot be set)."""
    for child in children:
        if child.watermark is None:
            return child.name
        deeper = unwatched(child.children)
        if deeper:
            return f"{child.name}.{deeper}"
    return None


# ------------------------------------------------------------------ writing


def mappings(children: tuple[Child, ...], objects: bool) -> dict:
    """Each child's field: ``nested`` when many (each object matched on its own), unless ``objects``; one object,
    or ``objects``, plain ``properties`` (no nested_objects limit; fields of different objects mix in queries)."""
    return {child.name: {**({"type": "nested"} if child.many and not objects else {}),
                         "properties": {**child.properties, **mappings(child.children, objects)}}
            for child in children}


def toml_lines(children: tuple[Child, ...], table: str = "job.children") -> list[str]:
    """The ``[[job.children]]`` tables (grandchildren as ``[[job.children.children]]``), with comments."""
    lines: list[str] = []
    for child in children:
        if child.lookup:
            many = "false   # one object (null when none): the row the foreign key points to"
            key = "the parent's key: one row per parent"
        elif child.many:
            many = "true   # an array of objects ([] when none)"
            key = "parent_key, then the rest of its primary key: the order in the array"
        else:
            many = "false   # one object (null when none): its primary key is the foreign key"
            key = "= parent_key: one row per parent"
        lines += ["", f"[[{table}]]   # {child.source}", f"name = {toml_string(child.name)}",
                  f"query = {toml_query(child.query)}",
                  f"parent_key = {toml_value(child.parent_key)}   # {child.joins}; left out of each object",
                  f"key = {toml_value(child.key)}   # {key}", f"many = {many}"]
        if child.watermark:
            lines.append(f"watermark = {toml_string(child.watermark)}   # guessed from its name and type: sync sees "
                         "this child's changes by it")
        else:
            lines.append('# watermark = "..."   # none guessed; needed (on every child) once job.watermark is set')
        if child.deleted:
            lines.append(f"deleted = {toml_string(child.deleted)}   # guessed from its name and type: rows where it "
                         "is true are left out of the document")
        lines += [f"# field {toml_string(f)} ({toml_string(t)}): mapped as keyword, as init could tell no more "
                  "from its type (and values); check it" for f, t in child.unknown]
        lines += [f"# column {toml_string(c)} is renamed {toml_string(f)} in the query: a metadata field name"
                  for c, f in child.renamed]
        lines += toml_lines(child.children, f"{table}.children")
    return lines
