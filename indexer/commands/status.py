"""``indexer status``: what the stored state says, what the alias holds, and what the source holds.

::

    state store --load--> watermark (and each child's), last run, last reconcile
    engine --alias targets, count (as of the alias's last refresh)--> documents in the alias
    source --COUNT(*) of the query (soft-deleted rows left out)--> rows in the source --> the difference
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer import documents, sources
from indexer.cluster import opened
from indexer.config import Job
from indexer.engine import Engine
from indexer.extract import user_params
from indexer.run import state_store


@dataclass
class Status:
    """What the stored state says, what the alias holds, and what the source holds."""

    job: str
    alias: str
    alias_indices: list[str]
    watermark: Any
    last_run: dict | None
    last_reconcile: dict | None
    documents_in_alias: int | None  # as of the alias's last refresh (reindex and sync refresh at their end)
    rows_in_source: int
    difference: int | None
    child_watermarks: dict[str, Any] = dataclasses.field(default_factory=dict)  # nested documents: by child path

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


async def status(job: Job, *, engine: Engine | None = None, state_file: Path | None = None) -> Status:
    async with opened(job.target, engine) as connected:
        state = await state_store(connected, state_file).load(job.job.alias)
        live = await connected.alias_targets(job.job.alias)
        in_alias = await connected.count(job.job.alias) if live else None
    rows = await asyncio.to_thread(_source_count, job)
    return Status(job.name, job.job.alias, live, state.watermark,
                  state.last_run.as_dict() if state.last_run else None,
                  state.last_reconcile.as_dict() if state.last_reconcile else None, in_alias, rows,
                  None if in_alias is None else rows - in_alias,
                  {path: child.watermark for path, child in state.children.items()})


def _source_count(job: Job) -> int:
    with sources.connect(job.source, job.job.chunk_size) as conn:
        if not job.job.deleted:
            return sources.count_rows(conn, job.job.query, user_params(job))
        groups = sources.count_by(conn, job.job.query, user_params(job), job.job.deleted)
        return sum(n for flag, n in groups if not documents.is_true(flag))
