"""indexer.documents: rows become documents. Ids, nesting, JSON encoding, chunking, byte batches."""

import base64
import datetime as dt
import hashlib
import itertools
import json
from decimal import Decimal

import orjson
import pytest

from indexer.documents import (
    byte_batches,
    MAX_ID_BYTES,
    check_key_columns,
    column_names,
    doc_id,
    dumps,
    encode_chunk,
    index_action,
    make_row_mapper,
)
from indexer.errors import ConfigError, RowError
from indexer.values import DbText, Unconvertible

NAN, INF = float("nan"), float("inf")


def _refuse_constant(name):
    raise AssertionError(f"invalid JSON constant {name} was written")


def strict(body: bytes):
    """Parse like a cluster would: NaN/Infinity are not JSON."""
    return json.loads(body, parse_constant=_refuse_constant)


def value_of(value):
    """What the cluster receives for a field holding ``value``."""
    return strict(dumps({"v": value}))["v"]


class FakeLob:
    """Stands in for an oracledb LOB locator: read() returns the whole value."""

    def __init__(self, value):
        self.value = value

    def read(self):
        return self.value


# ---------------------------------------------------------------- doc_id: one key column


@pytest.mark.parametrize(
    "value, expected",
    [
        ("sensor-17", "sensor-17"),
        (42, "42"),
        (Decimal("42.000"), "42"),
        (Decimal("1.50"), "1.5"),
        (3.0, "3"),
        (2.5, "2.5"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (b"\x01\xff", "01ff"),
        (True, "true"),
    ],
)
def test_single_key_value_becomes_its_text(value, expected):
    assert doc_id({"id": value, "other": "x"}, ["id"]) == expected


def test_the_same_number_gives_the_same_id_whatever_the_driver_type():
    ids = {doc_id({"id": v}, ["id"]) for v in (42, Decimal("42"), Decimal("42.0"), 42.0)}
    assert ids == {"42"}


def test_key_can_be_a_dotted_path_into_a_nested_document():
    assert doc_id({"metadata": {"source": "probe-1"}}, ["metadata.source"]) == "probe-1"


def test_null_key_rejects_the_row_naming_the_column():
    with pytest.raises(RowError, match=r"'site'.*NULL"):
        doc_id({"site": None, "n": 1}, ["site", "n"])


def test_missing_key_column_rejects_the_row():
    with pytest.raises(RowError, match="'id'"):
        doc_id({"other": 1}, ["id"])


def test_nan_key_rejects_the_row():
    with pytest.raises(RowError, match="NaN"):
        doc_id({"id": NAN}, ["id"])


# ---------------------------------------------------------------- doc_id: composite keys


def test_composite_key_joins_values_with_a_bar():
    assert doc_id({"site": "eu", "n": 7}, ["site", "n"]) == "eu|7"


def test_composite_keys_with_bars_do_not_collide():
    assert doc_id({"a": "a|b", "b": "c"}, ["a", "b"]) != doc_id({"a": "a", "b": "b|c"}, ["a", "b"])


def test_composite_keys_with_backslashes_do_not_collide():
    assert doc_id({"a": "a\\", "b": "|b"}, ["a", "b"]) != doc_id({"a": "a\\|", "b": "b"}, ["a", "b"])


def test_composite_ids_are_distinct_for_every_pair_of_short_strings_over_bar_and_backslash():
    words = ["".join(p) for n in range(4) for p in itertools.product("a|\\", repeat=n)]
    pairs = list(itertools.product(words, repeat=2))
    ids = {doc_id({"x": x, "y": y}, ["x", "y"]) for x, y in pairs}
    assert len(ids) == len(pairs)


# ---------------------------------------------------------------- doc_id: long ids


def test_id_of_exactly_512_bytes_is_kept():
    assert doc_id({"id": "x" * MAX_ID_BYTES}, ["id"]) == "x" * MAX_ID_BYTES


def test_id_over_512_bytes_becomes_a_sha256_digest():
    text = "x" * 600
    id_ = doc_id({"id": text}, ["id"])
    assert id_ == "#" + hashlib.sha256(text.encode()).hexdigest()
    assert len(id_) == 65 and len(id_.encode()) < MAX_ID_BYTES


def test_id_over_512_utf8_bytes_but_fewer_characters_is_hashed():
    text = "é" * 300  # 300 characters, 600 bytes
    assert doc_id({"id": text}, ["id"]) == "#" + hashlib.sha256(text.encode()).hexdigest()


def test_long_composite_ids_stay_distinct_after_hashing():
    a = doc_id({"a": "x" * 600, "b": "1"}, ["a", "b"])
    b = doc_id({"a": "x" * 600, "b": "2"}, ["a", "b"])
    assert a.startswith("#") and b.startswith("#") and a != b


# ---------------------------------------------------------------- columns and nesting


def test_column_names_are_lower_cased():
    description = [("ID", None), ("Metadata.Source", None), ("reading", None)]
    assert column_names(description) == ("id", "metadata.source", "reading")


def test_flat_columns_map_to_a_flat_document():
    mapper = make_row_mapper(["id", "reading"])
    assert mapper((1, 20.5)) == {"id": 1, "reading": 20.5}


def test_dotted_columns_become_nested_objects():
    mapper = make_row_mapper(["id", "metadata.source", "metadata.kind"])
    assert mapper((1, "probe", "temp")) == {"id": 1, "metadata": {"source": "probe", "kind": "temp"}}


@pytest.mark.parametrize("columns", [["a", "a.b"], ["a.b", "a"], ["a.b", "a.b.c"]])
def test_a_column_and_a_column_nested_under_it_conflict(columns):
    with pytest.raises(ConfigError, match="conflict"):
        make_row_mapper(columns)


def test_duplicate_columns_are_refused_naming_the_column():
    with pytest.raises(ConfigError, match="'id' more than once"):
        make_row_mapper(["id", "name", "id"])


def test_columns_differing_only_in_case_are_duplicates():
    with pytest.raises(ConfigError, match="'id'"):
        make_row_mapper(column_names([("ID",), ("id",)]))


def test_a_column_with_an_empty_path_part_is_refused():
    with pytest.raises(ConfigError, match="empty part"):
        make_row_mapper(["id", "metadata..source"])


# ---------------------------------------------------------------- dumps: numbers


@pytest.mark.parametrize(
    "value, expected",
    [
        (Decimal(2**53 + 1), 2**53 + 1),  # exact, not rounded through a double
        (Decimal(2**63 - 1), 2**63 - 1),
        (Decimal(-(2**63)), -(2**63)),
        (Decimal(2**63), str(2**63)),
        (Decimal(-(2**63) - 1), str(-(2**63) - 1)),
        (Decimal("42.000"), 42),
        (Decimal("0.1"), 0.1),
        (Decimal("1.50"), 1.5),
        (Decimal("0.1000000000000000000001"), "0.1000000000000000000001"),
        (Decimal("123456789012345678.5"), "123456789012345678.5"),
    ],
)
def test_decimal_is_a_json_number_only_when_nothing_is_lost(value, expected):
    got = value_of(value)
    assert got == expected and type(got) is type(expected)


def test_decimal_integer_above_2_53_is_written_digit_for_digit():
    assert dumps({"v": Decimal(2**53 + 1)}) == b'{"v":9007199254740993}'


@pytest.mark.parametrize("value", [2**63 - 1, -(2**63)])
def test_python_int_in_the_long_range_stays_a_number(value):
    assert value_of(value) == value


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 10**30])
def test_python_int_beyond_a_long_becomes_a_string(value):
    assert value_of(value) == str(value)


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_python_int_just_beyond_a_signed_long_becomes_a_string(value):
    assert value_of(value) == str(value)


def test_python_int_just_beyond_a_signed_long_inside_a_list_becomes_a_string():
    assert value_of([1, 2**63]) == [1, str(2**63)]


# ---------------------------------------------------------------- dumps: NaN and Infinity


@pytest.mark.parametrize(
    "doc",
    [
        {"v": NAN},
        {"v": INF},
        {"v": -INF},
        {"v": Decimal("NaN")},
        {"v": Decimal("Infinity")},
        {"v": Decimal("-Infinity")},
        {"a": {"b": NAN}},
        {"a": {"b": Decimal("NaN")}},
        {"v": [1.0, INF]},
        {"v": [Decimal("1"), Decimal("-Infinity")]},
        {"a": {"b": [{"c": NAN}]}},
    ],
)
def test_nan_and_infinity_reject_the_row(doc):
    with pytest.raises(RowError, match="NaN or Infinity"):
        dumps(doc)


def test_nan_rejection_names_the_nested_field():
    with pytest.raises(RowError, match=r"'metadata\.reading'"):
        dumps({"id": 1, "metadata": {"reading": NAN}})


def test_decimal_nan_rejection_names_the_field():
    with pytest.raises(RowError, match=r"'reading'"):
        dumps({"id": 1, "reading": Decimal("NaN")})


# ---------------------------------------------------------------- dumps: other types


def test_null_stays_null_next_to_other_values():
    assert strict(dumps({"a": None, "b": 1, "c": "null"})) == {"a": None, "b": 1, "c": "null"}


def test_bytes_become_padded_base64():
    assert value_of(b"\x00\xff") == "AP8="
    assert base64.b64decode(value_of(bytes(range(256)))) == bytes(range(256))


@pytest.mark.parametrize(
    "value, expected",
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 123456), "2024-01-02T03:04:05.123456"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))), "2024-01-02T03:04:05+02:00"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "2024-01-02T03:04:05+00:00"),
        (dt.date(2024, 1, 2), "2024-01-02"),
    ],
)
def test_dates_and_times_become_iso_8601(value, expected):
    assert value_of(value) == expected


def test_timedelta_becomes_seconds():
    assert value_of(dt.timedelta(minutes=1, microseconds=500_000)) == 60.5


def test_lob_text_is_read_whole():
    assert value_of(FakeLob("a long clob text")) == "a long clob text"


def test_lob_bytes_are_read_and_base64_encoded():
    assert value_of(FakeLob(b"\x00\x01blob")) == base64.b64encode(b"\x00\x01blob").decode()


def test_lob_is_read_when_the_document_also_holds_a_null():
    assert strict(dumps({"body": FakeLob("text"), "note": None})) == {"body": "text", "note": None}


def test_a_value_of_unknown_type_rejects_the_row_instead_of_crashing():
    with pytest.raises(RowError, match="object"):
        dumps({"v": object()})


def test_a_row_with_every_supported_type_is_strict_json():
    doc = {
        "id": 1, "name": "ünïcode \"quoted\"", "ok": True, "none": None, "f": 1.25,
        "dec": Decimal("12.5"), "big": 2**70, "raw": b"\x00", "at": dt.datetime(2024, 1, 2),
        "day": dt.date(2024, 1, 2), "took": dt.timedelta(seconds=3), "lob": FakeLob("clob"),
        "metadata": {"tags": ["a", "b"], "values": [Decimal("0.5"), 2]},
    }
    assert strict(dumps(doc))["metadata"] == {"tags": ["a", "b"], "values": [0.5, 2]}


# ---------------------------------------------------------------- encode_chunk


def test_encode_chunk_keeps_good_rows_and_collects_rejected_ones_by_row_number():
    docs = [{"id": 1, "v": 1.5}, {"id": None, "v": 2}, {"id": 3, "v": NAN}, {"id": 4, "v": "x"}]
    out = encode_chunk(docs, ["id"], first_row=100)
    assert [a.id for a in out.actions] == ["1", "4"]
    assert [a.at for a in out.actions] == [0, 3]
    assert [r.row for r in out.rejected] == [101, 102]
    assert "NULL" in out.rejected[0].reason and "NaN" in out.rejected[1].reason
    assert out.rejected[0].doc == {"id": None, "v": 2}


def test_encode_chunk_writes_one_index_action_and_source_per_document():
    out = encode_chunk([{"id": "a", "n": 1}, {"id": "b", "n": 2}], ["id"])
    ndjson = b"".join(a.line for a in out.actions)
    assert ndjson.endswith(b"\n")
    assert [strict(line) for line in ndjson.splitlines()] == [
        {"index": {"_id": "a"}}, {"id": "a", "n": 1}, {"index": {"_id": "b"}}, {"id": "b", "n": 2},
    ]
    assert out.nbytes == len(ndjson)


@pytest.mark.parametrize("value", [
    "a", "é" * 128, "é" * 129, "x" * 600, "a|b", 7, -7, 10**600, True, 2.5, 3.0, Decimal("4.50"),
    dt.date(2024, 1, 2), b"\x01", None,
])
def test_encode_chunk_fast_path_gives_the_bytes_of_doc_id_and_index_action(value):
    """encode_chunk writes the common case (one str/int key) inline: same id, same bytes, same refusals."""
    doc = {"id": value, "n": 1}
    out = encode_chunk([doc], ["id"], first_row=5)
    try:
        expected = index_action(doc_id(doc, ["id"]), dumps(doc))
    except RowError as exc:
        assert out.actions == [] and out.rejected[0].reason == str(exc) and out.rejected[0].row == 5
        return
    assert [a.line for a in out.actions] == [expected] and out.rejected == []
    assert out.actions[0].id == doc_id(doc, ["id"]) and out.nbytes == len(expected)


def test_encode_chunk_a_missing_or_nested_key_takes_the_general_path():
    out = encode_chunk([{"m": {"k": "z"}}, {"other": 1}], ["m.k"], first_row=0)
    assert [a.id for a in out.actions] == ["z"] and [r.row for r in out.rejected] == [1]
    assert "missing" in out.rejected[0].reason


# ---------------------------------------------------------------- byte_batches


def _chunk(n):
    return encode_chunk([{"id": i, "pad": "x" * 50} for i in range(n)], ["id"])


def test_batches_respect_the_byte_limit_and_keep_order():
    chunk = _chunk(10)
    limit = 3 * len(chunk.actions[0].line) + 5
    batches = list(byte_batches(chunk.actions, limit))
    assert len(batches) > 1
    assert all(sum(len(a.line) for a in batch) <= limit for batch in batches)
    assert [a.id for batch in batches for a in batch] == [a.id for a in chunk.actions]
    assert b"".join(a.line for batch in batches for a in batch) == b"".join(a.line for a in chunk.actions)


def test_a_chunk_under_the_limit_is_one_batch():
    chunk = _chunk(3)
    assert [[a.id for a in batch] for batch in byte_batches(chunk.actions, chunk.nbytes)] == [["0", "1", "2"]]


def test_an_action_larger_than_the_limit_stands_alone():
    chunk = encode_chunk([{"id": 1}, {"id": 2, "big": "x" * 5000}, {"id": 3}], ["id"])
    assert [[a.id for a in batch] for batch in byte_batches(chunk.actions, 1024)] == [["1"], ["2"], ["3"]]


def test_no_actions_no_batches():
    assert list(byte_batches([], 1024)) == []


# ---------------------------------------------------------------- check_key_columns


def test_key_columns_present_in_the_query_pass():
    check_key_columns(("id", "site", "metadata.source"), ["site", "id", "metadata.source"], has_transform=False)


def test_missing_key_column_fails_before_any_write_listing_the_columns():
    with pytest.raises(ConfigError, match=r"'sensor_id' is not in the query result \(columns: id, site\)"):
        check_key_columns(("id", "site"), ["sensor_id"], has_transform=False)


def test_a_dotted_key_must_match_a_dotted_column():
    with pytest.raises(ConfigError, match="'metadata.kind'"):
        check_key_columns(("id", "metadata.source"), ["metadata.kind"], has_transform=False)


def test_key_columns_are_not_checked_when_a_transform_shapes_the_documents():
    check_key_columns(("id",), ["made_by_transform"], has_transform=True)


# ---------------------------------------------------------------- values the driver could not hand over as they are


def test_a_time_with_a_zone_is_iso_8601_with_its_offset():
    """orjson refuses a time with tzinfo: every row of a timetz column was rejected."""
    value = dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert orjson.loads(dumps({"t": value, "n": None})) == {"t": "12:30:00+02:00", "n": None}


def test_a_value_postgresql_prints_is_indexed_as_that_text():
    assert orjson.loads(dumps({"at": DbText("infinity"), "t": DbText("24:00:00")})) == {"at": "infinity", "t": "24:00:00"}
    assert doc_id({"k": DbText("-infinity")}, ["k"]) == "-infinity"


def test_an_unconvertible_value_rejects_the_row_naming_its_field():
    with pytest.raises(RowError, match=r"^field 'span.iv': an interval beyond"):
        dumps({"span": {"iv": Unconvertible("an interval beyond Python's range")}})
    with pytest.raises(RowError, match="key value: an interval beyond"):
        doc_id({"k": Unconvertible("an interval beyond Python's range")}, ["k"])


def test_a_column_named_like_a_metadata_field_is_refused_before_any_write():
    with pytest.raises(ConfigError, match=r"column '_id', a metadata field name .* \(\"_id\" AS id_\)$"):
        check_key_columns(("_id", "code"), ["code"], has_transform=False)
    check_key_columns(("_id", "code"), ["code"], has_transform=True)  # the transform may rename it
    check_key_columns(("meta._id", "code"), ["code"], has_transform=False)  # only the top level is reserved
