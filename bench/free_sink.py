"""A search engine that costs nothing: every ``_bulk`` action is answered "created", nothing is stored.

    python bench/free_sink.py                 # listens on a free port of 127.0.0.1; prints its URL, then serves
    python bench/free_sink.py --port 9299

For the partitions benchmark (bench/partitions_bench.py): slices that send into this server show
what the client side alone can do (read, encode, send, parse the answers), without an engine's CPU.

::

    POST /<index>/_bulk, /_bulk  --> one item per action line: status 201 "created" (200 "deleted" for a
                                     delete), its _index and _id taken from the action line; errors false
    GET /, HEAD /                --> what OpenSearch 2.19 answers (the indexer's client says hello first)
    GET /_sink/stats             --> {"requests", "actions", "bytes"}: what it has acknowledged since it started
    anything else                --> 404 with an engine-shaped error

Only counters are kept; no document, body or id outlives its request. It prints its URL on its
first line of stdout once it listens, so a parent can start it with port 0 and read where it is.
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import orjson
from aiohttp import web

MAX_BODY = 512 * 1024 * 1024  # aiohttp's default (1 MiB) is below one bulk request of the indexer (8 MiB)
INFO = {
    "name": "free-sink",
    "cluster_name": "free-sink",
    "cluster_uuid": "free-sink-0000000000000",
    "version": {
        "distribution": "opensearch",
        "number": "2.19.1",
        "build_type": "tar",
        "build_hash": "free-sink",
        "build_date": "2025-02-27T00:00:00.000000Z",
        "build_snapshot": False,
        "lucene_version": "9.12.1",
        "minimum_wire_compatibility_version": "7.10.0",
        "minimum_index_compatibility_version": "7.0.0",
    },
    "tagline": "The OpenSearch Project: https://opensearch.org/",
}


def bulk_items(body: bytes, index: str | None) -> list[dict]:
    """One successful item per action of an NDJSON bulk body (a source line follows every action but delete)."""
    items = []
    lines = body.split(b"\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        (op, meta), = orjson.loads(line).items()
        status, result = (200, "deleted") if op == "delete" else (201, "created")
        items.append({op: {"_index": meta.get("_index", index), "_id": meta.get("_id"), "_version": 1,
                           "result": result, "status": status}})
        if op != "delete":
            i += 1  # the document
    return items


class FreeSink:
    """The request handlers and their counters."""

    def __init__(self) -> None:
        self.stats = {"requests": 0, "actions": 0, "bytes": 0}

    async def bulk(self, request: web.Request) -> web.Response:
        body = await request.read()
        items = bulk_items(body, request.match_info.get("index"))
        self.stats["requests"] += 1
        self.stats["actions"] += len(items)
        self.stats["bytes"] += len(body)
        return web.Response(body=orjson.dumps({"took": 0, "errors": False, "items": items}), content_type="application/json")

    async def info(self, request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(INFO), content_type="application/json")

    async def counters(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def missing(self, request: web.Request) -> web.Response:
        error = {"type": "free_sink_exception", "reason": f"the free sink answers only GET / and _bulk, not "
                 f"{request.method} {request.path}"}
        return web.Response(status=404, body=orjson.dumps({"error": {**error, "root_cause": [error]}, "status": 404}),
                            content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/", self.info)  # aiohttp answers HEAD for a GET route too
        app.router.add_get("/_sink/stats", self.counters)
        app.router.add_post("/_bulk", self.bulk)
        app.router.add_put("/_bulk", self.bulk)
        app.router.add_post("/{index}/_bulk", self.bulk)
        app.router.add_put("/{index}/_bulk", self.bulk)
        app.router.add_route("*", "/{tail:.*}", self.missing)
        return app


async def serve(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    runner = web.AppRunner(FreeSink().app(), access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    try:
        await asyncio.Event().wait()  # until the process is stopped
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
