"""indexer.scratch: throwaway indices. Their names never match an alias's pattern, only old ones are
leftovers, and one takes the template's settings without a lifecycle policy, allocation or replicas."""

import datetime as dt
import fnmatch

import pytest

from indexer import scratch


@pytest.mark.parametrize("alias", ["indexer", "indexer_preview", "i", "sensors"])
def test_a_throwaway_name_never_matches_an_alias_pattern(alias):
    name = scratch.scratch_name(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    assert name.startswith("indexer_preview_20260102030405_") and "-" not in name
    assert not fnmatch.fnmatch(name, f"{alias}-*")


def test_only_old_throwaway_indices_are_leftovers():
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.timezone.utc)
    assert scratch.is_leftover(scratch.scratch_name(now - dt.timedelta(minutes=11)), now)
    assert not scratch.is_leftover(scratch.scratch_name(now - dt.timedelta(minutes=1)), now)
    assert not scratch.is_leftover("indexer_preview_20200101000000_nothex!!", now)
    assert not scratch.is_leftover("indexer_preview_mine", now)


def test_a_throwaway_index_takes_the_template_settings_but_no_policy_allocation_or_replicas():
    simulated = {"index": {"number_of_shards": "2", "number_of_replicas": "1", "analysis": {"analyzer": {}},
                           "lifecycle": {"name": "p"}, "routing": {"allocation": {}}, "refresh_interval": "1s"}}
    assert scratch.scratch_settings(simulated) == {"index": {
        "number_of_shards": "2", "analysis": {"analyzer": {}}, "refresh_interval": "1s", "number_of_replicas": 0}}
