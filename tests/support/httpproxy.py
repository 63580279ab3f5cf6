"""Fault-injecting HTTP reverse proxy in front of a real search node. TEST-ONLY.

It sits between a client (the indexer CLI, a Python client) and the real node
(OpenSearch, Elasticsearch 8 or 9) and injects faults for reliability tests.
``ProxyServer.faults`` is a mutable :class:`Faults`; requests that match no
active fault are forwarded untouched, and every answer that is not an injected
fault comes from the node.  Answers the proxy makes up itself (injected errors,
a merged ``_bulk`` answer) carry the node's ``X-Elastic-Product`` header when
the node sends one, as the node itself does on every answer.  Usage::

    with ProxyServer(upstream="http://127.0.0.1:9200") as proxy:
        proxy.faults.request_status = 503
        proxy.faults.request_status_count = 2
        ...  # point the client at proxy.url, then inspect proxy.stats

TLS mode: pass ``ssl_context`` (a server-side :class:`ssl.SSLContext` holding a
certificate for the loopback address, e.g. from ``trustme``) and the proxy
serves ``https://`` on loopback; ``url`` then starts with ``https://``.  The hop
to the upstream node stays plain http.  Used to test certificate verification
against the real node without giving the node itself a certificate.

Things that surprise when writing tests against it:

* aiohttp-based clients (elasticsearch, opensearch-py async) silently resend an
  idempotent request (GET/PUT/DELETE/HEAD) once when a reused keep-alive
  connection dies, so a single reset on a PUT may never surface; use POST or
  a count of 2.
* ``elasticsearch.helpers`` only retries item-level 429s when
  ``raise_on_error=False`` (elastic/elasticsearch-py#864).
* Request bodies are seen decoded (aiohttp inflates gzip), so
  ``max_request_bytes`` and ``bytes_received`` count uncompressed bytes.
* ``_bulk`` requests with ``filter_path`` get the item-429 fault too, as long as
  the filter keeps ``items.*.status`` (every item then stays in the answer, in
  order, which the merge relies on).
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import socket
import ssl
import struct
import threading
import zlib
from dataclasses import dataclass, field, fields
from typing import Callable

import aiohttp
from aiohttp import web

__all__ = ["Faults", "ProxyStats", "ProxyServer", "is_bulk_path", "path_kind"]

# RFC 9110 hop-by-hop headers plus the ones aiohttp must compute itself.
# Content-Encoding is dropped from requests because aiohttp's server has
# already decompressed the body we read.
_DROP_REQUEST = frozenset(
    "connection keep-alive proxy-authenticate proxy-authorization proxy-connection "
    "te trailer transfer-encoding upgrade host content-length content-encoding".split()
)
_DROP_RESPONSE = frozenset(
    "connection keep-alive proxy-authenticate proxy-connection te trailer "
    "transfer-encoding upgrade content-length".split()
)
# Error types the engine itself uses for these statuses, so that clients which
# branch on ``error.type`` behave as they would against a real cluster.
_ERROR_TYPES = {
    413: "content_too_long_exception",
    429: "es_rejected_execution_exception",
    503: "unavailable_shards_exception",
}


def path_kind(path: str) -> str:
    """Coarse endpoint name used for counters: last ``_api`` segment, else index/root."""
    parts = [p for p in path.split("/") if p]
    apis = [p for p in parts if p.startswith("_")]
    return apis[-1] if apis else ("index" if parts else "root")


def is_bulk_path(method: str, path: str) -> bool:
    return path_kind(path) == "_bulk"


def any_path(method: str, path: str) -> bool:
    return True


@dataclass
class Faults:
    """Faults applied by the proxy; assign fields from the test thread at any time.

    Counted faults (``*_count``, ``reset_*``) are decremented by the proxy
    under ``_lock``; a count reaching zero disables that fault.
    """

    # _bulk: reject a seeded pseudo-random subset of documents with item-level
    # 429s; each selected document is rejected on its first N sends only.
    bulk_item_429_fraction: float = 0.0
    bulk_item_429_attempts: int = 1
    seed: int = 0
    # Whole-request status for requests matching request_status_match;
    # request_status_count None means "until cleared".
    request_status: int | None = None
    request_status_count: int | None = None
    request_status_match: Callable[[str, str], bool] = is_bulk_path
    reset_before_forward: int = 0
    reset_connection_after_forward: int = 0
    # the requests the two resets apply to (counted only when they match)
    reset_match: Callable[[str, str], bool] = any_path
    pause_seconds: float = 0.0
    max_request_bytes: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def clear(self) -> None:
        """Disable every fault (the seed is kept so selections stay reproducible)."""
        with self._lock:
            for f in fields(self):
                if f.name not in ("_lock", "seed"):
                    setattr(self, f.name, f.default)

    def _take(self, name: str) -> bool:
        with self._lock:
            n = getattr(self, name)
            if n > 0:
                setattr(self, name, n - 1)
                return True
            return False

    def _take_status(self, method: str, path: str) -> int | None:
        with self._lock:
            status, count = self.request_status, self.request_status_count
            if status is None or not self.request_status_match(method, path):
                return None
            if count is not None:
                if count <= 0:
                    return None
                self.request_status_count = count - 1
                if count == 1:
                    self.request_status = self.request_status_count = None
            return status


@dataclass
class ProxyStats:
    """Counters updated by the proxy thread; read them from the test."""

    requests: collections.Counter = field(default_factory=collections.Counter)
    bulk_items_seen: int = 0
    bulk_items_rejected: int = 0
    status_injected: int = 0
    too_large: int = 0
    resets_before_forward: int = 0
    resets_after_forward: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0

    def reset(self) -> None:
        for f in fields(self):
            setattr(self, f.name, collections.Counter() if f.name == "requests" else 0)


def _error_body(status: int, reason: str) -> bytes:
    etype = _ERROR_TYPES.get(status, "injected_fault_exception")
    err = {"type": etype, "reason": reason}
    return json.dumps({"error": {"root_cause": [err], **err}, "status": status}).encode()


def _parse_bulk(body: bytes, default_index: str | None) -> list[tuple[str, dict, list[bytes]]]:
    """Split an NDJSON bulk body into (op, metadata, raw lines) per action."""
    lines = [ln for ln in body.split(b"\n") if ln.strip()]
    actions, i = [], 0
    while i < len(lines):
        action = json.loads(lines[i])
        (op, meta), = action.items()
        meta = dict(meta)
        meta.setdefault("_index", default_index)
        n = 1 if op == "delete" else 2
        actions.append((op, meta, lines[i : i + n]))
        i += n
    return actions


class ProxyServer:
    """Reverse proxy on its own event loop in a daemon thread.

    ``start()``/``stop()`` or use as a context manager.  ``url`` is valid after
    start; ``faults`` and ``stats`` may be used at any time.
    """

    def __init__(self, upstream: str = "http://127.0.0.1:9200", *,
                 host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        self.upstream = upstream.rstrip("/")
        self.ssl_context = ssl_context
        # X-Elastic-Product as last sent by the node (Elasticsearch sends it on every answer), or None
        self.upstream_product: str | None = None
        self.host, self.port = host, port
        self.faults = faults or Faults()
        self.stats = ProxyStats()
        self._rejections: collections.Counter = collections.Counter()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def __enter__(self) -> ProxyServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Clear faults, counters and the per-document rejection memory."""
        self.faults.clear()
        self.stats.reset()
        self._rejections.clear()

    def start(self) -> ProxyServer:
        self._thread = threading.Thread(target=self._run, name="httpproxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            self._thread.join(5)
            raise RuntimeError("proxy failed to start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("proxy thread did not stop")
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start() if it happens early
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        # auto_decompress off: compressed bodies pass through byte-for-byte.
        self._session = aiohttp.ClientSession(
            auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent"),
            timeout=aiohttp.ClientTimeout(total=300))
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2)
        try:
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await runner.cleanup()
            await self._session.close()

    # -- request handling -------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        resp = await self._dispatch(request)
        transport = request.transport
        if transport is not None and not transport.is_closing():
            self.stats.bytes_sent += len(resp.body or b"")
        return resp

    async def _dispatch(self, request: web.Request) -> web.Response:
        faults, stats = self.faults, self.stats
        path, method = request.path, request.method
        stats.requests[path_kind(path)] += 1
        body = await request.read()
        stats.bytes_received += len(body)

        if faults.pause_seconds > 0:
            await asyncio.sleep(faults.pause_seconds)
        if faults.reset_match(method, path) and faults._take("reset_before_forward"):
            stats.resets_before_forward += 1
            return self._reset(request)
        limit = faults.max_request_bytes
        if limit is not None and len(body) > limit:
            stats.too_large += 1
            return self._respond(413, _error_body(
                413, f"request body is too large ({len(body)} > {limit} bytes)"))
        status = faults._take_status(method, path)
        if status is not None:
            stats.status_injected += 1
            return self._respond(status, _error_body(status, "injected by test proxy"))

        headers = self._request_headers(request)
        if is_bulk_path(method, path) and faults.bulk_item_429_fraction > 0 and body:
            resp = await self._bulk_with_rejections(request, headers, body)
        else:
            resp = await self._forward(method, request.path_qs, headers, body)
        if faults.reset_match(method, path) and faults._take("reset_connection_after_forward"):
            stats.resets_after_forward += 1
            return self._reset(request)
        return resp

    def _request_headers(self, request: web.Request) -> dict[str, str]:
        headers = {}
        for name, value in request.headers.items():
            if name.lower() in _DROP_REQUEST:
                continue
            headers[name] = value
        return headers

    async def _forward(self, method: str, path_qs: str, headers: dict, body: bytes
                       ) -> web.Response:
        try:
            async with self._session.request(method, self.upstream + path_qs,
                                             headers=headers, data=body or None) as up:
                payload = await up.read()
                self.upstream_product = up.headers.get("X-Elastic-Product")
                # HEAD keeps the upstream Content-Length: it describes the GET body.
                drop = _DROP_RESPONSE - {"content-length"} if method == "HEAD" else _DROP_RESPONSE
                out = [(k, v) for k, v in up.headers.items() if k.lower() not in drop]
                return self._respond(up.status, payload, out)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return self._respond(502, _error_body(502, f"upstream unreachable: {exc!r}"))

    def _respond(self, status: int, body: bytes, headers: list | None = None) -> web.Response:
        if headers is None:  # made up here: dressed as the node dresses its own answers
            headers = [("Content-Type", "application/json; charset=UTF-8")]
            if self.upstream_product is not None:
                headers.append(("X-Elastic-Product", self.upstream_product))
        return web.Response(status=status, body=body, headers=headers)

    @staticmethod
    def _reset(request: web.Request) -> web.Response:
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                # Linger 0 turns close into a TCP RST, i.e. "connection reset by peer".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        # aiohttp swallows the ConnectionError from writing this to a dead transport.
        return web.Response(status=500)

    async def _bulk_with_rejections(self, request: web.Request, headers: dict, body: bytes
                                    ) -> web.Response:
        faults, stats = self.faults, self.stats
        default_index = request.match_info["tail"].split("/")[0] or None
        if default_index == "_bulk":
            default_index = None
        try:
            actions = _parse_bulk(body, default_index)
        except (ValueError, TypeError):
            # Malformed bulk: let the engine produce its own error.
            return await self._forward(request.method, request.path_qs, headers, body)
        stats.bulk_items_seen += len(actions)

        rejected: set[int] = set()
        for pos, (op, meta, lines) in enumerate(actions):
            # Documents without _id are keyed by content so retries still match.
            key = f"{meta['_index']}/{meta.get('_id') or zlib.crc32(lines[-1])}"
            # Seeding per key makes the selection independent of batching and order.
            chosen = random.Random(f"{faults.seed}:{key}").random() < faults.bulk_item_429_fraction
            if chosen and self._rejections[key] < faults.bulk_item_429_attempts:
                self._rejections[key] += 1
                rejected.add(pos)
        stats.bulk_items_rejected += len(rejected)

        upstream_items: list = []
        took, errors = 0, False
        forwarded = [a for i, a in enumerate(actions) if i not in rejected]
        if forwarded:
            sub = b"\n".join(ln for _, _, lines in forwarded for ln in lines) + b"\n"
            # The upstream answer must be parsed, so ask for it uncompressed.
            headers = {**headers, "Accept-Encoding": "identity"}
            resp = await self._forward(request.method, request.path_qs, headers, sub)
            if resp.status != 200:
                return resp
            parsed = json.loads(resp.body)
            upstream_items, took, errors = parsed["items"], parsed.get("took", 0), parsed["errors"]
        items, it = [], iter(upstream_items)
        for pos, (op, meta, _) in enumerate(actions):
            if pos not in rejected:
                items.append(next(it))
                continue
            reason = "rejected execution of bulk item [injected by test proxy]"
            items.append({op: {"_index": meta["_index"], "_id": meta.get("_id"), "status": 429,
                               "error": {"type": _ERROR_TYPES[429], "reason": reason}}})
        merged = {"took": took, "errors": errors or bool(rejected), "items": items}
        return self._respond(200, json.dumps(merged).encode())


class RecordingProxy(ProxyServer):
    """A proxy that remembers every Authorization header it was sent (the node behind it checks none)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.authorizations: list[str] = []

    async def _dispatch(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return await super()._dispatch(request)
