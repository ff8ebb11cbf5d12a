"""Structured JSON logs: one object per line, the request id on every line, no secrets.

The request ids travel in a ContextVar, which trio copies into each task, so any line logged
while serving a request carries them without threading them through every call.
"""

from __future__ import annotations

import logging
import sys
import time
from contextvars import ContextVar
from itertools import islice
from typing import Any

import msgspec

# (the gateway's request id, the client's x-request-id if it sent one)
request_ids_var: ContextVar[tuple[str, str | None] | None] = ContextVar(
    "circuitd_request_ids", default=None
)

_encoder = msgspec.json.Encoder()
_BARE_RECORD = logging.makeLogRecord({}).__dict__
_STD_ATTRS = frozenset(_BARE_RECORD) | {"message", "asctime"}
# A record's own attributes come first in its __dict__, in the order its __init__ sets them;
# the fields of `extra=` follow. Skipping the first ones unread takes a quarter off `format`.
_OWN_ATTRS = len(_BARE_RECORD)


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""  # that second, formatted: a line a call makes one a second at most

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        entry: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ids = request_ids_var.get()
        if ids is not None:
            entry["request_id"] = ids[0]
            if ids[1] is not None:
                entry["client_request_id"] = ids[1]
        for name, value in islice(record.__dict__.items(), _OWN_ATTRS, None):
            if name not in _STD_ATTRS and not name.startswith("_"):
                entry[name] = value  # noqa: PERF403 (a loop: faster than a comprehension)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str) -> None:
    # What a record would gather that no line shows (the docs' "Optimization" list): where
    # the call was made (a walk up the stack per record), the thread, the process.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # hypercorn's access log would add a second, unstructured line per call.
    logging.getLogger("hypercorn.access").disabled = True
