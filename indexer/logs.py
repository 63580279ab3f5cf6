"""Logs: the human format (the default) or one JSON object per line (``--log-format json``), on stderr.

::

    setup(debug, format) --> the root handler: text ("time LEVEL name: message") | JsonFormatter
    event(level, name, job=..., **fields) --> one record of the "indexer.events" logger (what a daemon did)
    JsonFormatter: {"time", "level", "logger", "event", "job", "message", ...fields} via orjson

What goes in: what happened and the counts, the error's own line (errors never quote row values: the
hostile-value tests hold them to it), never a secret, a row value, a URL's credentials or a document.
The clients' loggers stay at ERROR: they log request bodies (row values) at DEBUG.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from typing import Any

import orjson

FORMATS = ("text", "json")
EVENTS = logging.getLogger("indexer.events")
_NOISY = ("elastic_transport", "opensearchpy", "opensearch", "elasticsearch", "urllib3", "etlhelper", "asyncio")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a record's ``event``, ``job`` and ``fields`` (from :func:`event`) as keys."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
        }
        job = getattr(record, "job", None)
        if job is not None:
            line["job"] = job
        line["message"] = record.getMessage()
        line.update(getattr(record, "fields", {}))
        if record.exc_info:  # --debug only: tracebacks are shown then, as text in the object
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup(debug: bool, log_format: str = "text") -> None:
    """Configure logging once per process: WARNING (DEBUG with --debug) and the daemon's events at INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    EVENTS.setLevel(logging.INFO)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.ERROR)


def event(level: int, name: str, message: str, *, job: str | None = None, **fields: Any) -> None:
    """One event of the daemon (a pass ended, failed, the loop started...), as a log record."""
    EVENTS.log(level, message, extra={"event": name, "job": job, "fields": fields})
