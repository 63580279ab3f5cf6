"""The references generated from the code: docs/config-reference.md and docs/cli-reference.md.

::

    config.Job --tables()--> [source], [target], [job], [job.params] --render()--> Markdown
    cli.app --typer.main.get_command()--> click commands and their params --render_cli()--> Markdown

The job file: every field's name, TOML type, default, whether it is required, its ``description``
(written in ``config.py``, the one place fields are defined) and the constraints pydantic enforces
(bounds, lengths, choices). The command line: every command's help, its arguments and options
(names, metavars, defaults, help, bounds, environment variables), read from the click parameters
typer builds, never from the help output. ``python -m indexer.reference [config] >
docs/config-reference.md`` and ``python -m indexer.reference cli > docs/cli-reference.md`` write the
files; tests/unit/test_reference.py fails when either is stale, a field has no description, or a
command, argument or option has no help text.
"""

from __future__ import annotations

import inspect
import re
import sys
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
Fields are added, never renamed. Walk-through and examples: [job-file.md](job-file.md), `examples/`,
[recipes.md](recipes.md).
"""


def tables() -> list[tuple[str, FieldInfo, type[BaseModel] | None]]:
    """Each TOML table: its header, its field in the parent model, and its model (None for a free-form table)."""
    found: list[tuple[str, FieldInfo, type[BaseModel] | None]] = []
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
    if origin is dict or isinstance(annotation, type) and issubclass(annotation, BaseModel):
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


def _no_tags(text: str) -> str:
    """No <word> that Markdown would take for an HTML tag (and hide)."""
    return re.sub(r"<(?=[A-Za-z/!])", "&lt;", text)


def _cell(text: str) -> str:
    """Text fit for a table cell: no | or line break, and no <word> taken for an HTML tag."""
    return _no_tags(text.replace("|", "\\|").replace("\n", " "))


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


CLI_HEADER = """# Command-line reference

Generated from the typer app (`indexer/cli.py`) by `python -m indexer.reference cli > docs/cli-reference.md`;
do not edit it by hand (`tests/unit/test_reference.py` fails when it is stale).

Every command with its arguments and options: name, metavar, default and help text. What the commands
are for and when to use each: the [manual's index](README.md); exit codes: [failures.md](failures.md#exit-codes).
"""


def cli_group() -> Any:
    """The click group typer builds from ``indexer.cli.app`` (imported here only: the CLI pulls in every stage)."""
    import typer.main

    from indexer.cli import app

    return typer.main.get_command(app)


def _shown(params: list[Any]) -> list[Any]:
    return [p for p in params if not getattr(p, "hidden", False)]


def is_flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False))


def param_label(param: Any) -> str:
    """How a user writes the parameter: ``JOB.toml``, ``--limit N``, ``--progress / --no-progress``."""
    metavar = param.metavar or (param.name or "").upper()
    if param.param_type_name == "argument":
        return metavar
    names = ", ".join(param.opts)
    if is_flag(param):
        return " / ".join([names, *param.secondary_opts])
    return f"{names} {metavar}"


def param_default(param: Any) -> str:
    """The default as the command line takes it; ``required`` when there is none to take."""
    if param.required:
        return "required"
    value = param.default
    if is_flag(param):
        if param.secondary_opts:
            return f"`{(param.opts if value else param.secondary_opts)[0]}`"
        return "on" if value else "off"
    if value is None or value == [] or value == ():
        return "unset"
    return f"`{value}`"


def param_notes(param: Any) -> str:
    """What the command line enforces or offers beyond the value: repetition, bounds, an environment variable."""
    notes = ["repeatable"] if param.multiple else []
    kind = getattr(param, "type", None)
    for word, attr in ((">=", "min"), ("<=", "max")):
        bound = getattr(param, attr, None)
        if bound is None:
            bound = getattr(kind, attr, None)
        if bound is not None:
            notes.append(f"{word} {bound}")
    if param.envvar:
        for var in [param.envvar] if isinstance(param.envvar, str) else param.envvar:
            notes.append(f"environment variable `{var}`")
    return "; ".join(notes)


def _help_text(text: str | None) -> str:
    """A help text as one paragraph per blank-line-separated block."""
    paragraphs = inspect.cleandoc(text or "").split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs if p.strip())


def render_params(params: list[Any]) -> list[str]:
    lines = ["| argument or option | default | meaning | notes |", "|---|---|---|---|"]
    for param in _shown(params):
        lines.append("| " + " | ".join(_cell(cell) for cell in (
            f"`{param_label(param)}`", param_default(param), _help_text(getattr(param, "help", None)),
            param_notes(param))) + " |")
    return lines


def usage(name: str, command: Any) -> str:
    arguments = [param_label(p) for p in _shown(command.params) if p.param_type_name == "argument"]
    return " ".join(["indexer", name, "[OPTIONS]", *arguments])


def render_cli() -> str:
    """The whole command-line reference, as docs/cli-reference.md holds it."""
    group = cli_group()
    commands = {name: cmd for name, cmd in group.commands.items() if not getattr(cmd, "hidden", False)}
    lines = [CLI_HEADER, "| command | what it does |", "|---|---|"]
    for name, cmd in commands.items():
        first = _help_text(cmd.help).split("\n\n")[0]
        lines.append(f"| [`indexer {name}`](#indexer-{name}) | {_cell(first)} |")
    lines += ["", "## indexer", "", _no_tags(_help_text(group.help)), "", "`indexer [OPTIONS] COMMAND [ARGS]...`",
              "", "Options before the command:", "", *render_params(group.params)]
    for name, cmd in commands.items():
        lines += ["", f"## indexer {name}", "", _no_tags(_help_text(cmd.help)), "", f"`{usage(name, cmd)}`", "",
                  *render_params(cmd.params)]
    return "\n".join(lines) + "\n"


def undocumented(group: Any) -> list[str]:
    """The commands, arguments and options without help text (the CLI reference would show them blank)."""
    missing = [f"option {param_label(p)}" for p in _shown(group.params) if not (getattr(p, "help", None) or "").strip()]
    for name, cmd in group.commands.items():
        if getattr(cmd, "hidden", False):
            continue
        if not (cmd.help or "").strip():
            missing.append(f"command {name}")
        missing += [f"{name} {param_label(p)}" for p in _shown(cmd.params)
                    if not (getattr(p, "help", None) or "").strip()]
    return missing


RENDERERS = {"config": render, "cli": render_cli}


def main(argv: list[str]) -> int:
    """``python -m indexer.reference [config|cli]``: the reference on stdout (config when not named)."""
    which = argv[0] if argv else "config"
    if len(argv) > 1 or which not in RENDERERS:
        print("usage: python -m indexer.reference [config|cli]", file=sys.stderr)
        return 2
    print(RENDERERS[which](), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
