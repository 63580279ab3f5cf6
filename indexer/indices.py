"""The indices a reindex owns: their names, their life, and the one alias swap.

::

    owned_indices(alias-*)  -> orphans of killed runs deleted (we hold the lease)
    new_index()             -> <alias>-<UTC yyyymmddhhmmss>, created with load settings
    finish_load()           -> template settings restored, refreshed, counted
    swap_guard() + swap()   -> one atomic _aliases call, then indices beyond ``keep`` deleted

Only indices named exactly ``<alias>-`` + 14 digits are ever deleted, so alias
``sensors`` never touches ``sensors-eu-...``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from indexer.config import JobSettings
from indexer.engine import Engine
from indexer.errors import EngineError, RefusedError

log = logging.getLogger(__name__)
LOAD_SETTINGS = {"index": {"refresh_interval": "-1", "number_of_replicas": 0}}  # job.load_replicas may add copies


def index_name(alias: str, now: dt.datetime, existing: list[str]) -> str:
    """``<alias>-<UTC yyyymmddhhmmss>``, one second past the newest existing one if needed."""
    stamp = now.astimezone(dt.UTC).replace(tzinfo=None, microsecond=0)
    stamps = [dt.datetime.strptime(i[len(alias) + 1:], "%Y%m%d%H%M%S") for i in existing]
    if stamps and max(stamps) >= stamp:
        stamp = max(stamps) + dt.timedelta(seconds=1)
    return f"{alias}-{stamp:%Y%m%d%H%M%S}"


def owned_indices(alias: str, names: list[str]) -> list[str]:
    """Indices this tool made for ``alias`` (exactly ``<alias>-`` + 14 digits), oldest first."""
    pattern = re.compile(re.escape(alias) + r"-\d{14}")
    return sorted(n for n in names if pattern.fullmatch(n))


async def live_indices(engine: Engine, alias: str) -> list[str]:
    """The indices the alias serves; refuses an index that has the alias's name."""
    live = await engine.alias_targets(alias)
    if not live and await engine.exists(alias):
        raise EngineError(f"{alias!r} is an index, not an alias: rename or delete that index first "
                          "(indexer never deletes it)")
    return live


async def delete_orphans(engine: Engine, alias: str, live: list[str]) -> tuple[list[str], list[str]]:
    """Delete indices newer than the live one that the alias does not serve: left by runs that
    were killed (the caller holds the lease, so their owners stopped or lost theirs).
    Returns (the owned indices that remain, the ones deleted)."""
    ours = owned_indices(alias, await engine.indices_matching(f"{alias}-*"))
    newest_live = max((i for i in ours if i in live), default=None)
    deleted = []
    for orphan in [i for i in ours if i not in live and (newest_live is None or i > newest_live)]:
        log.warning("deleting %s, left by an earlier run that did not finish", orphan)
        await engine.delete_index(orphan)
        deleted.append(orphan)
    return [i for i in ours if i not in deleted], deleted


async def create_for_load(engine: Engine, index: str, replicas: int = 0) -> dict:
    """Create ``index`` for bulk loading, with ``replicas`` copies (``job.load_replicas``); return the index
    settings its templates want afterwards."""
    wanted = (await engine.simulate_index(index)).get("index", {})
    await engine.create_index(index, {"index": {**LOAD_SETTINGS["index"], "number_of_replicas": replicas}})
    return wanted


async def finish_load(engine: Engine, index: str, wanted: dict) -> int:
    """Restore the templates' refresh interval and replicas, refresh, and count the documents."""
    await engine.put_settings(index, {"index": {
        "refresh_interval": wanted.get("refresh_interval"),
        "number_of_replicas": wanted.get("number_of_replicas"),
    }})
    await engine.refresh(index)
    return await engine.count(index)


def swap_guard(settings: JobSettings, before: int | None, after: int, force: bool) -> str | None:
    """Refuse to move an alias onto an index that lost most of what the alias serves.

    Returns a warning when ``force`` overrode a refusal, else None."""
    if not before:
        return None  # a new alias (or an empty one) may start empty
    ratio = settings.min_ratio
    if after > 0 and after >= ratio * before:
        return None
    if force:
        return f"--force-swap: the alias moved from {before} to {after} documents"
    why = "none" if after == 0 else f"fewer than job.min_ratio = {ratio:g} of them"
    raise RefusedError(
        f"swap refused: the new index holds {after} documents and alias {settings.alias!r} serves {before} ({why}); "
        "the alias was not moved and the new index was deleted (check the query and its parameters, "
        "or pass --force-swap)")


async def swap(engine: Engine, alias: str, index: str, live: list[str]) -> None:
    """Point the alias at ``index`` instead of ``live``, in one atomic call."""
    actions = [{"add": {"index": index, "alias": alias}}]
    actions += [{"remove": {"index": old, "alias": alias}} for old in live]
    await engine.update_aliases(actions)


async def retire(engine: Engine, index: str, ours: list[str], keep: int) -> list[str]:
    """Delete the indices older than ``index`` beyond the ``keep`` newest; the ones deleted."""
    older = sorted({i for i in ours if i < index}, reverse=True)
    for old in older[keep:]:
        await engine.delete_index(old)
    return older[keep:]
