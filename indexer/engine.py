"""The cluster side: one ``Engine`` per run, every request through it, under the one retry policy.

::

    cluster.open_engine() --> Engine --request()--> client (see ``clients``) --> cluster
                                     --bulk()-----> BulkAnswer (the items, and whether it was resent)

Both clients are used through their ``perform_request`` so that one code path
serves both: each client still owns connection pooling (every node of ``target.url``),
TLS, auth and the transport. Bodies for ``_bulk`` arrive pre-encoded (NDJSON bytes, see
``documents``) and pass through the clients untouched; responses are read with
``filter_path`` so that only item status/result/error is parsed. The clients'
exceptions become this package's (``ApiStatusError`` for an error status,
``EngineError`` for no answer) in ``Engine._send`` and nowhere else.

Who retries what (one policy, ``retry.RetryPolicy`` bounded by ``target.max_retry_time``,
kept as ``Engine.policy``; each operation's retries are one ``Retry``):

* the clients' transports retry nothing (``max_retries=0``), so attempts never multiply;
  their pools still take a node that did not answer out of the rotation for a while;
* :meth:`Engine.request` retries a whole request answered 429/502/503/504 or not
  answered at all (refused, reset, timed out), with exponential backoff and jitter;
  with several nodes, an unanswered request is first sent again at once, up to
  nodes - 1 times (failover: the pool picks another node), then by the backoff;
* ``sink`` retries single bulk items answered 429/502/503/504 with a ``Retry`` of
  the same policy (``engine.policy.start(...)``), and splits a request answered 413.

Every send after the first counts in ``Engine.retries`` and in the operation's ``Retry``
(so a bulk sent twice says it was resent). Everything else is an error at once. The first
request of a run (``GET /``) is retried only when answered 429/502/503/504, and unanswered
tries the other nodes at once: no node answering at start is a configuration problem (a
wrong url, a cluster down), a busy cluster is not.

Opening the cluster (the client chosen by ``GET /``) is ``cluster``'s; building a client and what its
exceptions say, ``clients``'. (About 460 lines: every call the tool makes to a cluster, each a few lines over
``request``, kept in one class so that the retry and error rules above have one home.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, overload
from urllib.parse import quote

from indexer import digest as digests
from indexer.clients import close_client, reason_of, status_of
from indexer.errors import EngineError
from indexer.retry import RETRY_STATUSES, Retry, RetryPolicy

log = logging.getLogger(__name__)
@dataclass(frozen=True)
class BulkAnswer:
    """One ``_bulk`` request's answer: an item (status, result, error) per action, in order."""

    items: list[dict]
    # The body had to be sent more than once: an earlier attempt may have been applied
    # without its answer arriving (so an "updated" item may be its own echo).
    resent: bool


# caused_by: Elasticsearch 8/9 give the telling part (an immense term, a number format) only there.
_BULK_FILTER = ("errors,took,items.*.status,items.*.result,items.*.error.type,items.*.error.reason,"
                "items.*.error.caused_by.type,items.*.error.caused_by.reason")
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
        self.what = what
        super().__init__(f"{what}: HTTP {status} {error_type}: {reason}".rstrip(": "))


# Elasticsearch's and OpenSearch's indexing-pressure refusal names the request's bytes and the node's limit.
_PRESSURE = re.compile(r"(?:coordinating|primary)_operation_bytes=(\d+), max_\w*?_bytes=(\d+)")


def never_fits(reason: str) -> bool:
    """A 429 for a request whose bytes alone exceed the node's indexing-pressure limit: retrying cannot help."""
    match = _PRESSURE.search(reason)
    return match is not None and int(match.group(1)) > int(match.group(2))


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
    """A connected cluster. All calls go through :meth:`request`.

    ``where`` names the cluster in messages (its node URLs); ``nodes``: how many the client's pool was given,
    so an unanswered request tries each other one at once before it waits."""

    def __init__(self, client: Any, flavor: str, where: str, policy: RetryPolicy = RetryPolicy(),
                 nodes: int = 1) -> None:
        self.client = client
        self.flavor = flavor
        self.where = where
        self.policy = policy
        self.nodes = nodes
        self.retries = 0  # whole requests sent again (failovers included), for the summary

    async def close(self) -> None:
        await close_client(self.client)

    # -------------------------------------------------------------- transport

    async def request(
        self, method: str, path: str, *, params: dict | None = None, body: Any = None,
        ndjson: bool = False, missing_ok: bool = False, what: str | None = None, retry: bool = True,
    ) -> Any:
        """Send one request, retried per the policy unless ``retry`` is False; the parsed body,
        or None for a 404 when ``missing_ok``."""
        what = what or f"{method} {path}"
        send = functools.partial(self._send, method, path, params, body, ndjson, missing_ok, what)
        return await self._retried(send, self.policy.start(what) if retry else None)

    async def _retried(self, send: Callable[[], Awaitable[Any]], retry: Retry | None) -> Any:
        """``send()`` again while it fails in a way worth retrying and ``retry`` allows: unanswered, first
        at once to another node while there is one not tried (``_failover``), then after a backoff.

        A 429 for a request larger than the node's whole indexing-pressure budget can never succeed:
        it is answered at once as a 413, which ``sink`` splits (never retried for max_retry_time)."""
        while True:
            try:
                return await send()
            except EngineError as exc:
                status = getattr(exc, "status", None)
                if isinstance(exc, ApiStatusError) and status == 429 and never_fits(exc.reason):
                    raise ApiStatusError(413, exc.error_type, "the request alone exceeds the node's indexing "
                                         f"pressure limit ({exc.reason[:200]})", exc.what) from exc
                if retry is None or (status is not None and status not in RETRY_STATUSES):
                    raise
                if self._failover(exc, retry):
                    continue
                # The error's text starts with what was being done, which ``retry`` says itself.
                await retry.wait(str(exc).removeprefix(f"{retry.what}: "))
                self.retries += 1

    def _failover(self, exc: EngineError, retry: Retry) -> bool:
        """Whether to send again at once: no answer came (``_send``'s EngineError without a status), and of the
        pool's nodes one is left untried by this operation. The pool has just marked the silent node dead, so its
        next pick is another (counted as a retry: the body may have been applied without its answer arriving)."""
        unanswered = getattr(exc, "status", None) is None and not isinstance(exc, ProductCheckError)
        if not unanswered or retry.failovers >= self.nodes - 1:
            return False
        retry.failover(str(exc).rpartition(": ")[2])  # the cause ``reason_of`` gave, after the cluster's URLs
        self.retries += 1
        return True

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
                raise ProductCheckError(getattr(exc, "body", None), what) from exc
            status, body_ = status_of(exc)
            if status == 404 and missing_ok:
                return None
            if status is None:
                raise EngineError(f"{what}: cannot reach the cluster at {self.where}: {reason_of(exc)}") from exc
            etype, reason = _error_fields(body_)
            raise ApiStatusError(status, etype, reason, what) from exc

    # -------------------------------------------------------------- operations

    async def info(self) -> ClusterInfo:
        """``GET /``, retried when the cluster answered 429/502/503/504 (busy, or a node restarting); unanswered,
        sent at once to each other node, then an error: no node answering at the start of a run is a wrong
        url or a cluster down."""
        retry = self.policy.start("cluster info")
        while True:
            try:
                return cluster_info(await self.request("GET", "/", what="cluster info", retry=False))
            except ApiStatusError as exc:
                if exc.status not in RETRY_STATUSES:
                    raise
                await retry.wait(str(exc).removeprefix("cluster info: "))
                self.retries += 1
            except EngineError as exc:  # unanswered (or the product check, which _failover leaves to the caller)
                if not self._failover(exc, retry):
                    raise

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

    async def index_templates(self) -> dict[str, dict]:
        """Every composable index template of the cluster, by name."""
        body = await self.request("GET", "/_index_template", what="list index templates") or {}
        return {t["name"]: t["index_template"] for t in body.get("index_templates", [])}

    async def mappings(self, index: str) -> dict:
        """The mappings of ``index`` as the engine stored them (its own shape, defaults left out)."""
        body = await self.request("GET", f"/{segment(index)}/_mapping", what=f"read the mappings of {index}")
        return (body or {}).get(index, {}).get("mappings", {})

    async def put_template(self, kind: str, name: str, template: dict) -> None:
        await self.request("PUT", _template_path(kind, name), body=template, what=f"install {kind} template {name}")

    async def simulate_index(self, index: str) -> dict:
        """The settings the index templates would give a new index of this name."""
        return (await self.simulate_template(index) or {}).get("settings", {})

    async def simulate_template(self, index: str) -> dict | None:
        """What the index templates would give a new index of this name (settings, mappings, aliases);
        None when no index template matches it (the cluster then answers an empty body)."""
        body = await self.request("POST", f"/_index_template/_simulate_index/{segment(index)}",
                                  what=f"simulate index {index}")
        return (body or {}).get("template")

    async def create_index(self, index: str, settings: dict, *, mappings: dict | None = None,
                           what: str | None = None) -> None:
        body = {"settings": settings, **({"mappings": mappings} if mappings is not None else {})}
        await self.request("PUT", f"/{segment(index)}", body=body, what=what or f"create index {index}")

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

    async def health(self, index: str) -> str:
        """The health of ``index``: green, yellow or red (red: a primary shard has no copy on a live node)."""
        # No wait_for_* asked: answered at once. (No "timeout" param either: opensearch-py takes it as its own.)
        body = await self.request("GET", f"/_cluster/health/{segment(index)}", what=f"the health of {index}") or {}
        return str(body.get("status", "unknown"))

    async def write_index(self, alias: str) -> str:
        """The one index that writes through ``alias`` go to; EngineError when there is none.

        That is the alias's only index, or among several the one marked ``is_write_index``;
        otherwise every bulk item would fail with "no write index" (see ``sink``). A red index (a
        primary shard with no copy on a live node) is refused too: its writes would wait, then fail,
        and a read of it would be partial.
        """
        body = await self.request("GET", f"/_alias/{segment(alias)}", missing_ok=True, what=f"look up alias {alias}")
        if not body:
            raise EngineError(f"alias {alias!r} does not exist: run `indexer reindex` first")
        flags = {index: (entry.get("aliases") or {}).get(alias, {}).get("is_write_index")
                 for index, entry in body.items()}
        marked = [index for index, flag in flags.items() if flag is True]
        if len(marked) == 1 or (len(flags) == 1 and False not in flags.values()):
            index = marked[0] if marked else next(iter(flags))
            if await self.health(index) == "red":
                raise EngineError(f"index {index} of alias {alias!r} is red (a primary shard has no copy on any live "
                                  "node): nothing was read or written; run again once the cluster is yellow or green")
            return index
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

    async def bulk(self, target: str, body: bytes) -> BulkAnswer:
        """Send one pre-encoded ``_bulk`` body to an index or alias (retried as a whole, see above)."""
        what = f"bulk into {target}"
        retry = self.policy.start(what)
        response = await self._retried(functools.partial(
            self._send, "POST", f"/{segment(target)}/_bulk", {"filter_path": _BULK_FILTER}, body, True, False, what,
        ), retry)
        return BulkAnswer(items=(response or {}).get("items") or [], resent=retry.attempts > 0)

    @overload
    def ids(self, index: str, *, page: int = ..., keep: str = ...,
            digest: Literal[False] = False) -> AsyncGenerator[list[str], None]: ...

    @overload
    def ids(self, index: str, *, page: int = ..., keep: str = ...,
            digest: Literal[True]) -> AsyncGenerator[list[tuple[str, str]], None]: ...

    async def ids(self, index: str, *, page: int = 10_000, keep: str = "5m",
                  digest: bool = False) -> AsyncGenerator[list[Any], None]:
        """Every document id of ``index``, a page at a time, in no particular order (``reconcile``);
        with ``digest``, ``(id, digest)`` pairs: each document's ``indexer_digest``, "" when it has none.

        A scroll sorted by ``_doc`` without ``_source``: the cheapest full read that OpenSearch 2
        and Elasticsearch 7-9 all serve (sorting by ``_id`` is refused from Elasticsearch 8 on, so
        the caller sorts). With ``digest`` the source is filtered to that one field (works whatever
        its mapping: no doc values needed; docs/reconcile.md). A continuation retried after an
        unanswered attempt may skip a page; the caller must treat a missing id as "maybe absent"
        (reconcile then re-indexes it, never deletes). The scroll is cleared at the end, also when
        the caller stops early.
        """
        fields = "_scroll_id,_shards.failed,hits.hits._id" + (f",hits.hits._source.{digests.FIELD}" if digest else "")
        params = {"scroll": keep, "filter_path": fields}
        what = f"read the ids of {index}"
        body = await self.request("POST", f"/{segment(index)}/_search", params=params, what=what,
                                  body={"size": page, "_source": [digests.FIELD] if digest else False,
                                        "sort": ["_doc"]}) or {}
        scroll_id = body.get("_scroll_id")
        try:
            while hits := _whole(body, what).get("hits", {}).get("hits"):
                if digest:
                    yield [(hit["_id"], digests.of_source(hit.get("_source"))) for hit in hits]
                else:
                    yield [hit["_id"] for hit in hits]
                body = await self.request("POST", "/_search/scroll", params={"filter_path": params["filter_path"]},
                                          body={"scroll": keep, "scroll_id": scroll_id}, what=what) or {}
                scroll_id = body.get("_scroll_id") or scroll_id
        finally:
            if scroll_id:
                with contextlib.suppress(EngineError):  # it expires on its own after ``keep``
                    await asyncio.shield(self.request("DELETE", "/_search/scroll", body={"scroll_id": [scroll_id]},
                                                      missing_ok=True, retry=False, what="clear scroll"))

    # -------------------------------------------------------------- documents (the state store's)

    async def get_doc(self, index: str, doc_id: str, *, what: str | None = None, retry: bool = True) -> dict | None:
        """The document (``_source``, ``_seq_no``, ``_primary_term``); None when it or its index is missing."""
        body = await self.request("GET", _doc_path(index, "_doc", doc_id), missing_ok=True,
                                  what=what or f"read document {doc_id} of {index}", retry=retry)
        return body if body and body.get("found") else None

    async def put_doc(
        self, index: str, doc_id: str, body: dict, *, if_seq_no: int | None = None,
        if_primary_term: int | None = None, create: bool = False, refresh: bool = True,
        what: str | None = None, retry: bool = True,
    ) -> None:
        """Write a document: only if absent (``create``), or only over the version read
        (``if_seq_no``/``if_primary_term``); either refused is ApiStatusError 409."""
        await self.request("PUT", _doc_path(index, "_create" if create else "_doc", doc_id),
                           params=_doc_params(if_seq_no, if_primary_term, refresh), body=body,
                           what=what or f"write document {doc_id} of {index}", retry=retry)

    async def delete_doc(self, index: str, doc_id: str, *, if_seq_no: int, if_primary_term: int,
                         refresh: bool = True, what: str | None = None) -> None:
        """Delete a document only if it is still the version read (else ApiStatusError 409)."""
        await self.request("DELETE", _doc_path(index, "_doc", doc_id),
                           params=_doc_params(if_seq_no, if_primary_term, refresh),
                           what=what or f"delete document {doc_id} of {index}")


def _whole(body: dict, what: str) -> dict:
    """A search page that every shard answered; EngineError when some failed (a red index, a node lost
    mid-read): the page would look complete while it is not."""
    failed = (body.get("_shards") or {}).get("failed", 0)
    if failed:
        raise EngineError(f"{what}: {failed} shard(s) did not answer (a red index, or a node lost mid-read); "
                          "nothing was concluded from a partial read")
    return body


def _doc_path(index: str, api: str, doc_id: str) -> str:
    return f"/{segment(index)}/{api}/{segment(doc_id)}"


def _doc_params(if_seq_no: int | None, if_primary_term: int | None, refresh: bool) -> dict | None:
    params: dict[str, Any] = {}
    if if_seq_no is not None:
        params |= {"if_seq_no": if_seq_no, "if_primary_term": if_primary_term}
    if refresh:
        params["refresh"] = "true"
    return params or None


def _template_path(kind: str, name: str) -> str:
    return f"/_component_template/{segment(name)}" if kind == "component" else f"/_index_template/{segment(name)}"


def cluster_info(body: Any) -> ClusterInfo:
    """Which product answered ``GET /``: OpenSearch says so in ``version.distribution``."""
    version = body.get("version") if isinstance(body, dict) else None
    if not isinstance(version, dict):
        return ClusterInfo("unknown", "?")
    return ClusterInfo(str(version.get("distribution", "elasticsearch")), str(version.get("number", "?")))
