"""indexer.cluster: opening the cluster. ``open_engine`` says hello (``GET /``), picks the client from the
answer for ``engine = "auto"``, refuses the other product in one line, and gives the engine the one retry
policy bounded by ``target.max_retry_time``. The real clients against ``fakes.FakeCluster``, a loopback HTTP
server answering ``GET /`` as each product does."""

from __future__ import annotations

import asyncio

from indexer.cluster import open_engine
from indexer.config import TargetConfig
from indexer.errors import ConfigError
from indexer.retry import RetryPolicy
from tests.support.fakes import FakeCluster

OPENSEARCH_ROOT = {"name": "n1", "version": {"distribution": "opensearch", "number": "2.19.1"}}
ELASTICSEARCH_ROOT = {"name": "n1", "version": {"number": "8.15.0", "build_flavor": "default"}}


def _connect(engine: str, root: dict, elastic_header: bool) -> tuple[str, list[str]]:
    async def run():
        async with FakeCluster(lambda method, path: root, elastic_header=elastic_header) as cluster:
            try:
                opened = await open_engine(TargetConfig(url=cluster.url, engine=engine), env={})
            except ConfigError as exc:
                return f"ConfigError: {exc}", cluster.paths()
            await opened.close()
            return f"ok: {opened.flavor}", cluster.paths()

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


def test_the_engine_keeps_one_retry_policy_bounded_by_the_targets_max_retry_time():
    async def run():
        async with FakeCluster(lambda method, path: OPENSEARCH_ROOT) as cluster:
            engine = await open_engine(TargetConfig(url=cluster.url, engine="opensearch", max_retry_time=7), env={})
            await engine.close()
            return engine.policy

    assert asyncio.run(run()) == RetryPolicy(max_retry_time=7)


def test_several_nodes_one_engine_that_knows_them_and_messages_name_every_node():
    async def run():
        async with FakeCluster(lambda method, path: ELASTICSEARCH_ROOT) as one, \
                FakeCluster(lambda method, path: ELASTICSEARCH_ROOT) as two:
            target = TargetConfig(url=[one.url, two.url], engine="elasticsearch")
            engine = await open_engine(target, env={})
            await engine.close()
            try:
                await open_engine(TargetConfig(url=[one.url, two.url], engine="opensearch"), env={})
            except ConfigError as exc:
                return engine, str(exc), f"{one.url}, {two.url}"

    engine, message, both = asyncio.run(run())
    assert (engine.nodes, engine.where) == (2, both)
    assert message.startswith(f'target.engine is "opensearch" but the cluster at {both} is Elasticsearch 8.15.0')
