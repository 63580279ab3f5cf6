"""``indexer preview``: the first rows as a reindex would send them, and what the cluster would make of them.

::

    alias --indices.index_name--> <alias>-<now> --_simulate_index--> settings, mappings (none: no template)
    settings, mappings --> throwaway index ``indexer_preview_<stamp>_<hex>`` (created first, deleted in a finally)
    job --read_sample: extract.Reader, one fetch of N rows, cursor closed--> actions (ids, bytes), rejected rows
    actions --_bulk into the throwaway index--> values the mapping rejects
    documents + mappings --unmapped()--> fields a strict mapping lacks;  ids --> duplicates
    stored state --incremental.since--> the ``since`` a sync would use now

Nothing is written to the alias, to its indices or to the stored state. The throwaway index's
name has no ``-``, so it can never match ``<alias>-*``, and it is created only when the cluster
says no index template matches it: it gets exactly the simulated settings and mappings (never the
template's aliases). It is deleted in a ``finally`` (also on Ctrl-C and SIGTERM, which cancel the
command); one left by a killed preview is deleted by the next preview once ``LEFTOVER_AGE`` old.
It is created before the rows are read so that reading and checking sit inside that one ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import re
import secrets
from collections import Counter, defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, AsyncIterator

import orjson

from indexer import extract, incremental, indices, source
from indexer import watermark as wm
from indexer.config import Job
from indexer.documents import Action, Rejected
from indexer.engine import ApiStatusError, Engine, open_engine
from indexer.errors import ConfigError
from indexer.extract import ReadPlan
from indexer.run import state_store, utc_now
from indexer.state import JobState

SCRATCH_PREFIX = "indexer_preview_"
LEFTOVER_AGE = dt.timedelta(minutes=10)  # a preview's throwaway index lives for seconds
_SCRATCH_NAME = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d{14})_[0-9a-f]{8}")
# Index settings a throwaway index does not take from the template: they would act on it (an ILM
# policy, allocation filters, a write block) or hide it from the leftover clean-up.
_NOT_COPIED = ("lifecycle", "routing", "blocks", "hidden", "number_of_replicas", "auto_expand_replicas")


@dataclass
class Preview:
    """What ``indexer preview`` found; no problem means exit 0."""

    job: str
    alias: str
    documents: list[dict]       # [{"_id": ..., "_source": {...}}]: exactly what a reindex would send
    index: str                  # the name a reindex would create now
    settings: dict              # what that index would get (the cluster's _simulate_index)
    mappings: dict
    watermark: dict | None      # column, kind, stored, since (and a note when nothing is stored)
    problems: list[str]

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.watermark is not None:
            out["watermark"] = {k: _plain(v) for k, v in self.watermark.items()}
        return out

    def lines(self) -> list[str]:
        lines = [f"preview {self.job}: {len(self.documents)} document(s) for alias {self.alias}"]
        lines += [_json(doc) for doc in self.documents]
        lines += [f"index {self.index} would get these settings:", _json(self.settings, indent=True),
                  "and these mappings:", _json(self.mappings, indent=True)]
        if self.watermark is not None:
            lines.append(_watermark_line(self.watermark))
        return lines + ([f"problem: {p}" for p in self.problems] or ["no problems found"])


async def preview(job: Job, *, limit: int = 5, engine: Engine | None = None, state_file: Path | None = None) -> Preview:
    """Read the first ``limit`` rows and check them against what a reindex would create now."""
    own = engine is None
    engine = engine or await open_engine(job.target)
    try:
        return await _preview(job, limit, engine, state_file)
    finally:
        if own:
            await engine.close()


async def _preview(job: Job, limit: int, engine: Engine, state_file: Path | None) -> Preview:
    alias = job.job.alias
    await delete_leftovers(engine, utc_now())
    problems = []
    if not await engine.alias_targets(alias) and await engine.exists(alias):
        problems.append(f"{alias!r} is an index, not an alias: a reindex refuses to run until it is renamed or deleted")
    ours = indices.owned_indices(alias, await engine.indices_matching(f"{alias}-*"))
    index = indices.index_name(alias, utc_now(), ours)
    template = await engine.simulate_template(index)
    if template is None:
        problems.append(f"no index template matches {index}: run indexer bootstrap")
    settings, mappings = (template or {}).get("settings", {}), (template or {}).get("mappings", {})
    state = await state_store(engine, state_file).load(alias)
    async with throwaway(engine, settings, mappings, problems, wanted=template is not None) as scratch:
        sample = await asyncio.to_thread(read_sample, job, limit)
        docs = [{"_id": a.id, "_source": orjson.loads(a.line.split(b"\n", 2)[1])} for a in sample.actions]
        problems += sample.problems + rejected_rows(sample.rejected) + duplicate_ids(sample.actions)
        flagged = {doc["_id"] for doc in docs if unmapped(doc["_source"], mappings)}
        problems += unmapped_fields([doc["_source"] for doc in docs], mappings, index)
        if scratch and sample.actions:
            problems += await rejected_values(engine, scratch, sample.actions, flagged)
    found = _watermark(job, sample, state, problems)
    return Preview(job.name, alias, docs, index, settings, mappings, found, problems)


# ------------------------------------------------------------------ the sample (worker thread)


@dataclass
class Sample:
    """The first rows, encoded, and what the reader saw of them."""

    actions: list[Action]
    rejected: list[Rejected]
    rows: int = 0
    kind: str | None = None        # the watermark's kind, from the sample's first usable value
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
    with source.connect(job.source, limit) as conn:
        columns = source.columns_of(conn, settings.query, params)
    try:
        extract.check_columns(settings, columns, bool(settings.transform))
    except ConfigError as exc:
        problems.append(str(exc))
    absent = {f: None for f in ("watermark", "deleted") if getattr(settings, f) and getattr(settings, f) not in columns}
    reading = job.model_copy(update={"job": settings.model_copy(update={"chunk_size": limit, **absent})})
    reader = extract.Reader(reading, ReadPlan(settings.query, params, "reindex"))
    with contextlib.closing(reader.chunks()) as chunks:
        chunk = next(chunks, None)
    if chunk is None:
        return Sample([], [], problems=problems)
    return Sample(chunk.actions, chunk.rejected, chunk.rows_read, reader.kind, chunk.watermark,
                  chunk.null_watermarks, chunk.odd_watermark, problems)


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


def unmapped_fields(docs: list[dict], mappings: dict, index: str) -> list[str]:
    counts = Counter(path for doc in docs for path in dict.fromkeys(unmapped(doc, mappings)))
    return [f"field {path!r} is not in the mappings {index} would get, which are dynamic: strict "
            f"({n} of {len(docs)} documents; a reindex dead-letters them)" for path, n in counts.items()]


def scratch_name(now: dt.datetime) -> str:
    """``indexer_preview_<UTC yyyymmddhhmmss>_<8 hex>``: no ``-``, so never ``<alias>-*``."""
    return f"{SCRATCH_PREFIX}{now.astimezone(dt.timezone.utc):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


def is_leftover(name: str, now: dt.datetime) -> bool:
    """A throwaway index (by its name) older than ``LEFTOVER_AGE``; other names are never ours."""
    match = _SCRATCH_NAME.fullmatch(name)
    if not match:
        return False
    made = dt.datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    return now - made > LEFTOVER_AGE


def scratch_settings(settings: dict) -> dict:
    """The simulated settings a throwaway index is created with (see ``_NOT_COPIED``), no replicas."""
    index = {k: v for k, v in (settings.get("index") or {}).items() if k not in _NOT_COPIED}
    return {**settings, "index": {**index, "number_of_replicas": 0}}


# ------------------------------------------------------------------ the throwaway index


async def delete_leftovers(engine: Engine, now: dt.datetime) -> None:
    """Delete throwaway indices that a killed preview left behind."""
    for name in await engine.indices_matching(SCRATCH_PREFIX + "*"):
        if is_leftover(name, now):
            await engine.delete_index(name)


@contextlib.asynccontextmanager
async def throwaway(engine: Engine, settings: dict, mappings: dict, problems: list[str],
                    wanted: bool) -> AsyncIterator[str | None]:
    """A throwaway index with these settings and mappings, deleted on the way out (also when
    cancelled); None (with the reason in ``problems``) when it cannot honestly be made."""
    if not wanted:
        yield None
        return
    name = scratch_name(utc_now())
    if await engine.simulate_template(name) is not None:
        problems.append(f"an index template matches {name}, so the values were not checked in a throwaway index")
        yield None
        return
    created = None
    try:
        try:
            await engine.create_index(name, scratch_settings(settings), mappings=mappings,
                                      what=f"create throwaway index {name}")
            created = name
        except ApiStatusError as exc:
            if exc.status != 400:
                raise
            problems.append(f"the cluster refuses an index with these settings and mappings: {exc.reason}")
        yield created
    finally:
        # Also when the create's answer was lost to a cancellation (a 404 is fine); shielded, so a
        # second Ctrl-C does not abandon the request (and the next preview cleans up anyway).
        with contextlib.suppress(Exception):
            await asyncio.shield(engine.delete_index(name))


async def rejected_values(engine: Engine, index: str, actions: list[Action], flagged: set[str]) -> list[str]:
    """Index the sample's exact bulk body into ``index``; one line per document refused.

    A strict-mapping refusal of a document already reported by ``unmapped`` is not repeated."""
    answer = await engine.bulk(index, b"".join(a.line for a in actions))
    problems = []
    for action, item in zip(actions, answer.items):
        outcome = next(iter(item.values()), {})
        error = outcome.get("error") or {}
        if outcome.get("status", 200) < 300 or (error.get("type") == "strict_dynamic_mapping_exception"
                                                and action.id in flagged):
            continue
        cause = error.get("caused_by") or {}
        reason = f"{error.get('type')}: {error.get('reason')}" + (
            f" ({cause.get('type')}: {cause.get('reason')})" if cause.get("reason") else "")
        problems.append(f"document {action.id!r} is refused by the mappings: {reason[:400]}")
    return problems


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
