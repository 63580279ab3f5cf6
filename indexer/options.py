"""The options several commands share, declared once for typer, and how the command line reads a job.

::

    JobArg, JsonOpt, DebugOpt, ParamOpt, StateOpt, ...    Annotated typer declarations, one each
    @run_options: the writing commands' shared options --> one RunOptions object --> .files() for the commands
    load(JOB.toml, --param ...) --> config.Job;   every_seconds("--every 30s") --> 30.0
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer.config import Job
from indexer.errors import ConfigError
from indexer.jobfile import load_job, parse_param
from indexer.logs import FORMATS
from indexer.watermark import parse_duration

MIN_EVERY = 1.0  # seconds: the shortest pause `sync --every` accepts

JobArg = Annotated[Path, typer.Argument(help="The job file (TOML).", metavar="JOB.toml", show_default=False)]
JobsArg = Annotated[list[Path], typer.Argument(
    help="Job files (TOML), or folders of them (their *.toml files): with --every, one loop per job in this "
    "process; without, one pass of each in turn.", metavar="JOB.toml", show_default=False)]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout (a failed run's too).")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", metavar="NAME=VALUE", help="Override a [job.params] value (repeatable).")]
StateOpt = Annotated[Path | None, typer.Option(
    "--state-file", metavar="PATH", help="Keep the job state in this local JSON file instead of the cluster's "
    "indexer-state index (the lock stays in the cluster).")]
ProgressOpt = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")]
DeadFileOpt = Annotated[Path | None, typer.Option(
    "--dead-letter-file", metavar="PATH", help="Where documents that fail for good are appended (NDJSON). "
    "Default: <job>.dead-letters.ndjson beside the job file.")]
DeadDocOpt = Annotated[bool, typer.Option(
    "--dead-letter-include-doc", help="Also write each failed document (row values) to the dead-letter file.")]
UrlOpt = Annotated[str | None, typer.Option(
    "--url", metavar="URL", envvar="INDEXER_URL", help="The cluster, http(s)://host:port.")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", metavar="auto|elasticsearch|opensearch", help="The client to use; auto asks GET /.")]
LogFormatOpt = Annotated[str, typer.Option(
    "--log-format", metavar="text|json", help="Logs on stderr as text, or one JSON object per line (a watch "
    "loop's passes and the error line too).")]
MetricsFileOpt = Annotated[Path | None, typer.Option(
    "--metrics-file", metavar="PATH", help="Write the run's Prometheus metrics here in the text format, "
    "atomically, at its end (a watch loop: after every pass); node_exporter's textfile collector reads it.")]

@dataclass(frozen=True)
class RunOptions:
    """The options the writing commands share, declared once (see :func:`run_options`)."""

    param: list[str] | None
    state_file: Path | None
    dead_letter_file: Path | None
    dead_letter_include_doc: bool
    progress: bool
    as_json: bool
    debug: bool
    log_format: str
    metrics_file: Path | None

    def files(self) -> dict[str, Any]:
        """What every writing command takes of them: where its state and dead letters go."""
        return {"state_file": self.state_file, "dead_letter_file": self.dead_letter_file,
                "include_doc": self.dead_letter_include_doc}


_RUN_OPTIONS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
    for name, annotation, default in (
        ("param", ParamOpt, None), ("state_file", StateOpt, None), ("dead_letter_file", DeadFileOpt, None),
        ("dead_letter_include_doc", DeadDocOpt, False), ("progress", ProgressOpt, True),
        ("as_json", JsonOpt, False), ("debug", DebugOpt, False), ("log_format", LogFormatOpt, "text"),
        ("metrics_file", MetricsFileOpt, None),
    )
]


def run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command the shared run options (as sqlite-utils does for insert and upsert): typer
    reads them from the signature, and the command receives them as one ``options`` object."""
    own = [p for name, p in inspect.signature(command, eval_str=True).parameters.items() if name != "options"]

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> None:
        shared = {p.name: kwargs.pop(p.name) for p in _RUN_OPTIONS}
        command(**kwargs, options=RunOptions(**shared))

    with_options.__signature__ = inspect.Signature(own + _RUN_OPTIONS)  # type: ignore[attr-defined]
    return with_options


def load(job_file: Path, param: list[str] | None) -> Job:
    return load_job(job_file, params=dict(parse_param(p) for p in param or []))


def job_files(given: list[Path]) -> list[Path]:
    """The job files named, a folder standing for its ``*.toml`` files (in name order)."""
    files: list[Path] = []
    for path in given:
        if path.is_dir():
            found = sorted(path.glob("*.toml"))
            if not found:
                raise ConfigError(f"no job files (*.toml) in the folder {path}")
            files.extend(found)
        else:
            files.append(path)
    return files


def log_format(text: str) -> str:
    if text not in FORMATS:
        raise ConfigError(f"--log-format {text}: choose text or json")
    return text


def every_seconds(text: str) -> float:
    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"--every: {exc}") from exc
    if seconds < MIN_EVERY:
        raise ConfigError(f"--every {text}: the pause must be at least {MIN_EVERY:g}s")
    return seconds
