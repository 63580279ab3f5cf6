"""Throwaway indices: where preview checks a sample's values and bootstrap lets the engine judge its files.

::

    settings, mappings --throwaway()--> PUT indexer_preview_<UTC yyyymmddhhmmss>_<8 hex>
        --> Scratch (made, or the engine's reason for refusing it) --> ... --> DELETE (in a finally)

The name has no ``-``, so it can never match ``<alias>-*``. The index gets the settings it is
given minus those that would act on it (an ILM policy, allocation filters, a write block) or hide
it from the leftover clean-up (``_NOT_COPIED``), and never a template's aliases. It is deleted on
the way out, also when the caller is cancelled (Ctrl-C, SIGTERM); one left by a killed process is
deleted by the next preview once ``LEFTOVER_AGE`` old (``delete_leftovers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from indexer.engine import ApiStatusError, Engine

SCRATCH_PREFIX = "indexer_preview_"
LEFTOVER_AGE = dt.timedelta(minutes=10)  # a throwaway index lives for seconds
_SCRATCH_NAME = re.compile(re.escape(SCRATCH_PREFIX) + r"(\d{14})_[0-9a-f]{8}")
# Index settings a throwaway index does not take: they would act on it (an ILM policy, allocation
# filters, a write block that also refuses its deletion) or hide it from the leftover clean-up.
_NOT_COPIED = ("lifecycle", "routing", "blocks", "hidden")
_REPLICAS = ("number_of_replicas", "auto_expand_replicas")


@dataclass
class Scratch:
    """One throwaway index: its name, and whether it was made (else why not)."""

    name: str
    made: bool = False
    refused: str | None = None   # the engine's reason (HTTP 400) for refusing these settings and mappings
    shadowed: bool = False       # an index template matches the name: not made (its settings would mix in)
    mappings: dict | None = None  # as the engine stored them (``read_back``): its own shape, defaults left out


def scratch_name(now: dt.datetime) -> str:
    """``indexer_preview_<UTC yyyymmddhhmmss>_<8 hex>``: no ``-``, so never ``<alias>-*``."""
    return f"{SCRATCH_PREFIX}{now.astimezone(dt.UTC):%Y%m%d%H%M%S}_{secrets.token_hex(4)}"


def is_leftover(name: str, now: dt.datetime) -> bool:
    """A throwaway index (by its name) older than ``LEFTOVER_AGE``; other names are never ours."""
    match = _SCRATCH_NAME.fullmatch(name)
    if not match:
        return False
    made = dt.datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
    return now - made > LEFTOVER_AGE


def scratch_settings(settings: dict, *, replicas: bool = False) -> dict:
    """The settings a throwaway index is created with (see ``_NOT_COPIED``); without replicas unless
    ``replicas`` (bootstrap keeps them so that a bad replica count is refused too)."""
    drop = _NOT_COPIED if replicas else _NOT_COPIED + _REPLICAS
    index = {k: v for k, v in (settings.get("index") or {}).items() if k not in drop}
    return {**settings, "index": index if replicas else {**index, "number_of_replicas": 0}}


async def delete_leftovers(engine: Engine, now: dt.datetime) -> None:
    """Delete throwaway indices that a killed process left behind."""
    for name in await engine.indices_matching(SCRATCH_PREFIX + "*"):
        if is_leftover(name, now):
            await engine.delete_index(name)


@contextlib.asynccontextmanager
async def throwaway(engine: Engine, settings: dict, mappings: dict, *, now: dt.datetime, replicas: bool = False,
                    check_templates: bool = True, read_back: bool = False) -> AsyncIterator[Scratch]:
    """A throwaway index with these settings and mappings, deleted on the way out (also when cancelled).

    ``check_templates``: first ask the cluster that no index template matches the name (one that did
    would mix its settings, mappings and aliases in); if one does, nothing is made (``shadowed``).
    A 400 answer is the engine's verdict on the settings and mappings (``refused``); others raise.
    """
    scratch = Scratch(scratch_name(now))
    if check_templates and await engine.simulate_template(scratch.name) is not None:
        scratch.shadowed = True
        yield scratch
        return
    try:
        try:
            await engine.create_index(scratch.name, scratch_settings(settings, replicas=replicas), mappings=mappings,
                                      what=f"create throwaway index {scratch.name}")
            scratch.made = True
        except ApiStatusError as exc:
            if exc.status != 400:
                raise
            scratch.refused = f"{exc.error_type}: {exc.reason}" if exc.error_type else exc.reason
        if scratch.made and read_back:
            scratch.mappings = await engine.mappings(scratch.name)
        yield scratch
    finally:
        # Also when the create's answer was lost to a cancellation (a 404 is fine); shielded, so a
        # second Ctrl-C does not abandon the request (and the next preview cleans up anyway).
        with contextlib.suppress(Exception):
            await asyncio.shield(engine.delete_index(scratch.name))


async def judge(engine: Engine, settings: dict, mappings: dict, *, now: dt.datetime) -> str | None:
    """The engine's reason for refusing an index with these settings (replica counts included) and
    mappings, or None when it accepts them; nothing stays behind."""
    async with throwaway(engine, settings, mappings, now=now, replicas=True, check_templates=False) as scratch:
        return scratch.refused
