"""Index and component templates as files: load, check, compose, normalise, compare. Pure, no I/O beyond reading files.

::

    mappings/component/<name>.json  -> component template <name>   (installed first)
    mappings/index/<name>.json      -> composable index template <name>

    load_templates(dir) --(JSON shape, names, metadata field names)--> [TemplateFile]
    compose([component bodies in composed_of order..., index body]) --> settings, mappings, aliases
    choose(index templates, "<alias>-<stamp>") --> the one the engine would apply (highest priority)

The cluster stores settings in its own shape (``{"index": {"number_of_shards":
"1"}}``), so both sides are normalised before comparing: settings flattened to
``index.*`` keys with string values; ``index_patterns`` written as one string becomes the
one-item list the cluster stores; fields the cluster maintains itself (Elasticsearch 9 adds
``created_date_millis`` / ``modified_date_millis``) are left out; everything else compared as JSON.

``compose`` merges as the engines do for a new index: component templates in ``composed_of``
order, then the index template's own ``template``; settings key by key (later wins); mappings
property by property (objects merged recursively, a field defined again replaced whole;
dynamic templates replaced by name); aliases by name.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexer.config import check_index_name
from indexer.documents import METADATA_FIELDS, renamed
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
    """Every template file under ``root``, component templates first, by name; each checked as far as
    a file can be without the cluster (ConfigError naming the file)."""
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
            problem = check_body(kind, body)
            if problem:
                raise ConfigError(f"{path}: {problem}")
            found.append(TemplateFile(kind, name, path, body))
    if not found:
        raise ConfigError(f"no template files in {root}/component or {root}/index")
    return found


def check_body(kind: str, body: Any) -> str | None:
    """What is wrong with a template body that the cluster is not needed to see; None when nothing."""
    if not isinstance(body, dict):
        return "a template file holds one JSON object"
    if kind == "index" and "index_patterns" not in body:
        return "an index template needs index_patterns"
    if kind == "component" and "template" not in body:
        return "a component template needs a template object"
    patterns = body.get("index_patterns", [])
    if kind == "index" and not (isinstance(patterns, str) and patterns or isinstance(patterns, list) and patterns
                                and all(isinstance(p, str) and p for p in patterns)):
        return "index_patterns must be a pattern or a list of patterns (strings)"
    composed = body.get("composed_of", [])
    if not isinstance(composed, list) or not all(isinstance(c, str) for c in composed):
        return "composed_of must be a list of component template names"
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or priority < 0:
        return "priority must be a whole number, 0 or more"
    template = body.get("template", {})
    if not isinstance(template, dict):
        return "template must be an object (settings, mappings, aliases)"
    for part in ("settings", "mappings", "aliases"):
        if not isinstance(template.get(part) or {}, dict):
            return f"template.{part} must be an object"
    properties = (template.get("mappings") or {}).get("properties") or {}
    if not isinstance(properties, dict):
        return "template.mappings.properties must be an object"
    for field in properties:
        if field.split(".")[0] in METADATA_FIELDS:
            return (f"field {field!r} is a metadata field name: the engines refuse it in a mapping and in a "
                    f"document (rename the column in the query, e.g. \"{field}\" AS {renamed(field)})")
    return None


# ------------------------------------------------------------------ settings


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


def flat_settings(settings: Any) -> dict[str, Any]:
    """Settings as the cluster reads them: ``index.*`` keys, string values (``{"number_of_shards": 1}``
    and ``{"index": {"number_of_shards": "1"}}`` give the same)."""
    flat = _flatten_settings(settings)
    return {(k if k.startswith("index.") else f"index.{k}"): v for k, v in flat.items()}


def nested_settings(flat: dict[str, Any]) -> dict:
    """Flat ``index.*`` settings in the nested shape the cluster answers with (``{"index": {...}}``)."""
    nested: dict = {}
    for key, value in flat.items():
        node, parts = nested, key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # "a" set as a value and "a.b" too: keep this one dotted
                node[".".join(parts[depth:])] = value
                break
            node = child
        else:
            node[parts[-1]] = value
    return nested


# ------------------------------------------------------------------ composing (as the engines do)


def _is_object(field: Any) -> bool:
    return isinstance(field, dict) and field.get("type", "object") in ("object", "nested")


def merge_mappings(base: dict, later: dict) -> dict:
    """``later``'s mappings over ``base``'s: objects merge recursively, a field defined again is replaced
    whole, dynamic templates are replaced by name; every other parameter: later wins."""
    merged = json.loads(json.dumps(base))
    for key, value in later.items():
        if key == "properties" and isinstance(value, dict):
            merged["properties"] = _merge_properties(merged.get("properties") or {}, value)
        elif key == "dynamic_templates" and isinstance(value, list):
            by_name = {next(iter(t)): t for t in merged.get("dynamic_templates") or [] if isinstance(t, dict) and t}
            by_name.update({next(iter(t)): t for t in value if isinstance(t, dict) and t})
            merged["dynamic_templates"] = list(by_name.values())
        else:
            merged[key] = json.loads(json.dumps(value))
    return merged


def _merge_properties(base: dict, later: dict) -> dict:
    merged = dict(base)
    for name, field in later.items():
        old = merged.get(name)
        if isinstance(old, dict) and _is_object(old) and _is_object(field) \
                and old.get("type", "object") == field.get("type", "object"):
            merged[name] = merge_mappings(old, field)
        else:
            merged[name] = json.loads(json.dumps(field))
    return merged


def compose(bodies: Sequence[dict]) -> dict:
    """The ``settings``, ``mappings`` and ``aliases`` a new index gets from these template bodies, in
    order: the component templates in ``composed_of`` order, then the index template."""
    settings: dict[str, Any] = {}
    mappings: dict = {}
    aliases: dict = {}
    for body in bodies:
        template = body.get("template") or {}
        settings.update(flat_settings(template.get("settings")))
        mappings = merge_mappings(mappings, template.get("mappings") or {})
        aliases.update(template.get("aliases") or {})
    return {"settings": nested_settings(settings), "mappings": mappings, "aliases": aliases}


def _pattern(pattern: str) -> re.Pattern:
    # The engines' index patterns know one wildcard, "*" (Regex.simpleMatch).
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.S)


def patterns_of(body: dict) -> list[str]:
    patterns = body.get("index_patterns") or []
    return [patterns] if isinstance(patterns, str) else list(patterns)


def matches(body: dict, index: str) -> bool:
    return any(_pattern(p).fullmatch(index) for p in patterns_of(body))


def choose(templates: Sequence[tuple[str, dict]], index: str) -> tuple[str, dict] | None:
    """The index template (name, body) the engine applies to a new index ``index``: the highest
    priority one whose index_patterns match it (by name on a tie, which the engines refuse anyway)."""
    found = sorted(((name, body) for name, body in templates if matches(body, index)), key=lambda t: t[0])
    return max(found, key=lambda t: t[1].get("priority") or 0, default=None)  # max keeps the first of equals


def patterns_overlap(a: str, b: str) -> bool:
    """Whether some index name matches both patterns (``*`` the only wildcard), as the engines check
    before they accept two index templates of the same priority."""

    @functools.cache
    def meet(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i] == "*" and (meet(i + 1, j) or (j < len(b) and meet(i, j + 1))):
            return True
        if j < len(b) and b[j] == "*" and (meet(i, j + 1) or (i < len(a) and meet(i + 1, j))):
            return True
        return i < len(a) and j < len(b) and a[i] == b[j] != "*" and meet(i + 1, j + 1)

    return meet(0, 0)


# ------------------------------------------------------------------ comparing


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
        template["settings"] = flat_settings(template["settings"])
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
