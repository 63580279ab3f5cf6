"""Watermarks keep their type, apply the lookback in it, and are stored exactly."""

import datetime as dt
from decimal import Decimal

import pytest

from indexer import watermark as wm
from indexer.errors import ConfigError, SourceError

UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))


@pytest.mark.parametrize("text, seconds", [("5m", 300), ("90s", 90), ("1h", 3600), ("2d", 172800), ("1.5m", 90),
                                           ("250ms", 0.25), ("0s", 0), (30, 30)])
def test_durations(text, seconds):
    assert wm.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "-1m", "m", ""])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        wm.parse_duration(bad)


@pytest.mark.parametrize("value", [
    dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=PLUS2),
    dt.date(2024, 1, 2),
    2**62 + 1,
    Decimal("12345678901234567890.000001"),
    "2024-01-02 03:04:05",
    "v-0042",
])
def test_stored_state_round_trips_exactly(value):
    state = wm.to_state(value)
    assert isinstance(state["value"], str)
    back = wm.from_state(state)
    assert back == value and type(back) is type(value)
    if isinstance(value, dt.datetime):
        assert back.tzinfo == value.tzinfo and back.microsecond == value.microsecond


def test_naive_stays_naive_and_aware_stays_aware():
    assert wm.minus(dt.datetime(2024, 1, 1, 0, 3), "5m") == dt.datetime(2023, 12, 31, 23, 58)
    aware = wm.minus(dt.datetime(2024, 1, 1, 0, 3, tzinfo=PLUS2), "5m")
    assert aware == dt.datetime(2024, 1, 1, 0, 3, tzinfo=PLUS2) - dt.timedelta(minutes=5) and aware.tzinfo == PLUS2


@pytest.mark.parametrize("text, expected", [
    ("2024-01-01 00:03:00", "2023-12-31 23:58:00"),
    ("2024-01-01T00:03:00", "2023-12-31T23:58:00"),
    ("2024-01-01T00:03:00.123", "2023-12-31T23:58:00.123"),
    ("2024-01-01T00:03:00.123456Z", "2023-12-31T23:58:00.123456Z"),
    ("2024-01-01T00:03:00+01:00", "2023-12-31T23:58:00+01:00"),
    ("2024-01-01 00:03", "2023-12-31 23:58"),
    ("2024-01-02", "2024-01-01"),
])
def test_iso_text_is_looked_back_in_its_own_layout(text, expected):
    assert wm.minus(text, "5m" if len(text) > 10 else "1d") == expected


def test_numeric_watermarks_take_a_numeric_lookback():
    assert wm.minus(100, 5) == 95
    assert wm.minus(Decimal("10.5"), 2) == Decimal("8.5")
    with pytest.raises(ConfigError, match="must be a number"):
        wm.minus(100, "5m")


def test_plain_text_watermarks_need_a_zero_lookback():
    assert wm.minus("b'; DROP TABLE sensors;--", "0s") == "b'; DROP TABLE sensors;--"
    with pytest.raises(ConfigError, match="must be 0"):
        wm.minus("v-0042", "5m")


def test_text_timestamps_compare_as_times_not_as_strings():
    assert wm.newer("2024-01-01T10:00:00+02:00", "2024-01-01T09:00:00+00:00") == "2024-01-01T09:00:00+00:00"
    assert wm.at_least("2024-01-01 00:00:01", "2024-01-01 00:00:00")


def test_a_tampered_stored_watermark_is_a_config_error():
    with pytest.raises(ConfigError, match="stored watermark is not valid"):
        wm.from_state({"type": "text", "value": "'; DROP TABLE sensors;--"})
    with pytest.raises(ConfigError):
        wm.from_state({"type": "datetime", "value": "yesterday"})


def test_booleans_and_blobs_cannot_be_watermarks():
    with pytest.raises(SourceError):
        wm.kind_of(True)
    with pytest.raises(SourceError):
        wm.kind_of(b"\x00")
