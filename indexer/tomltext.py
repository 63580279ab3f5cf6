"""TOML text as ``indexer init`` writes it (job files a person reads and edits): strings, queries, values."""

from __future__ import annotations

from typing import Any


def toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    escaped = []
    for ch in text:
        if ch in '"\\':
            escaped.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            escaped.append({"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch, f"\\u{ord(ch):04x}"))
        else:
            escaped.append(ch)
    return '"' + "".join(escaped) + '"'


def toml_query(query: str) -> str:
    """A multi-line literal string (no escapes: quoted identifiers read as written) when it can be one."""
    if "'''" in query or any(ch < " " and ch not in "\n\t" for ch in query) or "\x7f" in query:
        return toml_string(query)
    return f"'''\n{query}\n'''"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return toml_string(str(value))
