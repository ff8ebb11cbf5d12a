"""The upstream transport: HTTP/1.1 for httpx on trio streams, O(1) per request.

httpx stays the client API (`build_request`, `send(stream=True)`, `aiter_raw`, `aread`,
`aclose`, per-request `timeout=`); `Http1Transport` replaces httpcore's pool underneath, whose
planning walks every connection on every request (measured: ~27% of a JSON request through
the gateway), and h11 with `circuitd.http1`, a sans-I/O reader and writer of the few shapes of
HTTP/1.1 a client meets (h11's state machine was ~16% of a JSON request). Every step is O(1):

- **Pool** (`transport`). Per origin (scheme, host, port) a LIFO stack of idle connections:
  a request pops the most recently used one. `max_connections` caps the requests holding a
  connection (a fair, FIFO `trio.Semaphore`: when its slots are taken, requests queue for at
  most the `pool` timeout) and the sockets in all (opening one beyond the cap closes the
  oldest idle connection of some origin); `max_keepalive_connections` caps the idle ones;
  `keepalive_expiry` is enforced lazily, with no background task: a popped connection idle
  too long is closed together with everything under it in its stack (older still), and a
  push closes the expired ones at the bottom. A pooled connection whose socket turned
  readable while idle (the server closed it, or sent something unasked) is not reused.
- **A request** (`connection`) is one `send_all` of its head and body when the body is in
  memory (a streamed body is sent chunk by chunk, framed as its headers say); then bytes are
  read until the response head. Its body is a byte stream of what each receive brought (the
  chunks already here come out as one piece). At its end, if the response allows keep-alive
  and nothing came after it, the connection goes back to the pool; a response closed before
  its end, any error and a cancellation close the socket instead, so the server sees the
  client leave (that is how the gateway stops an upstream generation when its own client
  disconnects). Closing a response whose remaining bytes are already here (the stream's
  terminator after the `[DONE]` event the caller stopped at) still keeps the connection.
- **Timeouts** come from `request.extensions["timeout"]`: `connect` (TCP and TLS), `write`
  (each send), `read` (each receive: the first byte, then every gap between chunks), `pool`
  (waiting for a slot). Errors are httpx's own classes with the request attached, so
  `providers.http.failure_from` classifies them as it does httpcore's.
- **Stale connections.** A server may close a keep-alive connection just as it is reused.
  A request sent on a *reused* connection that fails before one byte of the response came
  back (EOF or reset while sending or waiting, nothing received) is sent once more on a
  fresh connection, as browsers and httpcore do. The caveat is idempotency: a POST may have
  reached the server before the connection broke. A fresh connection is never retried, nor
  is a body that cannot be replayed (a streamed request body).

httpx internals relied on (0.28): `request.extensions["timeout"]` (`Timeout.as_dict()`),
`request.headers.raw`, `request.url.raw_path/raw_scheme/raw_host/port`, `httpx.ByteStream`
with `request.content` for in-memory bodies, `httpx.AsyncByteStream` for the response body,
and the `http_version`/`reason_phrase` response extensions.
"""

from circuitd.upstream.transport import DEFAULT_LIMITS, Http1Transport, PoolStatistics

__all__ = ["DEFAULT_LIMITS", "Http1Transport", "PoolStatistics"]
