"""The mock's observable state and its control API under `/_mock/`.

- `POST /_mock/faults` `{"fault": {...}, "count": N}`: the next N chat requests get this fault
  (`count` defaults to 1; null: until cleared). Entries queue up in order. With `"key": K`
  the entry applies only to requests made with API key K (Bearer, `api-key`, `x-api-key`,
  `x-goog-api-key`): one of a gateway's several keys failing while the others serve.
- `DELETE /_mock/faults`: clear the queue.
- `GET /_mock/stats`: counters. Long-poll with `wait_disconnects=N`, `wait_requests=N` or
  `wait_idle=1` (and `timeout=S`, default 10): it answers once the condition holds (or with
  `"timed_out": true`), so tests synchronise on the server's own view instead of sleeping.
- `GET /_mock/requests`: the last 50 chat requests, both dialects (method, path, query, header
  pairs as received, keys included: `authorization`, `x-api-key`; body as parsed JSON, or as
  text when it was not JSON), oldest first.
- `POST /_mock/reset`: clear stats, the request log and the fault queue.

"Chat requests" are those to `/v1/chat/completions` (OpenAI) and `/v1/messages` (Anthropic),
and also `/v1/embeddings` and Azure's `/openai/deployments/{d}/...` and `/openai/v1/...`
paths (`api-key` header): `requests` counts them all, `routes` each path; faults apply to all
alike.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import msgspec

from circuitd.mockupstream.faults import Fault, FaultQueue, error_body
from circuitd.mockupstream.protocol import Connection, Request

__all__ = ["REQUEST_LOG_SIZE", "Control", "Stats"]

REQUEST_LOG_SIZE = 50
DEFAULT_WAIT_S = 10.0


class Stats(msgspec.Struct):
    requests: int = 0  # chat requests received, valid or not
    routes: dict[str, int] = {}  # chat requests by path
    statuses: dict[str, int] = {}  # chat responses by status (a cut stream counts as its 200)
    in_flight: int = 0  # chat responses started and not finished
    disconnects: int = 0  # chat responses abandoned because the client went away
    connections: int = 0  # TCP connections accepted
    open_connections: int = 0
    faults_queued: int = 0
    timed_out: bool = False  # a long-poll whose condition did not hold in time


class _FaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    fault: Fault
    count: int | None = 1
    key: str | None = None  # only requests made with this API key


_encode = msgspec.json.Encoder().encode
_fault_request = msgspec.json.Decoder(_FaultRequest)


class Control:
    def __init__(self) -> None:
        self.faults = FaultQueue()
        self.log: deque[Request] = deque(maxlen=REQUEST_LOG_SIZE)
        self.requests = 0
        self.routes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.in_flight = 0
        self.disconnects = 0
        self.connections = 0
        self.open: set[Connection] = set()
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    # -- recording (called by the chat route) --------------------------------------------------

    def received(self, request: Request) -> None:
        self.requests += 1
        self.routes[request.path] += 1
        self.log.append(request)
        self.notify()

    def notify(self) -> None:
        """Wake the long-polls whose condition now holds."""
        if self._waiters:
            for waiter in list(self._waiters):
                predicate, future = waiter
                if predicate() and not future.done():
                    future.set_result(None)

    def reset(self) -> None:
        self.faults.clear()
        self.log.clear()
        self.requests = self.in_flight = self.disconnects = 0
        self.statuses.clear()
        self.routes.clear()
        self.notify()

    def stats(self, *, timed_out: bool = False) -> Stats:
        return Stats(
            requests=self.requests,
            routes=dict(sorted(self.routes.items())),
            statuses={str(k): v for k, v in sorted(self.statuses.items())},
            in_flight=self.in_flight,
            disconnects=self.disconnects,
            connections=self.connections,
            open_connections=len(self.open),
            faults_queued=len(self.faults),
            timed_out=timed_out,
        )

    # -- routes --------------------------------------------------------------------------------

    def route(self, request: Request, conn: Connection) -> bool:
        """Answer a `/_mock/` request; False if no such route."""
        key = (request.method, request.path)
        if key == ("POST", "/_mock/faults"):
            try:
                order = _fault_request.decode(request.body)
            except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                conn.respond(400, error_body(400, f"Invalid fault: {exc}"))
                return True
            self.faults.push(order.fault, order.count, order.key)
            conn.respond(200, _encode({"queued": len(self.faults)}))
        elif key == ("DELETE", "/_mock/faults"):
            self.faults.clear()
            conn.respond(200, _encode({"queued": 0}))
        elif key == ("GET", "/_mock/stats"):
            self._stats(request, conn)
        elif key == ("GET", "/_mock/requests"):
            conn.respond(200, _encode([_logged(r) for r in self.log]))
        elif key == ("POST", "/_mock/reset"):
            self.reset()
            conn.respond(200, _encode(self.stats()))
        else:
            return False
        return True

    def _stats(self, request: Request, conn: Connection) -> None:
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        try:
            conditions = [
                self._condition(name, int(query[name]))
                for name in ("wait_disconnects", "wait_requests", "wait_idle")
                if name in query
            ]
            timeout = float(query.get("timeout", DEFAULT_WAIT_S))
        except ValueError:
            conn.respond(400, error_body(400, "wait_* must be integers, timeout a number"))
            return
        if all(c() for c in conditions):
            conn.respond(200, _encode(self.stats()))
        else:
            conn.spawn(lambda: self._long_poll(conn, lambda: all(c() for c in conditions), timeout))

    def _condition(self, name: str, value: int) -> Callable[[], bool]:
        if name == "wait_disconnects":
            return lambda: self.disconnects >= value
        if name == "wait_requests":
            return lambda: self.requests >= value
        return lambda: self.in_flight == 0 or not value

    async def _long_poll(
        self, conn: Connection, predicate: Callable[[], bool], limit_s: float
    ) -> None:
        waiter = (predicate, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        timed_out = False
        try:
            # Checked again now that the waiter is registered: the condition may have come
            # true between the request and this task's start.
            if not predicate():
                async with asyncio.timeout(limit_s):
                    await waiter[1]
        except TimeoutError:
            timed_out = True
        finally:
            self._waiters.remove(waiter)
        conn.respond(200, _encode(self.stats(timed_out=timed_out)))


def _logged(request: Request) -> dict[str, Any]:
    body: Any
    try:
        body = msgspec.json.decode(request.body)
    except msgspec.DecodeError:
        body = request.body.decode("utf-8", "replace")
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query,
        "headers": request.header_pairs(),
        "body": body,
    }
