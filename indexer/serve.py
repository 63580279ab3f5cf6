"""The daemon's HTTP port: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for probes.

::

    sync --every --metrics-port P --> MetricsServer (a thread: answers even while the event loop is busy)
        GET /metrics  --> the registry's exposition (prometheus_client)
        GET /healthz  --> 200 while the event loop ticks (Health.beat, every second); 503 once it has not
                          for LIVENESS_SECONDS: a stuck process fails its liveness probe
        GET /readyz   --> 200 when every job's last successful sync pass ended within N of its periods
                          (``--ready-periods``), else 503 naming the jobs that are not (names only)

The server is the standard library's WSGI server in one thread (prometheus_client's own ``make_wsgi_app``
answers ``/metrics``); it logs nothing: request lines would only repeat what the probes know.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from indexer.errors import ConfigError
from indexer.metrics import Metrics

LIVENESS_SECONDS = 30.0  # /healthz fails once the event loop has not ticked for this long


@dataclass
class Health:
    """What the probes read: the event loop's last tick, and each job's period and last successful sync pass."""

    ready_periods: float = 3.0
    beat_at: float = field(default_factory=time.monotonic)
    jobs: dict[str, tuple[float, float | None]] = field(default_factory=dict)  # name -> (period, last success)

    def add(self, name: str, period: float) -> None:
        self.jobs[name] = (period, None)

    def succeeded(self, name: str) -> None:
        self.jobs[name] = (self.jobs[name][0], time.monotonic())

    def beat(self) -> None:
        self.beat_at = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.beat_at < LIVENESS_SECONDS

    def not_ready(self) -> list[str]:
        """The jobs without a successful sync pass within ``ready_periods`` of their period."""
        now = time.monotonic()
        return [name for name, (period, last) in self.jobs.items()
                if last is None or now - last > self.ready_periods * period]

    async def ticking(self, stop: asyncio.Event) -> None:
        """Beat every second until ``stop``: the proof, for /healthz, that the event loop runs."""
        while not stop.is_set():
            self.beat()
            try:
                async with asyncio.timeout(1.0):
                    await stop.wait()
            except TimeoutError:
                pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on ``address:port``, served from a thread until closed."""

    def __init__(self, metrics: Metrics, health: Health, address: str, port: int) -> None:
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ: dict, respond: Callable[..., Any]) -> Iterable[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                return _text(respond, health.alive(), "ok" if health.alive() else "the event loop is stuck")
            if path == "/readyz":
                late = health.not_ready()
                return _text(respond, not late, "ready" if not late else "not ready: " + ", ".join(late))
            if path == "/metrics":
                return metrics_app(environ, respond)
            respond("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"not found: /metrics, /healthz, /readyz\n"]

        try:
            self.server = make_server(address, port, app, server_class=_Server, handler_class=_Quiet)
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port}: cannot listen on {address}:{port} ({exc.strerror})") from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="indexer-metrics", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _text(respond: Callable[..., Any], ok: bool, text: str) -> list[bytes]:
    respond("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode() + b"\n"]
