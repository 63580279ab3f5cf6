"""The job file: one typed object, validated once at the edge, with every default here.

A job file is TOML with three tables (``[source]``, ``[target]``, ``[job]``); see
README "The job file". Unknown fields are errors, relative paths are relative to
the job file, and secrets are never values: only the *names* of environment
variables that hold them (``password_env``, ``api_key_env``...).
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
ERROR_RATE_MIN_ROWS = 1000
URL_ENV = "INDEXER_URL"

# Elasticsearch/OpenSearch index naming rules: lowercase, none of these characters,
# not starting with -, _ or +, not "." or "..", at most 255 bytes.
_BAD_NAME_CHARS = re.compile(r'[\\/*?"<>| ,#:A-Z]')
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


def check_index_name(name: str, what: str = "name") -> str:
    """Raise ValueError unless ``name`` is a valid index, alias or template name."""
    if not name:
        raise ValueError(f"{what} is empty")
    bad = _BAD_NAME_CHARS.search(name)
    if bad:
        shown = "space" if bad.group() == " " else repr(bad.group())
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Model):
    """Where rows come from: etlhelper's DbParams fields plus the password's variable name."""

    dbtype: Literal["ORACLE", "PG", "SQLITE", "MSSQL"]
    filename: Path | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    dbname: str | None = None
    user: str | None = None
    odbc_driver: str | None = None
    password_env: str | None = None

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

    url: str = DEFAULT_URL
    engine: Literal["auto", "elasticsearch", "opensearch"] = "auto"
    username: str | None = None
    password_env: str | None = None
    api_key_env: str | None = None
    bearer_env: str | None = None
    cloud_id: str | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout: float = Field(default=DEFAULT_REQUEST_TIMEOUT, gt=0)
    max_retry_time: float = Field(default=DEFAULT_MAX_RETRY_TIME, gt=0)

    _env = field_validator("password_env", "api_key_env", "bearer_env")(
        classmethod(lambda cls, v: _check_env_name(v))
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if "@" in value or "?" in value or "#" in value or not re.match(r"^https?://[^/@\s]+(:\d+)?(/.*)?$", value):
            # Deliberately not echoing the value: a URL may carry credentials.
            raise ValueError("must look like http(s)://host:port[/path], without credentials or a query "
                             "(use username/password_env or api_key_env)")
        return value.rstrip("/")


class JobSettings(_Model):
    alias: str
    key: list[str] = Field(min_length=1)
    query: str = Field(min_length=1)
    transform: str | None = None
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=1, le=100_000)
    chunk_bytes: int = Field(default=DEFAULT_CHUNK_BYTES, ge=1024)
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1, le=64)
    keep: int = Field(default=DEFAULT_KEEP, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    # incremental sync
    watermark: str | None = None
    sync_query: str | None = None
    lookback: str | int | float = DEFAULT_LOOKBACK
    deleted: str | None = None
    # documents that fail for good go to the dead-letter file until one of these is exceeded
    max_errors: int = Field(default=DEFAULT_MAX_ERRORS, ge=0)
    max_error_rate: float = Field(default=DEFAULT_MAX_ERROR_RATE, ge=0, le=1)

    @field_validator("watermark", "deleted")
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

    @model_validator(mode="after")
    def _sync_needs_watermark(self) -> JobSettings:
        if self.sync_query and not self.watermark:
            raise ValueError("job.sync_query needs job.watermark")
        return self

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        check_index_name(value, "alias")
        if len(value.encode()) > 255 - INDEX_SUFFIX_LEN:
            raise ValueError(f"alias is too long to add the -yyyymmddhhmmss suffix (max {255 - INDEX_SUFFIX_LEN} bytes)")
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

    source: SourceConfig
    target: TargetConfig = TargetConfig()
    job: JobSettings
    base_dir: Path = Path(".")
    name: str = "job"


def _format_validation_error(path: Path, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    elif first["type"] == "missing":
        msg = "required field is missing"
    msg = msg.removeprefix("Value error, ")
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{path.name}: {where}: {msg}{more}"


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
    """Read and validate a job file; ``params`` override ``[job.params]``; ``INDEXER_URL`` overrides the url."""
    env = os.environ if env is None else env
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.__class__.__name__}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from None

    base_dir = path.resolve().parent
    source = raw.get("source")
    if isinstance(source, dict) and source.get("filename"):
        source["filename"] = str(base_dir / source["filename"])
    target = raw.setdefault("target", {})
    if isinstance(target, dict):
        if env.get(URL_ENV):
            target["url"] = env[URL_ENV]
        if target.get("ca_certs"):
            target["ca_certs"] = str(base_dir / target["ca_certs"])
    job = raw.get("job")
    if params and isinstance(job, dict):
        job["params"] = {**job.get("params", {}), **params}
    try:
        return Job(**raw, base_dir=base_dir, name=path.stem)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(path, exc)) from None
    except TypeError as exc:  # e.g. a top-level key given twice
        raise ConfigError(f"{path.name}: {exc}") from None


def load_transform(spec: str, base_dir: Path) -> Callable[[list[dict]], list[dict]]:
    """Import ``module:function``; the job file's folder is searched first."""
    module_name, _, func_name = spec.partition(":")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"job.transform: cannot import module {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - user code failing at import: SyntaxError, NameError...
        raise ConfigError(f"job.transform: importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"job.transform: {module_name!r} has no function {func_name!r}")
    return func


def utc_now() -> dt.datetime:
    """The only clock the pipeline reads (index names, run times); never used inside documents."""
    return dt.datetime.now(dt.timezone.utc)
