"""indexer.digest and job.digest in the encoding: every index action's document ends with its digest (BLAKE2b-128
of the bytes it would have without it), spliced into the encoded bytes; a document already holding the field
is rejected; the digest is read back from an action line (the source side) and from a hit (the index side)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from indexer import digest
from indexer.config import Job
from indexer.documents import dumps, encode_chunk
from indexer.errors import ConfigError
from indexer.extract import Reader, ReadPlan, check_columns


def _body(line: bytes) -> bytes:
    return line.split(b"\n")[1]


def test_each_document_ends_with_the_blake2b_128_of_its_bytes_without_the_field():
    docs = [{"id": "a", "n": 1, "when": "2025-01-01"}, {"id": 7, "nested": {"x": [1, 2]}}]
    out = encode_chunk(docs, ["id"], digest=True)
    for doc, action in zip(docs, out.actions, strict=True):
        stored = orjson.loads(_body(action.line))
        assert list(stored) == [*doc, "indexer_digest"]                   # the last field
        assert stored["indexer_digest"] == hashlib.blake2b(dumps(doc), digest_size=16).hexdigest()
        assert {k: v for k, v in stored.items() if k != "indexer_digest"} == doc
        assert digest.of_line(action.line) == stored["indexer_digest"]
    assert out.nbytes == sum(len(a.line) for a in out.actions)


def test_without_digest_the_bytes_are_exactly_as_before():
    docs = [{"id": "a", "n": 1}]
    assert encode_chunk(docs, ["id"]).actions[0].line == b'{"index":{"_id":"a"}}\n{"id":"a","n":1}\n'
    assert encode_chunk(docs, ["id"], digest=False).actions == encode_chunk(docs, ["id"]).actions


@pytest.mark.parametrize("docs, key, version_base", [
    ([{"a": "x|y", "b": 2, "v": 1.5}], ["a", "b"], None),                  # composite key: the general path
    ([{"m": {"k": "z"}, "v": None}], ["m.k"], None),                       # a dotted key
    ([{"id": "long" * 100, "v": "é"}], ["id"], None),                      # an id over the short limit
    ([{"id": 1, "v": 2}], ["id"], 1 << 32),                                # versioned (--allow-duplicates)
])
def test_every_path_of_the_encoder_stamps_the_same_way(docs, key, version_base):
    out = encode_chunk(docs, key, version_base=version_base, digest=True)
    body = _body(out.actions[0].line)
    assert body == digest.stamp(dumps(docs[0]))
    assert orjson.loads(body)["indexer_digest"] == digest.of(dumps(docs[0]))
    if version_base is not None:
        assert b'"version_type":"external_gte"' in out.actions[0].line


def test_a_change_anywhere_in_the_document_changes_the_digest_and_the_same_document_keeps_it():
    one = encode_chunk([{"id": "a", "child": [{"k": 1, "v": "x"}]}], ["id"], digest=True).actions[0]
    same = encode_chunk([{"id": "a", "child": [{"k": 1, "v": "x"}]}], ["id"], digest=True).actions[0]
    other = encode_chunk([{"id": "a", "child": [{"k": 1, "v": "y"}]}], ["id"], digest=True).actions[0]
    assert digest.of_line(one.line) == digest.of_line(same.line) != digest.of_line(other.line)


def test_a_document_that_already_has_the_field_is_rejected_naming_it_and_the_others_go_on():
    out = encode_chunk([{"id": "a"}, {"id": "b", "indexer_digest": "mine"}, {"id": "c"}], ["id"], first_row=10,
                       digest=True)
    assert [a.id for a in out.actions] == ["a", "c"]
    assert [r.row for r in out.rejected] == [11]
    assert "'indexer_digest'" in out.rejected[0].reason and "job.digest" in out.rejected[0].reason
    kept = encode_chunk([{"id": "b", "indexer_digest": "mine"}], ["id"])          # digest off: a field like any
    assert orjson.loads(_body(kept.actions[0].line)) == {"id": "b", "indexer_digest": "mine"}


def test_an_empty_object_is_stamped_without_a_stray_comma():
    assert orjson.loads(digest.stamp(b"{}")) == {"indexer_digest": digest.of(b"{}")}


@pytest.mark.parametrize("source, expected", [
    ({"indexer_digest": "0123456789abcdef0123456789abcdef"}, "0123456789abcdef0123456789abcdef"),
    ({}, ""),                                                  # written before digest was on
    ({"indexer_digest": "short"}, ""),                         # not one of ours: counted changed
    ({"indexer_digest": 12}, ""),
    (None, ""),
])
def test_a_hits_digest_is_empty_when_missing_or_odd(source, expected):
    assert digest.of_source(source) == expected


def _job(**settings) -> Job:
    return Job(source={"dbtype": "SQLITE", "filename": "unused.db"},
               job={"alias": "t", "key": ["code"], "query": "SELECT 1", **settings})


def test_a_query_column_named_like_the_field_fails_before_any_write_when_digest_is_on():
    with pytest.raises(ConfigError, match="the query returns column 'indexer_digest'.*job.digest = false"):
        check_columns(_job(digest=True).job, ("code", "indexer_digest"), False)
    check_columns(_job().job, ("code", "indexer_digest"), False)                   # digest off: a column like any


def test_the_reader_stamps_documents_when_the_job_says_so():
    for on in (True, False):
        r = Reader(_job(digest=on), ReadPlan("SELECT 1", None, "reindex"))
        r._columns(("code", "v"))
        line = r.encode([("a", 1)], seq=0, first_row=0).actions[0].line
        assert (b'"indexer_digest"' in line) is on
