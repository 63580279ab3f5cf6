"""What a person sees: the progress bar, the one-line summary, the status lines (all on rich).

::

    run --Progress (total, rows)--> progress_bar() --> stderr, when it is a terminal (or INDEXER_PROGRESS=1)
    Summary / Status --print_summary() / print_status()--> stdout (one line each), warnings on stderr;
                                                          or JSON with --json

``out`` and ``err`` soft-wrap: piped output is never cut at 80 columns in the middle of a name.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from indexer import pipeline
from indexer import reconcile as reconciling
from indexer.sink import Progress

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def progress_bar(wanted: bool, as_json: bool) -> _Bar:
    """A bar when asked for, not with --json, and only on a terminal (or INDEXER_PROGRESS=1)."""
    return _Bar(wanted and not as_json and (err.is_terminal or os.environ.get("INDEXER_PROGRESS") == "1"))


class _Bar(Progress):
    """A rich progress bar on stderr, reported into by the run (a :class:`Progress`)."""

    counting = True

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar = RichProgress(
            TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False,
        )
        self.task: Any = None

    def __enter__(self) -> Progress:
        if not self.enabled:
            return Progress()
        self.bar.start()
        self.task = self.bar.add_task("index", total=None)
        return self

    def total(self, rows: int) -> None:
        self.bar.update(self.task, total=rows)

    def rows(self, done: int) -> None:  # rows finished (sent, skipped or rejected): ends at the total
        self.bar.update(self.task, completed=done)

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.bar.stop()


def print_summary(summary: pipeline.Summary, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), default=str) + "\n")
        return
    s = summary
    # Every count, so that they visibly add up (README "Exit codes and counts"): documents = skipped +
    # rejected + sent (the rows read, unless a transform changed their number); sent = indexed + duplicates
    # + deleted + not found + failed.
    read = (f"{s.rows_read} rows read" if s.documents == s.rows_read
            else f"{s.rows_read} rows read -> {s.documents} documents")
    out.print(
        f"{s.command} {s.job}: {s.outcome}: {read} = {s.skipped} skipped + {s.rejected} rejected "
        f"+ {s.sent} sent; {s.sent} sent = {s.indexed} indexed + {s.duplicates} duplicates + {s.deleted} deleted "
        f"+ {s.not_found} not found + {s.failed} failed; into {s.index}; {s.retried} retried, "
        f"{s.dead_lettered} dead-lettered; {s.seconds:.1f}s ({s.docs_per_second:.0f} docs/s)"
        + (f"; watermark {s.watermark}" if s.watermark is not None else ""),
        markup=False, highlight=False,
    )
    for warning in s.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if s.dead_letter_file:
        out.print(f"dead letters: {s.dead_lettered} in {s.dead_letter_file}", markup=False, highlight=False)
    if isinstance(s, pipeline.ReconcileSummary):
        for line in reconciling.describe(s):
            out.print(line, markup=False, highlight=False)
    if s.command != "reindex":
        return
    out.print(f"alias {s.alias} -> {s.index}" + (f" (was {', '.join(s.previous)})" if s.previous else " (new alias)"),
              markup=False, highlight=False)
    if s.deleted_indices:
        out.print(f"deleted old indices: {', '.join(s.deleted_indices)}", markup=False, highlight=False)


def print_failure(exc: BaseException, command: str, as_json: bool, then: str = "") -> None:
    """A run that failed or was refused: one ``error:`` line on stderr (``then``: what happens next, in a
    watch loop); with ``as_json``, its summary so far on stdout (outcome, error, counts), or for a
    command that never started a run, its command, outcome and error."""
    from indexer.errors import IndexerError  # the terminal layer names no error class at import time
    from indexer.run import outcome_of

    if isinstance(exc, IndexerError):
        text = str(exc)
    else:  # a defect of ours; its text may quote anything (a row, a path), so only its type
        text = f"unexpected {type(exc).__name__}: this is a bug in indexer (run again with --debug for the traceback)"
    err.print(f"error: {text}" + (f" ({then})" if then else ""), markup=False, highlight=False)
    if not as_json:
        return
    summary = getattr(exc, "summary", None)
    if summary is not None:
        print_summary(summary, True)
    else:
        sys.stdout.write(json.dumps({"command": command, "outcome": outcome_of(exc), "error": text}) + "\n")


def print_status(info: Any, as_json: bool) -> None:
    """``indexer status``: one labelled line per fact, or JSON."""
    if as_json:
        sys.stdout.write(json.dumps(info.as_dict(), default=str) + "\n")
        return
    last, reconciled = info.last_run or {}, info.last_reconcile or {}
    for label, value in (
        ("alias", f"{info.alias} -> {', '.join(info.alias_indices) or '(missing)'}"),
        ("watermark", info.watermark),
        ("last run", f"{last.get('command', '-')} {last.get('outcome', '-')} "
                     f"at {last.get('ended') or last.get('started') or '-'}"),
        ("last reconcile", f"{reconciled['outcome']} at {reconciled.get('ended') or reconciled.get('started')}: "
                           f"{reconciled.get('deleted', 0)} deleted, {reconciled.get('indexed', 0)} indexed"
                           + (f" ({reconciled['error']})" if reconciled.get("error") else "") if reconciled else "-"),
        ("documents in alias", info.documents_in_alias),
        ("rows in source", info.rows_in_source),
        ("difference", info.difference),
    ):
        out.print(f"{label:>20}: {value}", markup=False, highlight=False)
