"""``indexer init``: a job file and its templates, written from a table's catalogue entry.

::

    [source] dict --SourceConfig--> connect --catalogue.read_table--> Table (columns, primary key)
        --plan()--> Plan (key, query, a mapping per field, guessed watermark and deleted)
        --render--> DIR/<alias>.toml (its job.mappings = "mappings"),
                    DIR/mappings/component/<alias>-{mappings,settings}.json, DIR/mappings/index/<alias>.json
                    (all four checked absent first; never overwritten)

The job file keeps only the *name* of the password's variable; the password is read once, to
connect. A column called like a metadata field of the engines (``_id``, ``_source``...) is renamed
in the query (``"_id" AS id_``), which the job file says in a comment. The SQL type -> mapping
table and the reasons for it: docs/init.md and ``indexer.catalogue``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from indexer import catalogue, digest, relations
from indexer.catalogue import Table, TableName
from indexer.config import INDEX_SUFFIX_LEN, Job, SourceConfig, TargetConfig, check_index_name
from indexer.documents import METADATA_FIELDS, make_row_mapper
from indexer.documents import renamed as renamed_field
from indexer.errors import ConfigError
from indexer.jobfile import invalid, validated
from indexer.sources import Column, Connection, connect
from indexer.tomltext import toml_query, toml_string, toml_value

# Column names that suggest "changed when the row changed" (a date or timestamp column) and
# "this row is deleted" (a boolean, integer or Y/N column).
WATERMARK_NAME = re.compile(r"updat|modif|chang|mtime")
DELETED_NAME = re.compile(r"delet|remov|purg|(^|_)del(_|$)|(^|_)del_?fla?g")
# Index template priority: above the demo's 100, and longer aliases higher, so that "a-*" and "a-b-*"
# (which overlap) never share one; same-length patterns "x-*" and "y-*" cannot overlap.
PRIORITY_BASE = 200
SETTINGS = {"number_of_shards": 1, "auto_expand_replicas": "0-1", "refresh_interval": "1s"}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the files say, decided before any is written."""

    alias: str
    key: list[str]
    key_from: str                        # "the primary key" or "--key"
    query: str
    properties: dict
    watermark: str | None
    deleted: str | None
    unknown: list[tuple[str, str]]       # (field, SQL type) of the types mapped as keyword by default
    renamed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (column, field): metadata names
    fields: dict[str, str] = dataclasses.field(default_factory=dict)  # column (catalogue spelling) -> field
    items: tuple[str, ...] = ()          # the query's select list, as written
    children: tuple[relations.Child, ...] = ()  # --child: [[job.children]] entries


def init_job(source: dict, table: str, *, out: Path, alias: str | None = None, key: list[str] | None = None,
             target: dict | None = None, children: list[str] | None = None, objects: bool = False) -> list[Path]:
    """Write the job file and its three templates for ``table`` (and its ``--child`` tables: ``children``,
    ``objects``: their mappings plain objects, not nested); the files written, in order."""
    src = validated(SourceConfig, source)
    tgt = validated(TargetConfig, target or {})
    cat = catalogue.catalogue(src.dbtype)
    name = cat.parse_table(table, src.user)
    specs = relations.parse(children or [])
    alias = _alias(alias, name.name)
    paths = output_paths(Path(out), alias)
    for path in paths:
        if path.exists():
            raise ConfigError(f"{path} already exists: indexer init never overwrites a file "
                              "(choose another --out or --alias)")
    with connect(src) as conn:
        found = _read(conn, name)
        if specs:
            parent_fks = catalogue.read_foreign_keys(conn, found.name)
            tree = relations.read(conn, specs, lambda text: cat.parse_table(text, src.user),
                                  lambda child: _read(conn, child))
    job_plan = plan(src.dbtype, found, alias, key)
    if specs:
        kids = relations.plan_children(cat, relations.Parent.of(found, parent_fks, job_plan), tree,
                                       lambda child, child_key: plan(src.dbtype, child, alias, child_key))
        properties = {**job_plan.properties, **relations.mappings(kids, objects),
                      digest.FIELD: digest.MAPPING}
        job_plan = dataclasses.replace(job_plan, children=kids, properties=properties)
    texts = [render_job(src, tgt, job_plan, table, Path(out)), *render_templates(job_plan, src.dbtype, table)]
    _write_all(paths, texts)
    return paths


def _read(conn: Connection, name: TableName) -> Table:
    """The table's catalogue entry; in SQLite, text columns whose values are dates are dates."""
    found = catalogue.read_table(conn, name)
    dates = catalogue.text_date_columns(conn, found.name, found.columns)  # SQLite's; none elsewhere
    if dates:
        columns = tuple(dataclasses.replace(c, is_date=c.name in dates) for c in found.columns)
        found = dataclasses.replace(found, columns=columns)
    return found


def output_paths(out: Path, alias: str) -> list[Path]:
    return [out / f"{alias}.toml", out / "mappings" / "component" / f"{alias}-mappings.json",
            out / "mappings" / "component" / f"{alias}-settings.json", out / "mappings" / "index" / f"{alias}.json"]


def _alias(given: str | None, table_name: str) -> str:
    """``--alias``, or the table's name made a valid alias (lower case, unusable characters as ``-``)."""
    alias = given if given is not None else re.sub(r'[\\/*?"<>|,#:\s]+', "-", table_name.lower()).strip("-_+")
    try:
        check_index_name(alias, "alias")
        if len(alias.encode()) > 255 - INDEX_SUFFIX_LEN:
            raise ValueError(f"alias is longer than {255 - INDEX_SUFFIX_LEN} bytes")
    except ValueError as exc:
        if given is not None:
            raise ConfigError(f"--alias: {exc}") from None
        raise ConfigError(f"table {table_name!r} gives no valid alias ({exc}): name one with --alias") from None
    return alias


# ------------------------------------------------------------------ deciding (pure)


def plan(dbtype: str, table: Table, alias: str, key: list[str] | None = None) -> Plan:
    """The job for ``table``: key, query, mappings and guesses (ConfigError for a bad or missing key)."""
    cat = catalogue.catalogue(dbtype)
    names = field_names(table.columns)
    fields = list(names.values())
    make_row_mapper(fields)  # the checks a reindex makes: a field twice ("Code" and "code"), "a" and "a.b"
    keys = _key_fields(table, names, key)
    by_field = dict(zip(fields, table.columns, strict=True))

    def guess(pattern: re.Pattern, fits: Callable[[str, Column], bool]) -> str | None:
        return next((f for f, c in by_field.items() if pattern.search(f) and fits(dbtype, c) and catalogue.plain(f)
                     and f not in keys), None)

    watermark = guess(WATERMARK_NAME, catalogue.is_date)
    deleted = guess(DELETED_NAME, catalogue.is_flag)
    items, renamed = [], []
    for field, column in by_field.items():
        item = cat.quote(column.name)
        if field != column.name.lower():
            renamed.append((column.name, field))
            # bare when plain: the database folds it and every run reads result names in lower case
            item += f" AS {field if catalogue.plain(field) else cat.quote(field)}"
        elif field in (watermark, deleted) and cat.needs_alias(column.name, field):
            item += f" AS {field}"  # the sync wrapper names it q.<field>, unquoted
        items.append(item)
    # bandit B608 accepted: every name is the catalogue's own, quoted for the database
    query = "SELECT\n  " + ",\n  ".join(items) + f"\nFROM {cat.qualified(table.name)}"  # nosec B608
    properties, unknown = _properties(dbtype, by_field, keys)
    return Plan(alias, keys, "--key" if key else "the primary key", query, properties, watermark, deleted, unknown,
                renamed, names, tuple(items))


def field_names(columns: tuple[Column, ...]) -> dict[str, str]:
    """Each column's field: its name in lower case, as every run reads it; a metadata field name of the
    engines (``_id``, ``_source``... see ``documents.METADATA_FIELDS``), which no document may hold,
    renamed ``id_`` (``id__``... when taken), also as the first part of a dotted name."""
    lowered = {c.name: c.name.lower() for c in columns}
    taken = {f.split(".")[0] for f in lowered.values()}
    new_tops: dict[str, str] = {}
    for column, field in lowered.items():
        top, dot, rest = field.partition(".")
        if top in METADATA_FIELDS:
            if top not in new_tops:
                new = renamed_field(top)
                while new in taken:
                    new += "_"
                taken.add(new)
                new_tops[top] = new
            lowered[column] = new_tops[top] + dot + rest
    return lowered


def _key_fields(table: Table, names: dict[str, str], key: list[str] | None) -> list[str]:
    by_lower = {column.lower(): field for column, field in names.items()}
    if key:
        for name in key:
            if name.lower() not in by_lower:
                raise ConfigError(f"--key {name}: table {table.name.given} has no column {name} "
                                  f"(columns: {', '.join(by_lower)})")
        return [by_lower[name.lower()] for name in key]
    if not table.key:
        raise ConfigError(f"table {table.name.given} has no primary key: name the key columns with --key COL")
    return [names[name] for name in table.key]


def _properties(dbtype: str, by_field: dict[str, Column], keys: list[str]) -> tuple[dict, list]:
    """Mappings by field; a dotted field ("metadata.source") nests, as documents nest it."""
    properties: dict = {}
    unknown = []
    for field, column in by_field.items():
        mapping = catalogue.field_mapping(dbtype, column, is_key=field in keys)
        if mapping is None:
            mapping = dict(catalogue.SAFE_KEYWORD)
            unknown.append((field, column.type or "no declared type"))
        node = properties
        *parents, leaf = field.split(".")
        for part in parents:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[leaf] = mapping
    return properties, unknown


# ------------------------------------------------------------------ writing


def _relative(path: Path, base: Path) -> str:
    """A source file as the job file reads it: as given when absolute, else relative to the job file's folder."""
    if path.is_absolute():
        return str(path)
    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def render_job(src: SourceConfig, tgt: TargetConfig, job: Plan, table: str, out: Path) -> str:
    """The job file's text, checked by reading it back as the tool will."""
    source_fields = src.model_dump(exclude_none=True)
    if src.filename is not None:
        source_fields["filename"] = _relative(src.filename, out)
    target_fields = {"url": tgt.url, "engine": tgt.engine, **tgt.model_dump(exclude_unset=True)}
    if len(tgt.urls) > 1:  # several nodes (--url a,b): a TOML array reads better than one string with commas
        target_fields["url"] = tgt.urls
    name = f"{job.alias}.toml"
    lines = [f"# Written by `indexer init` from {src.dbtype} table {toml_string(table)}: a starting point, "
             "read it first.",
             f"# From this folder: indexer preview {name}; indexer bootstrap --job {name}; indexer reindex {name}",
             "", "[source]"]
    for field, value in source_fields.items():
        note = "   # the NAME of the variable; the password is never written" if field == "password_env" else ""
        lines.append(f"{field} = {toml_value(value)}{note}")
    lines += ["", "[target]", *(f"{n} = {toml_value(v)}" for n, v in target_fields.items()), "", "[job]",
              f"alias = {toml_string(job.alias)}", f"key = {toml_value(job.key)}   # {job.key_from}",
              f"query = {toml_query(job.query)}",
              'mappings = "mappings"   # its templates, beside this file: bootstrap --job installs them, '
              'preview reads them']
    lines += _guess_lines(job)
    lines += [f"# field {toml_string(f)} ({toml_string(t)}): mapped as keyword, as init could tell no more "
              "from its type (and values); check it" for f, t in job.unknown]
    lines += [f"# column {toml_string(c)} is renamed {toml_string(f)} in the query: {c.lower().split('.')[0]} is a "
              "metadata field name, which the engines refuse in a document" for c, f in job.renamed]
    lines += relations.toml_lines(job.children)
    text = "\n".join(lines) + "\n"
    try:
        Job(**tomllib.loads(text))
    except ValidationError as exc:
        raise invalid(exc) from None
    return text


def _guess_lines(job: Plan) -> list[str]:
    lines = []
    unwatched = relations.unwatched(job.children)
    if job.watermark and unwatched:
        lines.append(f"# watermark = {toml_string(job.watermark)}   # guessed, but child {unwatched!r} has none: sync "
                     "needs one on every child (docs/nested.md)")
    elif job.watermark:
        lines.append(f"watermark = {toml_string(job.watermark)}   # guessed from its name and type: "
                     "check that it grows whenever a row changes")
    else:
        lines.append('# watermark = "..."   # none guessed (no date column named like updated/modified/changed); '
                     "sync needs one")
    if job.deleted:
        lines.append(f"deleted = {toml_string(job.deleted)}   # guessed from its name and type: rows where it is "
                     "true are left out (reindex) and deleted (sync)")
    return lines


def render_templates(job: Plan, dbtype: str, table: str) -> list[str]:
    """The component templates (mappings, settings) and the index template composing them."""
    origin = f"indexer init, from {dbtype} table {table}"
    mappings = {"template": {"mappings": {"dynamic": "strict", "properties": job.properties}},
                "_meta": {"description": f"One field per column ({origin}); dynamic strict: a new column is refused."}}
    settings = {"template": {"settings": dict(SETTINGS)},
                "_meta": {"description": "One shard; a replica once a second node exists (auto_expand_replicas 0-1)."}}
    index = {"index_patterns": [f"{job.alias}-*"], "composed_of": [f"{job.alias}-settings", f"{job.alias}-mappings"],
             "priority": PRIORITY_BASE + len(job.alias), "_meta": {"managed_by": "indexer"}}
    return [_json(body) + "\n" for body in (mappings, settings, index)]


def _json(value: Any, depth: int = 0) -> str:
    """Indented JSON with each field's mapping (a dict whose "type" is a string, but not an object's: a child's)
    and each list on one line."""
    if isinstance(value, dict) and value and (not isinstance(value.get("type"), str) or "properties" in value):
        pad = "  " * (depth + 1)
        inner = ",\n".join(f"{pad}{json.dumps(k, ensure_ascii=False)}: {_json(v, depth + 1)}" for k, v in value.items())
        return "{\n" + inner + "\n" + "  " * depth + "}"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _write_all(paths: list[Path], texts: list[str]) -> None:
    """Create each file (never replacing one); on any failure this call's files are removed again."""
    written: list[Path] = []
    try:
        for path, text in zip(paths, texts, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x", encoding="utf-8") as f:
                written.append(path)
                f.write(text)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        if isinstance(exc, FileExistsError):
            raise ConfigError(f"{exc.filename} already exists: indexer init never overwrites a file") from None
        raise ConfigError(f"cannot write {exc.filename or paths[len(written)]}: {exc.strerror or exc}") from None
