"""What a person sees, all of it: the progress bar, the summaries, the errors, every command's results.

::

    run --Progress (total, rows)--> progress_bar() --> stderr, when it is a terminal (or INDEXER_PROGRESS=1)
    Summary / Status / template changes / files written / preview report
        --print_*()--> stdout (warnings and errors on stderr); or JSON with --json
    a failure --print_failure()--> one "error:" line on stderr (and its summary on stdout with --json)
    a watch loop's passes --WatchReport (commands.watch's observer)--> print_summary / print_failure,
        or with --log-format json one JSON log line each (``logs``), the summary's counts in it

``out`` and ``err`` soft-wrap: piped output is never cut at 80 columns in the middle of a name.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from indexer import logs
from indexer.commands.bootstrap import TemplateChange
from indexer.commands.preview import Preview
from indexer.commands.reconcile import ReconcileSummary
from indexer.commands.status import Status
from indexer.errors import IndexerError
from indexer.run import Summary, outcome_of
from indexer.sink import Progress
from indexer.state import Outcome

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


def print_summary(summary: Summary, as_json: bool) -> None:
    """A run's summary: one line whose counts visibly add up (docs: "Exit codes and counts"), the warnings
    on stderr, then what only this command has to say; or the summary as JSON."""
    if as_json:
        _json(summary.as_dict())
        return
    s, n = summary, summary.counts.numbers()
    # documents = skipped + rejected + sent (the rows read, unless a transform changed their number);
    # sent = indexed + duplicates + deleted + not found + failed
    read = (f"{n['rows_read']} rows read" if n["documents"] == n["rows_read"]
            else f"{n['rows_read']} rows read -> {n['documents']} documents")
    _line(f"{s.command} {s.job}: {s.outcome}: {read} = {n['skipped']} skipped + {n['rejected']} rejected "
          f"+ {n['sent']} sent; {n['sent']} sent = {n['indexed']} indexed + {n['duplicates']} duplicates "
          f"+ {n['deleted']} deleted + {n['not_found']} not found + {n['failed']} failed; into {s.index}; "
          f"{n['retried']} retried, {n['dead_lettered']} dead-lettered; {s.seconds:.1f}s "
          f"({s.docs_per_second:.0f} docs/s)" + (f"; watermark {s.watermark}" if s.watermark is not None else ""))
    for warning in s.warnings:
        err.print(f"warning: {warning}", markup=False, highlight=False)
    if s.dead_letter_file:
        _line(f"dead letters: {n['dead_lettered']} in {s.dead_letter_file}")
    if isinstance(s, ReconcileSummary):
        for line in _reconciled(s):
            _line(line)
    if s.command == "reindex":
        _line(f"alias {s.alias} -> {s.index}" + (f" (was {', '.join(s.previous)})" if s.previous else " (new alias)"))
        if s.deleted_indices:
            _line(f"deleted old indices: {', '.join(s.deleted_indices)}")


def _reconciled(s: ReconcileSummary) -> list[str]:
    """The lines a reconcile adds after its summary line."""
    changed = f" + {s.changed} changed" if s.digest else ""  # contents compared (job.digest)
    lines = [f"compared {s.compared} ids = {s.unchanged} unchanged{changed} + {s.to_delete} to delete + {s.to_index} "
             f"to index ({s.in_source} in the source, {s.in_index} in {s.index}; {s.no_id} source rows without an id); "
             f"{s.ids_per_second:.0f} ids/s" + ("; dry run: nothing written" if s.dry_run else "")]
    for what, sample in (("changed", s.sample_changed), ("to delete", s.sample_to_delete),
                         ("to index", s.sample_to_index)):
        if sample:
            lines.append(f"{what}, e.g.: {', '.join(repr(i) for i in sample)}")
    return lines


def _line(text: str) -> None:
    out.print(text, markup=False, highlight=False)


def _json(data: dict) -> None:
    """What --json prints: one line of JSON on stdout (a watch loop's passes are then one object per line)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")


def print_failure(exc: BaseException, command: str, as_json: bool, then: str = "", *, log_json: bool = False,
                  job: str | None = None) -> None:
    """A run that failed or was refused: one ``error:`` line on stderr (``then``: what happens next, in a
    watch loop; ``job``: named when a daemon runs several), or one JSON log line with ``log_json``; with
    ``as_json``, its summary so far on stdout (outcome, error, counts), or for a command that never
    started a run, its command, outcome and error."""
    if isinstance(exc, IndexerError):
        text = str(exc)
    else:  # a defect of ours; its text may quote anything (a row, a path), so only its type
        text = f"unexpected {type(exc).__name__}: this is a bug in indexer (run again with --debug for the traceback)"
    if log_json:
        summary = getattr(exc, "summary", None)
        logs.event(logging.ERROR, "failed", text, job=job or getattr(summary, "job", None), command=command,
                   outcome=outcome_of(exc).value, then=then or None,
                   **(summary.counts.numbers() if isinstance(summary, Summary) else {}))
    else:
        err.print(f"error: {job + ': ' if job else ''}{text}" + (f" ({then})" if then else ""),
                  markup=False, highlight=False)
    if not as_json:
        return
    summary = getattr(exc, "summary", None)
    if summary is not None:
        print_summary(summary, True)
    else:
        _json({"command": command, "outcome": outcome_of(exc), "error": text})


def print_status(info: Status, as_json: bool) -> None:
    """``indexer status``: one labelled line per fact, or JSON."""
    if as_json:
        _json(info.as_dict())
        return
    last, reconciled = info.last_run or {}, info.last_reconcile or {}
    facts = (
        ("alias", f"{info.alias} -> {', '.join(info.alias_indices) or '(missing)'}"),
        ("watermark", info.watermark),
        *((f"watermark of {path}", value) for path, value in info.child_watermarks.items()),
        ("last run", f"{last.get('command', '-')} {last.get('outcome', '-')} "
                     f"at {last.get('ended') or last.get('started') or '-'}"),
        ("last reconcile", f"{reconciled['outcome']} at {reconciled.get('ended') or reconciled.get('started')}: "
                           f"{reconciled.get('deleted', 0)} deleted, {reconciled.get('indexed', 0)} indexed"
                           + (f" ({reconciled['error']})" if reconciled.get("error") else "") if reconciled else "-"),
        ("documents in alias", info.documents_in_alias),
        ("rows in source", info.rows_in_source),
        ("difference", info.difference),
    )
    width = max(20, *(len(label) for label, _ in facts))  # a child's path may be long
    for label, value in facts:
        _line(f"{label:>{width}}: {value}")


def print_templates(changes: list[TemplateChange], as_json: bool, *, written: bool, show_diff: bool) -> None:
    """``indexer bootstrap``: one line per template (created, updated, unchanged; "would ..." when nothing
    was written), the diff under each change with ``show_diff``; or JSON."""
    drift = any(c.action != "unchanged" for c in changes)
    if as_json:
        _json({"templates": [c.__dict__ for c in changes], "drift": drift, "written": written})
        return
    verb = {} if written else {"created": "would create", "updated": "would update"}
    for c in changes:
        _line(f"{c.kind} template {c.name}: {verb.get(c.action, c.action)}")
        if show_diff and c.diff:
            _line(c.diff)


def print_written(paths: list[Path], as_json: bool) -> None:
    """``indexer init``: the files it wrote."""
    if as_json:
        _json({"written": [str(p) for p in paths]})
        return
    for path in paths:
        _line(f"wrote {path}")


def print_preview(report: Preview, as_json: bool) -> None:
    """``indexer preview``: its report, line by line, or JSON."""
    if as_json:
        _json(report.as_dict())
        return
    for line in report.lines():
        _line(line)


def print_version(version: str) -> None:
    _line(f"indexer {version}")


class WatchReport:
    """A watch loop's observer (``commands.watch``): each pass's summary, or its failure and what comes next;
    with ``log_json``, one JSON log line per pass on stderr instead of the summary line (``--json`` still
    prints the summary on stdout). ``job``: the job named in failures, when a daemon runs several."""

    def __init__(self, as_json: bool, log_json: bool = False, job: str | None = None) -> None:
        self.as_json, self.log_json, self.job = as_json, log_json, job

    def passed(self, command: str, summary: Summary) -> None:
        report_summary(summary, self.as_json, self.log_json)

    def failed(self, command: str, exc: IndexerError, then: str) -> None:
        print_failure(exc, command, self.as_json, then, log_json=self.log_json, job=self.job)


def report_summary(summary: Summary, as_json: bool, log_json: bool) -> None:
    """A run's summary where it is asked for: the text line (or JSON with ``as_json``) on stdout; with
    ``log_json``, a JSON log line on stderr instead of the text line (``as_json`` still prints it on stdout)."""
    if log_json:
        log_summary(summary)
    if as_json or not log_json:
        print_summary(summary, as_json)


def log_summary(summary: Summary) -> None:
    """A run's summary as one JSON log line: its outcome, counts, index and warnings (no watermark: a row value)."""
    s = summary
    level = logging.WARNING if s.outcome == Outcome.DEAD_LETTERS or s.warnings else logging.INFO
    logs.event(level, "pass", f"{s.command} {s.job}: {s.outcome}", job=s.job, command=s.command, alias=s.alias,
               outcome=s.outcome.value, **s.counts.numbers(), requests_retried=s.requests_retried, index=s.index,
               seconds=s.seconds, docs_per_second=s.docs_per_second, dead_letter_file=s.dead_letter_file,
               warnings=s.warnings or None)
