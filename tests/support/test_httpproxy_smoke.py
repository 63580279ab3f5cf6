"""Smoke test of tests/support/httpproxy.py against the real search node (no mocks).

The node URL comes from INDEXER_TEST_UPSTREAM (default: the node under test, tests/support/harness.py);
the client is the one the indexer uses for that engine: the elasticsearch 8.x client for
Elasticsearch 8 and 9, opensearch-py for OpenSearch. Every index created here is named
``proxytest-*`` and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.support import harness
from tests.support.httpproxy import Faults, ProxyServer, path_kind

UPSTREAM = os.environ.get("INDEXER_TEST_UPSTREAM", harness.ENGINE_URL)

if harness.CLIENT_ENGINE == "elasticsearch":
    from elasticsearch import ApiError, AsyncElasticsearch, ConnectionTimeout
    from elasticsearch import ConnectionError as ClientConnectionError
    from elasticsearch.helpers import async_bulk, async_streaming_bulk

    def client(proxy, **kw):
        kw.setdefault("request_timeout", 30)
        return AsyncElasticsearch(proxy.url, **kw)

    def status_of(exc) -> int:
        return exc.meta.status

    async def create_index(es, index, settings=None):
        await es.indices.create(index=index, settings=settings)

    async def bulk(es, operations):
        return await es.bulk(operations=operations)

    async def index_doc(es, index, document, id=None, refresh=False):
        return await es.index(index=index, id=id, document=document, refresh=refresh)

    async def info_within(es, seconds):
        return await es.options(request_timeout=seconds).info()
else:
    from opensearchpy import AsyncOpenSearch, ConnectionTimeout
    from opensearchpy import ConnectionError as ClientConnectionError
    from opensearchpy import TransportError as ApiError
    from opensearchpy.helpers import async_bulk, async_streaming_bulk

    def client(proxy, request_timeout=30, **kw):
        return AsyncOpenSearch(hosts=[proxy.url], timeout=request_timeout, **kw)

    def status_of(exc) -> int:
        return exc.status_code

    async def create_index(es, index, settings=None):
        await es.indices.create(index=index, body={"settings": settings} if settings else None)

    async def bulk(es, operations):
        return await es.bulk(body=operations)

    async def index_doc(es, index, document, id=None, refresh=False):
        return await es.index(index=index, id=id, body=document, refresh=refresh)

    async def info_within(es, seconds):
        return await es.info(request_timeout=seconds)


@pytest.fixture(scope="module")
def proxy(engine_url):
    before = set(threading.enumerate())
    with ProxyServer(upstream=UPSTREAM) as p:
        yield p
    assert set(threading.enumerate()) <= before


@pytest.fixture
def index(proxy):
    proxy.reset()
    name = f"proxytest-{uuid.uuid4().hex[:12]}"
    yield name
    proxy.reset()
    req = urllib.request.Request(f"{UPSTREAM}/{name}", method="DELETE")
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise


def docs(index, ids, op="index"):
    for i in ids:
        yield {"_op_type": op, "_index": index, "_id": str(i), "n": i, "text": f"doc {i}"}


async def count(es, index) -> int:
    await es.indices.refresh(index=index)
    return (await es.count(index=index))["count"]


def test_path_kind():
    assert path_kind("/") == "root"
    assert path_kind("/idx") == "index"
    assert path_kind("/idx/_bulk") == "_bulk"
    assert path_kind("/_cluster/health") == "_cluster"
    assert path_kind("/idx/_doc/1") == "_doc"


@pytest.mark.parametrize("compress", [False, True])
def test_roundtrip_through_the_proxy(proxy, index, compress):
    async def run():
        async with client(proxy, http_compress=compress) as es:
            info = await es.info()
            assert harness.engine_kind_of(info) == harness.ENGINE_KIND
            await create_index(es, index, {"number_of_replicas": 0})
            assert await es.indices.exists(index=index)  # HEAD
            ok, errors = await async_bulk(es, docs(index, range(200)), chunk_size=50)
            assert (ok, errors) == (200, [])
            assert await count(es, index) == 200
            assert (await es.get(index=index, id="7"))["_source"]["n"] == 7
            await es.indices.delete(index=index)
            assert not await es.indices.exists(index=index)

    asyncio.run(run())
    assert proxy.stats.requests["_bulk"] == 4
    assert proxy.stats.bytes_received > 0 and proxy.stats.bytes_sent > 0


def test_bulk_item_429_then_retry_succeeds(proxy, index):
    proxy.faults.bulk_item_429_fraction = 0.25
    proxy.faults.bulk_item_429_attempts = 2
    actions = lambda: [*docs(index, range(100)), *docs(index, range(100, 200), "create")]

    async def run():
        async with client(proxy) as es:
            await create_index(es, index, {"number_of_replicas": 0})
            # No retries: exactly the selected documents come back as 429s.
            failed = []
            async for ok, item in async_streaming_bulk(
                es, actions(), chunk_size=64, max_retries=0, raise_on_error=False
            ):
                if not ok:
                    (op, res), = item.items()
                    assert res["status"] == 429
                    assert res["error"]["type"] == "es_rejected_execution_exception"
                    failed.append(res["_id"])
            assert 0 < len(failed) < 200
            assert proxy.stats.bulk_items_rejected == len(failed)
            assert await count(es, index) == 200 - len(failed)

            # Each selected document is rejected once more, then forwarded.
            # raise_on_error=False is required: with True the helper raises on the
            # first item-level 429 instead of retrying (elastic/elasticsearch-py#864).
            results = [ok async for ok, _ in async_streaming_bulk(
                es, docs(index, range(200)), chunk_size=64, max_retries=3,
                initial_backoff=0.01, raise_on_error=False,
            )]
            assert results == [True] * 200
            assert proxy.stats.bulk_items_rejected == 2 * len(failed)
            assert await count(es, index) == 200

            # Deletes (no source line) go through the same path.
            proxy.reset()
            proxy.faults.bulk_item_429_fraction = 0.5
            ok, errors = await async_bulk(
                es, docs(index, range(40), "delete"), max_retries=2, initial_backoff=0.01,
                raise_on_error=False,
            )
            assert (ok, errors) == (40, [])
            assert proxy.stats.bulk_items_rejected > 0
            assert await count(es, index) == 160

    asyncio.run(run())


def test_request_status_503_n_times(proxy, index):
    async def run():
        async with client(proxy, max_retries=0) as es:
            await create_index(es, index)
            proxy.faults.request_status = 503
            proxy.faults.request_status_count = 2
            await es.info()  # not a _bulk path: untouched
            for _ in range(2):
                with pytest.raises(ApiError) as exc:
                    await bulk(es, [{"index": {"_index": index, "_id": "1"}}, {"a": 1}])
                assert status_of(exc.value) == 503
            assert proxy.faults.request_status is None
            resp = await bulk(es, [{"index": {"_index": index, "_id": "1"}}, {"a": 1}])
            assert not resp["errors"]

        # The client's own retry-on-503 rides out a transient fault.
        proxy.faults.request_status, proxy.faults.request_status_count = 503, 2
        async with client(proxy, max_retries=3) as es:
            assert not (await bulk(es, [{"delete": {"_index": index, "_id": "1"}}]))["errors"]

    asyncio.run(run())
    assert proxy.stats.status_injected == 4


def test_max_request_bytes_413(proxy, index):
    proxy.faults.max_request_bytes = 2000

    async def run():
        async with client(proxy, max_retries=0) as es:
            await create_index(es, index)
            with pytest.raises(ApiError) as exc:
                await index_doc(es, index, {"text": "x" * 5000}, id="big")
            assert status_of(exc.value) == 413
            await index_doc(es, index, {"text": "x"}, id="small", refresh=True)
            assert await count(es, index) == 1

    asyncio.run(run())
    assert proxy.stats.too_large == 1


def test_connection_resets(proxy, index):
    async def run():
        async with client(proxy, max_retries=0) as es:
            await create_index(es, index)
            # POST (no _id): aiohttp silently resends idempotent requests once
            # when a reused keep-alive connection dies, which would hide the fault.
            proxy.faults.reset_before_forward = 1
            with pytest.raises(ClientConnectionError):
                await index_doc(es, index, {"n": 1}, refresh=True)
            assert await count(es, index) == 0
            proxy.faults.reset_connection_after_forward = 1
            with pytest.raises(ClientConnectionError):
                await index_doc(es, index, {"n": 2}, refresh=True)
            # The engine did apply the write whose answer was lost.
            assert await count(es, index) == 1

    asyncio.run(run())
    assert proxy.stats.resets_before_forward == 1
    assert proxy.stats.resets_after_forward == 1


def test_pause(proxy, index):
    proxy.faults.pause_seconds = 0.3

    async def run():
        async with client(proxy, max_retries=0) as es:
            start = time.monotonic()
            await es.info()
            assert time.monotonic() - start >= 0.3
            with pytest.raises(ConnectionTimeout):
                await info_within(es, 0.1)

    asyncio.run(run())


def test_faults_clear_and_standalone_stop(engine_url):
    faults = Faults(request_status=429, reset_before_forward=3, seed=7)
    faults.clear()
    assert faults == Faults(seed=7)
    before = set(threading.enumerate())
    with ProxyServer(upstream=UPSTREAM) as p:
        assert len(set(threading.enumerate()) - before) == 1
        with urllib.request.urlopen(p.url, timeout=10) as resp:
            # the node's own headers, passed through: Elasticsearch names itself, OpenSearch does not
            expected = "Elasticsearch" if harness.CLIENT_ENGINE == "elasticsearch" else None
            assert resp.headers.get("X-Elastic-Product") == expected
    assert set(threading.enumerate()) <= before
