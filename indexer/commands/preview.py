"""``indexer preview``: the first rows as a reindex would send them, and what the cluster would make of them.

::

    alias --indices.index_name--> <alias>-<now> --> its settings and mappings, from
        the job's templates folder (``job.mappings`` or ``mappings=``): the index template matching
            it, composed with its components (files, else the cluster) by ``templates.compose``
        or else the cluster: ``_simulate_index`` (none: no template matches, run bootstrap)
    settings, mappings --> throwaway index ``indexer_preview_<stamp>_<hex>`` (``scratch``; deleted in a finally)
    job --read_sample: extract.Reader, one fetch of N rows, cursor closed--> actions (ids, bytes), rejected rows
    actions --sink.Sender (requests of at most job.chunk_bytes) into the throwaway index--> values
        the mapping rejects, reasons scrubbed of row values
    documents + mappings --unmapped()--> fields a strict mapping lacks;  ids --> duplicates
    files' result vs the cluster's ``_simulate_index`` --> "a reindex now would use the cluster's"
    stored state --incremental.since--> the ``since`` a sync would use now

Nothing is written to the alias, to its indices, to the templates or to the stored state. The
throwaway index is created only when the cluster says no index template matches its name, with
exactly the settings and mappings shown (see ``indexer.scratch``). It is created before the rows
are read so that reading and checking sit inside its one ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from indexer import assemble, extract, incremental, indices, nesting, sources
from indexer import watermark as wm
from indexer.cluster import opened
from indexer.commands.bootstrap import components_of, missing_components
from indexer.config import Job, JobSettings
from indexer.documents import Action, Rejected
from indexer.engine import Engine
from indexer.errors import ConfigError
from indexer.extract import Chunk, ReadPlan
from indexer.run import state_store, utc_now
from indexer.scratch import delete_leftovers, throwaway
from indexer.sink import Sender
from indexer.state import JobState
from indexer.templates import choose, compose, flat_settings, load_templates
from indexer.watermark import Kind

# Settings the cluster adds to a simulated index on its own, which no template sets (Elasticsearch's
# data tiers): never a difference between the files and the cluster.
_PROVIDED = frozenset({"index.routing.allocation.include._tier_preference"})
FROM_CLUSTER = "the cluster's index templates"
NESTED_OBJECTS_LIMIT = 10_000  # the engines' default index.mapping.nested_objects.limit


@dataclass
class Preview:
    """What ``indexer preview`` found; no problem means exit 0."""

    job: str
    alias: str
    documents: list[dict]       # [{"_id": ..., "_source": {...}}]: exactly what a reindex would send
    index: str                  # the name a reindex would create now
    settings: dict              # what that index would get (from ``templates``)
    mappings: dict
    watermark: dict | None      # column, kind, stored, since (and a note when nothing is stored)
    problems: list[str]
    templates: str = FROM_CLUSTER  # where settings and mappings come from: the cluster, or the job's files

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.watermark is not None:
            out["watermark"] = {k: _plain(v) for k, v in self.watermark.items()}
        return out

    def lines(self) -> list[str]:
        lines = [f"preview {self.job}: {len(self.documents)} document(s) for alias {self.alias}"]
        lines += [_json(nesting.shortened(doc)) for doc in self.documents]
        lines += [f"index {self.index} would get these settings (from {self.templates}):",
                  _json(self.settings, indent=True), "and these mappings:", _json(self.mappings, indent=True)]
        if self.watermark is not None:
            lines.append(_watermark_line(self.watermark))
        return lines + ([f"problem: {p}" for p in self.problems] or ["no problems found"])


async def preview(job: Job, *, limit: int = 5, engine: Engine | None = None, state_file: Path | None = None,
                  mappings: Path | None = None) -> Preview:
    """Read the first ``limit`` rows and check them against what a reindex would create now.

    ``mappings`` (else ``job.job.mappings``) names a templates folder: the next index's settings and
    mappings are then composed from its files, before any bootstrap; without one, the cluster's."""
    async with opened(job.target, engine) as connected:
        return await _preview(job, limit, connected, state_file, mappings or job.job.mappings)


@dataclass
class _Planned:
    """The settings and mappings the next index would get, and from where."""

    template: dict | None       # settings, mappings (None: no template gives any)
    cluster: dict | None        # what the cluster's own templates give (its _simulate_index answer)
    folder: Path | None         # the job's templates folder, when they come from its files


async def _preview(job: Job, limit: int, engine: Engine, state_file: Path | None, folder: Path | None) -> Preview:
    alias = job.job.alias
    await delete_leftovers(engine, utc_now())
    problems = []
    if not await engine.alias_targets(alias) and await engine.exists(alias):
        problems.append(f"{alias!r} is an index, not an alias: a reindex refuses to run until it is renamed or deleted")
    ours = indices.owned_indices(alias, await engine.indices_matching(f"{alias}-*"))
    index = indices.index_name(alias, utc_now(), ours)
    planned = await _plan(engine, index, folder, problems)
    settings, mappings = (planned.template or {}).get("settings", {}), (planned.template or {}).get("mappings", {})
    state = await state_store(engine, state_file).load(alias)
    async with _scratch(engine, planned, problems) as scratch:
        if scratch is not None and scratch.mappings is not None:
            mappings = scratch.mappings  # the engine's own shape of the files' mappings (defaults left out)
        templates = _compare(planned, settings, mappings, index, problems)
        sample = await asyncio.to_thread(read_sample, job, limit)
        docs = [{"_id": a.id, "_source": orjson.loads(a.line.split(b"\n", 2)[1])} for a in sample.actions]
        problems += sample.problems + rejected_rows(sample.rejected) + duplicate_ids(sample.actions)
        flagged = {doc["_id"] for doc in docs if unmapped(doc["_source"], mappings)}
        problems += unmapped_fields([doc["_source"] for doc in docs], mappings, index)
        problems += too_many_nested(docs, mappings, settings)
        if scratch is not None and scratch.made and sample.actions:
            problems += await rejected_values(engine, scratch.name, sample.actions, flagged, job.job)
    found = _watermark(job, sample, state, problems)
    return Preview(job.name, alias, docs, index, settings, mappings, found, problems, templates)


async def _plan(engine: Engine, index: str, folder: Path | None, problems: list[str]) -> _Planned:
    """The next index's settings and mappings: from the files in ``folder`` when given, else the cluster's."""
    cluster = await engine.simulate_template(index)
    if folder is None:
        if cluster is None:
            problems.append(f"no index template matches {index}: run indexer bootstrap")
        return _Planned(cluster, cluster, None)
    files = load_templates(folder)
    chosen = choose([(t.name, t.body) for t in files if t.kind == "index"], index)
    if chosen is None:
        problems.append(f"no index template in {folder} matches {index} (by its index_patterns)")
        return _Planned(None, cluster, folder)
    tpl = next(t for t in files if t.kind == "index" and t.name == chosen[0])
    parts, missing = await components_of(engine, tpl, {t.name: t for t in files if t.kind == "component"})
    if missing:
        problems.append(missing_components(tpl, missing))
        return _Planned(None, cluster, folder)
    return _Planned(compose([body for _, body in parts] + [tpl.body]), cluster, folder)


@contextlib.asynccontextmanager
async def _scratch(engine: Engine, planned: _Planned, problems: list[str]):
    """The throwaway index for the planned settings and mappings (None when there are none)."""
    if planned.template is None:
        yield None
        return
    template = planned.template
    async with throwaway(engine, template.get("settings", {}), template.get("mappings", {}), now=utc_now(),
                         read_back=planned.folder is not None) as scratch:
        if scratch.shadowed:
            problems.append(f"an index template matches {scratch.name}, so the values were not checked "
                            "in a throwaway index")
        if scratch.refused:
            problems.append(f"the cluster refuses an index with these settings and mappings: {scratch.refused}")
        yield scratch


def _compare(planned: _Planned, settings: dict, mappings: dict, index: str, problems: list[str]) -> str:
    """Where the settings and mappings come from (for the header line); a problem when the files'
    result differs from what the cluster's own templates would give the index now."""
    if planned.folder is None:
        return FROM_CLUSTER
    where = f"the templates in {planned.folder}"
    if planned.cluster is None:
        return f"{where}; the cluster has no index template for it yet: run indexer bootstrap before reindex"
    if planned.template is not None and not same_result(settings, mappings, planned.cluster):
        problems.append(f"the cluster's index templates give {index} other settings or mappings than {where}: "
                        "a reindex now would use the cluster's (run indexer bootstrap)")
    return where


def same_result(settings: dict, mappings: dict, cluster: dict) -> bool:
    """Whether the cluster's ``_simulate_index`` answer gives these settings and mappings."""
    ours, theirs = flat_settings(settings), flat_settings(cluster.get("settings") or {})
    theirs = {k: v for k, v in theirs.items() if k not in _PROVIDED or k in ours}
    return ours == theirs and orjson.dumps(mappings, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        cluster.get("mappings") or {}, option=orjson.OPT_SORT_KEYS)


# ------------------------------------------------------------------ the sample (worker thread)


@dataclass
class Sample:
    """The first rows, encoded, and what the reader saw of them."""

    actions: list[Action]
    rejected: list[Rejected]
    rows: int = 0
    kind: Kind | None = None       # the watermark's kind, from the sample's first usable value
    largest: Any = None            # the sample's largest watermark
    null_watermarks: int = 0
    odd_watermark: str | None = None
    problems: list[str] = dataclasses.field(default_factory=list)


def read_sample(job: Job, limit: int) -> Sample:
    """Blocking: the first ``limit`` rows, encoded by ``extract.Reader`` as a reindex encodes them.

    One fetch of ``limit`` rows; the cursor is then closed (the query is not rewritten). A
    watermark or soft-delete column the query lacks is a problem, and the rows are read without it.
    """
    settings, params = job.job, extract.user_params(job)
    problems = []
    with sources.connect(job.source, limit) as conn:
        columns = sources.columns_of(conn, settings.query, params)
        try:
            extract.check_columns(settings, columns, bool(settings.transform))
            if settings.children:
                assemble.check_columns(job, conn, columns)
        except ConfigError as exc:
            problems.append(str(exc))
            if settings.children:
                return Sample([], [], problems=problems)  # a child that cannot be read: no document to show
    absent = {f: None for f in ("watermark", "deleted") if getattr(settings, f) and getattr(settings, f) not in columns}
    reading = job.model_copy(update={"job": settings.model_copy(update={"chunk_size": limit, **absent})})
    # children by key lists: the first parents' own, never a sorted read of whole tables
    reader = extract.Reader(reading, ReadPlan(settings.query, params, "reindex", by_keys=True))
    taken: list[Chunk] = []  # the first fetch: with children, in pieces of chunk_size rows of all tables
    with contextlib.closing(reader.chunks()) as chunks:
        while sum(c.rows_read for c in taken) < limit and (chunk := next(chunks, None)) is not None:
            taken.append(chunk)
    if not taken:
        return Sample([], [], problems=problems)
    marks = [c.watermark for c in taken if c.watermark is not None]
    largest = max(marks, key=lambda v: wm.keys_of([v], reader.kind)[0]) if len(marks) > 1 else next(iter(marks), None)
    return Sample([a for c in taken for a in c.actions], [r for c in taken for r in c.rejected],
                  sum(c.rows_read for c in taken), reader.kind, largest, sum(c.null_watermarks for c in taken),
                  next((c.odd_watermark for c in taken if c.odd_watermark), None), problems)


# ------------------------------------------------------------------ problems (pure)


def rejected_rows(rejected: list[Rejected]) -> list[str]:
    """One line per reason: the rows (counted from 1) a reindex would dead-letter."""
    rows: dict[str, list[int]] = defaultdict(list)
    for r in rejected:
        rows[r.reason].append(r.row + 1)
    return [f"row{'s' if len(n) > 1 else ''} {', '.join(map(str, n))}: {reason} (a reindex dead-letters it)"
            for reason, n in rows.items()]


def duplicate_ids(actions: list[Action]) -> list[str]:
    return [f"id {id_!r} is given to {n} rows of the sample: job.key does not identify a row"
            for id_, n in Counter(a.id for a in actions).items() if n > 1]


def unmapped(doc: dict, mappings: dict) -> list[str]:
    """The fields of ``doc`` (dotted paths) that the mapping lacks where it is ``dynamic: strict``
    (an object inherits the setting unless it sets its own; a dotted key is an object path)."""
    found: list[str] = []
    _walk(doc, mappings, "true", "", found)
    return found


def _walk(node: dict, mapping: dict, dynamic: str, prefix: str, found: list[str]) -> None:
    dynamic = str(mapping.get("dynamic", dynamic)).lower()
    fields = mapping.get("properties") or {}
    for key, value in node.items():
        name, dot, rest = key.partition(".")
        if dot:
            value = {rest: value}
        field = fields.get(name)
        if field is None:
            if dynamic == "strict":
                found.append(prefix + name)
            continue
        for item in value if isinstance(value, list) else [value]:
            # an object with enabled: false takes any shape (its fields are kept in _source, not mapped)
            if isinstance(item, dict) and field.get("type", "object") in ("object", "nested") \
                    and str(field.get("enabled", True)).lower() != "false":
                _walk(item, field, dynamic, f"{prefix}{name}.", found)


def too_many_nested(docs: list[dict], mappings: dict, settings: dict) -> list[str]:
    """The documents holding more nested objects than the index allows (``index.mapping.nested_objects.limit``,
    default 10,000): the engine refuses each of them whole."""
    flat = flat_settings(settings)
    limit = int(flat.get("index.mapping.nested_objects.limit", NESTED_OBJECTS_LIMIT))
    found = [(doc["_id"], n) for doc in docs if (n := nesting.nested_objects(doc["_source"], mappings)) > limit]
    return [f"document {id_!r} holds {n:,} nested objects, over index.mapping.nested_objects.limit ({limit:,}): "
            "the engine would refuse it; raise the limit in the index settings, or map that child as object"
            for id_, n in found]


def unmapped_fields(docs: list[dict], mappings: dict, index: str) -> list[str]:
    counts = Counter(path for doc in docs for path in dict.fromkeys(unmapped(doc, mappings)))
    return [f"field {path!r} is not in the mappings {index} would get, which are dynamic: strict "
            f"({n} of {len(docs)} documents; a reindex dead-letters them)" for path, n in counts.items()]


# ------------------------------------------------------------------ values, in the throwaway index


async def rejected_values(engine: Engine, index: str, actions: list[Action], flagged: set[str],
                          settings: JobSettings) -> list[str]:
    """Send the sample's exact actions into ``index`` as a reindex sends them (``sink.Sender``: requests
    of at most ``job.chunk_bytes``, a 413 split); one line per document refused, its reason scrubbed of
    the row values the engine quotes (as in the dead-letter file).

    A strict-mapping refusal of a document already reported by ``unmapped`` is not repeated."""
    answers = await Sender.for_job(engine, index, settings, fresh_index=True).send(actions)
    return [f"document {f.id!r} is refused by the mappings: {f.type}: {f.reason}" for f in answers.failed
            if not (f.type == "strict_dynamic_mapping_exception" and f.id in flagged)]


# ------------------------------------------------------------------ the watermark


def _watermark(job: Job, sample: Sample, state: JobState, problems: list[str]) -> dict | None:
    """What a sync would start from now, and the problems the sample's watermark values show."""
    column = job.job.watermark
    if not column:
        return None
    found = {"column": column, "kind": sample.kind, "stored": state.watermark, "since": None}
    if sample.null_watermarks:
        problems.append(f"{sample.null_watermarks} of {sample.rows} rows have a NULL or unusable {column!r}"
                        + (f" (first: {sample.odd_watermark})" if sample.odd_watermark else "")
                        + ": a reindex indexes them, but sync cannot see changes to them")
    if state.watermark is None:
        found["note"] = "no watermark stored yet: run reindex first"
        return found
    try:
        found["since"] = incremental.since(state, job.job.lookback)
        if sample.largest is not None:
            wm.keys_of([sample.largest], wm.value_kind(state.watermark))
    except (ConfigError, wm.WatermarkValueError) as exc:
        problems.append(f"job.watermark {column!r}: the stored watermark {_plain(state.watermark)} and the sample "
                        f"do not go together ({getattr(exc, 'reason', exc)}): run reindex")
    return found


def _watermark_line(found: dict) -> str:
    head = f"watermark {found['column']} ({found['kind'] or 'kind unknown: no usable value in the sample'})"
    if found["stored"] is None:
        return f"{head}: {found.get('note')}"
    return f"{head}: stored {_plain(found['stored'])}; a sync now reads rows from {_plain(found['since'])}"


def _plain(value: Any) -> Any:
    """A watermark value in JSON: dates and times in ISO 8601, decimals as text."""
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _json(value: Any, indent: bool = False) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0).decode()
