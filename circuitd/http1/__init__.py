"""HTTP/1.1, sans-I/O (RFC 9110, RFC 9112), in place of h11 on both of circuitd's sides.

- The client (`client`): a request's bytes (`Request`) and its response (`ResponseReader`),
  for the upstream pool (`circuitd.upstream`).
- The server (`server`): requests read one after another (`RequestReader`) and response heads
  (`response_head`), for hypercorn's HTTP/1.1 protocol (`circuitd.hypercorn_http1`).

Only the shapes of HTTP/1.1 an LLM gateway meets, strict where a mistake would desynchronise
a connection (framing), lenient where peers are known to be sloppy. A JSON exchange costs a
few regular-expression calls over the whole head and one slice for the body; the chunks of a
stream already received come out as one piece. h11's state machine, which this replaces, was
~16% of a JSON request through the gateway on the client side and ~15% on the server side
(bench/RESULTS.md).
"""

from circuitd.http1.client import Request, ResponseHead, ResponseReader
from circuitd.http1.server import RequestHead, RequestReader, informational_head, response_head
from circuitd.http1.syntax import (
    LAST_CHUNK,
    MAX_HEAD_BYTES,
    LocalProtocolError,
    RemoteProtocolError,
    chunk,
)

__all__ = [
    "LAST_CHUNK",
    "MAX_HEAD_BYTES",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Request",
    "RequestHead",
    "RequestReader",
    "ResponseHead",
    "ResponseReader",
    "chunk",
    "informational_head",
    "response_head",
]
