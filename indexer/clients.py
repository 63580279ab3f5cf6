"""Client construction: the only module that imports the Elasticsearch and OpenSearch clients.

::

    TargetConfig + environment --client_options()--> auth and TLS, validated --make_client()--> client
    client --close_client()--> closed, with every connection it opened (also those its pool dropped)
    a client's exception --status_of()--> (HTTP status, error body) | --reason_of()--> why no answer came

``cluster.open_engine`` calls the first two and wraps the client in an ``Engine``. Secrets
are read from the environment variables the job file names, here and nowhere else.
The clients' transports retry nothing (``max_retries=0``): ``Engine`` retries, once,
by its ``RetryPolicy``. Several nodes in ``target.url`` go to the client's own pool
(elastic_transport's ``NodePool``, opensearch-py's ``ConnectionPool``): it takes a node that
did not answer out of its rotation for a while, so the request ``Engine`` sends again goes to
another node (docs/failures.md, "Several nodes: failover").
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from indexer.config import TargetConfig
from indexer.errors import ConfigError


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(name: str | None, what: str, env: Mapping[str, str]) -> str | None:
    if name is None:
        return None
    value = env.get(name)
    if not value:
        raise ConfigError(f"environment variable {name} ({what}) is not set")
    return value


def client_options(target: TargetConfig, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Auth and TLS settings shared by both clients, validated; secrets read from the environment."""
    environ: Mapping[str, str] = os.environ if env is None else env
    password = _secret(target.password_env, "target.password_env", environ)
    api_key = _secret(target.api_key_env, "target.api_key_env", environ)
    bearer = _secret(target.bearer_env, "target.bearer_env", environ)
    if password is not None and target.username is None:
        raise ConfigError("target.password_env needs target.username")
    chosen = [name for name, value in (("username/password_env", password), ("api_key_env", api_key),
                                       ("bearer_env", bearer)) if value is not None]
    if len(chosen) > 1:
        raise ConfigError(f"choose one way to authenticate, not {' and '.join(chosen)}")
    has_credentials = any(v is not None for v in (password, api_key, bearer))
    # Every node: the pool may send any request, credentials included, to any of them.
    exposed = [url for url in target.urls
               if urlsplit(url).scheme == "http" and not _is_loopback(urlsplit(url).hostname or "")]
    if has_credentials and exposed:
        raise ConfigError(f"refusing to send credentials over plain http:// to a non-loopback host ({exposed[0]}; "
                          "use https://)")
    return {
        "basic": (target.username, password) if password is not None else None,
        "api_key": api_key,
        "bearer": bearer,
        "ca_certs": str(target.ca_certs) if target.ca_certs else None,
        "verify_certs": target.verify_certs,
    }


def make_client(flavor: str, target: TargetConfig, opts: dict[str, Any]) -> Any:
    """An ``AsyncElasticsearch`` (``flavor="elasticsearch"``) or ``AsyncOpenSearch`` for the target, every
    node of ``target.url`` in its pool."""
    https = target.urls[0].startswith("https://")  # one scheme for all (TargetConfig checks)
    if flavor == "elasticsearch":
        from elasticsearch import AsyncElasticsearch, OrjsonSerializer

        # max_retries=0: Engine.request retries, once, there. A node that did not answer (refused, reset,
        # timed out) is still marked dead in the pool for 1 s, doubling up to 30 s (elastic_transport).
        kwargs: dict[str, Any] = dict(request_timeout=target.request_timeout, retry_on_status=(),
                                      serializer=OrjsonSerializer(), max_retries=0, retry_on_timeout=False)
        if target.sniff:
            kwargs |= dict(sniff_on_start=True, sniff_on_node_failure=True)
        if https or target.cloud_id:
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
        return AsyncElasticsearch(target.urls, **kwargs)

    from opensearchpy import AsyncOpenSearch

    headers = {}
    if opts["api_key"]:
        headers["authorization"] = f"ApiKey {opts['api_key']}"
    if opts["bearer"]:
        headers["authorization"] = f"Bearer {opts['bearer']}"
    # max_retries=0: Engine.request retries, once, there. opensearch-py marks a node dead only for a failure it
    # would retry: retry_on_timeout=True makes a timed-out node leave the rotation too (for 60 s, doubling), and
    # with max_retries=0 retries nothing itself. (One node: a pool that never marks it dead.)
    sniff: dict[str, Any] = dict(sniff_on_start=True, sniff_on_connection_fail=True) if target.sniff else {}
    return AsyncOpenSearch(
        hosts=target.urls, http_auth=opts["basic"], headers=headers or None, serializer=_orjson_serializer(),
        use_ssl=https, verify_certs=opts["verify_certs"], ca_certs=opts["ca_certs"],
        ssl_show_warn=False, timeout=target.request_timeout, retry_on_status=(), max_retries=0,
        retry_on_timeout=True, connection_class=_connection_class(), **sniff,
    )


async def close_client(client: Any) -> None:
    """Close the client and every connection it opened. opensearch-py's ``close`` closes only the connections
    its pool holds as live: one marked dead (a node that did not answer), or dropped when a sniff replaced the
    pool, would be reported unclosed at exit (see ``_connection_class``)."""
    await client.close()
    for connection in getattr(getattr(getattr(client, "transport", None), "connection_class", None), "opened", ()):
        await connection.close()  # idempotent


def _connection_class() -> type:
    """opensearch-py's aiohttp connection, remembering every instance (a class per client)."""
    from opensearchpy import AIOHttpConnection

    class Connection(AIOHttpConnection):
        opened: list[Any] = []

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.opened.append(self)

    return Connection


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
                raise SerializationError(s, exc) from exc

    return OrjsonSerializer()


def _ssl_context(opts: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=opts["ca_certs"])
    if not opts["verify_certs"]:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# ------------------------------------------------------------------ what a client's exception says


def status_of(exc: Exception) -> tuple[int | None, Any]:
    """(HTTP status or None for no answer, error body) from either client's exception."""
    meta = getattr(exc, "meta", None)
    if meta is not None and hasattr(exc, "body"):  # elasticsearch.ApiError
        return int(meta.status), exc.body
    status = getattr(exc, "status_code", None)  # opensearchpy.TransportError
    if isinstance(status, int):
        return status, getattr(exc, "info", None)
    return None, None


def reason_of(exc: Exception) -> str:
    """A short cause for an unanswered request, without URLs or credentials."""
    text = f"{exc!r} {getattr(exc, 'message', '')} {getattr(exc, 'info', '')}"
    for pattern, reason in (
        (r"(?i)certificate.verify|CERTIFICATE_VERIFY_FAILED|SSLCertVerification",
         "TLS certificate not trusted (see target.ca_certs)"),
        (r"(?i)refused|Connect call failed", "connection refused"),
        (r"(?i)timed? ?out", "timed out"),
        (r"(?i)SSLError|wrong version number", "TLS handshake failed"),
        (r"(?i)name or service not known|nodename|getaddrinfo", "host name not found"),
        (r"(?i)reset|closed|disconnect", "connection closed by the server"),
    ):
        if re.search(pattern, text):
            return reason
    return type(exc).__name__
