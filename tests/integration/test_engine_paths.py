"""Engine and Sender against the real node: non-ASCII names, the engine check, the write index, item failures.

Each test drives ``open_engine`` with the client the node speaks
(``harness.CLIENT_ENGINE``) and checks the outcome over plain HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

import pytest

from indexer.config import TargetConfig
from indexer.documents import Action, delete_action, dumps, index_action
from indexer.cluster import open_engine
from indexer.retry import RetryPolicy
from indexer.errors import ConfigError, EngineError
from indexer.counts import Answers
from indexer.sink import Sender
from tests.support import harness

FAST = RetryPolicy(max_retry_time=2.0, initial=0.01, cap=0.05)


def http(method: str, name_path: str, body=None):
    """Plain HTTP with the path percent-encoded as UTF-8 (what a correct client sends)."""
    return harness.http(method, quote(name_path, safe="/*,_?=&"), body)


def run(engine_url: str, coro_fn):
    """Open the engine for the node (retrying by FAST), run ``coro_fn(engine)``, close."""
    async def main():
        engine = await open_engine(TargetConfig(url=engine_url, engine=harness.CLIENT_ENGINE), env={})
        engine.policy = FAST
        try:
            return await coro_fn(engine)
        finally:
            await engine.close()

    return asyncio.run(main())


@pytest.fixture
def names(engine_url):
    """A fresh alias name per test; its indices (and a template named like it) deleted afterwards."""
    alias = f"t{uuid.uuid4().hex[:8]}"
    yield alias
    http("DELETE", f"/_index_template/{alias}")
    for pattern in (f"{alias}-*", f"adv-é-{alias}-*"):
        status, found = http("GET", f"/{pattern}/_settings?expand_wildcards=open,closed")
        for index in found if status == 200 else {}:
            http("DELETE", f"/{index}")


def actions(ids, lines) -> list[Action]:
    return [Action(id_, line, at) for at, (id_, line) in enumerate(zip(ids, lines))]


# ---------------------------------------------------------------- non-ASCII names


def test_a_non_ascii_index_and_alias_are_created_written_counted_listed_and_deleted(engine_url, names):
    alias = f"adv-é-{names}"
    index = f"{alias}-20260101000000"

    async def scenario(engine):
        await engine.put_template("index", names, {"index_patterns": [f"{alias}-*"], "priority": 900,
                                                   "template": {"settings": {"index": {"refresh_interval": "7s"}}}})
        simulated = await engine.simulate_index(index)
        await engine.create_index(index, {"index": {"number_of_replicas": 0}})
        ids = ["é1", "e2", "e3"]
        sent = await Sender(engine, index).send(actions(ids, [index_action(i, dumps({"name": "é"})) for i in ids]))
        await engine.refresh(index)
        await engine.put_settings(index, {"index": {"refresh_interval": "1s"}})
        await engine.update_aliases([{"add": {"index": index, "alias": alias}}])
        seen = {
            "simulated": simulated.get("index", {}).get("refresh_interval"),
            "created": sent.indexed, "count": await engine.count(index), "alias_count": await engine.count(alias),
            "exists": await engine.exists(index), "alias_targets": await engine.alias_targets(alias),
            "write_index": await engine.write_index(alias), "matching": await engine.indices_matching(f"{alias}-*"),
        }
        over_http = {"index": http("GET", f"/{index}/_settings")[1], "alias": http("GET", f"/_alias/{alias}")[1]}
        await engine.delete_index(index)
        seen["exists_after"] = await engine.exists(index)
        return seen, over_http

    seen, over_http = run(engine_url, scenario)
    assert seen == {"simulated": "7s", "created": 3, "count": 3, "alias_count": 3, "exists": True,
                    "alias_targets": [index], "write_index": index, "matching": [index], "exists_after": False}
    # The names the node stored are exactly ours, not a mis-decoded "adv-Ã©".
    assert list(over_http["index"]) == [index]
    assert over_http["alias"] == {index: {"aliases": {alias: {}}}}
    assert http("GET", f"/{index}")[0] == 404
    assert [i for i in harness.http("GET", "/_cat/indices?format=json&h=index")[1] if "Ã" in i["index"]] == []


# ---------------------------------------------------------------- engine = the other product


def test_the_other_engine_than_the_node_is_one_config_error_naming_both(engine_url):
    root = harness.http("GET", "/")[1]["version"]
    other = "elasticsearch" if harness.CLIENT_ENGINE == "opensearch" else "opensearch"
    product = "OpenSearch" if harness.CLIENT_ENGINE == "opensearch" else "Elasticsearch"
    with pytest.raises(ConfigError) as raised:
        asyncio.run(open_engine(TargetConfig(url=engine_url, engine=other), env={}))
    assert str(raised.value) == (f'target.engine is "{other}" but the cluster at {engine_url} is {product} '
                                 f'{root["number"]}; set engine = "{harness.CLIENT_ENGINE}" or "auto"')


# ---------------------------------------------------------------- an alias over two indices


@pytest.fixture
def two_indices(names):
    """Alias ``names`` over two indices, neither marked as the write index."""
    first, second = f"{names}-20260101000000", f"{names}-20260102000000"
    for index in (first, second):
        assert http("PUT", f"/{index}", {"settings": {"number_of_replicas": 0}})[0] == 200
    assert http("POST", "/_aliases", {"actions": [{"add": {"index": first, "alias": names}},
                                                  {"add": {"index": second, "alias": names}}]})[0] == 200
    return names, first, second


def test_an_alias_over_two_indices_has_no_write_index_until_one_is_marked(engine_url, two_indices):
    alias, first, second = two_indices
    with pytest.raises(EngineError) as raised:
        run(engine_url, lambda engine: engine.write_index(alias))
    assert str(raised.value) == (
        f"alias '{alias}' points at 2 indices ({first}, {second}) and none is its write index: sync cannot "
        "write through it; run `indexer reindex` or fix the alias")

    http("POST", "/_aliases", {"actions": [{"add": {"index": second, "alias": alias, "is_write_index": True}}]})
    assert run(engine_url, lambda engine: engine.write_index(alias)) == second


def test_bulk_through_an_alias_without_a_write_index_fails_the_run_and_dead_letters_nothing(engine_url, two_indices):
    alias, first, second = two_indices
    ids = [f"k{i}" for i in range(5)]

    async def scenario(engine):
        await Sender(engine, alias).send(actions(ids, [index_action(i, dumps({"n": 1})) for i in ids]))

    with pytest.raises(EngineError) as raised:
        run(engine_url, scenario)
    message = str(raised.value)
    assert message.startswith(f"bulk into {alias} refused 5 of 5 actions: HTTP 400 illegal_argument_exception: "
                              f"no write index is defined for alias [{alias}]")
    # The sender raised instead of answering with Answers: no failure to dead-letter, nothing counted as indexed.
    assert harness.count(first) == 0 and harness.count(second) == 0


def test_bulk_into_a_closed_index_fails_the_run(engine_url, names):
    index = f"{names}-20260101000000"
    http("PUT", f"/{index}", {"settings": {"number_of_replicas": 0}})
    http("POST", f"/{index}/_close")

    async def scenario(engine):
        await Sender(engine, index).send(actions(["a"], [index_action("a", dumps({"n": 1}))]))

    with pytest.raises(EngineError, match=r"refused 1 of 1 actions: HTTP 400 index_closed_exception"):
        run(engine_url, scenario)  # raised, not answered as Answers with a failure to dead-letter


# ---------------------------------------------------------------- dead-letter reasons, deletes, versions


@pytest.fixture
def keyword_index(names):
    index = f"{names}-20260101000000"
    assert http("PUT", f"/{index}", {"settings": {"number_of_replicas": 0},
                                     "mappings": {"properties": {"k": {"type": "keyword"}}}})[0] == 200
    return index


SECRET = "secret-" * 6000  # 42 kB: one keyword term over Lucene's 32,766-byte limit
SECRET_BYTES = str(list(b"secret-"))[1:-1]  # how the engine prints the term's prefix: "115, 101, 99, ..."


@pytest.mark.parametrize("scrub", [True, False])
def test_an_immense_keyword_is_dead_lettered_without_its_value_unless_asked(engine_url, keyword_index, scrub):
    async def scenario(engine):
        return await Sender(engine, keyword_index, scrub_reasons=scrub).send(actions(
            ["big", "ok"], [index_action("big", dumps({"k": SECRET})), index_action("ok", dumps({"k": "small"}))]))

    sent = run(engine_url, scenario)
    assert sent.indexed == 1 and [(f.id, f.status) for f in sent.failed] == [("big", 400)]
    reason = sent.failed[0].reason
    assert "immense term" in reason and "32766" in reason
    if scrub:
        assert "secret" not in reason and SECRET_BYTES[:12] not in reason and "prefix of the first" not in reason
    else:
        assert SECRET_BYTES in reason  # the unscrubbed reason does quote the value: the check above can fail


def test_a_delete_of_an_absent_document_is_counted_as_not_found(engine_url, keyword_index):
    async def scenario(engine):
        sender = Sender(engine, keyword_index)
        return [await sender.send(actions(["a"], [index_action("a", dumps({"k": "x"}))])),
                await sender.send(actions(["a", "never"], [delete_action("a"), delete_action("never")]))]

    answers: list[Answers] = run(engine_url, scenario)
    total = {name: sum(getattr(s, name) for s in answers) for name in ("indexed", "deleted", "not_found")}
    failed = [f for s in answers for f in s.failed]
    assert (total["indexed"], total["deleted"], total["not_found"], failed) == (1, 1, 1, [])
    assert 3 == total["indexed"] + total["deleted"] + total["not_found"] + len(failed)  # every action sent


def test_versioned_the_row_latest_in_source_order_wins_whichever_arrives_last(engine_url, keyword_index):
    async def scenario(engine):
        sender = Sender(engine, keyword_index, fresh_index=True, versioned=True)
        # Row 4000 arrives first, row 3990 (an older row of the same key) after it.
        return [await sender.send(actions(["same"], [index_action("same", dumps({"k": "row 4000"}), version=4000)])),
                await sender.send(actions(["same"], [index_action("same", dumps({"k": "row 3990"}), version=3990)]))]

    first, second = run(engine_url, scenario)
    assert (first.indexed, first.duplicates, first.failed) == (1, 0, [])
    assert (second.indexed, second.duplicates, second.duplicate_ids, second.failed) == (0, 1, ["same"], [])
    assert harness.documents(keyword_index) == {"same": {"k": "row 4000"}}
