"""indexer.indices: the names of the indices a reindex creates (the alias and the UTC second, never a
name taken) and the ones it owns (exactly ``<alias>-`` and fourteen digits, oldest first)."""


import datetime as dt

from indexer.indices import index_name, owned_indices

PARIS_SUMMER = dt.timezone(dt.timedelta(hours=2))
NOW = dt.datetime(2026, 3, 1, 1, 30, 5, 700_000, tzinfo=PARIS_SUMMER)  # 2026-02-28 23:30:05 UTC


def test_index_name_is_the_alias_and_the_utc_time_to_the_second():
    assert index_name("sensors", NOW, []) == "sensors-20260228233005"


def test_older_indices_do_not_change_the_name():
    assert index_name("sensors", NOW, ["sensors-20250101000000"]) == "sensors-20260228233005"


def test_a_name_taken_in_the_same_second_moves_one_second_on():
    assert index_name("sensors", NOW, ["sensors-20260228233005"]) == "sensors-20260228233006"


def test_a_newer_existing_index_moves_the_name_past_it():
    existing = ["sensors-20260228233005", "sensors-20260301000000"]  # a clock that went backwards
    assert index_name("sensors", NOW, existing) == "sensors-20260301000001"


def test_owned_indices_are_exactly_alias_dash_fourteen_digits_oldest_first():
    names = [
        "sensors-20260201000000",
        "sensors-eu-20260101000000",
        "sensors-2026",
        "sensors-202601010000001",
        "sensors",
        "sensors-20260101000000",
        "other-20260101000000",
        "sensors-20260101000000-restored",
    ]
    assert owned_indices("sensors", names) == ["sensors-20260101000000", "sensors-20260201000000"]


def test_alias_characters_are_matched_literally():
    assert owned_indices("plant.sensors", ["plantxsensors-20260101000000", "plant.sensors-20260101000000"]) == [
        "plant.sensors-20260101000000"
    ]


def test_a_name_made_by_index_name_is_owned():
    name = index_name("sensors", NOW, [])
    assert owned_indices("sensors", [name]) == [name]


def test_a_name_just_freed_by_deleting_an_orphan_is_not_reused():
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    orphan = "sensors-20260101120000"
    assert index_name("sensors", now, [] + [orphan]) == "sensors-20260101120001"
