"""Stand-ins for the cluster in unit tests: what answers a request without a node. TEST-ONLY.

* ``FakeCluster``: a tiny HTTP server on a loopback port, so the real opensearch-py and elasticsearch
  clients build and send every request; it records each request line and body as it arrived.
* ``ScriptedClient``: a client whose transport answers from a script, raising the library's real
  exception types (``Engine`` is built on it directly, no HTTP at all).
* ``pressure()``: the 429 a node answers when a request passes its indexing pressure limit.

What a real node does is covered by tests/integration and tests/faults.
"""

from __future__ import annotations

import asyncio
import json

from opensearchpy.exceptions import TransportError


class FakeCluster:
    """Answers every request with ``answer(method, path)`` -> body; records the raw request lines."""

    def __init__(self, answer, elastic_header: bool = True):
        self.answer = answer
        self.elastic_header = elastic_header
        self.request_lines: list[str] = []
        self.bodies: list[bytes] = []

    async def _handle(self, reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line)
        length = int(headers.get(b"Content-Length", headers.get(b"content-length", b"0")))
        self.bodies.append(await reader.readexactly(length) if length else b"")
        line = head.split(b"\r\n")[0].decode("latin-1")
        self.request_lines.append(line)
        method, target, _ = line.split(" ")
        body = json.dumps(self.answer(method, target.split("?")[0])).encode()
        product = b"X-Elastic-Product: Elasticsearch\r\n" if self.elastic_header else b""
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + product +
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    def paths(self) -> list[str]:
        """The path of every request, in the order they arrived."""
        return [line.split(" ")[1].split("?")[0] for line in self.request_lines]


class Transport:
    """Answers each request with the next of ``answers`` (the last one again once they run out): a body,
    or an exception to raise; counts the calls."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = 0

    async def perform_request(self, method, path, params=None, body=None, headers=None):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


class ScriptedClient:
    """A client (what ``Engine`` holds) whose transport answers from a script."""

    def __init__(self, *answers, transport: Transport | None = None):
        self.transport = transport or Transport(*answers)

    async def close(self):
        pass


def pressure(operation_bytes: int, limit: int) -> TransportError:
    """The 429 of a request of ``operation_bytes`` against a node's indexing pressure ``limit``."""
    reason = ("rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, "
              f"all_bytes=0, coordinating_operation_bytes={operation_bytes}, max_coordinating_bytes={limit}]")
    return TransportError(429, "es_rejected_execution_exception",
                          {"error": {"type": "es_rejected_execution_exception", "reason": reason}})
