"""indexer.watermark: watermark values keep their type, apply the lookback in it, and are stored exactly."""

import datetime as dt
from decimal import Decimal

import pytest

from indexer.values import DbText, Unconvertible

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
        wm.type_of(True)
    with pytest.raises(SourceError):
        wm.type_of(b"\x00")


# ---------------------------------------------------------------- issue 8: NULL and odd watermarks


def bad_value(call) -> wm.WatermarkValueError:
    with pytest.raises(wm.WatermarkValueError) as info:
        call()
    assert isinstance(info.value, SourceError) and "\n" not in str(info.value)
    return info.value


def test_keys_of_iso_text_are_times_and_null_has_no_key():
    keys = wm.keys_of([None, "2024-01-01 10:00:00", "2024-01-01T09:00", None, "2024-01-02"])
    assert keys == [None, dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 1, 9), None, dt.datetime(2024, 1, 2)]


def test_keys_of_numbers_compare_whatever_their_python_type():
    keys = wm.keys_of([3, Decimal("2.5"), 4.0, None])
    assert keys == [3, Decimal("2.5"), 4.0, None] and max(k for k in keys if k is not None) == 4.0


def test_the_run_kind_is_the_first_non_null_value_or_none():
    assert wm.run_kind([None, "2024-01-01T10:00:00Z"]) == "ISO text with offset"
    assert wm.run_kind([None, None]) is None
    assert wm.run_kind(["2024-01-01"], "text") == "text"


@pytest.mark.parametrize("values, kind, position, reason", [
    # a SQLite text column mixing naive and offset timestamps: was "can't compare offset-naive and offset-aware"
    (["2024-01-01 10:00:00", None, "2024-01-01T10:00:00+02:00"], None, 2, "mixes timestamps with and without a UTC offset"),
    (["2024-01-01T10:00:00Z", "2024-01-01 10:00:00"], None, 1, "mixes timestamps with and without a UTC offset"),
    (["2024-01-01 10:00:00"], "ISO text with offset", 0, "mixes timestamps with and without a UTC offset"),
    # an empty string: was "Invalid isoformat string: ''"
    (["2024-01-01 10:00:00", ""], None, 1, "empty text"),
    (["", "2024-01-01 10:00:00"], None, 0, "empty text"),
    (["2024-01-01", "  "], None, 1, "empty text"),
    (["2024-01-01", "yesterday"], None, 1, "not ISO-8601 text"),
    (["2024-01-01", "2024-02-30"], None, 1, "not a valid ISO-8601 date or time"),
    ([dt.datetime(2024, 1, 1), 5], None, 1, "a number among timestamps"),
    ([dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=UTC)], None, 1,
     "mixes timestamps with and without a UTC offset"),
    ([dt.date(2024, 1, 1), dt.datetime(2024, 1, 1)], None, 1, "a timestamp among dates"),
    ([5, "2024-01-01"], None, 1, "ISO-8601 text among numbers"),
    ([1, float("nan")], None, 1, "NaN"),
    ([Decimal("NaN")], None, 0, "NaN"),
    ([None, True], None, 1, "a boolean (a boolean column cannot be a watermark)"),
    ([b"\x00"], None, 0, "bytes, not a timestamp, date, number or text"),
])
def test_a_value_of_another_kind_is_named_by_position_and_reason(values, kind, position, reason):
    error = bad_value(lambda: wm.keys_of(values, kind))
    assert (error.position, error.reason) == (position, reason)
    assert str(error) == f"job.watermark value {position + 1} of the chunk: {reason}"


def test_iso_looking_text_among_plain_text_compares_as_text():
    assert wm.keys_of(["v-0042", "2024-01-01"]) == ["v-0042", "2024-01-01"]


@pytest.mark.parametrize("a, b, reason", [
    ("2024-01-01 10:00:00", "2024-01-01T10:00:00+02:00", "mixes timestamps with and without a UTC offset"),
    ("2024-01-01 10:00:00", "", "empty text"),
    ("", "2024-01-01 10:00:00", "empty text"),
    (dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=UTC), "mixes timestamps with and without a UTC offset"),
])
def test_newer_and_at_least_refuse_values_that_do_not_compare(a, b, reason):
    assert bad_value(lambda: wm.newer(a, b)).reason == reason
    assert bad_value(lambda: wm.at_least(a, b)).reason == reason


def test_newer_and_at_least_still_compare_in_the_values_type():
    assert wm.newer(None, "") == "" and wm.newer(5, None) == 5  # NULL is oldest; nothing else to compare
    assert wm.newer(3, Decimal("3.5")) == Decimal("3.5")
    assert wm.at_least("2024-01-01T10:00:00+02:00", "2024-01-01T08:00:00Z")


@pytest.mark.parametrize("value, lookback, reason", [
    ("", "5m", "empty text"),
    ("2024-02-30 10:00:00", "5m", "not a valid ISO-8601 date or time"),
    ("0001-01-01 00:00:00", "5m", "out of range once job.lookback is subtracted"),
    (dt.datetime(1, 1, 1, 0, 2), "5m", "out of range once job.lookback is subtracted"),
    (dt.date(1, 1, 2), "2d", "out of range once job.lookback is subtracted"),
    (Decimal("NaN"), 1, "NaN"),
])
def test_minus_refuses_values_it_cannot_look_back_from(value, lookback, reason):
    error = bad_value(lambda: wm.minus(value, lookback))
    assert (error.position, error.reason) == (None, reason)
    assert str(error) == f"job.watermark value: {reason}"


@pytest.mark.parametrize("value", [
    dt.datetime.max, dt.datetime.min, dt.datetime.max.replace(tzinfo=UTC), dt.date.max, dt.date.min,
    float("inf"), float("-inf"), Decimal("Infinity"), Decimal("-Infinity"), float("nan"), Decimal("NaN"),
    DbText("infinity"), DbText("-infinity"), DbText("24:00:00"), DbText("10000-01-01"),
    Unconvertible("an interval beyond Python's range"),
])
def test_a_value_that_is_no_point_in_time_is_never_a_watermark(value):
    """psycopg2 gave datetime.max for 'infinity'; stored, it froze sync for good."""
    for call in (lambda: wm.value_kind(value), lambda: wm.keys_of([None, value]), lambda: wm.minus(value, "5m"),
                 lambda: wm.newer(value, value)):
        error = bad_value(call)
        assert isinstance(error, wm.NotAPointError), error


@pytest.mark.parametrize("kind, values, position", [
    ("timestamp", [dt.datetime(2024, 1, 1), dt.datetime.max], 1),
    ("timestamp with offset", [dt.datetime.min.replace(tzinfo=UTC), dt.datetime(2024, 1, 1, tzinfo=UTC)], 0),
    ("date", [dt.date(2024, 1, 1), None, dt.date.max], 2),
    ("number", [1, float("inf")], 1),
    ("number", [Decimal("-Infinity"), 2], 0),
])
def test_the_fast_path_never_takes_a_stand_in_for_a_point(kind, values, position):
    error = bad_value(lambda: wm.keys_of(values, kind))
    assert isinstance(error, wm.NotAPointError) and error.position == position
