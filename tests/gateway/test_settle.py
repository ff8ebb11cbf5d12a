"""`Settler.settle` on its own: a call settles even in a task that is being cancelled."""

from __future__ import annotations

from typing import cast

import pytest
import trio
import trio.testing

from circuitd.core.tokens import default_tokenizer
from circuitd.gateway.admission import Admission
from circuitd.gateway.settle import CallRecord, Settler
from circuitd.obs.metrics import Metrics
from tests.store.test_writer import Recorder, make_row, writer_for


@pytest.mark.parametrize("full", [False, True], ids=["room", "queue-full"])
async def test_a_cancelled_call_still_settles_its_row(
    autojump_clock: trio.testing.MockClock, full: bool
) -> None:
    sink = Recorder()
    writer = writer_for(sink, queue_size=1, block_timeout=60)
    if full:
        assert writer.submit_nowait(make_row(0))
    settler = Settler(writer, default_tokenizer(), Metrics(), cast(Admission, None))  # no ticket
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as call:
            call.cancel()  # the call's task is being cancelled (shutdown, a client gone)
            if full:  # the writer makes room only once it runs
                nursery.start_soon(writer.run, "unused")
            row = await settler.settle(CallRecord("req_1", 0.0, 0.0), trio.current_time())
        assert row.status == "error"  # a call that never recorded success
        if not full:
            nursery.start_soon(writer.run, "unused")
        writer.close()
    written = [request_id for batch in sink.batches for request_id in batch]
    assert written[-1] == "req_1"
    assert writer.statistics().dropped == 0
