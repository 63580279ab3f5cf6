"""Reading a job file: the TOML, paths relative to the file, ``INDEXER_URL``, ``--param`` and
``--partitions`` on top, everything validated once by ``config``'s model; a validation error in one line.

::

    JOB.toml --tomllib--> dict --paths made absolute, INDEXER_URL, --param--> config.Job (pydantic)
        --_check_params: every --param is the job's, every name the queries bind has a value--> Job
    a pydantic ValidationError --invalid()--> one ConfigError line (never the input: it may hold credentials)
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from indexer import sources
from indexer.config import URL_ENV, Job, JobSettings, check_url
from indexer.errors import ConfigError
from indexer.sources.base import KEY_BIND_PREFIX, RESERVED_BINDS, SINCE

M = TypeVar("M", bound=BaseModel)


def _check_params(job: Job, file_params: dict[str, Any], cli_params: dict[str, Any], file_name: str) -> None:
    """Every ``--param`` is a parameter of the job; every name the queries bind has a value;
    ``since`` is left to sync when the job has a watermark (sync binds it)."""
    db, settings = sources.dialect(job.source.dbtype), job.job
    query_binds = db.binds(settings.query)
    child_binds = tuple(dict.fromkeys(b for child in settings.descendants() for b in db.binds(child.query)))
    sync_binds = db.binds(settings.sync_query) if settings.sync_query else ()
    binds = tuple(dict.fromkeys(query_binds + child_binds + sync_binds))

    def among(name: str, names: Any) -> bool:
        return any(db.same_bind(name, other) for other in names)

    for name in (*settings.params, *binds):
        if among(name, RESERVED_BINDS) or name.lower().startswith(KEY_BIND_PREFIX):
            raise ConfigError(f"{file_name}: the parameter name {name} is one indexer binds itself "
                              f"({', '.join(RESERVED_BINDS)}, {KEY_BIND_PREFIX}...); rename it in the query and "
                              "job.params")
    if settings.watermark:
        for name in settings.params:
            if name.lower() == SINCE:
                where = "--param since" if name in cli_params else f"{file_name}: job.params.since"
                raise ConfigError(f"{where}: the name since is reserved for sync (it binds the watermark); "
                                  "rename the parameter")
    for name in cli_params:
        if name not in file_params and not among(name, binds):
            shown = ", ".join(binds) or ("? (positional: name it in [job.params])" if db.positional else "none")
            raise ConfigError(f"--param {name}: not a parameter of this job "
                              f"(job.params has: {', '.join(file_params) or 'none'}; the query binds: {shown})")
    for what, names, free in (("job.query", query_binds, ()), ("job.children", child_binds, ()),
                              ("job.sync_query", sync_binds, (SINCE,))):
        for name in names:
            if what != "job.sync_query" and settings.watermark and db.same_bind(name, SINCE):
                raise ConfigError(f"{file_name}: job.query binds since, which sync binds to the watermark "
                                  "(it wraps job.query); rename the parameter")
            if not among(name, settings.params) and not among(name, free):
                raise ConfigError(f"{file_name}: {what} binds {name} but job.params has no {name} "
                                  f"(add it to [job.params] or pass --param {name}=...)")


def invalid(exc: ValidationError, *, file: str | None = None, option: bool = False) -> ConfigError:
    """One line for a pydantic error, the only place they are put into words: where (``file: a.b.c``, or
    ``--a-b`` for an option), the first error's message, and how many more. Never the input: pydantic's
    text quotes it, and a --url may carry credentials (raise it ``from None``)."""
    errors = exc.errors()
    first = errors[0]
    loc = [*first["loc"], *([first["ctx"]["field"]] if first["type"] == "field" else [])]
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    msg = msg.removeprefix("Value error, ")
    if option:
        where = f"--{str(loc[0]).replace('_', '-')}: " if loc else ""
        return ConfigError(where + msg)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ConfigError(f"{file + ': ' if file else ''}{dotted}: {msg}{more}")


def validated(model: type[M], values: dict[str, Any]) -> M:
    """``values`` (from command-line options) as ``model``; its pydantic error as the options' one line."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise invalid(exc, option=True) from None


def parse_param(text: str) -> tuple[str, Any]:
    """``name=value`` from the command line; the value is read as a TOML value when it is one."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--param {text!r}: expected name=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return name.strip(), value


def load_job(path: str | Path, params: dict[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Job:
    """Read and validate a job file; ``params`` (``--param``) override ``[job.params]`` and must name a
    parameter of the job; ``INDEXER_URL`` overrides the url."""
    env = os.environ if env is None else env
    path = Path(path)
    params = params or {}
    try:
        # utf-8-sig: a BOM some editors write at the start is not part of the TOML
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as exc:
        raise ConfigError(f"job file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.__class__.__name__}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc

    base_dir = path.resolve().parent
    source = raw.get("source")
    if isinstance(source, dict) and source.get("filename"):
        source["filename"] = str(base_dir / source["filename"])
    target = raw.setdefault("target", {})
    if isinstance(target, dict):
        if env.get(URL_ENV):
            if target.get("cloud_id"):
                raise ConfigError(f"{URL_ENV} and target.cloud_id both name the cluster: unset one of them")
            try:
                target["url"] = check_url(env[URL_ENV])
            except ValueError as exc:
                raise ConfigError(f"{URL_ENV}: {exc}") from exc  # check_url never echoes the value
        if target.get("ca_certs"):
            target["ca_certs"] = str(base_dir / target["ca_certs"])
    job = raw.get("job")
    if isinstance(job, dict) and isinstance(job.get("mappings"), str):
        job["mappings"] = str(base_dir / job["mappings"])
    file_params = job.get("params", {}) if isinstance(job, dict) else {}
    if params and isinstance(job, dict):
        job["params"] = {**file_params, **params}
    try:
        loaded = Job(**raw, base_dir=base_dir, name=path.stem)
    except ValidationError as exc:
        raise invalid(exc, file=path.name) from None
    except TypeError as exc:  # e.g. a top-level key given twice
        raise ConfigError(f"{path.name}: {exc}") from exc
    _check_params(loaded, file_params, params, path.name)
    return loaded


def with_partitions(job: Job, partitions: int | None, cluster: str | None) -> Job:
    """``job`` with ``--partitions`` / ``--cluster`` in place of the job file's, checked as the file's are."""
    if partitions is None and cluster is None:
        return job
    update = {k: v for k, v in (("partitions", partitions), ("cluster", cluster)) if v is not None}
    return job.model_copy(update={"job": validated(JobSettings, {**job.job.model_dump(), **update})})
