"""Structured JSON logs: one object per line, the request id on every line, no secrets.

The request ids travel in a ContextVar, which trio copies into each task, so any line logged
while serving a request carries them without threading them through every call.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from typing import Any

import msgspec

# (the gateway's request id, the client's x-request-id if it sent one)
request_ids_var: ContextVar[tuple[str, str | None] | None] = ContextVar(
    "circuitd_request_ids", default=None
)

_encoder = msgspec.json.Encoder()
_STD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ids = request_ids_var.get()
        if ids is not None:
            entry["request_id"] = ids[0]
            if ids[1] is not None:
                entry["client_request_id"] = ids[1]
        entry.update(
            (name, value)
            for name, value in record.__dict__.items()
            if name not in _STD_ATTRS and not name.startswith("_")
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # hypercorn's access log would add a second, unstructured line per call.
    logging.getLogger("hypercorn.access").disabled = True
