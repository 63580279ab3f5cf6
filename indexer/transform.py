"""The user's transform: the one place that imports user code.

::

    job.transform "module:function" --load()--> Transform
    documents --apply(transform, docs)--> documents (checked: a list of dicts)

The module is looked up in the job file's folder first, and only while it is
imported: ``sys.path`` is put back afterwards (also when the import fails), so
one job's folder never shadows modules for the rest of the process. A module
the transform imports at its top is found; one it imports later, inside the
function, must be importable without the job's folder.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from indexer.errors import ConfigError, IndexerError

Transform = Callable[[list[dict]], list[dict]]


@contextlib.contextmanager
def _searched_first(folder: Path) -> Iterator[None]:
    """``folder`` at the front of ``sys.path`` for the duration; only that entry is taken out
    again, so paths the imported module adds itself stay."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)  # the first occurrence: ours, unless the module put the same one first


def load(spec: str, base_dir: Path) -> Transform:
    """Import ``module:function``; the job file's folder ``base_dir`` is searched first."""
    module_name, _, func_name = spec.partition(":")
    try:
        with _searched_first(base_dir):
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"job.transform: cannot import module {module_name!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - user code failing at import: SyntaxError, NameError...
        raise ConfigError(f"job.transform: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"job.transform: {module_name!r} has no function {func_name!r}")
    return func


def apply(transform: Transform, docs: list[dict]) -> list[dict]:
    """``transform(docs)`` as a list, checked: its failure or a wrong result is the run's error."""
    try:
        out = transform(docs)
        out = list(out) if out is not None else None
    except Exception as exc:  # noqa: BLE001 - user code: report its failure as ours
        raise IndexerError(f"job.transform raised {type(exc).__name__}: {exc}") from exc
    if out is None or not all(isinstance(d, dict) for d in out):
        raise IndexerError("job.transform must return a list of dicts")
    return out
