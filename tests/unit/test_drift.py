"""indexer.drift: the comparison reconcile makes, without a cluster. The merge-join of the source's ids and the
index's (in bounded memory, on real files), the refusals, and the projection of the query that reads only
the ids when it can."""

from __future__ import annotations

import random

import pytest

from indexer.config import JobSettings
from indexer.drift import SAMPLE, Diff, compare, compare_content, projection, refusal
from indexer.spill import SortedIds, SortedPairs


def _diff(tmp_path, source, index, run_size=3) -> Diff:
    a, b = SortedIds(tmp_path, "s", run_size), SortedIds(tmp_path, "i", run_size)
    a.add(source)
    b.add(index)
    return compare(a.sorted(), b.sorted(), _empty(tmp_path, run_size))


def _empty(tmp_path, run_size) -> Diff:
    return Diff(SortedIds(tmp_path, "delete", run_size), SortedIds(tmp_path, "add", run_size),
                SortedIds(tmp_path, "changed", run_size))


def _content(tmp_path, source, index, run_size=3) -> Diff:
    a, b = SortedPairs(tmp_path, "s", run_size), SortedPairs(tmp_path, "i", run_size)
    a.add(source)
    b.add(index)
    return compare_content(a.sorted(), b.sorted(), _empty(tmp_path, run_size))


def test_the_merge_join_splits_ids_into_unchanged_to_delete_and_to_index(tmp_path):
    diff = _diff(tmp_path, source=["b", "d", "a", "e", "a"], index=["c", "a", "b", "z"])
    assert list(diff.to_delete.sorted()) == ["c", "z"]
    assert list(diff.to_index.sorted()) == ["d", "e"]
    assert diff.unchanged == 2 and diff.in_source == 4 and diff.in_index == 4
    assert diff.sample_to_delete == ["c", "z"] and diff.sample_to_index == ["d", "e"]


def test_the_merge_join_agrees_with_set_arithmetic_on_random_sets(tmp_path):
    rnd = random.Random(3)
    source = {f"{rnd.randrange(5000):05d}" for _ in range(3000)}
    index = {f"{rnd.randrange(5000):05d}" for _ in range(3000)}
    diff = _diff(tmp_path, rnd.sample(sorted(source), len(source)), rnd.sample(sorted(index), len(index)), 97)
    assert list(diff.to_delete.sorted()) == sorted(index - source)
    assert list(diff.to_index.sorted()) == sorted(source - index)
    assert diff.unchanged == len(source & index)
    assert diff.sample_to_delete == sorted(index - source)[:SAMPLE]


@pytest.mark.parametrize("source, index", [([], []), ([], ["a", "b"]), (["a", "b"], []), (["a"], ["a"])])
def test_the_merge_join_handles_empty_sides(tmp_path, source, index):
    diff = _diff(tmp_path, source, index)
    assert list(diff.to_delete.sorted()) == sorted(set(index) - set(source))
    assert list(diff.to_index.sorted()) == sorted(set(source) - set(index))


def _settings(**extra) -> JobSettings:
    return JobSettings(alias="sensors", key=["code"], query="SELECT code, site, is_deleted FROM sensors", **extra)


def test_deleting_more_than_half_of_the_index_is_refused_by_default():
    settings = _settings()
    assert refusal(settings, "sensors-1", 100, 100, 50) is None               # keeps exactly half
    assert refusal(settings, "sensors-1", 100, 100, 51) == (
        "51 of the 100 documents in sensors-1 would be deleted, keeping fewer than job.min_ratio = 0.5 of them")
    assert refusal(_settings(min_ratio=0.9), "sensors-1", 100, 100, 11) is not None
    assert refusal(_settings(min_ratio=0), "sensors-1", 1, 100, 99) is None


def test_a_source_without_ids_never_empties_an_index_that_holds_documents():
    assert refusal(_settings(min_ratio=0), "sensors-1", 0, 3, 3) == "the source yields no ids while sensors-1 holds 3 documents"
    assert refusal(_settings(), "sensors-1", 0, 0, 0) is None                 # empty both sides: nothing to do
    assert refusal(_settings(), "sensors-1", 5, 0, 0) is None                 # an empty index may fill up


def test_without_a_transform_only_the_key_and_soft_delete_columns_are_read():
    columns = ("code", "site", "is_deleted")
    assert projection(_settings(), columns) == "SELECT q.code FROM (SELECT code, site, is_deleted FROM sensors) q"
    assert projection(_settings(deleted="is_deleted"), columns) == (
        "SELECT q.code, q.is_deleted FROM (SELECT code, site, is_deleted FROM sensors) q")
    composite = JobSettings(alias="s", key=["site", "code"], query="SELECT * FROM t")
    assert projection(composite, columns) == "SELECT q.site, q.code FROM (SELECT * FROM t) q"


def test_whole_rows_are_read_with_a_transform_or_a_key_that_is_no_plain_column():
    assert projection(_settings(transform="mod:fn"), ("code", "site")) is None
    nested = JobSettings(alias="s", key=["meta.code"], query="SELECT code AS \"meta.code\" FROM t")
    assert projection(nested, ("meta.code",)) is None


# ------------------------------------------------------------------ contents (job.digest)

D1, D2, D3 = "1" * 32, "2" * 32, "3" * 32


def test_by_content_an_id_in_both_is_unchanged_only_when_the_digests_agree(tmp_path):
    diff = _content(tmp_path, source=[("b", D2), ("a", D1), ("d", D1), ("c", D3)],
                    index=[("c", D3), ("a", D2), ("b", ""), ("z", D1)])
    assert diff.unchanged == 1                                               # c
    assert list(diff.changed.sorted()) == ["a", "b"] == diff.sample_changed  # a differs; b has no digest
    assert list(diff.to_index.sorted()) == ["d"] and list(diff.to_delete.sorted()) == ["z"]
    assert diff.in_source == 4 and diff.in_index == 4
    assert list(diff.to_write()) == ["a", "b", "d"]                          # the repair sends missing and changed


def test_a_document_without_a_digest_is_changed_never_deleted(tmp_path):
    diff = _content(tmp_path, source=[("a", D1)], index=[("a", "")])
    assert (diff.unchanged, diff.changed.added, diff.to_delete.added, diff.to_index.added) == (0, 1, 0, 0)


def test_a_repeated_key_compares_unchanged_when_the_index_holds_one_of_its_documents(tmp_path):
    source = [("k", D1), ("k", D2), ("k", D1)]              # one id, two documents (a key that repeats)
    assert _content(tmp_path, source, [("k", D2)]).unchanged == 1
    assert list(_content(tmp_path, source, [("k", D3)]).changed.sorted()) == ["k"]
    assert _content(tmp_path, source, [("k", D3)]).in_source == 1


def test_by_content_the_merge_join_agrees_with_dict_arithmetic_on_random_sets(tmp_path):
    rnd = random.Random(11)
    source = {f"{rnd.randrange(4000):05d}\t{n % 2}": rnd.choice((D1, D2)) for n in range(2500)}
    index = {f"{rnd.randrange(4000):05d}\t{n % 2}": rnd.choice((D1, D2, "")) for n in range(2500)}
    pairs = lambda d: rnd.sample(sorted(d.items()), len(d))  # noqa: E731
    diff = _content(tmp_path, pairs(source), pairs(index), 101)
    both = source.keys() & index.keys()
    assert list(diff.changed.sorted()) == sorted(k for k in both if source[k] != index[k])
    assert diff.unchanged == sum(source[k] == index[k] for k in both)
    assert list(diff.to_index.sorted()) == sorted(source.keys() - index.keys())
    assert list(diff.to_delete.sorted()) == sorted(index.keys() - source.keys())
    assert diff.sample_changed == sorted(k for k in both if source[k] != index[k])[:SAMPLE]
