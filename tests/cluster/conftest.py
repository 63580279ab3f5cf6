"""Fixtures of the multi-node tests: the running cluster (scripts/cluster.sh, started by scripts/test-matrix.sh),
healed before and after every test so that one test's killed node never leaks into the next."""

from __future__ import annotations

import pytest

from tests.support.cluster import Cluster


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    found = Cluster.from_env()
    try:
        health = found.health()
    except AssertionError as exc:
        pytest.fail(f"{exc}; run the multi-node tests with `make test`, which starts the cluster", pytrace=False)
    if health.get("number_of_nodes") != found.nodes:
        pytest.fail(f"the cluster on port {found.base_port} has {health.get('number_of_nodes')} nodes, "
                    f"not {found.nodes}", pytrace=False)
    return found


@pytest.fixture
def healed(cluster, alias) -> Cluster:
    """The cluster with every node running and no test's settings; healed again after the test (before the
    ``alias`` fixture deletes the test's indices)."""
    cluster.heal()
    yield cluster
    cluster.heal()
