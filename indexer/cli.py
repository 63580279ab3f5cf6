"""The command line: declares the options, loads the job, calls one command, hands its result to ``terminal``.

Every failure is an ``IndexerError`` mapped to one line on stderr and an exit code in :func:`_run`, the only
place that does so (``--debug`` shows the traceback instead); with ``--json`` the failure's summary also
goes to stdout. Any other exception is a defect of ours: one line too, exit 1. Help is click's plain layout
(``rich_markup_mode=None``): full option names with their metavars (``--workers N``), wrapped to the
terminal, never cut at 80 columns. The commands themselves live in ``indexer.commands``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from indexer import __version__, logs, sources, tune_gc
from indexer import run as running
from indexer.commands import bootstrap as bootstrapping
from indexer.commands import daemon as daemons
from indexer.commands import init as initialising
from indexer.commands import preview as previewing
from indexer.commands import reconcile as reconciling
from indexer.commands import reindex as reindexing
from indexer.commands import status as statusing
from indexer.commands import sync as syncing
from indexer.config import Job, TargetConfig
from indexer.errors import ConfigError, IndexerError
from indexer.jobfile import validated, with_partitions
from indexer.metrics import Metrics
from indexer.options import (
    DebugOpt,
    EngineOpt,
    JobArg,
    JobsArg,
    JsonOpt,
    ParamOpt,
    RunOptions,
    StateOpt,
    UrlOpt,
    every_seconds,
    job_files,
    load,
    run_options,
)
from indexer.options import log_format as check_log_format
from indexer.state import Outcome
from indexer.terminal import (
    WatchReport,
    err,
    print_failure,
    print_preview,
    print_status,
    print_summary,
    print_templates,
    print_version,
    print_written,
    progress_bar,
    report_summary,
)

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Copy rows from a relational database into Elasticsearch or OpenSearch.")


EXIT_DEAD_LETTERS = 3  # finished, but some documents went to the dead-letter file
EXIT_COULD_NOT_CHECK = 2  # bootstrap --check: the cluster or the files could not be compared


def _run(debug: bool, make: Callable[[], Coroutine[Any, Any, int]], *, terminate: bool = False,
         command: str = "", as_json: bool = False, log_format: str = "text") -> None:
    """Run one command; map IndexerError to one line and its exit code (with ``as_json``, the failure's
    summary on stdout too; with ``log_format`` json, that line is a JSON log line); any other exception is
    one line and exit 1.

    Ctrl-C (SIGINT) cancels the command, which cleans up and records the run as
    interrupted, then exits 130. With ``terminate``, SIGTERM does the same and exits 143
    (``sync`` handles both signals itself: it finishes the chunk in flight and exits 0).
    """
    log_json = log_format == "json"
    logs.setup(debug, log_format if log_format in logs.FORMATS else "text")
    tune_gc()
    terminated = False

    async def main() -> int:
        check_log_format(log_format)
        if terminate:
            task = asyncio.current_task()
            if task is None:  # asyncio.run runs main() as a task: never
                raise RuntimeError("no current task to cancel on SIGTERM")

            def on_term() -> None:
                nonlocal terminated
                terminated = True
                task.cancel()

            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_term)
        return await make()

    try:
        code = asyncio.run(main())
    except IndexerError as exc:
        if debug:
            traceback.print_exc()
        print_failure(exc, command, as_json, log_json=log_json)
        raise typer.Exit(exc.exit_code) from None
    except (KeyboardInterrupt, asyncio.CancelledError):
        err.print("terminated" if terminated else "interrupted", markup=False)
        latest = running.latest[0]
        if as_json and latest is not None and latest.outcome == Outcome.INTERRUPTED:
            print_summary(latest, as_json)  # the run the signal ended, as recorded
        raise typer.Exit(143 if terminated else 130) from None
    except Exception as exc:  # noqa: BLE001 - a defect of ours: one line, never a traceback unless --debug
        if debug:
            traceback.print_exc()
        print_failure(exc, command, as_json, log_json=log_json)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        print_version(__version__)
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                     help="Print the version and exit.")] = False,
) -> None:
    """Copy rows from a relational database into Elasticsearch or OpenSearch."""


@app.command()
def bootstrap(
    mappings: Annotated[Path | None, typer.Option(
        "--mappings", metavar="DIR", help="The templates folder (default: the --job file's job.mappings, "
        "else ./mappings).")] = None,
    url: UrlOpt = None,
    job: Annotated[Path | None, typer.Option(
        "--job", metavar="JOB.toml", help="Take the cluster settings ([target]) and job.mappings from this "
        "job file.")] = None,
    engine: EngineOpt = "auto",
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would change (a diff); write nothing.")] = False,
    check: Annotated[bool, typer.Option(
        "--check", help="Write nothing; exit 0 when the cluster matches the files, 1 when it differs, 2 when "
        "it could not be checked.")] = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Install the index and component templates from MAPPINGS (component templates first)."""

    async def main() -> int:
        written = not (dry_run or check)
        try:
            loaded = load(job, None) if job else None
            target = loaded.target if loaded else _target(url, engine)
            folder = mappings or (loaded.job.mappings if loaded and loaded.job.mappings else Path("mappings"))
            changes = await bootstrapping.bootstrap(target, folder, write=written)
        except IndexerError as exc:
            if check:
                exc.exit_code = EXIT_COULD_NOT_CHECK  # 1 means drift; anything that stopped the check is 2
            raise
        print_templates(changes, as_json, written=written, show_diff=dry_run)
        return 1 if check and any(c.action != "unchanged" for c in changes) else 0

    _run(debug, main, command="bootstrap", as_json=as_json)


def _target(url: str | None, engine: str) -> TargetConfig:
    return validated(TargetConfig, {**({"url": url} if url else {}), "engine": engine})


@app.command()
@run_options
def reindex(
    job_file: JobArg,
    allow_duplicates: Annotated[bool, typer.Option(
        "--allow-duplicates", help="Keep the row latest in source order for a repeated key instead of "
        "failing.")] = False,
    force_swap: Annotated[bool, typer.Option(
        "--force-swap", help="Move the alias even when the new index holds fewer than job.min_ratio of the "
        "documents the alias serves now (or none).")] = False,
    partitions: Annotated[int | None, typer.Option(
        "--partitions", metavar="N", min=1, help="Read the query as this many slices of job.partition_by, "
        "in parallel (overrides job.partitions).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", min=1, help="Local worker processes for the slices (default: the number "
        "of partitions, at most the CPU count).")] = None,
    cluster: Annotated[str | None, typer.Option(
        "--cluster", metavar="tcp://HOST:PORT", help="Run the slices on this Dask distributed scheduler "
        "(overrides job.cluster).")] = None,
    *, options: RunOptions,
) -> None:
    """Rebuild the job's alias from scratch: fresh index, verify, then one atomic alias swap."""
    _summarised("reindex", job_file, options, lambda job, **run: reindexing.reindex(
        with_partitions(job, partitions, cluster), allow_duplicates=allow_duplicates, force_swap=force_swap,
        workers=workers, **run))


@app.command()
@run_options
def sync(
    jobs: JobsArg,
    every: Annotated[str | None, typer.Option(
        "--every", metavar="DURATION", help="Run again after this pause (30s, 5m, 1h; at least 1s; a job's own "
        "job.every overrides it) until SIGINT/SIGTERM; once a pass succeeded, a failed pass is reported and "
        "retried.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", metavar="PORT", min=0, max=65535, help="With --every: serve /metrics (Prometheus), "
        "/healthz and /readyz on this port.")] = None,
    metrics_address: Annotated[str, typer.Option(
        "--metrics-address", metavar="ADDRESS", help="The address --metrics-port listens on (0.0.0.0: every "
        "interface).")] = "127.0.0.1",
    count_pending: Annotated[bool, typer.Option(
        "--count-pending", help="With metrics: each pass first counts the rows of its window (one COUNT(*)) for "
        "indexer_rows_pending.")] = False,
    ready_periods: Annotated[float, typer.Option(
        "--ready-periods", metavar="N", min=1, help="/readyz answers 200 while every job's last successful "
        "pass ended within N of its periods.")] = 3,
    *, options: RunOptions,
) -> None:
    """Index the rows changed since the last run (by the job's watermark column) into the alias; with several
    jobs, each its own."""

    async def main() -> int:
        loaded = [load(path, options.param) for path in job_files(jobs)]
        daemons.check_jobs(loaded)
        pause = every_seconds(every) if every else None
        if pause is None and metrics_port is not None:
            raise ConfigError("--metrics-port needs --every (a one-shot run writes --metrics-file instead)")
        if count_pending and (pause is None or (metrics_port is None and options.metrics_file is None)):
            raise ConfigError("--count-pending needs --every and --metrics-port or --metrics-file")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if pause is not None:
            log_json, several = options.log_format == "json", len(loaded) > 1
            if log_json:
                logs.event(logging.INFO, "started", f"sync --every {every}: {len(loaded)} job(s)",
                           jobs=[j.name for j in loaded], metrics_port=metrics_port)
            serving = daemons.Serving(metrics_port, metrics_address, options.metrics_file, ready_periods,
                                      count_pending)
            await daemons.daemon(
                loaded, pause, str(every), stop=stop, serving=serving, **options.files(),
                report=lambda job: WatchReport(options.as_json, log_json, job.name if several else None))
            if log_json:
                logs.event(logging.INFO, "stopped", "sync --every: stopped after the passes in flight")
            return 0
        return await _one_pass_each(loaded, options, stop)

    _run(options.debug, main, command="sync", as_json=options.as_json, log_format=options.log_format)


# The exit code of several one-shot passes: the worst one's, a job-file error (2) before a failure (1)
# before dead letters (3) before success (0).
_SEVERITY = {2: 3, 1: 2, EXIT_DEAD_LETTERS: 1, 0: 0}


async def _one_pass_each(jobs: list[Job], options: RunOptions, stop: asyncio.Event) -> int:
    """``sync`` without --every: one pass of each job in turn, all counted into one --metrics-file. One job
    fails as any command does; of several, each failure is reported, the next job still runs, and the exit
    code is the worst (``_SEVERITY``)."""
    metrics = Metrics.to_file(options.metrics_file) if options.metrics_file else None
    codes = []
    for job in jobs:
        try:
            codes.append(await _counted("sync", job, options, lambda job, **run: syncing.sync(job, stop=stop, **run),
                                        metrics))
        except IndexerError as exc:
            if len(jobs) == 1:
                raise
            print_failure(exc, "sync", options.as_json, log_json=options.log_format == "json", job=job.name)
            codes.append(exc.exit_code)
        if stop.is_set():
            break
    return max(codes, key=lambda code: _SEVERITY.get(code, 2))


@app.command()
@run_options
def reconcile(
    job_file: JobArg,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Compare, print the counts and sample ids, write nothing.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Write even when the index would keep fewer than job.min_ratio of its documents, or "
        "the source yields no ids.")] = False,
    temp_dir: Annotated[Path | None, typer.Option(
        "--temp-dir", metavar="DIR", help="Folder for the sorted id files (ids only, removed at the end). "
        "Default: the system's temporary folder.")] = None,
    *, options: RunOptions,
) -> None:
    """Make the alias hold exactly the query's ids: delete documents whose rows are gone, index missing rows."""
    _summarised("reconcile", job_file, options, lambda job, **run: reconciling.reconcile(
        job, dry_run=dry_run, force=force, temp_dir=temp_dir, **run))


def _summarised(name: str, job_file: Path, options: RunOptions,
                command: Callable[..., Coroutine[Any, Any, Any]]) -> None:
    """Run one command that ends with a summary: load the job, then :func:`_counted`."""

    async def main() -> int:
        job = load(job_file, options.param)
        return await _counted(name, job, options, command,
                              Metrics.to_file(options.metrics_file) if options.metrics_file else None)

    _run(options.debug, main, terminate=True, command=name, as_json=options.as_json, log_format=options.log_format)


async def _counted(name: str, job: Job, options: RunOptions, command: Callable[..., Coroutine[Any, Any, Any]],
                   metrics: Metrics | None) -> int:
    """One run with its progress bar and summary (a JSON log line with --log-format json), counted into
    ``metrics`` (--metrics-file) and the file written whatever the outcome, an interruption too; exit 3 when
    documents went to the dead-letter file."""
    counted = metrics.job(job.name, job.job.alias) if metrics else None
    try:
        with progress_bar(options.progress, options.as_json) as progress:
            summary = await command(job, progress=progress, **options.files())
    except IndexerError as exc:
        if metrics and counted:
            counted.failed(name, exc, "")
            metrics.write_textfile()
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):  # SIGTERM or Ctrl-C: the run recorded as interrupted
        latest = running.latest[0]
        if metrics and counted and latest is not None and latest.job == job.name:
            counted.interrupted(name, latest)
            metrics.write_textfile()
        raise
    if metrics and counted:
        counted.passed(name, summary)
        metrics.write_textfile()
    report_summary(summary, options.as_json, options.log_format == "json")
    return EXIT_DEAD_LETTERS if summary.outcome == Outcome.DEAD_LETTERS else 0


@app.command()
def status(
    job_file: JobArg,
    param: ParamOpt = None,
    state_file: StateOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show the stored watermark, the last run, documents in the alias, rows in the source, and the difference."""

    async def main() -> int:
        print_status(await statusing.status(load(job_file, param), state_file=state_file), as_json)
        return 0

    _run(debug, main, command="status", as_json=as_json)


@app.command()
def init(
    table: Annotated[str, typer.Option(
        "--table", metavar="[SCHEMA.]NAME", help="The table or view to start from.", show_default=False)],
    dbtype: Annotated[str, typer.Option(
        "--dbtype", metavar="|".join(sources.DBTYPES), help="The database type.", show_default=False)],
    filename: Annotated[Path | None, typer.Option(
        "--filename", metavar="FILE", help="SQLite: the database file.")] = None,
    host: Annotated[str | None, typer.Option(
        "--host", metavar="HOST", help="Database host (ORACLE, PG, MSSQL).")] = None,
    port: Annotated[int | None, typer.Option("--port", metavar="PORT", help="Database port.")] = None,
    dbname: Annotated[str | None, typer.Option(
        "--dbname", metavar="NAME", help="Database (PG, MSSQL) or service name (ORACLE).")] = None,
    user: Annotated[str | None, typer.Option("--user", metavar="USER", help="Database user.")] = None,
    password_env: Annotated[str | None, typer.Option(
        "--password-env", metavar="VAR", help="The NAME of the environment variable holding the password (the "
        "job file keeps only the name).")] = None,
    odbc_driver: Annotated[str | None, typer.Option(
        "--odbc-driver", metavar="DRIVER", help="MSSQL: the ODBC driver name.")] = None,
    alias: Annotated[str | None, typer.Option(
        "--alias", metavar="ALIAS", help="The alias the job writes (default: the table name).")] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", metavar="DIR", help="Folder for the job file and its mappings/.")] = Path("."),
    key: Annotated[list[str] | None, typer.Option(
        "--key", metavar="COLUMN", help="Key column (repeat for a composite key) when the table has no "
        "primary key.")] = None,
    child: Annotated[list[str] | None, typer.Option(
        "--child", metavar="[NAME=]TABLE[:FK]", help="A table whose rows nest in each document ([[job.children]]), "
        "found through its foreign key; repeat for more; PARENT/TABLE for a grandchild; :FK picks one of several "
        "foreign keys (its name or its columns a,b); NAME= names the field.")] = None,
    as_objects: Annotated[bool, typer.Option(
        "--object", help="Map children as plain objects, not nested (no limit of 10,000 per document; fields of "
        "different objects then mix in queries).")] = False,
    url: Annotated[str | None, typer.Option(
        "--url", metavar="URL", help="The cluster URL written into the job's [target].")] = None,
    engine: EngineOpt = "auto",
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Write a job file and its templates from a table's catalogue entry (never overwrites a file)."""

    async def main() -> int:
        given = {"dbtype": dbtype, "filename": str(filename) if filename else None, "host": host, "port": port,
                 "dbname": dbname, "user": user, "password_env": password_env, "odbc_driver": odbc_driver}
        target = {"engine": engine, **({"url": url} if url else {})}
        written = await asyncio.to_thread(
            initialising.init_job, {k: v for k, v in given.items() if v is not None}, table, out=out_dir,
            alias=alias, key=key or None, target=target, children=child or None, objects=as_objects)
        print_written(written, as_json)
        return 0

    _run(debug, main, command="init", as_json=as_json)


@app.command()
def preview(
    job_file: JobArg,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=1, help="Rows to read and show.")] = 5,
    mappings: Annotated[Path | None, typer.Option(
        "--mappings", metavar="DIR", help="Build the next index from these template files (default: "
        "job.mappings), before any bootstrap.")] = None,
    param: ParamOpt = None,
    state_file: StateOpt = None,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Show the first rows as documents, the index a reindex would create, and the problems found; write nothing.

    Exit 0 when no problem was found, 1 when one was."""

    async def main() -> int:
        report = await previewing.preview(load(job_file, param), limit=limit, state_file=state_file,
                                          mappings=mappings)
        print_preview(report, as_json)
        return 1 if report.problems else 0

    _run(debug, main, terminate=True, command="preview", as_json=as_json)


if __name__ == "__main__":  # pragma: no cover
    app()
