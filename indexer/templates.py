"""Index and component templates as files: load, normalise, compare. Pure, no I/O beyond reading files.

::

    mappings/component/<name>.json  -> component template <name>   (installed first)
    mappings/index/<name>.json      -> composable index template <name>

The cluster stores settings in its own shape (``{"index": {"number_of_shards":
"1"}}``), so both sides are normalised before comparing: settings flattened to
``index.*`` keys with string values; ``index_patterns`` written as one string becomes the
one-item list the cluster stores; fields the cluster maintains itself (Elasticsearch 9 adds
``created_date_millis`` / ``modified_date_millis``) are left out; everything else compared as JSON.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.config import check_index_name
from indexer.errors import ConfigError

KINDS = ("component", "index")  # install order: index templates may compose components

# Top-level fields the cluster adds to the templates it returns, never sent by us: Elasticsearch 9
# stamps component and index templates with their creation and last-change times (``*_millis``,
# plus the human-readable ``created_date`` / ``modified_date`` with ``?human``). A file cannot set
# them (the cluster refuses them in a PUT), so they are never a difference.
SERVER_MANAGED = frozenset({"created_date_millis", "modified_date_millis", "created_date", "modified_date"})


@dataclass(frozen=True)
class TemplateFile:
    kind: str
    name: str
    path: Path
    body: dict


def load_templates(root: Path) -> list[TemplateFile]:
    """Every template file under ``root``, component templates first, by name."""
    if not root.is_dir():
        raise ConfigError(f"mappings folder not found: {root}")
    found: list[TemplateFile] = []
    for kind in KINDS:
        folder = root / kind
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            name = path.stem
            try:
                check_index_name(name, "template name")
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: a template file holds one JSON object")
            if kind == "index" and "index_patterns" not in body:
                raise ConfigError(f"{path}: an index template needs index_patterns")
            if kind == "component" and "template" not in body:
                raise ConfigError(f"{path}: a component template needs a template object")
            found.append(TemplateFile(kind, name, path, body))
    if not found:
        raise ConfigError(f"no template files in {root}/component or {root}/index")
    return found


def _flatten_settings(settings: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in (settings or {}).items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten_settings(value, full + "."))
        else:
            flat[full] = _setting_text(value)
    return flat


def _setting_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_setting_text(v) for v in value]
    return value if value is None else str(value)


def normalise(body: dict | None) -> dict | None:
    """A template body in a canonical shape, so that file and cluster compare equal when they mean the same."""
    if body is None:
        return None
    body = json.loads(json.dumps(body))  # a deep copy with JSON types only
    for key in SERVER_MANAGED & body.keys():
        del body[key]
    if isinstance(body.get("index_patterns"), str):  # the cluster stores one pattern as a list
        body["index_patterns"] = [body["index_patterns"]]
    template = body.get("template")
    if isinstance(template, dict) and "settings" in template:
        flat = _flatten_settings(template["settings"])
        template["settings"] = {(k if k.startswith("index.") else f"index.{k}"): v for k, v in flat.items()}
    if isinstance(template, dict):
        for key in [k for k, v in template.items() if v in ({}, None)]:
            del template[key]
    for key in [k for k, v in body.items() if v in ({}, [], None) and k != "index_patterns"]:
        del body[key]
    return body


def diff(kind: str, name: str, installed: dict | None, wanted: dict) -> str:
    """A unified diff from the cluster's template to the file's (empty when equal)."""
    before = json.dumps(normalise(installed), indent=2, sort_keys=True).splitlines() if installed is not None else []
    after = json.dumps(normalise(wanted), indent=2, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(
        before, after, fromfile=f"cluster {kind} template {name}", tofile=f"mappings/{kind}/{name}.json", lineterm="",
    ))
