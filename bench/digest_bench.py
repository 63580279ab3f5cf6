"""The digest's CPU cost (issue 21): ``documents.encode_chunk`` over sensors-like documents, without and with
``digest=True``, interleaved in one process, medians of several rounds. Reported, not asserted.

    python bench/digest_bench.py                         # 100,000 documents, 7 rounds, both side by side
    python bench/digest_bench.py --only on --rounds 1    # one side, to time as a whole process
    python bench/digest_bench.py --scroll http://127.0.0.1:9200   # reading the index's side, three ways

``--scroll``: an index ``bench-digest-scroll`` of ``--docs`` documents (keyword ``indexer_digest``, doc
values on; ``--pad``: about that many bytes more each, in nested notes), read whole by a scroll of 10,000
a page: ids only (reconcile without digest), ``_source`` filtered to the field, and ``docvalue_fields``;
the medians of ``--rounds`` reads each, interleaved. The index is deleted after.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time
import urllib.request

from indexer.documents import encode_chunk

SCROLL_INDEX = "bench-digest-scroll"
READS = {
    "ids only": ({"_source": False}, "hits.hits._id"),
    "_source filtered": ({"_source": ["indexer_digest"]}, "hits.hits._id,hits.hits._source.indexer_digest"),
    "docvalue_fields": ({"_source": False, "docvalue_fields": ["indexer_digest"]},
                        "hits.hits._id,hits.hits.fields.indexer_digest"),
}


def _docs(n: int, pad: int = 0) -> list[dict]:
    rnd = random.Random(4)
    start = dt.datetime(2025, 1, 1)
    return [{"code": f"SEN{i:07d}", "description": f"sensor {i} on floor {i % 9}", "site": f"SITE{i % 40:02d}",
             "value": round(rnd.uniform(-40, 60), 3), "date_updated": start + dt.timedelta(seconds=i),
             **({"notes": [{"n": k, "text": rnd.randbytes(pad // 8).hex()} for k in range(4)]} if pad else {})}
            for i in range(n)]


def _encode(docs: list[dict], digest: bool, chunk: int) -> float:
    began = time.process_time()
    for at in range(0, len(docs), chunk):
        encode_chunk(docs[at:at + chunk], ["code"], first_row=at, digest=digest)
    return time.process_time() - began


def _call(url: str, method: str, path: str, body: bytes | dict | None = None) -> dict:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    kind = "application/x-ndjson" if isinstance(body, bytes) else "application/json"
    req = urllib.request.Request(url + path, data=data, method=method, headers={"content-type": kind})
    with urllib.request.urlopen(req, timeout=300) as resp:
        return json.loads(resp.read() or b"null")


def _read(url: str, body: dict, fields: str) -> tuple[float, int]:
    began, seen = time.perf_counter(), 0
    page = _call(url, "POST", f"/{SCROLL_INDEX}/_search?scroll=1m&filter_path=_scroll_id,{fields}",
                 {"size": 10_000, "sort": ["_doc"], **body})
    while hits := page.get("hits", {}).get("hits"):
        seen += len(hits)
        page = _call(url, "POST", f"/_search/scroll?filter_path=_scroll_id,{fields}",
                     {"scroll": "1m", "scroll_id": page["_scroll_id"]})
    _call(url, "DELETE", "/_search/scroll", {"scroll_id": [page["_scroll_id"]]})
    return time.perf_counter() - began, seen


def scroll(url: str, n: int, rounds: int, pad: int) -> None:
    _call(url, "PUT", f"/{SCROLL_INDEX}", {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": {
        "properties": {"indexer_digest": {"type": "keyword", "index": False},  # bench-*'s template may be strict
                       "notes": {"properties": {"n": {"type": "long"}, "text": {"type": "text"}}}}}})
    try:
        docs = _docs(n, pad)
        for at in range(0, n, 10_000):
            out = encode_chunk(docs[at:at + 10_000], ["code"], digest=True)
            answer = _call(url, "POST", f"/{SCROLL_INDEX}/_bulk", b"".join(a.line for a in out.actions))
            if answer["errors"]:
                raise SystemExit(f"bulk refused: {next(i for i in answer['items'] if 'error' in i['index'])}")
        _call(url, "POST", f"/{SCROLL_INDEX}/_forcemerge?max_num_segments=1")
        _call(url, "POST", f"/{SCROLL_INDEX}/_refresh")
        times: dict[str, list[float]] = {name: [] for name in READS}
        for _ in range(rounds):
            for name, (body, fields) in READS.items():
                seconds, seen = _read(url, body, fields)
                assert seen == n, (name, seen)
                times[name].append(seconds)
        for name, spent in times.items():
            print(f"{name:>16}: median {statistics.median(spent):.2f} s for {n} documents "
                  f"({n / statistics.median(spent):,.0f} a second)")
    finally:
        _call(url, "DELETE", f"/{SCROLL_INDEX}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk", type=int, default=5_000)
    parser.add_argument("--only", choices=("on", "off"))
    parser.add_argument("--scroll", metavar="URL", help="time the index side's reads on this node instead")
    parser.add_argument("--pad", type=int, default=0, help="--scroll: about this many more bytes a document "
                        "(four nested notes, as children would add)")
    args = parser.parse_args()
    if args.scroll:
        return scroll(args.scroll.rstrip("/"), args.docs, args.rounds, args.pad)
    docs = _docs(args.docs)
    sides = [args.only == "on"] if args.only else [False, True]
    times: dict[bool, list[float]] = {side: [] for side in sides}
    _encode(docs[:args.chunk], True, args.chunk)  # warm-up
    for _ in range(args.rounds):
        for side in sides:
            times[side].append(_encode(docs, side, args.chunk))
    for side in sides:
        median = statistics.median(times[side])
        print(f"digest {'on ' if side else 'off'}: median {median * 1e3:.1f} ms CPU for {args.docs} documents "
              f"({median / args.docs * 1e6:.2f} us each; rounds {', '.join(f'{t * 1e3:.0f}' for t in times[side])})")
    if len(sides) == 2:
        ratios = [on / off for off, on in zip(times[False], times[True], strict=True)]
        print(f"on / off: median {statistics.median(ratios):.2f} (round by round: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
