"""The job-file reference, generated from the job model: docs/config-reference.md.

::

    config.Job --tables()--> [source], [target], [job], [job.params] --render()--> Markdown

Every field's name, TOML type, default, whether it is required, its ``description`` (written in
``config.py``, the one place fields are defined) and the constraints pydantic enforces (bounds,
lengths, choices). ``python -m indexer.reference > docs/config-reference.md`` writes the file;
tests/unit/test_reference.py fails when it is stale or a field has no description.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from indexer.config import Job

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "string (a path)"}
_BOUNDS = ((annotated_types.Ge, "ge", ">="), (annotated_types.Gt, "gt", ">"), (annotated_types.Le, "le", "<="),
           (annotated_types.Lt, "lt", "<"), (annotated_types.MinLen, "min_length", "at least"),
           (annotated_types.MaxLen, "max_length", "at most"))

HEADER = """# Job file reference

Generated from the job model (`indexer/config.py`) by `python -m indexer.reference > docs/config-reference.md`;
do not edit it by hand (`tests/unit/test_reference.py` fails when it is stale).

A job file is TOML. An unknown field is an error that names it; relative paths are relative to the job
file; secrets are never values, only the NAMES of the environment variables that hold them (`*_env`).
Fields are added, never renamed. Walk-through and examples: README "The job file", `examples/`,
`docs/recipes.md`.
"""


def tables() -> list[tuple[str, FieldInfo, type[BaseModel] | None]]:
    """Each TOML table: its header, its field in the parent model, and its model (None for a free-form table)."""
    found = []
    for name, info in Job.model_fields.items():
        model = info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            found.append((name, info, model))
            found += [(f"{name}.{sub}", field, None) for sub, field in model.model_fields.items()
                      if typing.get_origin(field.annotation) is dict]
    return found


def type_name(annotation: Any) -> str:
    """The field's type as a job-file writer sees it (TOML terms)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        names = list(dict.fromkeys(type_name(a) for a in args if a is not type(None)))
        if names == ["string", "integer", "number"]:
            return "string or number"
        return " or ".join(names)
    if origin is Literal:
        return "string"
    if origin is list:
        return f"array of {type_name(args[0])}s"
    if origin is dict:
        return "table"
    return _SCALARS[annotation]


def constraints(info: FieldInfo) -> str:
    """What pydantic checks beyond the type: choices and bounds (other checks are in the description)."""
    found = []
    literal = [a for a in (info.annotation, *typing.get_args(info.annotation)) if typing.get_origin(a) is Literal]
    if literal:
        found.append("one of " + ", ".join(f'`"{choice}"`' for choice in typing.get_args(literal[0])))
    for meta in info.metadata:
        for kind, attr, word in _BOUNDS:
            if isinstance(meta, kind):
                found.append(f"{word} {getattr(meta, attr)}")
    return "; ".join(found)


def default_text(info: FieldInfo) -> str:
    """The default as TOML would write it; blank when the field is required."""
    if info.is_required():
        return ""
    if info.default_factory is not None:
        return "empty"
    value = info.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (str, Path)):
        return f'`"{value}"`'
    if isinstance(value, float):
        return f"`{value:g}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    """Text fit for a table cell: no | or line break, and no <word> that Markdown would take for an HTML tag."""
    return re.sub(r"<(?=[A-Za-z/!])", "&lt;", text.replace("|", "\\|").replace("\n", " "))


def render_table(header: str, info: FieldInfo, model: type[BaseModel] | None) -> str:
    """One table's section: what it is for, then one row per field."""
    need = "required" if info.is_required() else "optional"
    lines = [f"## [{header}] ({need})", "", info.description or "", ""]
    if model is None:
        lines.append(f"Type: {type_name(info.annotation)} of `name = value` entries; default: {default_text(info)}.")
        return "\n".join(lines) + "\n"
    lines += ["| field | type | default | always required | meaning | constraints |", "|---|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if typing.get_origin(field.annotation) is dict:
            lines.append(f"| `{name}` | table | | no | see [{header}.{name}] below | |")
            continue
        lines.append("| " + " | ".join(_cell(cell) for cell in (
            f"`{name}`", type_name(field.annotation), default_text(field), "yes" if field.is_required() else "no",
            field.description or "", constraints(field))) + " |")
    return "\n".join(lines) + "\n"


def render() -> str:
    """The whole reference, as docs/config-reference.md holds it."""
    return "\n".join([HEADER, *(render_table(*table) for table in tables())])


if __name__ == "__main__":
    print(render(), end="")
