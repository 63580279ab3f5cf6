"""The job file: one typed object, validated once at the edge, with every default here.

A job file is TOML with three tables (``[source]``, ``[target]``, ``[job]``); see
README "The job file". Unknown fields are errors, relative paths are relative to
the job file, and secrets are never values: only the *names* of environment
variables that hold them (``password_env``, ``api_key_env``...). Each field's ``description``
is its documentation (``indexer.reference`` writes docs/config-reference.md from them). (About
430 lines: the model, its descriptions and every check of it stay together, in one place.)
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from indexer.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:9200"
DEFAULT_CHUNK_SIZE = 5000
DEFAULT_CHUNK_BYTES = 8 * 1024 * 1024
DEFAULT_CONCURRENCY = 2
DEFAULT_QUEUE_CHUNKS = 4
DEFAULT_KEEP = 1
DEFAULT_LOOKBACK = "5m"
DEFAULT_MAX_RETRY_TIME = 300.0
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_MAX_ERRORS = 100
DEFAULT_MAX_ERROR_RATE = 0.01
DEFAULT_MIN_RATIO = 0.5
ERROR_RATE_MIN_ROWS = 1000
MAX_PARTITIONS = 1024
URL_ENV = "INDEXER_URL"

# Elasticsearch/OpenSearch index naming rules: lowercase, none of these characters,
# not starting with -, _ or +, not "." or "..", at most 255 bytes.
_BAD_NAME_CHARS = re.compile(r'[\\/*?"<>| ,#:]')
INDEX_SUFFIX_LEN = len("-yyyymmddhhmmss")

# etlhelper's DbParams fields by database type.
_REQUIRED_SOURCE_FIELDS = {
    "SQLITE": ("filename",),
    "PG": ("host", "port", "dbname", "user"),
    "ORACLE": ("host", "port", "dbname", "user"),
    "MSSQL": ("host", "port", "dbname", "user", "odbc_driver"),
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*$")

# The parameter sync binds to the stored watermark (minus the lookback).
SINCE = "since"
# The parameters indexer binds around the job's query in every command (an aggregate asked again past a
# value that is no usable extreme, a partitioned reindex's bounds): a job parameter of the same name
# would be overwritten inside the job's own query, so it is refused.
RESERVED_BINDS = ("indexer_beyond", "slice_lo", "slice_hi")
# Bind parameters as each driver reads them. String literals, quoted names and comments are
# blanked first for :name (a '12:30' literal binds nothing); psycopg2 substitutes %(name)s
# everywhere, so PostgreSQL queries are read as they are. MSSQL's ? is positional: no names.
_SQL_NOISE = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|/\*.*?\*/", re.S)
_COLON_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PYFORMAT_BIND = re.compile(r"(?<!%)%\((\w+)\)s")
_TRAILING_SEMICOLONS = re.compile(r"[\s;]+$")


def bind_names(dbtype: str, query: str) -> tuple[str, ...]:
    """The names ``query`` binds, in order of first use (none for MSSQL's positional ``?``)."""
    if dbtype == "PG":
        found = _PYFORMAT_BIND.findall(query)
    elif dbtype in ("ORACLE", "SQLITE"):
        found = _COLON_BIND.findall(_SQL_NOISE.sub(" ", query))
    else:
        found = []
    return tuple(dict.fromkeys(found))


def same_bind_name(dbtype: str, a: str, b: str) -> bool:
    """Oracle bind names ignore case; the other drivers' do not."""
    return a.upper() == b.upper() if dbtype == "ORACLE" else a == b


def check_index_name(name: str, what: str = "name") -> str:
    """Raise ValueError unless ``name`` is a valid index, alias or template name."""
    if not name:
        raise ValueError(f"{what} is empty")
    bad = _BAD_NAME_CHARS.search(name)
    # The engine requires name == name.lower(): that refuses "É" as well as "A".
    upper = next((ch for ch in name if ch.lower() != ch), None)
    if bad or upper:
        shown = "space" if bad and bad.group() == " " else repr(bad.group() if bad else upper)
        raise ValueError(f"{what} {name!r} contains {shown} (lowercase, no \\ / * ? \" < > | , # : or spaces)")
    if name[0] in "-_+":
        raise ValueError(f"{what} {name!r} must not start with '-', '_' or '+'")
    if name in (".", ".."):
        raise ValueError(f"{what} must not be '.' or '..'")
    if len(name.encode()) > 255:
        raise ValueError(f"{what} {name[:20]!r}... is longer than 255 bytes")
    return name


def _check_env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError("must be the name of an environment variable (letters, digits, _), not a secret")
    return value


def _field_error(field: str, message: str) -> PydanticCustomError:
    """A model-level check's error reported at one of its fields (``target.username: ...``)."""
    return PydanticCustomError("field", message, {"field": field})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    """Where rows come from: etlhelper's DbParams fields plus the password's variable name."""

    dbtype: Literal["ORACLE", "PG", "SQLITE", "MSSQL"] = Field(description="The database type (any case).")
    filename: Path | None = Field(None, description="Required for SQLITE: the database file, relative to the job file.")
    host: str | None = Field(None, description="Required for PG, ORACLE, MSSQL: the database host.")
    port: int | None = Field(default=None, ge=1, le=65535, description="Required for PG, ORACLE, MSSQL: the port.")
    dbname: str | None = Field(None, description="Required for PG, MSSQL (the database), ORACLE (the service name).")
    user: str | None = Field(None, description="Required for PG, ORACLE, MSSQL: the user to connect as.")
    odbc_driver: str | None = Field(None, description="Required for MSSQL: the ODBC driver "
                                    '("ODBC Driver 18 for SQL Server").')
    password_env: str | None = Field(None, description="Required for PG, ORACLE, MSSQL: the NAME of the "
                                     "password's variable.")

    @field_validator("dbtype", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    _env = field_validator("password_env")(classmethod(lambda cls, v: _check_env_name(v)))

    @model_validator(mode="after")
    def _fields_for_dbtype(self) -> SourceConfig:
        missing = [f for f in _REQUIRED_SOURCE_FIELDS[self.dbtype] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"dbtype {self.dbtype} needs {', '.join(missing)}")
        if self.dbtype != "SQLITE" and self.password_env is None:
            raise ValueError(f"dbtype {self.dbtype} needs password_env (the name of the variable holding the password)")
        return self


class TargetConfig(_Model):
    """The cluster. Secrets come from the environment variables named here."""

    url: str = Field(DEFAULT_URL, description=f"The cluster, http(s)://host:port[/path], without credentials "
                     f"or a query; the environment variable {URL_ENV} overrides it.")
    engine: Literal["auto", "elasticsearch", "opensearch"] = Field("auto", description="The client; auto asks GET /.")
    username: str | None = Field(None, description="Basic auth user; needs password_env.")
    password_env: str | None = Field(None, description="Basic auth: the NAME of the password's variable; "
                                     "needs username.")
    api_key_env: str | None = Field(None, description="The NAME of the variable holding an API key "
                                    "(encoded, as issued).")
    bearer_env: str | None = Field(None, description="The NAME of the variable holding a bearer token.")
    cloud_id: str | None = Field(None, description="Elastic Cloud: the deployment's Cloud ID, used instead of url.")
    ca_certs: Path | None = Field(None, description="A PEM file of CA certificates to trust, relative to the job file.")
    verify_certs: bool = Field(True, description="Verify the TLS certificate; false works but warns on every run.")
    request_timeout: float = Field(default=DEFAULT_REQUEST_TIMEOUT, gt=0, description="Seconds to wait for one answer.")
    max_retry_time: float = Field(default=DEFAULT_MAX_RETRY_TIME, gt=0,
                                  description="Seconds of retrying 429/502/503/504 "
                                  "and unanswered requests.")

    _env = field_validator("password_env", "api_key_env", "bearer_env")(
        classmethod(lambda cls, v: _check_env_name(v))
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @model_validator(mode="after")
    def _basic_auth_needs_both(self) -> TargetConfig:
        # Either half alone used to be ignored silently: a cluster then answers 401 with no hint why.
        if self.username is not None and self.password_env is None:
            raise _field_error("username", "needs password_env (the name of the variable holding the password)")
        if self.password_env is not None and self.username is None:
            raise _field_error("password_env", "needs username (basic auth takes both)")
        return self

    @property
    def where(self) -> str:
        """The cluster as messages name it: the url, or the Cloud ID's deployment name (the url is unused then)."""
        return f"Elastic Cloud deployment {self.cloud_id.split(':', 1)[0]!r}" if self.cloud_id else self.url


def check_url(value: str) -> str:
    """The cluster's URL without a trailing slash; ValueError (never echoing the value) when malformed."""
    if "@" in value or "?" in value or "#" in value or not re.match(r"^https?://[^/@\s]+(:\d+)?(/.*)?$", value):
        # Deliberately not echoing the value: a URL may carry credentials.
        raise ValueError("must look like http(s)://host:port[/path], without credentials or a query "
                         "(use username/password_env or api_key_env)")
    return value.rstrip("/")


class JobSettings(_Model):
    """What to copy and how: the ``[job]`` table (and ``[job.params]``)."""

    alias: str = Field(description="The alias the job writes; each reindex builds <alias>-<UTC yyyymmddhhmmss>.")
    key: list[str] = Field(min_length=1, description="The id: one or more columns of the document "
                                                     "(after any transform).")
    query: str = Field(min_length=1, description="The SELECT whose rows become documents; a trailing ; is fine.")
    transform: str | None = Field(None, description="package.module:function; the job file's folder is importable.")
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=100_000,
                            description="Rows per fetch and per bulk request.")
    chunk_bytes: int = Field(default=DEFAULT_CHUNK_BYTES, ge=1024,
                             description="A bulk request is cut at this many bytes.")
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=64, description="Bulk requests in flight.")
    keep: int = Field(default=DEFAULT_KEEP, ge=0, description="Previous indices kept after a swap, for rollback.")
    params: dict[str, Any] = Field(default_factory=dict, description="Bind parameters (name = TOML value; dates stay "
                                   "dates); --param name=value overrides one. since is reserved for sync.")
    watermark: str | None = Field(None, description="Incremental sync: the column that grows when a row changes.")
    sync_query: str | None = Field(None, description="Sync's own query instead of the wrapped query; binds since "
                                   "and must ORDER BY the watermark. Needs watermark.")
    lookback: str | int | float = Field(DEFAULT_LOOKBACK, description="Sync re-reads from the stored watermark "
                                        "minus this: a duration (30s, 5m, 1h), or a number for numeric watermarks.")
    deleted: str | None = Field(None, description="Soft-delete flag column: reindex leaves them out, "
                                "sync deletes them.")
    reconcile_every: str | int | float | None = Field(None, description="sync --every also runs reconcile when "
                                                      "the last one started at least this long ago (e.g. 24h).")
    max_errors: int = Field(default=DEFAULT_MAX_ERRORS, ge=0, description="Dead letters allowed before the run stops.")
    max_error_rate: float = Field(default=DEFAULT_MAX_ERROR_RATE, ge=0, le=1, description="Dead letters allowed as a "
                                  f"fraction of rows read, checked from {ERROR_RATE_MIN_ROWS} rows on.")
    min_ratio: float = Field(default=DEFAULT_MIN_RATIO, ge=0, le=1, description="The swap guard: a reindex refuses "
                             "to move the alias onto an index holding fewer than this x the documents it serves now.")
    partition_by: str | None = Field(None, description="Partitioned reindex: the integer, numeric, date or timestamp "
                                     "column the slices are ranges of.")
    partitions: int = Field(default=1, ge=1, le=MAX_PARTITIONS, description="Partitioned reindex: slices of the "
                            "query read in parallel (--partitions overrides). Over 1 needs partition_by.")
    cluster: str | None = Field(None, description="Partitioned reindex: run the slices on this Dask scheduler, "
                                "tcp://HOST:PORT or tls://HOST:PORT (--cluster overrides); unset: local processes.")
    mappings: Path | None = Field(None, description="The job's templates folder (component/ and index/), relative "
                                  "to the job file: bootstrap --job installs it unless --mappings is given, and "
                                  "preview builds the next index from it, before any bootstrap.")

    @field_validator("query", "sync_query")
    @classmethod
    def _no_trailing_semicolon(cls, value: str | None) -> str | None:
        # The tool wraps the query (SELECT COUNT(*) FROM (<query>) q...), where a ';' is a syntax error.
        if value is None:
            return value
        value = _TRAILING_SEMICOLONS.sub("", value)
        if not value.strip():
            raise ValueError("is empty")
        return value

    @field_validator("watermark", "deleted", "partition_by")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        if value is not None and not SQL_IDENTIFIER.match(value):
            raise ValueError("must be a plain column name (letters, digits, _)")
        return value.lower() if value else value

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str | int | float) -> str | int | float:
        if isinstance(value, str):
            from indexer.watermark import parse_duration

            parse_duration(value)
        elif value < 0:
            raise ValueError("must not be negative")
        return value

    @field_validator("reconcile_every")
    @classmethod
    def _reconcile_every(cls, value: str | int | float | None) -> str | int | float | None:
        if value is None:
            return value
        from indexer.watermark import parse_duration

        if parse_duration(value).total_seconds() <= 0:
            raise ValueError("must be a positive duration like 1h or 24h")
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(tcp|tls)://[^\s/]+:\d+/?$", value):
            raise ValueError("must be a Dask scheduler address, tcp://HOST:PORT (or tls://HOST:PORT)")
        return value

    @model_validator(mode="after")
    def _sync_needs_watermark(self) -> JobSettings:
        if self.sync_query and not self.watermark:
            raise ValueError("job.sync_query needs job.watermark")
        if self.partitions > 1 and not self.partition_by:
            raise ValueError("job.partitions needs job.partition_by (the column the slices are ranges of)")
        return self

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        check_index_name(value, "alias")
        if len(value.encode()) > 255 - INDEX_SUFFIX_LEN:
            raise ValueError("alias is too long to add the -yyyymmddhhmmss suffix "
                             f"(max {255 - INDEX_SUFFIX_LEN} bytes)")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: list[str]) -> list[str]:
        lowered = [k.lower() for k in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("key names a column twice")
        return lowered

    @field_validator("transform")
    @classmethod
    def _transform(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^[\w.]+:\w+$", value):
            raise ValueError("must be 'package.module:function'")
        return value


class Job(_Model):
    """A validated job file. ``base_dir`` is the job file's folder."""

    source: SourceConfig = Field(description="Where rows come from: etlhelper's DbParams fields.")
    target: TargetConfig = Field(TargetConfig(), description="The cluster; every field has a default.")
    job: JobSettings = Field(description="What to copy and how.")
    base_dir: Path = Field(Path("."), description="Not in the file: the job file's folder (set by load_job).")
    name: str = Field("job", description="Not in the file: the job file's name without .toml (set by load_job).")


def _check_params(job: Job, file_params: dict[str, Any], cli_params: dict[str, Any], file_name: str) -> None:
    """Every ``--param`` is a parameter of the job; every name the queries bind has a value;
    ``since`` is left to sync when the job has a watermark (sync binds it)."""
    dbtype, settings = job.source.dbtype, job.job
    query_binds = bind_names(dbtype, settings.query)
    sync_binds = bind_names(dbtype, settings.sync_query) if settings.sync_query else ()
    binds = tuple(dict.fromkeys(query_binds + sync_binds))

    def among(name: str, names: Any) -> bool:
        return any(same_bind_name(dbtype, name, other) for other in names)

    for name in (*settings.params, *binds):
        if among(name, RESERVED_BINDS):
            raise ConfigError(f"{file_name}: the parameter name {name} is one indexer binds itself "
                              f"({', '.join(RESERVED_BINDS)}); rename it in the query and job.params")
    if settings.watermark:
        for name in settings.params:
            if name.lower() == SINCE:
                where = "--param since" if name in cli_params else f"{file_name}: job.params.since"
                raise ConfigError(f"{where}: the name since is reserved for sync (it binds the watermark); "
                                  "rename the parameter")
    for name in cli_params:
        if name not in file_params and not among(name, binds):
            shown = ", ".join(binds) or ("? (positional: name it in [job.params])" if dbtype == "MSSQL" else "none")
            raise ConfigError(f"--param {name}: not a parameter of this job "
                              f"(job.params has: {', '.join(file_params) or 'none'}; the query binds: {shown})")
    for what, names, free in (("job.query", query_binds, ()), ("job.sync_query", sync_binds, (SINCE,))):
        for name in names:
            if what == "job.query" and settings.watermark and same_bind_name(dbtype, name, SINCE):
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


def load_job(path: str | Path, params: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Job:
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
    try:
        settings = JobSettings.model_validate({**job.job.model_dump(), **update})
    except ValidationError as exc:
        raise invalid(exc, option=True) from None
    return job.model_copy(update={"job": settings})
