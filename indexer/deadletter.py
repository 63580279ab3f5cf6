"""The dead-letter file: documents that failed for good, one JSON object per line (appended).

Each line: ``job``, ``alias``, ``run`` (the run's start), ``_id`` (when known),
``key`` (the key columns' values), ``stage`` (``convert``: the row could not
become a document; ``index``: the cluster refused it), ``status``, ``error``
(type and reason) and, only with ``--dead-letter-include-doc``, ``document``.
No secrets are ever in it; row values are, by design, when the document is included.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from indexer.documents import key_values
from indexer.errors import ConfigError


class DeadLetters:
    def __init__(self, path: Path, job: str, alias: str, key: Sequence[str], run: str,
                 include_doc: bool = False) -> None:
        self.path = path
        self.base = {"job": job, "alias": alias, "run": run}
        self.key = tuple(key)
        self.include_doc = include_doc
        self.count = 0
        self._file: IO[bytes] | None = None

    def check(self) -> None:
        """ConfigError (one line) unless the file can be appended to: checked before a run reads a row, so
        that the first dead letter never finds a read-only folder. Its folder is never created: a
        missing folder is a mistyped path more often than a wish. The file itself is never created nor
        removed here (another run may be writing it): an existing one is opened for appending, else a
        file of another name is made and removed in its folder."""
        folder = self.path.parent
        if not folder.is_dir():
            raise ConfigError(f"dead-letter file {self.path}: its folder {folder} does not exist "
                              "(create it, or pass --dead-letter-file)")
        try:
            if self.path.exists() or self.path.is_symlink():
                os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND))
            else:
                probe = folder / f".{self.path.name}.{uuid.uuid4().hex}.check"
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                probe.unlink()
        except OSError as exc:
            raise ConfigError(f"dead-letter file {self.path} cannot be written: {exc.strerror or type(exc).__name__} "
                              "(pass --dead-letter-file with a writable path)") from None

    def _write(self, record: dict) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")
        self._file.write(orjson.dumps({**self.base, **record}, default=str) + b"\n")
        self._file.flush()
        self.count += 1

    def rejected(self, row: int, reason: str, doc: dict | None) -> None:
        """A row that could not become a document (NaN, NULL key, ...)."""
        record: dict[str, Any] = {"_id": None, "key": key_values(doc, self.key) if doc else None, "row": row + 1,
                                  "stage": "convert", "status": None,
                                  "error": {"type": "row_rejected", "reason": reason}}
        if self.include_doc and doc is not None:
            record["document"] = doc
        self._write(record)

    def failed(self, id_: str, status: int, type_: str, reason: str, line: bytes) -> None:
        """A document the cluster refused for good."""
        action, _, source = line.partition(b"\n")
        doc = orjson.loads(source) if source.strip() else None
        record: dict[str, Any] = {"_id": id_, "key": key_values(doc, self.key) if doc else None, "stage": "index",
                                  "status": status, "error": {"type": type_, "reason": reason}}
        if self.include_doc and doc is not None:
            record["document"] = doc
        self._write(record)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
