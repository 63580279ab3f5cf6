"""A multi-node cluster of real nodes (scripts/cluster.sh) as the multi-node tests see it: which node is which,
killing and restarting one by number, and reading the cluster through whichever node still answers.

The cluster under test comes from the environment scripts/test-matrix.sh sets: ``INDEXER_TEST_CLUSTER_PORT``
(node 1's HTTP port; node N answers on that + N - 1), ``INDEXER_TEST_CLUSTER_NODES`` (3) and
``INDEXER_TEST_ENGINE_KIND``; ``CLUSTER_DIR``/``CLUSTER_TRANSPORT_PORT`` pass through to the script.
Nothing is faked: a test that needs the cluster fails when it is not running.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Any

import pytest

from tests.support import harness

SCRIPT = harness.REPO / "scripts" / "cluster.sh"


class Cluster:
    def __init__(self, kind: str, base_port: int, nodes: int) -> None:
        self.kind = kind
        self.base_port = base_port
        self.nodes = nodes

    @classmethod
    def from_env(cls) -> Cluster:
        port = os.environ.get("INDEXER_TEST_CLUSTER_PORT")
        if not port:
            pytest.fail("INDEXER_TEST_CLUSTER_PORT is not set: run the multi-node tests with `make test` "
                        "(or scripts/test-matrix.sh), which starts the cluster", pytrace=False)
        return cls(harness.ENGINE_KIND, int(port), int(os.environ.get("INDEXER_TEST_CLUSTER_NODES", "3")))

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.base_port + n - 1}"

    def urls(self, *nodes: int) -> list[str]:
        return [self.url(n) for n in nodes]

    # ---------------------------------------------------------------- the nodes' lives

    def script(self, *args: str, timeout: float = 240) -> str:
        env = {**os.environ, "ENGINE": self.kind, "NODES": str(self.nodes), "ENGINE_PORT": str(self.base_port)}
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"scripts/cluster.sh {' '.join(args)}: exit {done.returncode}: {done.stderr[-2000:]}",
                        pytrace=False)
        return done.stdout

    def kill(self, n: int) -> None:
        """SIGKILL node ``n``: a crash, not a shutdown."""
        self.script("kill", str(n))

    def start(self, n: int) -> None:
        """Start node ``n`` again (its data kept); returns once it has rejoined."""
        self.script("start-node", str(n))

    def running(self, n: int) -> bool:
        env = {**os.environ, "ENGINE": self.kind, "NODES": str(self.nodes), "ENGINE_PORT": str(self.base_port)}
        return subprocess.run([str(SCRIPT), "pid", str(n)], capture_output=True, env=env).returncode == 0

    def heal(self) -> None:
        """Every node running, no test's cluster settings left, the cluster green (or yellow with nothing to
        allocate)."""
        for n in range(1, self.nodes + 1):
            if not self.running(n):
                self.start(n)
        self.http("DELETE", "/_cluster/voting_config_exclusions?wait_for_removal=false")
        self.http("PUT", "/_cluster/settings", {"persistent": {"cluster.routing.allocation.exclude._name": None}})
        self.http("PUT", "/indexer-state/_settings", {"index.routing.allocation.require._name": None})
        self.wait_nodes(self.nodes)

    # ---------------------------------------------------------------- reading it

    def http(self, method: str, path: str, body: Any = None, *, node: int | None = None) -> tuple[int, Any]:
        """One request through ``node``, or the first node that answers."""
        last: Exception | None = None
        for n in [node] if node else range(1, self.nodes + 1):
            try:
                return harness.http(method, path, body, url=self.url(n))
            except OSError as exc:
                last = exc
        raise AssertionError(f"no node of the cluster answers {method} {path}: {last}")

    def health(self, **params: Any) -> dict:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return self.http("GET", f"/_cluster/health?{query}")[1]

    def wait_nodes(self, count: int, timeout: float = 120) -> None:
        """Until the cluster has exactly ``count`` nodes and is at least yellow."""
        harness.wait_until(lambda: (h := self.health()) and h.get("number_of_nodes") == count
                           and h.get("status") in ("green", "yellow"),
                           f"{count} nodes in the cluster", timeout=timeout, every=0.5)

    def master(self) -> int:
        """The number of the elected master (cluster manager)."""
        path = "/_cat/cluster_manager?h=node" if self.kind == "opensearch" else "/_cat/master?h=node"
        deadline = time.monotonic() + 60
        while True:
            for n in range(1, self.nodes + 1):
                try:
                    text = _text(self.url(n) + path)
                except OSError:
                    continue
                if found := re.fullmatch(r"node-(\d+)", text.strip()):
                    return int(found.group(1))
            if time.monotonic() > deadline:
                pytest.fail("no elected master within 60 s", pytrace=False)
            time.sleep(0.5)

    def shards(self, index: str) -> list[dict]:
        """``_cat/shards`` of ``index``: shard, prirep, state, node."""
        status, body = self.http("GET", f"/_cat/shards/{index}?format=json&h=shard,prirep,state,node")
        assert status == 200, body
        return body

    def node_of_primary(self, index: str) -> int | None:
        """The node holding a started primary of ``index`` (the lowest-numbered shard's), if any."""
        for shard in sorted(self.shards(index), key=lambda s: int(s["shard"])):
            if shard["prirep"] == "p" and shard["state"] == "STARTED" and shard.get("node"):
                return int(shard["node"].rsplit("-", 1)[1])
        return None


def _text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()
