"""The few ASGI building blocks the gateway needs: types, body reading, whole responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

from circuitd.errors import InvalidRequest, RequestTimeout, RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = (b"content-type", b"application/json")

# An ASGI extension of circuitd's HTTP/1.1 server (`hypercorn_http1`): a `trio.CancelScope`
# per request that the server cancels when the client goes away before the response has
# ended. An app that runs inside it needs no task of its own waiting for `http.disconnect`.
CANCEL_ON_DISCONNECT = "circuitd.cancel_on_disconnect"


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Reads the request body, refusing it (413) as soon as it is known to exceed `limit`:
    from Content-Length before reading anything, else while the chunks arrive."""
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("Invalid Content-Length header.") from None
        if size > limit:
            raise RequestTooLarge(f"Request body of {size} bytes exceeds the {limit}-byte limit.")
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InvalidRequest("Client disconnected while sending the request body.")
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise RequestTooLarge(f"Request body exceeds the {limit}-byte limit.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class BodyReceive:
    """A request's `receive`, counting what has come of its body and noting when it has all
    come (or the client left). Until then each receive is bounded by a deadline (`timeout_s`,
    `[server] body_timeout_s`, after the request's start): a body that stops coming is a 408
    (`RequestTimeout`), not a task held for as long as the client likes. An answer that starts
    before the body has all come (a refusal) reads the rest first (`finish`, from `App`):
    hypercorn keeps a connection alive only if the request was read to its end by the time
    the answer ends, and otherwise closes it without saying so — the client's next request on
    it then fails, and a body still arriving meets a reset that can beat the answer to the
    client."""

    __slots__ = (
        "_deadline",
        "_limit",
        "_receive",
        "_receive_nowait",
        "_scope",
        "_timeout_s",
        "done",
        "received",
    )

    def __init__(
        self, receive: Receive, scope: Scope, limit: int, timeout_s: float, started: float
    ) -> None:
        self._receive = receive
        # The server's `receive` is a queue's (circuitd's HTTP/1.1 `Inbox`, a trio channel for
        # hypercorn's HTTP/2): a message already queued (a body that came with its head, the
        # common case) is taken without the cost of a deadline's scope.
        queue = getattr(receive, "__self__", None)
        self._receive_nowait: Callable[[], Message] | None = getattr(queue, "receive_nowait", None)
        self._scope = scope
        self._limit = limit
        self._timeout_s = timeout_s
        self._deadline = started + timeout_s
        self.done = False
        self.received = 0  # body bytes

    async def __call__(self) -> Message:
        if self.done:  # what is left to come is the client's leaving
            return await self._receive()
        # Taken without a schedule point when it is here: the call goes on to its upstream
        # request, where it waits anyway (a yield here was a pass of the scheduler per call).
        message: Message | None
        try:
            message = None if self._receive_nowait is None else self._receive_nowait()
        except trio.WouldBlock:
            message = None
        if message is None:
            with trio.move_on_at(self._deadline):
                message = await self._receive()
            if message is None:
                timeout = self._timeout_s
                raise RequestTimeout(f"The request body did not all arrive within {timeout:g} s.")
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        self.received += len(message.get("body", b""))
        return message

    async def finish(self) -> bool:
        """Reads and drops the rest of the body; False when the body is over the limit (a
        413: what is left is not read), does not come in time, or the client left — the
        connection must close."""
        try:
            await read_body(self._scope, self, self._limit - self.received)
        except (RequestTooLarge, RequestTimeout, InvalidRequest):
            return False
        return True


async def start_response(
    send: Send, status: int, headers: Headers, body: bytes, content_type: bytes = JSON[1]
) -> None:
    """Sends a whole (non-streamed) response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
