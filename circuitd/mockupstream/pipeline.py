"""The mock's answering pipeline, whatever the dialect (see `app` for the routes).

A dialect's route checks a request and turns it into a `Job`: its effective fault, how to
render the error, the JSON answer and the SSE frames. `Pipeline.run` then answers any job the
same way: at once when no clock is needed, else from a task (latency, chunk delays, stalls).
The pipeline also holds what every route shares: the key the server requires, the request
counter that makes ids, the fault layers and the control state it records into.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from circuitd.mockupstream.control import Control
from circuitd.mockupstream.faults import (
    CUT,
    DELAY,
    NO_FAULT,
    STALL,
    Fault,
    Frames,
    Step,
    request_key,
    stream_steps,
)
from circuitd.mockupstream.protocol import Connection, Headers, Request

__all__ = ["SSE", "Job", "Pipeline"]

SSE = b"text/event-stream; charset=utf-8"


@dataclass(slots=True)
class Job:
    """One valid request, ready to be answered in its dialect."""

    fault: Fault
    stream: bool
    headers: list[tuple[bytes, bytes]]  # on every answer: the request id
    error: Callable[[int, str | None], bytes]  # the error body for a failing fault
    complete: Callable[[], bytes]  # the JSON answer
    frames: Callable[[], Frames]  # the SSE answer
    retry_header: bool = True  # False: the dialect tells the wait in the error body (Gemini)


class Pipeline:
    def __init__(self, defaults: Fault | None, require_key: str | None) -> None:
        self.defaults = defaults
        self.auth = None if require_key is None else b"Bearer " + require_key.encode()
        self.api_key = None if require_key is None else require_key.encode()
        self.control = Control()
        self._ids = itertools.count(1)

    def next_number(self) -> int:
        """A number no other answer of this server has had (ids are made from it)."""
        return next(self._ids)

    def request_id(self) -> bytes:
        return b"req_mock_%d" % self.next_number()

    def fault(self, mock: Fault | None, request: Request) -> Fault:
        """The request's effective fault: its body's over the queue's over the defaults."""
        queue = self.control.faults
        key = request_key(request.headers) if queue else None  # for faults of one key
        return (mock or NO_FAULT).over(queue.take(key)).over(self.defaults)

    def answer(self, conn: Connection, status: int, body: bytes, headers: Headers = ()) -> None:
        self.control.statuses[status] += 1
        conn.respond(status, body, headers=headers)

    def run(self, conn: Connection, job: Job) -> None:
        fault = job.fault
        if fault.timed:
            self.control.in_flight += 1
            conn.spawn(lambda: self._run_later(conn, job), self._ended)
            return
        if fault.failing:
            self._fail(conn, job)
        elif job.stream:
            steps = self._start_stream(conn, job)
            conn.send(b"".join(s for s in steps if isinstance(s, bytes)))
            if CUT in steps:  # (a stall is `timed`: never on this path)
                conn.cut()
            else:
                conn.end_stream()
        else:
            self.answer(conn, 200, job.complete(), job.headers)

    async def _run_later(self, conn: Connection, job: Job) -> None:
        fault = job.fault
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.failing:
            self._fail(conn, job)
        elif not job.stream:
            self.answer(conn, 200, job.complete(), job.headers)
        else:
            for step in self._start_stream(conn, job):
                if step is DELAY:
                    await asyncio.sleep((fault.chunk_delay_ms or 0) / 1000)
                elif step is STALL:
                    await conn.wait_closed()  # the peer leaving also cancels this task
                elif step is CUT:
                    conn.cut()
                    return
                elif isinstance(step, bytes):
                    conn.send(step)
                    await conn.drain()
            conn.end_stream()

    def _ended(self, completed: bool) -> None:
        control = self.control
        control.in_flight -= 1
        if not completed:  # the client went away (or the server is closing)
            control.disconnects += 1
        control.notify()

    def _fail(self, conn: Connection, job: Job) -> None:
        fault = job.fault
        assert fault.status is not None
        headers = list(job.headers)
        if fault.retry_after is not None and job.retry_header:
            headers.append((b"retry-after", f"{fault.retry_after:g}".encode()))
            headers.append((b"retry-after-ms", b"%d" % round(fault.retry_after * 1000)))
        self.answer(conn, fault.status, job.error(fault.status, fault.message), headers)

    def _start_stream(self, conn: Connection, job: Job) -> list[bytes | Step]:
        """Start the SSE response and plan its frames, with the fault's markers between."""
        self.control.statuses[200] += 1
        conn.start_stream(200, SSE, [(b"cache-control", b"no-cache"), *job.headers])
        return list(stream_steps(job.frames(), job.fault))
