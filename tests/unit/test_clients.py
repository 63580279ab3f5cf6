"""indexer.clients: building a client from the target. Credentials never go over plain http to a host that is
not this machine, whichever node of ``target.url`` it is; every node reaches the client's own pool (which
fails over), both flavors; the transports retry nothing; sniffing only when asked. The clients are built,
never sent a request (what they do against nodes: test_engine.py and tests/cluster)."""

from __future__ import annotations

import pytest

from indexer.clients import client_options, make_client
from indexer.config import TargetConfig
from indexer.errors import ConfigError

BASIC = {"username": "indexer", "password_env": "ES_PASSWORD"}
ENV = {"ES_PASSWORD": "hunter2"}
NODES = ["http://10.0.0.1:9200", "http://10.0.0.2:9200", "http://10.0.0.3:9200/es"]


@pytest.mark.parametrize("urls", [["http://127.0.0.1:9200", "http://10.0.0.2:9200"],
                                  ["http://10.0.0.2:9200", "http://localhost:9201"],
                                  "http://localhost:9200,http://10.0.0.2:9200"])
def test_credentials_over_plain_http_are_refused_when_any_node_is_not_loopback(urls):
    with pytest.raises(ConfigError) as caught:
        client_options(TargetConfig(url=urls, **BASIC), ENV)
    assert str(caught.value) == ("refusing to send credentials over plain http:// to a non-loopback host "
                                 "(http://10.0.0.2:9200; use https://)")
    assert "hunter2" not in str(caught.value)


def test_credentials_go_to_loopback_nodes_over_http_and_to_any_node_over_https():
    assert client_options(TargetConfig(url=["http://127.0.0.1:9200", "http://localhost:9201"], **BASIC),
                          ENV)["basic"] == ("indexer", "hunter2")
    assert client_options(TargetConfig(url=["https://n1:9200", "https://n2:9200"], **BASIC), ENV)["basic"]
    assert client_options(TargetConfig(url=NODES), {})["basic"] is None  # no credentials: any http node


def test_the_elasticsearch_client_holds_every_node_and_retries_nothing():
    target = TargetConfig(url=NODES, engine="elasticsearch")
    client = make_client("elasticsearch", target, client_options(target, {}))
    nodes = {(n.config.scheme, n.config.host, n.config.port, n.config.path_prefix)
             for n in client.transport.node_pool.all()}
    assert nodes == {("http", "10.0.0.1", 9200, ""), ("http", "10.0.0.2", 9200, ""), ("http", "10.0.0.3", 9200, "/es")}
    assert (client._max_retries, client._retry_on_status) == (0, ())
    assert not client.transport._sniff_on_start and not client.transport._sniff_on_node_failure


def test_the_opensearch_client_holds_every_node_and_retries_nothing():
    target = TargetConfig(url=NODES, engine="opensearch")
    client = make_client("opensearch", target, client_options(target, {}))
    assert client.transport.hosts == [{"host": "10.0.0.1", "port": 9200}, {"host": "10.0.0.2", "port": 9200},
                                      {"host": "10.0.0.3", "port": 9200, "url_prefix": "/es"}]
    assert (client.transport.max_retries, client.transport.retry_on_status) == (0, ())
    # With max_retries=0 this retries nothing: it only makes a timed-out node leave the pool's rotation.
    assert client.transport.retry_on_timeout is True
    assert not client.transport.sniff_on_start and not client.transport.sniff_on_connection_fail


def test_https_nodes_get_tls_in_both_clients():
    target = TargetConfig(url=["https://n1:9200", "https://n2:9200"])
    assert make_client("opensearch", target, client_options(target, {})).transport.kwargs["use_ssl"] is True
    es = make_client("elasticsearch", target, client_options(target, {}))
    assert {n.config.scheme for n in es.transport.node_pool.all()} == {"https"}


def test_sniff_asks_each_client_to_sniff_on_start_and_on_node_failure():
    target = TargetConfig(url=NODES[:2], sniff=True)
    es = make_client("elasticsearch", target, client_options(target, {})).transport
    assert es._sniff_on_start and es._sniff_on_node_failure and not es._sniff_before_requests
    opensearch = make_client("opensearch", target, client_options(target, {})).transport
    assert opensearch.sniff_on_start and opensearch.sniff_on_connection_fail and not opensearch.sniffer_timeout
