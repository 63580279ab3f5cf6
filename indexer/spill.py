"""Sets of ids too large for memory: sorted runs on disk, merged back in order (an external sort).

::

    workspace(alias, temp_dir) --> indexer-reconcile-<alias>-<pid>-XXXX/   (removed on exit, also on failure;
                                    ones left by a killed run, whose pid is dead, removed first)
    SortedIds.add(ids) --> buffer of at most ``run_size`` ids --sorted--> run-N.ids (one id a line)
    SortedIds.sorted() --> heapq.merge(run files) --> each distinct id once, in ascending order
    SortedPairs: the same for (id, digest) pairs (reconcile by content), run-N.pairs (id TAB digest a line)

Why sorted runs rather than hash buckets: two sorted streams compare with one merge-join
that holds two ids at a time, the differences come out sorted too (so they spill the
same way), and memory is set by the run size alone, whatever the number of ids.

Files hold ids (and, for ``SortedPairs``, each id's document digest) only, never row values.
An id is written with ``\\`` and newline escaped, so any text is one line; a pair is the id,
a tab, and the digest (hex, or empty), split at the line's *last* tab, so a tab inside an id
needs no escape. The order is Python's order of the ids themselves (of ``(id, digest)`` tuples).
Temporary directories are recognised by their name (prefix, alias, pid): this assumes
the temp directory is local to the host, as the system one is.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Generic, TypeVar

from indexer.errors import ConfigError

PREFIX = "indexer-reconcile-"
DEFAULT_RUN_SIZE = 200_000  # ids held in memory per run (~15 MB of short ids)
_ESCAPED = re.compile(r"\\(.)")
T = TypeVar("T", str, tuple[str, str])


def _encode(id_: str) -> str:
    if "\\" in id_ or "\n" in id_:
        id_ = id_.replace("\\", "\\\\").replace("\n", "\\n")
    return id_ + "\n"


def _decode(line: str) -> str:
    line = line[:-1]  # every line ends with its newline
    if "\\" not in line:
        return line
    return _ESCAPED.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), line)


def _open(path: Path, mode: str):
    # newline="\n": no translation either way, so a "\r" inside an id survives
    return open(path, mode, encoding="utf-8", errors="surrogatepass", newline="\n", buffering=1 << 16)


def read_run(path: Path) -> Iterator[str]:
    with _open(path, "r") as fh:
        for line in fh:
            yield _decode(line)


def _encode_pair(pair: tuple[str, str]) -> str:
    return _encode(pair[0])[:-1] + "\t" + pair[1] + "\n"


def _decode_pair(line: str) -> tuple[str, str]:
    id_, _, digest = line.rpartition("\t")  # the digest never holds a tab; the id may
    return _decode(id_ + "\n"), digest[:-1]


class _Sorted(Generic[T]):
    """Items added in any order, read back sorted and distinct; at most ``run_size`` of them in memory."""

    suffix = ""

    def __init__(self, folder: Path, name: str, run_size: int = DEFAULT_RUN_SIZE) -> None:
        if run_size < 1:
            raise ValueError("run_size must be at least 1")
        self.folder, self.name, self.run_size = folder, name, run_size
        self.runs: list[Path] = []
        self.buffer: list[T] = []
        self.spilled = 0  # items written to runs so far

    def _line(self, item: T) -> str:
        raise NotImplementedError

    def _item(self, line: str) -> T:
        raise NotImplementedError

    def _read(self, path: Path) -> Iterator[T]:
        with _open(path, "r") as fh:
            for line in fh:
                yield self._item(line)

    @property
    def added(self) -> int:
        """Items added so far, repeats included."""
        return self.spilled + len(self.buffer)

    def add(self, items: Iterable[T]) -> None:
        for item in items:
            self.append(item)

    def append(self, item: T) -> None:
        self.buffer.append(item)
        if len(self.buffer) >= self.run_size:
            self._spill()

    def _spill(self) -> None:
        if not self.buffer:
            return
        self.buffer.sort()
        path = self.folder / f"{self.name}-{len(self.runs)}.{self.suffix}"
        with _open(path, "w") as fh:
            fh.writelines(map(self._line, self.buffer))
        self.runs.append(path)
        self.spilled += len(self.buffer)
        self.buffer = []

    def sorted(self) -> Iterator[T]:
        """Each distinct item once, ascending (the last partial run is written first, to bound memory)."""
        self._spill()
        last = None
        for item in heapq.merge(*(self._read(p) for p in self.runs)):
            if item != last:
                yield item
                last = item


class SortedIds(_Sorted[str]):
    """Ids added in any order, read back sorted and distinct."""

    suffix = "ids"

    def _line(self, item: str) -> str:
        return _encode(item)

    def _item(self, line: str) -> str:
        return _decode(line)


class SortedPairs(_Sorted[tuple[str, str]]):
    """``(id, digest)`` pairs added in any order, read back sorted by id (then digest) and distinct."""

    suffix = "pairs"

    def _line(self, item: tuple[str, str]) -> str:
        return _encode_pair(item)

    def _item(self, line: str) -> tuple[str, str]:
        return _decode_pair(line)


def in_slices(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of at most ``size`` ids."""
    batch: list[str] = []
    for id_ in ids:
        batch.append(id_)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------ the temporary directory


def _pattern(alias: str) -> re.Pattern[str]:
    # mkdtemp's suffix has no "-": alias "a" never matches the folder of alias "a-1"
    return re.compile(re.escape(f"{PREFIX}{alias}-") + r"(\d+)-[a-z0-9_]+")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_leftovers(base: Path, alias: str) -> list[Path]:
    """Remove the folders of this alias's runs whose process is gone (killed mid-run); the ones removed."""
    pattern, removed = _pattern(alias), []
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir() and not _alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


@contextlib.contextmanager
def workspace(alias: str, temp_dir: Path | None = None) -> Iterator[Path]:
    """A fresh folder for one run's id files, in ``temp_dir`` (default: the system's), removed on exit."""
    base = Path(temp_dir) if temp_dir else Path(tempfile.gettempdir())
    remove_leftovers(base, alias)
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{alias}-{os.getpid()}-", dir=base))
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(f"--temp-dir {base}: cannot create a folder there: {why}") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
