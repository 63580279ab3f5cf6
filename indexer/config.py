"""The job file: one typed object, validated once at the edge, with every default here.

A job file is TOML with three tables (``[source]``, ``[target]``, ``[job]``); see
docs/job-file.md. Unknown fields are errors, relative paths are relative to
the job file, and secrets are never values: only the *names* of environment
variables that hold them (``password_env``, ``api_key_env``...). Each field's ``description``
is its documentation (``indexer.reference`` writes docs/config-reference.md from them). (About
490 lines: the model, its descriptions and every check of it stay together, in one place; ``ChildSettings``,
a ``[[job.children]]`` table, shares ``JobSettings``' checks and is part of it.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from indexer import sources

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

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*$")

_TRAILING_SEMICOLONS = re.compile(r"[\s;]+$")


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


# source.dbtype's choices: the registered databases, in the registry's order (the reference lists them so).
# A Literal built at run time, which a type checker cannot read: to it, a str.
if TYPE_CHECKING:
    DbType = str
else:
    DbType = Literal[sources.DBTYPES]


class SourceConfig(_Model):
    """Where rows come from: etlhelper's DbParams fields plus the password's variable name. The fields each
    database requires are its module's (``indexer.sources``); the descriptions below name them, and
    test_sources.py checks that they still do."""

    dbtype: DbType = Field(description="The database type (any case).")
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
        db = sources.dialect(self.dbtype)  # its module says which fields it connects with (etlhelper's DbParams)
        missing = [f for f in db.required if getattr(self, f) is None]
        if missing:
            raise ValueError(f"dbtype {self.dbtype} needs {', '.join(missing)}")
        if db.needs_password and self.password_env is None:
            raise ValueError(f"dbtype {self.dbtype} needs password_env (the name of the variable holding the password)")
        return self


class TargetConfig(_Model):
    """The cluster. Secrets come from the environment variables named here."""

    # Kept as one string (several nodes joined by commas) so that code and job files reading ``url`` as a
    # string still work; ``urls`` is the list the clients are given.
    url: str | list[str] = Field(DEFAULT_URL, description="The cluster, http(s)://host:port[/path], without "
                                 "credentials or a query; several nodes (failover): an array of such URLs, or one "
                                 f"string of them separated by commas, all http or all https. The environment "
                                 f"variable {URL_ENV} overrides it.")
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
    sniff: bool = Field(False, description="Also use the nodes the cluster names (GET /_nodes/_all/http), asked "
                        "at the start and after a node fails; off: only the nodes in url.")

    _env = field_validator("password_env", "api_key_env", "bearer_env")(
        classmethod(lambda cls, v: _check_env_name(v))
    )

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any) -> str:
        if isinstance(value, str):
            return check_url(value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return ",".join(_check_urls(value))
        raise ValueError("must be a URL, an array of URLs, or URLs separated by commas")

    @model_validator(mode="after")
    def _basic_auth_needs_both(self) -> TargetConfig:
        # Either half alone used to be ignored silently: a cluster then answers 401 with no hint why.
        if self.username is not None and self.password_env is None:
            raise _field_error("username", "needs password_env (the name of the variable holding the password)")
        if self.password_env is not None and self.username is None:
            raise _field_error("password_env", "needs username (basic auth takes both)")
        if self.sniff and self.cloud_id:
            raise _field_error("sniff", "is not for Elastic Cloud (target.cloud_id): its endpoint already spreads "
                               "the requests over the deployment's nodes")
        return self

    @property
    def urls(self) -> list[str]:
        """The nodes of ``url``, in the order given (the clients' pools shuffle them)."""
        return self.url.split(",") if isinstance(self.url, str) else list(self.url)

    @property
    def where(self) -> str:
        """The cluster as messages name it: its node URLs (checked to carry no credentials), or the Cloud ID's
        deployment name (the url is unused then)."""
        return f"Elastic Cloud deployment {self.cloud_id.split(':', 1)[0]!r}" if self.cloud_id else ", ".join(self.urls)


def check_url(value: str) -> str:
    """The cluster's URL without a trailing slash, or several separated by commas (``INDEXER_URL``, ``--url``),
    each checked (see ``_check_urls``) and joined again by commas; ValueError when one is not right."""
    return ",".join(_check_urls(value.split(",")))


def _check_urls(values: list[str]) -> list[str]:
    """Each node's URL checked (never echoed before it passed: it may carry credentials) and without a trailing
    slash; at least one, none twice, all of one scheme."""
    urls = []
    for value in (v.strip() for v in values):
        if not value:
            raise ValueError("names no node" if len(values) == 1 else "has an empty entry (two commas in a row, or "
                             "one at an end)")
        if "@" in value or "?" in value or "#" in value or not re.match(r"^https?://[^/@\s]+(:\d+)?(/.*)?$", value):
            raise ValueError("must look like http(s)://host:port[/path], without credentials or a query "
                             "(use username/password_env or api_key_env)")
        urls.append(value.rstrip("/"))
    if len({url.split("://", 1)[0] for url in urls}) > 1:
        raise ValueError("mixes http:// and https:// nodes: name every node of the cluster with the same scheme")
    # Host names are not case-sensitive (and the elasticsearch client refuses two equal nodes with a traceback).
    lowered = [url.lower() for url in urls]
    twice = next((url for n, url in enumerate(urls) if lowered[n] in lowered[:n]), None)
    if twice is not None:
        raise ValueError(f"names the node {twice} twice")
    if not urls:
        raise ValueError("names no node")
    return urls


MAX_CHILD_DEPTH = 3  # children, grandchildren, great-grandchildren


class ChildSettings(_Model):
    """One ``[[job.children]]`` table: rows of another query that become a field of each parent document (an
    array of objects with ``many``, else one object or null), joined on ``parent_key`` = the parent's key.
    Its ``key`` starts with ``parent_key``: the order the rows are read and merged in, and inside the array."""

    name: str = Field(description="The field of the parent document the child rows become.")
    query: str = Field(min_length=1, description="The SELECT of the child rows; it returns parent_key's columns.")
    parent_key: list[str] = Field(min_length=1, description="This query's columns equal to the parent's key, in "
                                  "the parent key's order (left out of each child object).")
    key: list[str] = Field(min_length=1, description="Unique per child row, starting with parent_key: the order "
                           "the rows are read in, and inside the array.")
    many: bool = Field(True, description="An array of objects ([] when none); false: one object, or null.")
    watermark: str | None = Field(None, description="The child's column that grows when a row changes; required "
                                  "when job.watermark is set (sync sees a child's changes by it).")
    lookback: str | int | float | None = Field(None, description="As job.lookback, for this child (default: "
                                               "job.lookback).")
    deleted: str | None = Field(None, description="Soft-delete flag column: such child rows are left out.")
    children: list[ChildSettings] = Field(default_factory=list, description="Grandchildren: the same table "
                                          "again; their parent_key names this child's key.")

    @field_validator("watermark", "deleted")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return JobSettings._identifier(value)

    @field_validator("name")
    @classmethod
    def _field_name(cls, value: str) -> str:
        if not SQL_IDENTIFIER.match(value):
            raise ValueError("must be a plain name (letters, digits, _)")
        return value.lower()

    @field_validator("query")
    @classmethod
    def _no_trailing_semicolon(cls, value: str) -> str:
        return JobSettings._no_trailing_semicolon(value) or ""

    @field_validator("parent_key", "key")
    @classmethod
    def _columns(cls, value: list[str]) -> list[str]:
        if any(not SQL_IDENTIFIER.match(c) for c in value):
            raise ValueError("must be plain column names (letters, digits, _)")
        lowered = [c.lower() for c in value]
        if len(set(lowered)) != len(lowered):
            raise ValueError("names a column twice")
        return lowered

    @field_validator("lookback")
    @classmethod
    def _lookback(cls, value: str | int | float | None) -> str | int | float | None:
        return None if value is None else JobSettings._lookback(value)

    @model_validator(mode="after")
    def _key_orders_the_rows(self) -> ChildSettings:
        if self.key[:len(self.parent_key)] != self.parent_key:
            raise _field_error("key", f"must start with parent_key {self.parent_key} (the child rows are read "
                               "in this order)")
        if self.many and len(self.key) == len(self.parent_key):
            raise _field_error("key", "with many = true it needs a column beyond parent_key (what orders the array)")
        _check_children(self.children, self.key, "key")
        return self


def _check_children(children: list[ChildSettings], key: list[str], what: str) -> None:
    """The rules between a parent (its ``key``, named ``what`` in errors) and its children: distinct names,
    parent_key as long as the parent's key."""
    names = [child.name for child in children]
    for i, child in enumerate(children):
        if child.name in names[:i]:
            raise _field_error("children", f"{child.name!r} is given to two children of one parent")
        if len(child.parent_key) != len(key):
            raise _field_error("children", f"{child.name!r}: parent_key names {len(child.parent_key)} column(s) "
                               f"but the parent's {what} has {len(key)} ({key})")


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
    load_replicas: int = Field(default=0, ge=0, le=10, description="Replicas of the new index while a reindex loads "
                               "it (the templates' count is restored before the swap): 0 writes each document once; "
                               "1 lets a reindex on a multi-node cluster survive the loss of a node.")
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
    every: str | None = Field(None, description="sync --every: this job's own pause between passes (30s, 5m, 1h; "
                              "at least 1s), instead of the option's.")
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
    children: list[ChildSettings] = Field(default_factory=list, description="Nested documents: [[job.children]] "
                                          "tables, each a query whose rows become a field of every document.")
    digest: bool | None = Field(None, description="Store a digest of each document (field indexer_digest) so that "
                                "reconcile compares content, not only ids; default: on with children, off without.")

    def descendants(self) -> list[ChildSettings]:
        """Every child at every depth, parents before their children."""
        found: list[ChildSettings] = []
        todo = list(self.children)
        while todo:
            child = todo.pop(0)
            found.append(child)
            todo.extend(child.children)
        return found

    @property
    def digest_on(self) -> bool:
        """Whether documents carry ``indexer_digest`` (job.digest, else: whether the job has children)."""
        return bool(self.children) if self.digest is None else self.digest

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

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from indexer.watermark import parse_duration

        if parse_duration(value).total_seconds() < 1:
            raise ValueError("must be a duration of at least 1s, like 30s, 5m or 1h")
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(tcp|tls)://[^\s/]+:\d+/?$", value):
            raise ValueError("must be a Dask scheduler address, tcp://HOST:PORT (or tls://HOST:PORT)")
        return value

    @model_validator(mode="after")
    def _children_fit_the_job(self) -> JobSettings:
        _check_children(self.children, self.key, "key (job.key)")
        if _depth(self.children) > MAX_CHILD_DEPTH:
            raise _field_error("children", f"children nest at most {MAX_CHILD_DEPTH} levels")
        if self.watermark:
            unwatched = _unwatched(self.children)
            if unwatched:
                raise _field_error("children", f"{unwatched!r} needs a watermark because job.watermark is set (sync "
                                   "must see this child's changes)")
        if self.children and self.partitions > 1 and self.partition_by != self.key[0]:
            raise _field_error("partition_by", f"with children it must be job.key[0] ({self.key[0]!r}), so that each "
                               "slice reads its own children")
        return self

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


def _depth(children: list[ChildSettings]) -> int:
    """How many levels of children hang below a parent (0: none)."""
    return max((1 + _depth(child.children) for child in children), default=0)


def _unwatched(children: list[ChildSettings], prefix: str = "") -> str | None:
    """The path (``lines.product``) of the first child, at any depth, without a watermark."""
    for child in children:
        path = f"{prefix}{child.name}"
        if child.watermark is None:
            return path
        deeper = _unwatched(child.children, f"{path}.")
        if deeper:
            return deeper
    return None


class Job(_Model):
    """A validated job file. ``base_dir`` is the job file's folder."""

    source: SourceConfig = Field(description="Where rows come from: etlhelper's DbParams fields.")
    target: TargetConfig = Field(TargetConfig(), description="The cluster; every field has a default.")
    job: JobSettings = Field(description="What to copy and how.")
    base_dir: Path = Field(Path("."), description="Not in the file: the job file's folder (set by load_job).")
    name: str = Field("job", description="Not in the file: the job file's name without .toml (set by load_job).")
