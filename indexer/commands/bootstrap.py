"""``indexer bootstrap``: the template files of ``mappings/`` installed in the cluster, component templates first.

::

    mappings/ --templates.load_templates (JSON shape, names, metadata fields)--> [TemplateFile]
        --Engine.get_template--> created | updated | unchanged
        --validate: each changed component alone, each index template composed (components from the
          files, else the cluster), judged by the engine in a throwaway index; patterns vs same-priority
          templates--> ConfigError naming the file (nothing installed)
        --Engine.put_template (unless only comparing)--> the cluster

Every file is validated before the first template is installed, also with ``--check`` and
``--dry-run``: one bad file installs nothing. The engine judges settings and mappings by creating
an index with them (``scratch.judge``), which is what it does itself when a template is installed;
what a throwaway index cannot take (an ILM policy, allocation filters, blocks) is left to the
install. When an index template of the cluster matches the throwaway names, the engine part is
skipped (its settings and aliases would mix in) and a warning says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from indexer.cluster import opened
from indexer.config import TargetConfig
from indexer.engine import Engine
from indexer.errors import ConfigError
from indexer.run import utc_now
from indexer.scratch import SCRATCH_PREFIX, judge, scratch_name
from indexer.templates import TemplateFile, compose, diff, load_templates, normalise, patterns_of, patterns_overlap

log = logging.getLogger(__name__)


@dataclass
class TemplateChange:
    kind: str
    name: str
    action: str  # created | updated | unchanged
    diff: str = ""


async def bootstrap(target: TargetConfig, mappings: Path, *, write: bool = True) -> list[TemplateChange]:
    """Install (or, with ``write=False``, only compare) every template file; component templates first.
    Every file is validated first (ConfigError naming the file, nothing installed)."""
    templates = load_templates(mappings)
    async with opened(target) as engine:
        return await _bootstrap(engine, templates, write)


async def _bootstrap(engine: Engine, templates: list[TemplateFile], write: bool) -> list[TemplateChange]:
    changes = []
    for tpl in templates:
        current = await engine.get_template(tpl.kind, tpl.name)
        same = current is not None and normalise(current) == normalise(tpl.body)
        action = "created" if current is None else "unchanged" if same else "updated"
        text = diff(tpl.kind, tpl.name, current, tpl.body) if action != "unchanged" else ""
        changes.append(TemplateChange(tpl.kind, tpl.name, action, text))
    changed = {(c.kind, c.name) for c in changes if c.action != "unchanged"}
    await validate(engine, templates, changed)
    if write:
        for tpl in templates:
            if (tpl.kind, tpl.name) in changed:
                await engine.put_template(tpl.kind, tpl.name, tpl.body)
    return changes


async def validate(engine: Engine, templates: list[TemplateFile], changed: set[tuple[str, str]]) -> None:
    """ConfigError naming the first file the engine would refuse; ``changed`` are the (kind, name) that
    differ from the cluster (the others are installed as they are, so the cluster took them already)."""
    components = {t.name: t for t in templates if t.kind == "component"}
    indexes = [t for t in templates if t.kind == "index"]
    await _check_priorities(engine, indexes, changed)
    if await engine.simulate_template(scratch_name(utc_now())) is not None:
        log.warning("an index template of the cluster matches %s*: the template files were checked "
                    "without the engine's verdict", SCRATCH_PREFIX)
        return
    for tpl in components.values():
        if ("component", tpl.name) in changed:
            await _judge(engine, tpl, [(tpl, tpl.body)])
    for tpl in indexes:
        names = tpl.body.get("composed_of") or []
        if ("index", tpl.name) in changed or any(("component", n) in changed for n in names):
            parts, missing = await components_of(engine, tpl, components)
            if missing:
                raise ConfigError(missing_components(tpl, missing) + " (nothing installed)")
            await _judge(engine, tpl, [*parts, (tpl, tpl.body)])


async def components_of(engine: Engine, index: TemplateFile, files: dict[str, TemplateFile]
                        ) -> tuple[list[tuple[TemplateFile | str, dict]], list[str]]:
    """The component templates ``index`` composes, in order, each as (its file, or the name of the
    cluster's template, and its body); and the names found in neither (Elasticsearch's
    ``ignore_missing_component_templates`` names may be missing)."""
    found: list[tuple[TemplateFile | str, dict]] = []
    missing = []
    may_miss = index.body.get("ignore_missing_component_templates") or []
    for name in index.body.get("composed_of") or []:
        if name in files:
            found.append((files[name], files[name].body))
        elif (body := await engine.get_template("component", name)) is not None:
            found.append((name, body))
        elif name not in may_miss:
            missing.append(name)
    return found, missing


def missing_components(index: TemplateFile, missing: list[str]) -> str:
    return (f"{index.path}: composed_of names component template {missing[0]!r}, which is neither in "
            f"{index.path.parent.parent / 'component'} nor in the cluster")


async def _judge(engine: Engine, tpl: TemplateFile, parts: list[tuple[TemplateFile | str, dict]]) -> None:
    """Let the engine judge the composition of ``parts``; when it refuses, blame the first part whose
    addition makes it refuse (each component file was judged alone already)."""
    bodies = [body for _, body in parts]
    reason = await _refusal(engine, bodies)
    if reason is None:
        return
    blamed = len(parts) - 1
    for end in range(1, len(parts)):
        if (early := await _refusal(engine, bodies[:end])) is not None:
            blamed, reason = end - 1, early
            break
    part = parts[blamed][0]
    where = part.path if isinstance(part, TemplateFile) else f"{tpl.path} (with the cluster's component {part!r})"
    raise ConfigError(f"{where}: the cluster refuses it: {reason} (nothing installed)")


async def _refusal(engine: Engine, bodies: list[dict]) -> str | None:
    composed = compose(bodies)
    return await judge(engine, composed["settings"], composed["mappings"], now=utc_now())


async def _check_priorities(engine: Engine, indexes: list[TemplateFile], changed: set[tuple[str, str]]) -> None:
    """The engines refuse an index template whose patterns overlap another's of the same priority."""
    others = await engine.index_templates()
    others.update({t.name: t.body for t in indexes})  # the files replace their namesakes
    for tpl in indexes:
        if ("index", tpl.name) not in changed:
            continue
        for name, other in others.items():
            if name == tpl.name or (other.get("priority") or 0) != (tpl.body.get("priority") or 0):
                continue
            clash = [(a, b) for a in patterns_of(tpl.body) for b in patterns_of(other) if patterns_overlap(a, b)]
            if clash:
                raise ConfigError(f"{tpl.path}: index pattern {clash[0][0]!r} overlaps {clash[0][1]!r} of index "
                                  f"template {name!r}, which has the same priority "
                                  f"({tpl.body.get('priority') or 0}): the engines refuse that; give one a "
                                  "different priority (nothing installed)")
