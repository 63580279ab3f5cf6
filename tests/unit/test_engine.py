"""Engine without a cluster: the paths both clients put on the wire, the write index, the engine check.

A tiny HTTP server on a loopback port stands in for the cluster, so the real
opensearch-py and elasticsearch clients build and send every request; the test
reads the request line as it arrived. What the real node does with those paths
is covered by tests/integration/test_engine_paths.py.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from indexer.config import TargetConfig
from indexer.cluster import open_engine
from indexer.engine import Engine, segment
from indexer.retry import RetryPolicy
from indexer.errors import ConfigError, EngineError

OPENSEARCH_ROOT = {"name": "n1", "version": {"distribution": "opensearch", "number": "2.19.1"}}
ELASTICSEARCH_ROOT = {"name": "n1", "version": {"number": "8.15.0", "build_flavor": "default"}}
INDEX = "adv-é-20260101000000"
ENCODED = "adv-%C3%A9-20260101000000"


class FakeCluster:
    """Answers every request with ``answer(method, path)`` -> body; records the raw request lines."""

    def __init__(self, answer, elastic_header: bool = True):
        self.answer = answer
        self.elastic_header = elastic_header
        self.request_lines: list[str] = []
        self.bodies: list[bytes] = []

    async def _handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        length = int(headers.get(b"Content-Length", headers.get(b"content-length", b"0")))
        self.bodies.append(await reader.readexactly(length) if length else b"")
        line = head.split(b"\r\n")[0].decode("latin-1")
        self.request_lines.append(line)
        method, target, _ = line.split(" ")
        body = json.dumps(self.answer(method, target.split("?")[0])).encode()
        product = b"X-Elastic-Product: Elasticsearch\r\n" if self.elastic_header else b""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + product +
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


def paths(cluster: FakeCluster) -> list[str]:
    return [line.split(" ")[1].split("?")[0] for line in cluster.request_lines]


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
    if path.endswith("/_bulk"):
        return {"errors": False, "items": []}
    return {}


def _against(answer, flavor: str, calls) -> tuple[object, FakeCluster]:
    """``await calls(engine)`` with an engine connected to a FakeCluster answering ``answer``; its result and the cluster."""
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

    assert paths(_against(_generic_answer, flavor, calls)[1]) == [
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


def test_the_engine_keeps_one_retry_policy_bounded_by_the_targets_max_retry_time():
    async def run():
        async with FakeCluster(lambda method, path: OPENSEARCH_ROOT) as cluster:
            engine = await open_engine(TargetConfig(url=cluster.url, engine="opensearch", max_retry_time=7), env={})
            await engine.close()
            return engine.policy

    assert asyncio.run(run()) == RetryPolicy(max_retry_time=7)


# ---------------------------------------------------------------- the write index


class AliasClient:
    """Stands in for opensearch-py: GET /_alias/<name> answers ``body``."""

    def __init__(self, body):
        self.body = body
        self.transport = self

    async def perform_request(self, method, path, params=None, body=None, headers=None):
        return self.body

    async def close(self):
        pass


def write_index(body) -> str:
    return asyncio.run(Engine(AliasClient(body), "opensearch", "http://127.0.0.1:9200").write_index("sensors"))


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


def test_a_missing_alias_has_no_write_index():
    with pytest.raises(EngineError, match="alias 'sensors' does not exist"):
        write_index(None)


# ---------------------------------------------------------------- engine = the other product


def _connect(engine: str, root: dict, elastic_header: bool) -> tuple[str, list[str]]:
    async def run():
        async with FakeCluster(lambda method, path: root, elastic_header=elastic_header) as cluster:
            try:
                opened = await open_engine(TargetConfig(url=cluster.url, engine=engine), env={})
            except ConfigError as exc:
                return f"ConfigError: {exc}", paths(cluster)
            await opened.close()
            return f"ok: {opened.flavor}", paths(cluster)

    return asyncio.run(run())


def test_engine_opensearch_against_elasticsearch_is_one_config_error_line():
    outcome, seen = _connect("opensearch", ELASTICSEARCH_ROOT, elastic_header=True)
    assert outcome.startswith('ConfigError: target.engine is "opensearch" but the cluster at http://127.0.0.1:')
    assert outcome.endswith(' is Elasticsearch 8.15.0; set engine = "elasticsearch" or "auto"')
    assert seen == ["/"]


def test_engine_elasticsearch_against_opensearch_is_one_config_error_line():
    outcome, _ = _connect("elasticsearch", OPENSEARCH_ROOT, elastic_header=False)
    assert outcome.startswith('ConfigError: target.engine is "elasticsearch" but the cluster at http://127.0.0.1:')
    assert outcome.endswith(' is OpenSearch 2.19.1; set engine = "opensearch" or "auto"')
    assert "HTTP 200" not in outcome


def test_engine_elasticsearch_against_an_old_elasticsearch_names_the_version():
    outcome, _ = _connect("elasticsearch", {"version": {"number": "7.10.2"}}, elastic_header=False)
    assert outcome.startswith("ConfigError: the cluster at http://127.0.0.1:")
    assert outcome.endswith("is Elasticsearch 7.10.2, which the elasticsearch client does not support (it needs "
                            "7.14 or later)")


def test_matching_engines_and_auto_still_connect():
    assert _connect("opensearch", OPENSEARCH_ROOT, elastic_header=False)[0] == "ok: opensearch"
    assert _connect("elasticsearch", ELASTICSEARCH_ROOT, elastic_header=True)[0] == "ok: elasticsearch"
    assert _connect("auto", ELASTICSEARCH_ROOT, elastic_header=True)[0] == "ok: elasticsearch"
    assert _connect("auto", OPENSEARCH_ROOT, elastic_header=False)[0] == "ok: opensearch"


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
        return {"_scroll_id": f"s{len(self.calls)}", **({"hits": {"hits": [{"_id": i} for i in page]}} if page else {})}

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


def test_ids_clear_the_scroll_when_the_reader_stops_early():
    got, calls = _ids([["a", "b"], ["c", "d"], ["e"]], stop_after=1)
    assert got == [["a", "b"]]
    assert calls[-1][:2] == ("DELETE", "/_search/scroll")


def test_the_ids_of_an_empty_index_are_no_pages():
    got, calls = _ids([])
    assert got == [] and [c[0] for c in calls] == ["POST", "DELETE"]
