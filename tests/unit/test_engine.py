"""indexer.engine without a cluster: the paths both clients put on the wire, the documents of the state
store, the write index, the ids of an index; every request retried by the one policy (which answers, how
long, which not) and what a bulk answer says about it.

A tiny HTTP server on a loopback port (``fakes.FakeCluster``) stands in for the cluster where the real
opensearch-py and elasticsearch clients must build and send the requests; elsewhere a client whose transport
answers from a script (``fakes.ScriptedClient``, the library's real exception types). What the real node
does with those paths is covered by tests/integration/test_engine_paths.py; the faults by tests/faults.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import parse_qsl, urlsplit

import pytest
from opensearchpy.exceptions import ConnectionError as OSConnectionError
from opensearchpy.exceptions import TransportError

from indexer.cluster import open_engine
from indexer.config import TargetConfig
from indexer.engine import ApiStatusError, BulkAnswer, Engine, ProductCheckError, segment
from indexer.errors import ConfigError, EngineError
from indexer.retry import RetryPolicy
from tests.support.fakes import FakeCluster, ScriptedClient, pressure

OPENSEARCH_ROOT = {"name": "n1", "version": {"distribution": "opensearch", "number": "2.19.1"}}
INDEX = "adv-é-20260101000000"
ENCODED = "adv-%C3%A9-20260101000000"
FAST = RetryPolicy(max_retry_time=2.0, initial=0.001, cap=0.005)


# ---------------------------------------------------------------- names in paths


def test_segment_percent_encodes_one_name_as_utf8_and_keeps_wildcards_and_commas():
    assert segment("adv-é") == "adv-%C3%A9"
    assert segment("a/b") == "a%2Fb" and segment("50%") == "50%25" and segment("a b") == "a%20b"
    assert segment("adv-é-*,other") == "adv-%C3%A9-*,other"


def _generic_answer(method: str, path: str):
    if path == "/":
        return OPENSEARCH_ROOT
    if path.endswith("/_count"):
        return {"count": 0}
    if path.startswith("/_alias/"):
        return {INDEX: {"aliases": {"adv-é": {}}}}
    if path.startswith("/_cluster/health/"):
        return {"status": "green"}
    if path.endswith("/_bulk"):
        return {"errors": False, "items": []}
    return {}


def _against(answer, flavor: str, calls) -> tuple[object, FakeCluster]:
    """``await calls(engine)`` with an engine connected to a FakeCluster answering ``answer``; its result and the
    cluster."""
    async def run():
        async with FakeCluster(answer) as cluster:
            engine = await open_engine(TargetConfig(url=cluster.url, engine=flavor), env={})
            try:
                return await calls(engine), cluster
            finally:
                await engine.close()

    return asyncio.run(run())


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
def test_every_path_built_from_a_name_reaches_the_wire_percent_encoded_once(flavor):
    async def calls(engine):
        await engine.get_template("component", "tpl-é")
        await engine.put_template("index", "tpl-é", {"index_patterns": ["adv-é-*"]})
        await engine.simulate_index(INDEX)
        await engine.create_index(INDEX, {})
        await engine.put_settings(INDEX, {})
        await engine.refresh(INDEX)
        await engine.count(INDEX)
        await engine.exists(INDEX)
        await engine.alias_targets("adv-é")
        await engine.write_index("adv-é")
        await engine.indices_matching("adv-é-*")
        await engine.bulk("adv-é", b'{"index":{"_id":"1"}}\n{}\n')
        await engine.get_doc("indexer-state", "adv-é")
        await engine.put_doc("indexer-state", "adv-é", {"alias": "adv-é"}, create=True)
        await engine.put_doc("indexer-state", "adv-é", {}, if_seq_no=1, if_primary_term=1)
        await engine.delete_doc("indexer-state", "adv-é", if_seq_no=1, if_primary_term=1)
        await engine.delete_index(INDEX)

    assert _against(_generic_answer, flavor, calls)[1].paths() == [
        "/",
        "/_component_template/tpl-%C3%A9",
        "/_index_template/tpl-%C3%A9",
        f"/_index_template/_simulate_index/{ENCODED}",
        f"/{ENCODED}",
        f"/{ENCODED}/_settings",
        f"/{ENCODED}/_refresh",
        f"/{ENCODED}/_count",
        f"/{ENCODED}",
        "/_alias/adv-%C3%A9",
        "/_alias/adv-%C3%A9",
        f"/_cluster/health/{ENCODED}",
        "/adv-%C3%A9-*/_settings/index.creation_date",
        "/adv-%C3%A9/_bulk",
        "/indexer-state/_doc/adv-%C3%A9",
        "/indexer-state/_create/adv-%C3%A9",
        "/indexer-state/_doc/adv-%C3%A9",
        "/indexer-state/_doc/adv-%C3%A9",
        f"/{ENCODED}",
    ]


# ---------------------------------------------------------------- documents (the state store's)


def _doc_answer(method: str, path: str):
    if path == "/":
        return OPENSEARCH_ROOT
    if path == "/indexer-state/_doc/found":
        return {"found": True, "_seq_no": 3, "_primary_term": 1, "_source": {"alias": "found"}}
    if path == "/indexer-state/_doc/gone":
        return {"found": False}
    return {}


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
def test_document_calls_carry_their_compare_and_set_condition_and_refresh(flavor):
    async def calls(engine):
        found = await engine.get_doc("indexer-state", "found")
        gone = await engine.get_doc("indexer-state", "gone")
        await engine.put_doc("indexer-state", "a", {"alias": "a"}, create=True)
        await engine.put_doc("indexer-state", "a", {"alias": "a"})
        await engine.put_doc("indexer-state", "a", {"alias": "a"}, if_seq_no=3, if_primary_term=1, refresh=False)
        await engine.delete_doc("indexer-state", "a", if_seq_no=4, if_primary_term=2)
        await engine.create_index("indexer-state", {"index": {"number_of_shards": 1}}, mappings={"dynamic": False})
        return found, gone

    (found, gone), cluster = _against(_doc_answer, flavor, calls)
    lines, bodies = [line.split(" ") for line in cluster.request_lines[1:]], cluster.bodies[1:]
    sent = [(method, urlsplit(target).path, dict(parse_qsl(urlsplit(target).query))) for method, target, _ in lines]
    assert found == {"found": True, "_seq_no": 3, "_primary_term": 1, "_source": {"alias": "found"}}
    assert gone is None
    assert sent == [
        ("GET", "/indexer-state/_doc/found", {}),
        ("GET", "/indexer-state/_doc/gone", {}),
        ("PUT", "/indexer-state/_create/a", {"refresh": "true"}),
        ("PUT", "/indexer-state/_doc/a", {"refresh": "true"}),
        ("PUT", "/indexer-state/_doc/a", {"if_seq_no": "3", "if_primary_term": "1"}),
        ("DELETE", "/indexer-state/_doc/a", {"if_seq_no": "4", "if_primary_term": "2", "refresh": "true"}),
        ("PUT", "/indexer-state", {}),
    ]
    assert [json.loads(b) for b in bodies[2:5]] == [{"alias": "a"}] * 3
    assert json.loads(bodies[-1]) == {"settings": {"index": {"number_of_shards": 1}}, "mappings": {"dynamic": False}}


# ---------------------------------------------------------------- the write index


class AliasClient:
    """Stands in for opensearch-py: GET /_alias/<name> answers ``body``."""

    def __init__(self, body, health="green"):
        self.body = body
        self.health = health
        self.transport = self

    async def perform_request(self, method, path, params=None, body=None, headers=None):
        return {"status": self.health} if path.startswith("/_cluster/health/") else self.body

    async def close(self):
        pass


def write_index(body, health="green") -> str:
    return asyncio.run(Engine(AliasClient(body, health), "opensearch", "http://127.0.0.1:9200").write_index("sensors"))


def test_the_write_index_of_an_alias_over_one_index_is_that_index():
    assert write_index({"sensors-1": {"aliases": {"sensors": {}}}}) == "sensors-1"
    assert write_index({"sensors-1": {"aliases": {"sensors": {"is_write_index": True}}}}) == "sensors-1"


def test_the_write_index_among_several_is_the_one_marked():
    assert write_index({"sensors-1": {"aliases": {"sensors": {"is_write_index": False}}},
                        "sensors-2": {"aliases": {"sensors": {"is_write_index": True}}},
                        "sensors-3": {"aliases": {"sensors": {}}}}) == "sensors-2"


def test_an_alias_over_several_indices_without_a_write_index_is_an_engine_error():
    with pytest.raises(EngineError) as raised:
        write_index({"sensors-2": {"aliases": {"sensors": {}}}, "sensors-1": {"aliases": {"sensors": {}}}})
    assert str(raised.value) == (
        "alias 'sensors' points at 2 indices (sensors-1, sensors-2) and none is its write index: sync cannot "
        "write through it; run `indexer reindex` or fix the alias")
    assert not isinstance(raised.value, ConfigError)


def test_an_alias_whose_only_index_is_marked_not_for_writes_is_an_engine_error():
    with pytest.raises(EngineError, match=r"points at 1 index \(sensors-1\) marked is_write_index: false"):
        write_index({"sensors-1": {"aliases": {"sensors": {"is_write_index": False}}}})


def test_a_red_write_index_is_refused_before_anything_is_read_or_written():
    assert write_index({"sensors-1": {"aliases": {"sensors": {}}}}, health="yellow") == "sensors-1"
    with pytest.raises(EngineError, match=r"index sensors-1 of alias 'sensors' is red \(a primary shard has no copy"):
        write_index({"sensors-1": {"aliases": {"sensors": {}}}}, health="red")


def test_a_missing_alias_has_no_write_index():
    with pytest.raises(EngineError, match="alias 'sensors' does not exist"):
        write_index(None)


# ---------------------------------------------------------------- the ids of an index (reconcile)


class ScrollClient:
    """Answers a scroll page by page (a list of pages of ids); records (method, path, params, body)."""

    def __init__(self, pages):
        self.pages = list(pages)
        self.calls = []
        self.transport = self

    async def perform_request(self, method, path, params=None, body=None, headers=None):
        self.calls.append((method, path, params, body))
        if method == "DELETE":
            return {"succeeded": True}
        page = self.pages.pop(0) if self.pages else []
        hits = [{"_id": i} if isinstance(i, str) else {"_id": i[0], **({"_source": i[1]} if i[1] is not None else {})}
                for i in page]  # an id, or (id, _source) with the _source as a filtered hit has it
        return {"_scroll_id": f"s{len(self.calls)}", **({"hits": {"hits": hits}} if page else {})}

    async def close(self):
        pass


def _ids(pages, stop_after=None):
    client = ScrollClient(pages)

    async def read():
        got = []
        async for page in Engine(client, "opensearch", "http://127.0.0.1:9200").ids("adv-é", page=2):
            got.append(page)
            if stop_after is not None and len(got) == stop_after:
                break
        return got

    return asyncio.run(read()), client.calls


def test_ids_scroll_every_page_without_source_and_clear_the_scroll():
    got, calls = _ids([["a", "b"], ["c"]])
    assert got == [["a", "b"], ["c"]]
    first, *follow, clear = calls
    assert first[:2] == ("POST", "/adv-%C3%A9/_search")
    assert first[3] == {"size": 2, "_source": False, "sort": ["_doc"]} and first[2]["scroll"]
    assert [c[:2] for c in follow] == [("POST", "/_search/scroll")] * 2
    assert follow[0][3]["scroll_id"] == "s1" and follow[1][3]["scroll_id"] == "s2"
    assert clear[:2] == ("DELETE", "/_search/scroll") and clear[3] == {"scroll_id": ["s3"]}


def test_ids_with_digest_read_only_that_field_of_each_source_and_pair_it_with_the_id():
    digest = "0123456789abcdef0123456789abcdef"
    client = ScrollClient([[("a", {"indexer_digest": digest}), ("b", {})], [("c", None)]])

    async def read():
        engine = Engine(client, "opensearch", "http://127.0.0.1:9200")
        return [page async for page in engine.ids("adv", page=2, digest=True)]

    assert asyncio.run(read()) == [[("a", digest), ("b", "")], [("c", "")]]   # no digest: "" (counted changed)
    first = client.calls[0]
    assert first[3] == {"size": 2, "_source": ["indexer_digest"], "sort": ["_doc"]}
    assert first[2]["filter_path"].endswith(",hits.hits._id,hits.hits._source.indexer_digest")
    assert client.calls[1][2]["filter_path"] == first[2]["filter_path"]


def test_ids_clear_the_scroll_when_the_reader_stops_early():
    got, calls = _ids([["a", "b"], ["c", "d"], ["e"]], stop_after=1)
    assert got == [["a", "b"]]
    assert calls[-1][:2] == ("DELETE", "/_search/scroll")


def test_a_page_some_shards_did_not_answer_is_an_error_not_a_shorter_read():
    # a red index, or a node lost mid-read: the page looks whole, but some shards' ids are missing
    client = ScrollClient([["a", "b"], ["c"]])
    answer = client.perform_request

    async def partial(method, path, params=None, body=None, headers=None):
        page = await answer(method, path, params, body, headers)
        return {**page, "_shards": {"failed": 1}} if path == "/_search/scroll" else page

    client.perform_request = partial

    async def read():
        return [page async for page in Engine(client, "opensearch", "http://127.0.0.1:9200").ids("adv", page=2)]

    with pytest.raises(EngineError, match=r"read the ids of adv: 1 shard\(s\) did not answer"):
        asyncio.run(read())
    assert "_shards.failed" in client.calls[0][2]["filter_path"]
    assert client.calls[-1][:2] == ("DELETE", "/_search/scroll")  # cleared all the same


def test_the_ids_of_an_empty_index_are_no_pages():
    got, calls = _ids([])
    assert got == [] and [c[0] for c in calls] == ["POST", "DELETE"]


# ---------------------------------------------------------------- whole requests retried by the one policy


def unavailable():
    return TransportError(503, "unavailable", {"error": {"type": "unavailable_shards_exception", "reason": "busy"}})


def request(client, policy=FAST, **kwargs):
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", policy)
    return asyncio.run(engine.request("POST", "/x/_bulk", body=b"{}\n", **kwargs)), engine


def test_a_request_answered_503_is_retried_until_it_succeeds():
    client = ScriptedClient(unavailable(), unavailable(), {"items": []})
    body, engine = request(client)
    assert body == {"items": []}
    assert client.transport.calls == 3 and engine.retries == 2


def test_a_request_that_got_no_answer_is_retried():
    client = ScriptedClient(OSConnectionError("N/A", "Connection reset by peer", None), {"ok": True})
    body, _ = request(client)
    assert body == {"ok": True} and client.transport.calls == 2


def test_a_request_answered_503_past_the_retry_time_is_an_engine_error():
    client = ScriptedClient(unavailable())
    started = time.monotonic()
    with pytest.raises(EngineError, match=r"HTTP 503 unavailable_shards_exception.*gave up after retrying for 0\.1s"):
        request(client, RetryPolicy(max_retry_time=0.1, initial=0.001, cap=0.01))
    assert time.monotonic() - started < 1.0
    assert client.transport.calls > 2


def test_a_request_refused_for_good_is_raised_at_once():
    client = ScriptedClient(TransportError(401, "security_exception",
                                           {"error": {"type": "security_exception", "reason": "no"}}))
    with pytest.raises(ApiStatusError, match="401 security_exception"):
        request(client)
    assert client.transport.calls == 1


def test_no_retry_when_asked_not_to():
    client = ScriptedClient(OSConnectionError("N/A", "Connection refused", None), {"ok": True})
    with pytest.raises(EngineError, match="connection refused"):
        request(client, retry=False)
    assert client.transport.calls == 1


def info(client):
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", FAST)
    return asyncio.run(engine.info()), engine


def test_the_first_get_is_retried_when_the_cluster_answers_busy():
    # found by the chaos soak: every run that started inside a 503 storm failed at once
    client = ScriptedClient(unavailable(), unavailable(), OPENSEARCH_ROOT)
    found, engine = info(client)
    assert found.flavor == "opensearch" and client.transport.calls == 3 and engine.retries == 2


def test_the_first_get_unanswered_fails_at_once():
    client = ScriptedClient(OSConnectionError("N/A", "Connection refused", None), OPENSEARCH_ROOT)
    with pytest.raises(EngineError, match="cluster info: cannot reach the cluster"):
        info(client)
    assert client.transport.calls == 1


def test_the_error_after_the_retry_time_names_the_request_once_and_keeps_the_last_failure_for_debug():
    client = ScriptedClient(unavailable())
    with pytest.raises(EngineError) as caught:
        request(client, RetryPolicy(max_retry_time=0.05, initial=0.001, cap=0.01), what="bulk into sensors")
    assert str(caught.value) == ("bulk into sensors: HTTP 503 unavailable_shards_exception: busy "
                                 "(gave up after retrying for 0.05s)")
    last = caught.value.__context__
    assert isinstance(last, ApiStatusError) and last.status == 503
    assert isinstance(last.__cause__, TransportError)  # the client's own exception, for --debug


def test_an_unanswered_request_keeps_the_clients_exception_as_its_cause():
    client = ScriptedClient(OSConnectionError("N/A", "Connection refused", None))
    with pytest.raises(EngineError) as caught:
        request(client, retry=False)
    assert str(caught.value) == "POST /x/_bulk: cannot reach the cluster at http://127.0.0.1:9200: connection refused"
    assert isinstance(caught.value.__cause__, OSConnectionError)


# ---------------------------------------------------------------- bulk answers


ITEMS = [{"index": {"status": 201, "result": "created"}}]


def bulk(client):
    engine = Engine(client, "opensearch", "http://127.0.0.1:9200", FAST)
    return asyncio.run(engine.bulk("sensors", b'{"index":{}}\n{}\n')), engine


def test_a_bulk_answered_at_once_was_not_resent_and_carries_only_its_items():
    answer, engine = bulk(ScriptedClient({"took": 3, "errors": False, "items": ITEMS}))
    assert answer == BulkAnswer(items=ITEMS, resent=False) and engine.retries == 0


def test_a_bulk_sent_again_after_a_failed_attempt_says_it_was_resent():
    client = ScriptedClient(OSConnectionError("N/A", "Connection reset by peer", None),
                            {"errors": False, "items": ITEMS})
    answer, engine = bulk(client)
    assert answer == BulkAnswer(items=ITEMS, resent=True)
    assert client.transport.calls == 2 and engine.retries == 1


def test_a_429_for_a_request_larger_than_the_nodes_whole_budget_is_a_413_at_once():
    """It was retried for max_retry_time (5 minutes) though it could never succeed: sink splits a 413."""
    client = ScriptedClient(pressure(60_918_088, 53_687_091), {"items": []})
    with pytest.raises(ApiStatusError) as caught:
        request(client, RetryPolicy(max_retry_time=60, initial=0.001, cap=0.005))
    assert caught.value.status == 413 and client.transport.calls == 1
    assert "exceeds the node's indexing pressure limit" in str(caught.value)


def test_a_429_from_pressure_that_can_pass_is_retried_as_before():
    client = ScriptedClient(pressure(1_000, 53_687_091), {"items": []})
    body, engine = request(client)
    assert body == {"items": []} and engine.retries == 1


# ---------------------------------------------------------------- several nodes: failover


def refused():
    return OSConnectionError("N/A", "Connection refused", None)


def nodes_engine(client, nodes, policy=FAST):
    return Engine(client, "opensearch", "http://n1:9200, http://n2:9200, http://n3:9200", policy, nodes=nodes)


def test_an_unanswered_request_goes_at_once_to_another_node_and_counts_as_a_retry():
    client = ScriptedClient(refused(), {"ok": True})
    engine = nodes_engine(client, 3, RetryPolicy(max_retry_time=60, initial=30, cap=30))  # a backoff would show
    started = time.monotonic()
    body = asyncio.run(engine.request("POST", "/x/_bulk", body=b"{}\n"))
    assert body == {"ok": True} and client.transport.calls == 2 and engine.retries == 1
    assert time.monotonic() - started < 5


def test_failovers_stop_at_one_per_other_node_then_the_policy_decides():
    client = ScriptedClient(refused())
    engine = nodes_engine(client, 3, RetryPolicy(max_retry_time=0.01, initial=1, cap=1))  # no time for a backoff
    with pytest.raises(EngineError) as caught:
        asyncio.run(engine.request("POST", "/x/_bulk", body=b"{}\n"))
    assert client.transport.calls == 3 and engine.retries == 2
    assert str(caught.value) == ("POST /x/_bulk: cannot reach the cluster at http://n1:9200, http://n2:9200, "
                                 "http://n3:9200: connection refused (gave up after retrying for 0.01s)")


def test_failovers_then_backoff_retries_until_a_node_answers():
    client = ScriptedClient(refused(), refused(), refused(), refused(), {"ok": True})
    engine = nodes_engine(client, 2)
    assert asyncio.run(engine.request("GET", "/x")) == {"ok": True}
    assert client.transport.calls == 5 and engine.retries == 4


def test_one_node_has_no_failover_only_the_backoff():
    client = ScriptedClient(refused(), {"ok": True})
    engine = nodes_engine(client, 1, RetryPolicy(max_retry_time=0.01, initial=1, cap=1))
    with pytest.raises(EngineError, match="gave up after retrying"):
        asyncio.run(engine.request("GET", "/x"))
    assert client.transport.calls == 1


def test_an_error_status_is_not_failed_over_and_a_request_not_to_retry_is_sent_once():
    client = ScriptedClient(unavailable(), {"ok": True})
    engine = nodes_engine(client, 3, RetryPolicy(max_retry_time=0.01, initial=1, cap=1))
    with pytest.raises(EngineError, match="HTTP 503"):
        asyncio.run(engine.request("GET", "/x"))
    client = ScriptedClient(refused(), {"ok": True})
    with pytest.raises(EngineError, match="connection refused"):
        asyncio.run(nodes_engine(client, 3).request("GET", "/x", retry=False))
    assert client.transport.calls == 1


def test_a_bulk_failed_over_to_another_node_says_it_was_resent():
    client = ScriptedClient(refused(), {"errors": False, "items": ITEMS})
    engine = nodes_engine(client, 2)
    answer = asyncio.run(engine.bulk("sensors", b'{"index":{}}\n{}\n'))
    assert answer == BulkAnswer(items=ITEMS, resent=True) and engine.retries == 1


def test_the_first_get_unanswered_tries_every_other_node_before_it_fails():
    client = ScriptedClient(refused(), refused(), OPENSEARCH_ROOT)
    engine = nodes_engine(client, 3)
    assert asyncio.run(engine.info()).flavor == "opensearch" and engine.retries == 2
    client = ScriptedClient(refused())
    with pytest.raises(EngineError) as caught:
        asyncio.run(nodes_engine(client, 3).info())
    assert client.transport.calls == 3
    assert str(caught.value) == ("cluster info: cannot reach the cluster at http://n1:9200, http://n2:9200, "
                                 "http://n3:9200: connection refused")


def _closed_ports(count: int) -> list[str]:
    """``count`` distinct loopback URLs nothing listens on (nodes that went away: connection refused)."""
    import socket

    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    urls = [f"http://127.0.0.1:{sock.getsockname()[1]}" for sock in socks]
    for sock in socks:
        sock.close()
    return urls


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
def test_the_real_clients_pool_leaves_a_silent_node_out_after_one_failover(flavor):
    """The clients' own pools with max_retries=0: the node that refused is marked dead, so the request sent again
    and the ones after it go to the node that answers (opensearch-py keeps it out 60 s, elastic_transport 1 s)."""
    root = OPENSEARCH_ROOT if flavor == "opensearch" else {"name": "n1", "version": {"number": "8.15.0"}}

    async def run():
        async with FakeCluster(lambda method, path: root if path == "/" else {"count": 7}) as alive:
            [gone] = _closed_ports(1)
            target = TargetConfig(url=[gone, alive.url], engine=flavor)
            engine = await open_engine(target, env={})
            try:
                counts = [await engine.count("sensors") for _ in range(6)]
            finally:
                await engine.close()
            return engine, counts, alive.paths(), target

    engine, counts, paths, target = asyncio.run(run())
    assert counts == [7] * 6 and paths.count("/sensors/_count") == 6
    assert engine.nodes == 2 and engine.where == target.where
    assert engine.retries == 1  # round robin: GET / or the first count went to the dead node, and none after
    if flavor == "opensearch":  # closed too, though opensearch-py's close skips the connections marked dead
        assert all(c.session is None for c in engine.client.transport.connection_pool.orig_connections)


@pytest.mark.parametrize("flavor", ["opensearch", "elasticsearch"])
def test_no_node_answering_at_start_is_one_error_naming_every_node(flavor):
    urls = _closed_ports(2)
    with pytest.raises(EngineError) as caught:
        asyncio.run(open_engine(TargetConfig(url=urls, engine=flavor), env={}))
    assert str(caught.value) == f"cluster info: cannot reach the cluster at {urls[0]}, {urls[1]}: connection refused"


def test_a_failover_logs_one_warning_with_the_cause_and_a_product_check_is_not_failed_over(caplog):
    client = ScriptedClient(refused(), {"ok": True})
    asyncio.run(nodes_engine(client, 2).request("GET", "/x", what="count sensors"))
    assert [r.getMessage() for r in caplog.records if r.name == "indexer.retry"] == [
        "count sensors: a node did not answer (connection refused); retry 1 at once on another node"]

    class NotElasticsearch(Exception):
        body = {"version": {"number": "7.10.2"}}

    NotElasticsearch.__name__ = "UnsupportedProductError"  # how _send knows the elasticsearch client's product check
    client = ScriptedClient(NotElasticsearch(), OPENSEARCH_ROOT)
    with pytest.raises(ProductCheckError):
        asyncio.run(nodes_engine(client, 3).info())
    assert client.transport.calls == 1
