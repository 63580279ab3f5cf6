"""Reindex and sync on a real 3-node cluster (replicas: 1) while nodes die: a data node, the elected master, the
node the client talks to (``target.url`` naming that one node, or every node: failover), and two nodes at once
(a red index). After each, the index equals the source document for document, or the run failed cleanly with
the alias and the watermark where they were.

The nodes are killed with SIGKILL (scripts/cluster.sh kill), in the middle of the load: once the new or live
index has taken part of the run's writes (its indexing stats), while the run still sends.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

from tests.support.cluster import Cluster
from tests.support.harness import CLIENT_ENGINE, pg_documents, slow_job, start_indexer, wait_until

PAUSE = 0.15  # seconds per chunk of 100 rows: a 3,000-row reindex lasts 4.5 s or more


def job_for(folder, table: str, cluster: Cluster, alias: str, client: int | list[int], *,
            max_retry_time: float = 120, pause: float = PAUSE, sniff: bool = False, **job) -> str:
    """A slow job through node ``client``, or through the nodes ``client`` lists (``target.url`` an array)."""
    url = cluster.url(client) if isinstance(client, int) else cluster.urls(*client)
    target = {"url": url, "engine": CLIENT_ENGINE, "max_retry_time": max_retry_time,
              **({"sniff": True} if sniff else {})}
    return str(slow_job(folder, table, target, alias, pause=pause, **job))


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, dict, str]:
    """A started run's exit code, its --json summary and its stderr."""
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else {}, err


def loading(cluster: Cluster, alias: str, proc: subprocess.Popen) -> str:
    """The index a reindex of ``alias`` builds, once it has taken 600 writes."""
    def found():
        status, body = cluster.http("GET", f"/{alias}-*/_stats/indexing")
        if status != 200:
            return None
        for name, stats in body.get("indices", {}).items():
            if stats["primaries"]["indexing"]["index_total"] >= 600:
                return name
        return None
    return wait_until(found, f"a new index of {alias} with 600 documents written", proc, timeout=120)


def in_sync(cluster: Cluster, index: str) -> None:
    """Until every copy of ``index`` has started: a replica still recovering is not in sync, and cannot be
    promoted when the primary's node dies (the shard is then red until that node is back: the engine's rule)."""
    status, body = cluster.http("GET", f"/_cluster/health/{index}?wait_for_status=green&timeout=60s")
    assert status == 200 and body["status"] == "green", body


def written(cluster: Cluster, index: str) -> int:
    status, body = cluster.http("GET", f"/{index}/_stats/indexing")
    return body["_all"]["primaries"]["indexing"]["index_total"] if status == 200 else 0


def index_documents(cluster: Cluster, alias: str) -> dict[str, dict]:
    """Every document behind ``alias``, read through whichever node answers (the tests keep under 10,000), once
    every shard has a started primary (just after a kill, the promotion of a replica may still be under way)."""
    status, body = cluster.http("GET", f"/_cluster/health/{alias}?wait_for_status=yellow&timeout=60s")
    assert status == 200 and body["status"] in ("green", "yellow"), body
    status, body = cluster.http("POST", f"/{alias}/_refresh")
    assert status == 200, body
    status, body = cluster.http("POST", f"/{alias}/_search",
                                {"size": 10000, "query": {"match_all": {}}, "track_total_hits": True})
    assert status == 200 and body["_shards"]["failed"] == 0, body
    return {hit["_id"]: hit["_source"] for hit in body["hits"]["hits"]}


def alias_targets(cluster: Cluster, alias: str) -> list[str]:
    status, body = cluster.http("GET", f"/_alias/{alias}")
    return sorted(body) if status == 200 else []


def assert_exact(cluster: Cluster, alias: str, index: str, summary: dict, source: dict[str, dict]) -> None:
    """The alias moved onto ``index``, which holds exactly the source's rows, as the summary says."""
    assert alias_targets(cluster, alias) == [index]
    assert summary["documents_in_index"] == len(source)
    assert index_documents(cluster, alias) == source


def reindex(job: str) -> None:
    rc, summary, err = finish(start_indexer("reindex", job, "--json"))
    assert rc == 0, err


def change_rows(pg_tables, table: str) -> None:
    """Changes for a sync to carry: 1,200 updates, 100 inserts, 100 soft deletes, all newer than the data."""
    stamp = "now()::timestamp"
    pg_tables.execute(f"UPDATE {table} SET value = value + 1, date_updated = {stamp} "
                      f"WHERE code IN (SELECT code FROM {table} ORDER BY code LIMIT 1200)")
    pg_tables.execute(f"INSERT INTO {table} SELECT 'NEW' || g, 'new ' || g, 'SYNC', g, {stamp}, false "
                      "FROM generate_series(1, 100) g")
    pg_tables.execute(f"UPDATE {table} SET is_deleted = true, date_updated = {stamp} "
                      f"WHERE code IN (SELECT code FROM {table} ORDER BY code DESC LIMIT 100)")


def live_rows(pg_tables, table: str) -> dict[str, dict]:
    return pg_documents(pg_tables.conn, table, "WHERE NOT is_deleted")


def exclude(cluster: Cluster, n: int) -> None:
    """No shard on node ``n`` (until ``heal``)."""
    status, body = cluster.http("PUT", "/_cluster/settings",
                                {"persistent": {"cluster.routing.allocation.exclude._name": f"node-{n}"}})
    assert status == 200, body


def settings(cluster: Cluster, index: str, values: dict) -> None:
    status, body = cluster.http("PUT", f"/{index}/_settings", values)
    assert status == 200, body


def state_of(cluster: Cluster, alias: str) -> dict:
    """The state a run stored for ``alias``, read through whichever node answers."""
    status, body = cluster.http("GET", f"/indexer-state/_doc/{alias}")
    assert status == 200, body
    return body["_source"]["state"]


def other(cluster: Cluster, *not_these: int) -> int:
    return next(n for n in range(1, cluster.nodes + 1) if n not in not_these)


# ------------------------------------------------------------------ reindex


def test_a_data_node_killed_mid_reindex_with_load_replicas_moves_the_alias_onto_an_exact_index(
        healed, tmp_path, alias, pg_table, pg_tables):
    client = healed.master()  # the client talks to the master; the new index lives on the two other nodes
    exclude(healed, client)
    proc = start_indexer("reindex", job_for(tmp_path, pg_table, healed, alias, client, load_replicas=1), "--json")
    index = loading(healed, alias, proc)
    in_sync(healed, index)
    victim = healed.node_of_primary(index)
    assert victim not in (None, client)
    healed.kill(victim)  # the replica on the third node becomes the primary; items in flight are retried
    assert proc.poll() is None, "the run ended before the kill"

    rc, summary, err = finish(proc)

    assert rc == 0, err
    assert not healed.running(victim)
    assert summary["indexed"] == 3000
    assert_exact(healed, alias, index, summary, pg_documents(pg_tables.conn, pg_table))


def test_a_data_node_killed_and_restarted_mid_reindex_without_load_replicas(healed, tmp_path, alias, pg_table,
                                                                           pg_tables):
    client = healed.master()
    exclude(healed, client)
    proc = start_indexer("reindex", job_for(tmp_path, pg_table, healed, alias, client), "--json")
    index = loading(healed, alias, proc)
    victim = healed.node_of_primary(index)
    assert victim not in (None, client)
    healed.kill(victim)  # the only copy of the shard is gone until the node is back: writes wait, or are retried
    assert proc.poll() is None, "the run ended before the kill"
    healed.start(victim)

    rc, summary, err = finish(proc)

    assert rc == 0, err
    assert_exact(healed, alias, index, summary, pg_documents(pg_tables.conn, pg_table))


def test_the_master_killed_mid_reindex(healed, tmp_path, alias, pg_table, pg_tables):
    master = healed.master()
    client = other(healed, master)
    proc = start_indexer("reindex", job_for(tmp_path, pg_table, healed, alias, client, load_replicas=1), "--json")
    index = loading(healed, alias, proc)
    in_sync(healed, index)  # the master may hold a copy: the other one must be able to take over
    healed.kill(master)  # a new master is elected; the settings, refresh and alias swap go to it
    assert proc.poll() is None, "the run ended before the kill"

    rc, summary, err = finish(proc)

    assert rc == 0, err
    assert healed.master() != master
    assert_exact(healed, alias, index, summary, pg_documents(pg_tables.conn, pg_table))


# ------------------------------------------------------------------ sync


def syncing(cluster: Cluster, folder, alias: str, table: str, pg_tables, client: int | list[int], **job) -> tuple[
        subprocess.Popen, list[str]]:
    """A reindex through node ``client``, 1,400 changes, then a sync of them under way (300 written); the
    sync and the indices the alias serves."""
    reindex(job_for(folder, table, cluster, alias, client, pause=0, synced=True, name="reindex.toml"))
    live = alias_targets(cluster, alias)
    # The reindex restores the replica before its swap, but it may still be recovering: killed now, the node of
    # the primary would leave the shard red (the master's test failed so twice in a dozen runs) instead of promoting it.
    in_sync(cluster, live[0])
    before = written(cluster, live[0])
    change_rows(pg_tables, table)
    proc = start_indexer("sync", job_for(folder, table, cluster, alias, client, synced=True, pause=0.2, **job),
                         "--json")
    wait_until(lambda: written(cluster, live[0]) >= before + 300, "300 of the sync's writes", proc, timeout=120)
    return proc, live


def test_the_master_killed_mid_sync(healed, tmp_path, alias, pg_table, pg_tables):
    master = healed.master()
    proc, live = syncing(healed, tmp_path, alias, pg_table, pg_tables, other(healed, master))
    healed.kill(master)
    assert proc.poll() is None, "the run ended before the kill"

    rc, summary, err = finish(proc)

    assert rc == 0, err
    assert summary["indexed"] + summary["deleted"] == 1400, summary
    assert alias_targets(healed, alias) == live
    assert index_documents(healed, alias) == live_rows(pg_tables, pg_table)


def test_the_clients_node_killed_mid_sync_fails_cleanly_and_the_next_run_completes(healed, tmp_path, alias, pg_table,
                                                                                   pg_tables):
    master = healed.master()
    client = other(healed, master)
    proc, live = syncing(healed, tmp_path, alias, pg_table, pg_tables, client, max_retry_time=5)
    healed.kill(client)  # target.url names one node: nobody answers the run any more
    assert proc.poll() is None, "the run ended before the kill"

    rc, summary, err = finish(proc)

    assert rc != 0 and summary["outcome"] == "failed", (rc, summary)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert alias_targets(healed, alias) == live
    # What the stored watermark says is done is in the index: every row it will not read again.
    state = state_of(healed, alias)
    resume_from = dt.datetime.fromisoformat(state["watermark"]["value"]) - dt.timedelta(minutes=5)  # the lookback
    behind = {code: doc for code, doc in live_rows(pg_tables, pg_table).items()
              if dt.datetime.fromisoformat(doc["date_updated"]) < resume_from}
    in_index = index_documents(healed, alias)
    assert {code: in_index.get(code) for code in behind} == behind

    again = start_indexer("sync", job_for(tmp_path, pg_table, healed, alias, master, synced=True, name="again.toml"),
                          "--json")
    rc, summary, err = finish(again)

    assert rc == 0, err
    assert index_documents(healed, alias) == live_rows(pg_tables, pg_table)


def test_the_first_listed_node_killed_mid_sync_the_run_goes_on_through_the_others_and_completes(
        healed, tmp_path, alias, pg_table, pg_tables):
    every = list(range(1, healed.nodes + 1))  # target.url names every node, node 1 first
    proc, live = syncing(healed, tmp_path, alias, pg_table, pg_tables, every)
    healed.kill(every[0])  # the client's pool marks it dead; what it left unanswered goes at once to another node
    assert proc.poll() is None, "the run ended before the kill"

    rc, summary, err = finish(proc)

    assert rc == 0, err
    assert not healed.running(every[0])
    assert summary["indexed"] + summary["deleted"] == 1400, summary
    assert summary["requests_retried"] >= 1 and "a node did not answer" in err, (summary, err)
    assert "error:" not in err and "Traceback" not in err and "Unclosed" not in err, err
    assert alias_targets(healed, alias) == live
    assert index_documents(healed, alias) == live_rows(pg_tables, pg_table)


def test_with_sniff_the_one_listed_node_killed_mid_sync_the_run_goes_on_through_the_nodes_the_cluster_named(
        healed, tmp_path, alias, pg_table, pg_tables):
    proc, live = syncing(healed, tmp_path, alias, pg_table, pg_tables, 1, sniff=True, max_retry_time=30)  # url: node 1
    healed.kill(1)  # the pool found nodes 2 and 3 when the run began: the retry goes to one of them
    assert proc.poll() is None, "the run ended before the kill"

    rc, summary, err = finish(proc)

    assert rc == 0, err
    assert summary["indexed"] + summary["deleted"] == 1400, summary
    assert "error:" not in err and "Traceback" not in err and "Unclosed" not in err, err
    assert alias_targets(healed, alias) == live
    assert index_documents(healed, alias) == live_rows(pg_tables, pg_table)


def test_a_red_index_fails_the_sync_in_one_line_and_moves_nothing(healed, tmp_path, alias, pg_table, pg_tables):
    keeper = healed.master()  # the node that stays: the client's, and the only voter left
    gone = [n for n in range(1, healed.nodes + 1) if n != keeper]
    reindex(job_for(tmp_path, pg_table, healed, alias, keeper, pause=0, synced=True, name="reindex.toml"))
    live = alias_targets(healed, alias)
    # both copies of the live index on the two nodes that will go; the state (and lease) on the one that stays
    settings(healed, live[0], {"index.routing.allocation.exclude._name": f"node-{keeper}"})
    settings(healed, "indexer-state", {"index.routing.allocation.require._name": f"node-{keeper}"})
    wait_until(lambda: {s["node"] for s in healed.shards(live[0]) if s["state"] == "STARTED"}
               == {f"node-{n}" for n in gone}, "the live index's copies on the two other nodes", timeout=60)
    wait_until(lambda: {s["node"] for s in healed.shards("indexer-state") if s["prirep"] == "p"}
               == {f"node-{keeper}"}, "the state's primary on the node that stays", timeout=60)
    state_before = state_of(healed, alias)
    names = ",".join(f"node-{n}" for n in gone)
    status, body = healed.http("POST", f"/_cluster/voting_config_exclusions?node_names={names}&timeout=60s")
    assert status == 200, body
    for n in gone:
        healed.kill(n)
    wait_until(lambda: healed.health().get("number_of_nodes") == 1, "the two nodes gone from the cluster", timeout=60)
    assert healed.http("GET", f"/_cluster/health/{live[0]}")[1]["status"] == "red"
    change_rows(pg_tables, pg_table)

    proc = start_indexer("sync", job_for(tmp_path, pg_table, healed, alias, keeper, synced=True, max_retry_time=10),
                         "--json")
    rc, summary, err = finish(proc)

    assert rc != 0 and summary["outcome"] == "failed", (rc, summary)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and " is red " in errors[0] and "Traceback" not in err, err
    assert summary["indexed"] == summary["deleted"] == 0, summary
    assert alias_targets(healed, alias) == live
    assert state_of(healed, alias)["watermark"] == state_before["watermark"]
    reconciled = start_indexer("reconcile", job_for(tmp_path, pg_table, healed, alias, keeper, synced=True,
                                                    name="reconcile.toml", max_retry_time=10), "--json")
    rc, summary, err = finish(reconciled)
    assert rc != 0 and summary["outcome"] == "failed", (rc, summary)
    assert [line for line in err.splitlines() if line.startswith("error:")] == errors, err  # the same one line

    healed.heal()  # the nodes come back with their copies: the next sync completes
    again = start_indexer("sync", job_for(tmp_path, pg_table, healed, alias, keeper, synced=True, name="again.toml"),
                          "--json")
    rc, summary, err = finish(again)
    assert rc == 0, err
    assert index_documents(healed, alias) == live_rows(pg_tables, pg_table)
