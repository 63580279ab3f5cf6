"""The cluster side: the only module that imports the Elasticsearch and OpenSearch clients.

::

    TargetConfig --open_engine()--> Engine --request()--> AsyncElasticsearch | AsyncOpenSearch --> cluster

Both clients are used through their ``perform_request`` so that one code path
serves both: each client still owns connection pooling, TLS, auth and the
transport-level retries. Bodies for ``_bulk`` arrive pre-encoded (NDJSON bytes,
see ``documents``) and pass through the clients untouched; responses are read
with ``filter_path`` so that only item status/result/error is parsed.

Who retries what (one policy, ``RetryPolicy``, bounded by ``target.max_retry_time``):

* the clients' transports retry nothing (``max_retries=0``), so attempts never multiply;
* :meth:`Engine.request` retries a whole request answered 429/502/503/504 or not
  answered at all (refused, reset, timed out), with exponential backoff and jitter;
* ``sink.Sender`` retries single bulk items answered 429/502/503/504 the same way,
  and splits a request answered 413.

Everything else is an error at once. The first request of a run (``GET /``) is
not retried: an unreachable cluster at start is a configuration problem.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from indexer.config import TargetConfig
from indexer.errors import ConfigError, EngineError

log = logging.getLogger(__name__)
RETRY_STATUSES = (429, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded in total time."""

    max_retry_time: float = 300.0
    initial: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int) -> float:
        # bandit B311 accepted: jitter, not a secret
        return min(self.cap, self.initial * 2**attempt) * random.uniform(0.5, 1.0)  # nosec B311
_BULK_FILTER = "errors,took,items.*.status,items.*.result,items.*.error.type,items.*.error.reason"
_JSON = {"accept": "application/json", "content-type": "application/json"}
_NDJSON = {"accept": "application/json", "content-type": "application/x-ndjson"}
# The elasticsearch client speaks the 8.x compatibility media types, which also
# makes it work against Elasticsearch 9.
_ES_JSON = "application/vnd.elasticsearch+json; compatible-with=8"
_ES_NDJSON = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"


def segment(name: str) -> str:
    """One URL path segment (an index, alias, template or document id), percent-encoded as UTF-8.

    Every path built from a name goes through here, so a non-ASCII alias such as
    ``adv-é`` reaches the cluster as ``adv-%C3%A9`` and never mis-encoded. ``*`` and
    ``,`` stay as they are: they are how a path names several indices.
    """
    return quote(name, safe="*,")


class ApiStatusError(EngineError):
    """The cluster answered with an error status."""

    def __init__(self, status: int, error_type: str, reason: str, what: str) -> None:
        self.status = status
        self.error_type = error_type
        self.reason = reason
        super().__init__(f"{what}: HTTP {status} {error_type}: {reason}".rstrip(": "))


class ProductCheckError(EngineError):
    """The elasticsearch client refused an answer without ``X-Elastic-Product: Elasticsearch``.

    ``body`` is that answer (for ``GET /``, the cluster's name and version).
    """

    def __init__(self, body: Any, what: str) -> None:
        self.body = body
        super().__init__(f"{what}: the server did not identify itself as Elasticsearch")


def _error_fields(body: Any) -> tuple[str, str]:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            root = (err.get("root_cause") or [err])[0]
            return str(root.get("type", "")), str(root.get("reason", ""))[:300]
        if isinstance(err, str):
            return err, ""
    return "", str(body)[:200] if body else ""


@dataclass
class ClusterInfo:
    flavor: str  # "opensearch" | "elasticsearch"
    version: str


class Engine:
    """A connected cluster. All calls go through :meth:`request`."""

    def __init__(self, client: Any, flavor: str, url: str, policy: RetryPolicy = RetryPolicy()) -> None:
        self.client = client
        self.flavor = flavor
        self.url = url
        self.policy = policy
        self.retries = 0  # whole requests retried, for the summary

    async def close(self) -> None:
        await self.client.close()

    # -------------------------------------------------------------- transport

    async def request(
        self, method: str, path: str, *, params: dict | None = None, body: Any = None,
        ndjson: bool = False, missing_ok: bool = False, what: str | None = None, retry: bool = True,
        failed_attempts: list[str] | None = None,
    ) -> Any:
        """Send one request, retrying per the policy; the parsed body, or None for a 404 when ``missing_ok``.

        ``failed_attempts`` (when given) collects why each earlier attempt failed.
        """
        what = what or f"{method} {path}"
        deadline = time.monotonic() + self.policy.max_retry_time
        attempt = 0
        while True:
            try:
                return await self._send(method, path, params, body, ndjson, missing_ok, what)
            except EngineError as exc:
                status = getattr(exc, "status", None)
                if not retry or (status is not None and status not in RETRY_STATUSES):
                    raise
                delay = self.policy.delay(attempt)
                if time.monotonic() + delay > deadline:
                    raise EngineError(f"{exc} (gave up after retrying for {self.policy.max_retry_time:g}s)") from None
                log.warning("%s failed (%s); retry %d in %.1fs", what, exc, attempt + 1, delay)
                self.retries += 1
                if failed_attempts is not None:
                    failed_attempts.append(str(exc))
                attempt += 1
                await asyncio.sleep(delay)

    async def _send(self, method: str, path: str, params: dict | None, body: Any, ndjson: bool,
                    missing_ok: bool, what: str) -> Any:
        try:
            if self.flavor == "elasticsearch":
                ctype = _ES_NDJSON if ndjson else _ES_JSON
                resp = await self.client.perform_request(
                    method, path, params=params, body=body,
                    headers={"accept": _ES_JSON, "content-type": ctype} if body is not None else {"accept": _ES_JSON},
                )
                return resp.body
            return await self.client.transport.perform_request(
                method, path, params=params, body=body, headers=_NDJSON if ndjson else _JSON,
            )
        except Exception as exc:  # noqa: BLE001 - mapped to our tree right here, by type
            if type(exc).__name__ == "UnsupportedProductError":  # the elasticsearch client's product check
                raise ProductCheckError(getattr(exc, "body", None), what) from None
            status, body_ = _status_of(exc)
            if status == 404 and missing_ok:
                return None
            if status is None:
                raise EngineError(f"{what}: cannot reach the cluster at {self.url}: {_reason_of(exc)}") from None
            etype, reason = _error_fields(body_)
            raise ApiStatusError(status, etype, reason, what) from None

    # -------------------------------------------------------------- operations

    async def info(self) -> ClusterInfo:
        return _cluster_info(await self.request("GET", "/", what="cluster info", retry=False))

    async def get_template(self, kind: str, name: str) -> dict | None:
        """The stored body of a component (``kind="component"``) or index template, or None."""
        path = _template_path(kind, name)
        body = await self.request("GET", path, missing_ok=True, what=f"get {kind} template {name}")
        if not body:
            return None
        items = body.get("component_templates" if kind == "component" else "index_templates", [])
        for item in items:
            if item.get("name") == name:
                return item.get("component_template" if kind == "component" else "index_template")
        return None

    async def put_template(self, kind: str, name: str, template: dict) -> None:
        await self.request("PUT", _template_path(kind, name), body=template, what=f"install {kind} template {name}")

    async def simulate_index(self, index: str) -> dict:
        """The settings the index templates would give a new index of this name."""
        body = await self.request("POST", f"/_index_template/_simulate_index/{segment(index)}",
                                  what=f"simulate index {index}")
        return (body or {}).get("template", {}).get("settings", {})

    async def create_index(self, index: str, settings: dict) -> None:
        await self.request("PUT", f"/{segment(index)}", body={"settings": settings}, what=f"create index {index}")

    async def put_settings(self, index: str, settings: dict) -> None:
        await self.request("PUT", f"/{segment(index)}/_settings", body=settings, what=f"update settings of {index}")

    async def refresh(self, index: str) -> None:
        await self.request("POST", f"/{segment(index)}/_refresh", what=f"refresh {index}")

    async def count(self, index: str) -> int:
        body = await self.request("GET", f"/{segment(index)}/_count", what=f"count {index}")
        return int(body["count"])

    async def exists(self, name: str) -> bool:
        body = await self.request("GET", f"/{segment(name)}", missing_ok=True, what=f"look up {name}")
        return body is not None

    async def alias_targets(self, alias: str) -> list[str]:
        body = await self.request("GET", f"/_alias/{segment(alias)}", missing_ok=True, what=f"look up alias {alias}")
        return sorted(body) if body else []

    async def write_index(self, alias: str) -> str:
        """The one index that writes through ``alias`` go to; EngineError when there is none.

        That is the alias's only index, or among several the one marked ``is_write_index``;
        otherwise every bulk item would fail with "no write index" (see ``sink``).
        """
        body = await self.request("GET", f"/_alias/{segment(alias)}", missing_ok=True, what=f"look up alias {alias}")
        if not body:
            raise EngineError(f"alias {alias!r} does not exist: run `indexer reindex` first")
        flags = {index: (entry.get("aliases") or {}).get(alias, {}).get("is_write_index")
                 for index, entry in body.items()}
        marked = [index for index, flag in flags.items() if flag is True]
        if len(marked) == 1:
            return marked[0]
        if len(flags) == 1 and False not in flags.values():
            return next(iter(flags))
        indices = ", ".join(sorted(flags))
        problem = (f"points at {len(flags)} indices ({indices}) and none is its write index" if len(flags) > 1
                   else f"points at 1 index ({indices}) marked is_write_index: false")
        raise EngineError(f"alias {alias!r} {problem}: sync cannot write through it; "
                          "run `indexer reindex` or fix the alias")

    async def indices_matching(self, pattern: str) -> list[str]:
        body = await self.request(
            "GET", f"/{segment(pattern)}/_settings/index.creation_date",
            params={"expand_wildcards": "open,closed"}, what=f"list indices {pattern}",
        )
        return sorted(body or {})

    async def update_aliases(self, actions: list[dict]) -> None:
        await self.request("POST", "/_aliases", body={"actions": actions}, what="update aliases")

    async def delete_index(self, index: str) -> None:
        await self.request("DELETE", f"/{segment(index)}", missing_ok=True, what=f"delete index {index}")

    async def bulk(self, target: str, body: bytes) -> dict:
        """Send one pre-encoded ``_bulk`` body to an index or alias; the filtered response.

        ``"resent": True`` in the answer when the body had to be sent more than
        once: an earlier attempt may have been applied without its answer arriving.
        """
        failed: list[str] = []
        response = await self.request(
            "POST", f"/{segment(target)}/_bulk", body=body, ndjson=True,
            params={"filter_path": _BULK_FILTER}, what=f"bulk into {target}", failed_attempts=failed,
        )
        return {**(response or {}), "resent": bool(failed)}


def _template_path(kind: str, name: str) -> str:
    return f"/_component_template/{segment(name)}" if kind == "component" else f"/_index_template/{segment(name)}"


def _status_of(exc: Exception) -> tuple[int | None, Any]:
    """(HTTP status or None for no answer, error body) from either client's exception."""
    meta = getattr(exc, "meta", None)
    if meta is not None and hasattr(exc, "body"):  # elasticsearch.ApiError
        return int(meta.status), exc.body
    status = getattr(exc, "status_code", None)  # opensearchpy.TransportError
    if isinstance(status, int):
        return status, getattr(exc, "info", None)
    return None, None


def _reason_of(exc: Exception) -> str:
    """A short cause for an unanswered request, without URLs or credentials."""
    text = f"{exc!r} {getattr(exc, 'message', '')} {getattr(exc, 'info', '')}"
    for pattern, reason in (
        (r"(?i)certificate.verify|CERTIFICATE_VERIFY_FAILED|SSLCertVerification", "TLS certificate not trusted (see target.ca_certs)"),
        (r"(?i)refused|Connect call failed", "connection refused"),
        (r"(?i)timed? ?out", "timed out"),
        (r"(?i)SSLError|wrong version number", "TLS handshake failed"),
        (r"(?i)name or service not known|nodename|getaddrinfo", "host name not found"),
        (r"(?i)reset|closed|disconnect", "connection closed by the server"),
    ):
        if re.search(pattern, text):
            return reason
    return type(exc).__name__


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(name: str | None, what: str, env: dict[str, str]) -> str | None:
    if name is None:
        return None
    value = env.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} ({what}) is not set")
    return value


def client_options(target: TargetConfig, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Auth and TLS settings shared by both clients, validated; secrets read from the environment."""
    env = os.environ if env is None else env
    parts = urlsplit(target.url)
    password = _secret(target.password_env, "target.password_env", env)
    api_key = _secret(target.api_key_env, "target.api_key_env", env)
    bearer = _secret(target.bearer_env, "target.bearer_env", env)
    if password is not None and target.username is None:
        raise ConfigError("target.password_env needs target.username")
    chosen = [name for name, value in (("username/password_env", password), ("api_key_env", api_key),
                                       ("bearer_env", bearer)) if value is not None]
    if len(chosen) > 1:
        raise ConfigError(f"choose one way to authenticate, not {' and '.join(chosen)}")
    has_credentials = any(v is not None for v in (password, api_key, bearer))
    if has_credentials and parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise ConfigError("refusing to send credentials over plain http:// to a non-loopback host (use https://)")
    return {
        "basic": (target.username, password) if password is not None else None,
        "api_key": api_key,
        "bearer": bearer,
        "ca_certs": str(target.ca_certs) if target.ca_certs else None,
        "verify_certs": target.verify_certs,
    }


def _make_client(flavor: str, target: TargetConfig, opts: dict[str, Any]) -> Any:
    common_retry = dict(max_retries=0, retry_on_timeout=False)  # Engine.request retries, once, here
    if flavor == "elasticsearch":
        from elasticsearch import AsyncElasticsearch, OrjsonSerializer

        kwargs: dict[str, Any] = dict(request_timeout=target.request_timeout, retry_on_status=(),
                                      serializer=OrjsonSerializer(), **common_retry)
        if target.url.startswith("https://") or target.cloud_id:
            # Our own context: elastic_transport skips the host name check for IP-address
            # URLs, which would accept any trusted certificate for any name.
            kwargs["ssl_context"] = _ssl_context(opts)
        if opts["basic"]:
            kwargs["basic_auth"] = opts["basic"]
        if opts["api_key"]:
            kwargs["api_key"] = opts["api_key"]
        if opts["bearer"]:
            kwargs["bearer_auth"] = opts["bearer"]
        if target.cloud_id:
            return AsyncElasticsearch(cloud_id=target.cloud_id, **kwargs)
        return AsyncElasticsearch(target.url, **kwargs)

    from opensearchpy import AsyncOpenSearch

    headers = {}
    if opts["api_key"]:
        headers["authorization"] = f"ApiKey {opts['api_key']}"
    if opts["bearer"]:
        headers["authorization"] = f"Bearer {opts['bearer']}"
    parts = urlsplit(target.url)
    return AsyncOpenSearch(
        hosts=[target.url], http_auth=opts["basic"], headers=headers or None, serializer=_orjson_serializer(),
        use_ssl=parts.scheme == "https", verify_certs=opts["verify_certs"], ca_certs=opts["ca_certs"],
        ssl_show_warn=False, timeout=target.request_timeout, retry_on_status=(),
        **common_retry,
    )


def _orjson_serializer() -> Any:
    """opensearch-py's JSON serializer, reading responses with orjson.

    The benchmark's profile put a quarter of the indexer's CPU in the standard
    library's json parsing bulk responses.
    """
    import orjson
    from opensearchpy.exceptions import SerializationError
    from opensearchpy.serializer import JSONSerializer

    class OrjsonSerializer(JSONSerializer):
        def loads(self, s: Any) -> Any:
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError as exc:
                raise SerializationError(s, exc) from None

    return OrjsonSerializer()


def _ssl_context(opts: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=opts["ca_certs"])
    if not opts["verify_certs"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _cluster_info(body: Any) -> ClusterInfo:
    """Which product answered ``GET /``: OpenSearch says so in ``version.distribution``."""
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, dict):
        return ClusterInfo("unknown", "?")
    return ClusterInfo(str(version.get("distribution", "elasticsearch")), str(version.get("number", "?")))


def _mismatch(target: TargetConfig, info: ClusterInfo) -> ConfigError:
    """The one line for ``target.engine`` naming the other product than the one that answered."""
    product = {"opensearch": "OpenSearch", "elasticsearch": "Elasticsearch"}.get(info.flavor)
    if product is None:
        return ConfigError(f"target.engine is {target.engine!r} but the server at {target.url} does not "
                           "answer GET / like Elasticsearch or OpenSearch")
    if info.flavor == target.engine:  # Elasticsearch older than 7.14 sends no product header
        return ConfigError(f"the cluster at {target.url} is {product} {info.version}, which the elasticsearch "
                           "client does not support (it needs 7.14 or later)")
    return ConfigError(f'target.engine is "{target.engine}" but the cluster at {target.url} is {product} '
                       f'{info.version}; set engine = "{info.flavor}" or "auto"')


async def open_engine(target: TargetConfig, env: dict[str, str] | None = None) -> Engine:
    """Connect and say hello (``GET /``, not retried); ``engine = "auto"`` picks the client from the answer."""
    opts = client_options(target, env)
    if target.cloud_id and target.engine == "opensearch":
        raise ConfigError("target.cloud_id is an Elastic Cloud setting; use engine = \"elasticsearch\"")
    if not target.verify_certs:
        log.warning("TLS certificate verification is OFF (target.verify_certs = false): "
                    "anyone on the network path can read and change what is sent")
    policy = RetryPolicy(max_retry_time=target.max_retry_time)
    flavor = target.engine
    if flavor == "auto":
        flavor = "elasticsearch" if target.cloud_id else "opensearch"
    engine = Engine(_make_client(flavor, target, opts), flavor, target.url, policy)
    try:
        info = await engine.info()
    except ProductCheckError as exc:
        await engine.close()
        raise _mismatch(target, _cluster_info(exc.body)) from None
    except BaseException:
        await engine.close()
        raise
    if target.engine == "opensearch" and info.flavor != "opensearch":
        await engine.close()
        raise _mismatch(target, info)
    if target.engine == "auto" and info.flavor != flavor:
        await engine.close()
        flavor = "opensearch" if info.flavor == "opensearch" else "elasticsearch"
        engine = Engine(_make_client(flavor, target, opts), flavor, target.url, policy)
    return engine
