"""[[job.children]] in the job file (issue 21): what a child table must say, and the one line a mistake gets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from indexer.config import JobSettings
from indexer.jobfile import invalid

LINES = {"name": "Lines", "query": "SELECT order_id, line_no, qty FROM order_lines;", "parent_key": ["Order_ID"],
         "key": ["order_id", "line_no"]}
PRODUCT = {"name": "product", "query": "SELECT order_id, line_no, sku FROM x", "parent_key": ["order_id", "line_no"],
           "key": ["order_id", "line_no"], "many": False}


def _job(*children: dict, **job) -> JobSettings:
    return JobSettings.model_validate({"alias": "orders", "key": ["id"], "query": "SELECT id FROM orders",
                                       "children": list(children), **job})


def _error(*children: dict, **job) -> str:
    """The one line (without the "job." a job file's [job] table adds in front)."""
    with pytest.raises(ValidationError) as raised:
        _job(*children, **job)
    return str(invalid(raised.value))


def test_a_child_and_a_grandchild_are_read_with_names_lowered_and_the_query_trimmed():
    job = _job({**LINES, "children": [PRODUCT], "lookback": "5m"})
    [lines] = job.children
    assert (lines.name, lines.parent_key) == ("lines", ["order_id"])
    assert lines.query == "SELECT order_id, line_no, qty FROM order_lines"
    assert lines.many and lines.lookback == "5m" and lines.children[0].many is False
    assert _job().children == []


@pytest.mark.parametrize(("child", "job", "message"), [
    ({**LINES, "key": ["line_no", "order_id"]}, {},
     "children.0.key: must start with parent_key ['order_id'] (the child rows are read in this order)"),
    ({**LINES, "key": ["order_id"]}, {},
     "children.0.key: with many = true it needs a column beyond parent_key (what orders the array)"),
    ({**LINES, "parent_key": ["order_id", "x"], "key": ["order_id", "x", "line_no"]}, {},
     "children: 'lines': parent_key names 2 column(s) but the parent's key (job.key) has 1 (['id'])"),
    ({**LINES, "children": [{**PRODUCT, "parent_key": ["order_id"], "key": ["order_id"]}]}, {},
     "children.0.children: 'product': parent_key names 1 column(s) but the parent's key has 2"),
    (LINES, {"watermark": "updated_at"},
     "children: 'lines' needs a watermark because job.watermark is set (sync must see this child's changes)"),
    ({**LINES, "watermark": "updated_at", "children": [PRODUCT]}, {"watermark": "updated_at"},
     "children: 'lines.product' needs a watermark because job.watermark is set"),
    (LINES, {"partitions": 4, "partition_by": "placed_at"},
     "partition_by: with children it must be job.key[0] ('id'), so that each slice reads its own children"),
    ({**LINES, "name": "lines; drop"}, {}, "children.0.name: must be a plain name"),
    ({**LINES, "lookback": "soon"}, {}, "children.0.lookback:"),
    ({**LINES, "sync_query": "x"}, {}, "children.0.sync_query: unknown field"),
])
def test_a_child_that_cannot_be_read_or_joined_is_one_line_naming_it(child, job, message):
    assert message in _error(child, **job)


def test_two_children_of_one_parent_need_two_names_and_nesting_stops_at_three_levels():
    assert "children: 'lines' is given to two children of one parent" in _error(LINES, {**LINES, "name": "lines"})
    deep = {**PRODUCT, "name": "d3", "children": [{**PRODUCT, "name": "d4"}]}
    two = {**PRODUCT, "name": "d2", "many": False, "children": [deep]}
    assert "children nest at most 3 levels" in _error({**LINES, "children": [two]})


def test_a_job_file_with_children_loads_and_its_child_queries_binds_are_checked(tmp_path):
    """A child query binds the job's params like job.query does; indexer_... names are ours (key lists)."""
    from indexer.errors import ConfigError
    from indexer.jobfile import load_job

    path = tmp_path / "orders.toml"
    path.write_text('[source]\ndbtype = "SQLITE"\nfilename = "o.db"\n[job]\nalias = "orders"\nkey = ["id"]\n'
                    'query = "SELECT id FROM orders"\n[[job.children]]\nname = "lines"\nquery = "SELECT 1"\n'
                    'parent_key = ["order_id"]\nkey = ["order_id", "line_no"]\n')
    job = load_job(path)
    assert [c.name for c in job.job.descendants()] == ["lines"] and job.job.digest_on
    path.write_text(path.read_text().replace('query = "SELECT 1"', 'query = "SELECT 1 WHERE :region = 1"'))
    with pytest.raises(ConfigError, match=r"^orders.toml: job.children binds region but job.params has no region"):
        load_job(path)
    path.write_text(path.read_text().replace(":region", ":indexer_k1"))
    with pytest.raises(ConfigError, match=r"the parameter name indexer_k1 is one indexer binds itself"):
        load_job(path)
