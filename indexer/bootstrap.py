"""``indexer bootstrap``: the template files of ``mappings/`` installed in the cluster, component templates first.

::

    mappings/ --templates.load_templates--> [TemplateFile] --Engine.get_template--> created | updated | unchanged
        --Engine.put_template (unless only comparing)--> the cluster

The files are read and validated before the first request.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.config import TargetConfig
from indexer.engine import Engine, open_engine
from indexer.templates import TemplateFile, diff, load_templates, normalise


@dataclass
class TemplateChange:
    kind: str
    name: str
    action: str  # created | updated | unchanged
    diff: str = ""


async def bootstrap(target: TargetConfig, mappings: Path, *, write: bool = True) -> list[TemplateChange]:
    """Install (or, with ``write=False``, only compare) every template file; component templates first."""
    templates = load_templates(mappings)
    engine = await open_engine(target)
    try:
        return await _bootstrap(engine, templates, write)
    finally:
        await engine.close()


async def _bootstrap(engine: Engine, templates: list[TemplateFile], write: bool) -> list[TemplateChange]:
    changes = []
    for tpl in templates:
        installed = await engine.get_template(tpl.kind, tpl.name)
        if installed is None:
            action = "created"
        elif normalise(installed) == normalise(tpl.body):
            action = "unchanged"
        else:
            action = "updated"
        if write and action != "unchanged":
            await engine.put_template(tpl.kind, tpl.name, tpl.body)
        text = diff(tpl.kind, tpl.name, installed, tpl.body) if action != "unchanged" else ""
        changes.append(TemplateChange(tpl.kind, tpl.name, action, text))
    return changes
