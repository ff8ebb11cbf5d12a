"""`circuitd.obs.logs`: one JSON object per line, in UTC to the millisecond, with the call's
request ids and the record's extra fields."""

from __future__ import annotations

import calendar
import logging

import msgspec

from circuitd.obs.logs import JsonFormatter, request_ids_var

MIDNIGHT = calendar.timegm((2026, 12, 1, 0, 0, 0))  # UTC


def record(created: float, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "circuitd", "levelname": "INFO", "msg": "call %s"})
    made.args = ("settled",)
    made.created, made.msecs = created, (created - int(created)) * 1000
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_its_extra_fields_in_order() -> None:
    line = JsonFormatter().format(record(MIDNIGHT + 0.25, model="m", status=200, ttft_ms=None))
    assert "\n" not in line
    assert list(msgspec.json.decode(line).items()) == [
        ("ts", "2026-12-01T00:00:00.250Z"),
        ("level", "info"),
        ("logger", "circuitd"),
        ("msg", "call settled"),
        ("model", "m"),
        ("status", 200),
        ("ttft_ms", None),
    ]


def test_each_line_has_its_own_time_though_a_second_is_formatted_once() -> None:
    formatter = JsonFormatter()
    times = [-0.5, 0.0, 0.5, 1.125, 0.75]

    def ts(created: float) -> str:
        line: dict[str, object] = msgspec.json.decode(formatter.format(record(created)))
        return str(line["ts"])

    assert [ts(MIDNIGHT + t) for t in times] == [
        "2026-11-30T23:59:59.500Z",
        "2026-12-01T00:00:00.000Z",
        "2026-12-01T00:00:00.500Z",
        "2026-12-01T00:00:01.125Z",
        "2026-12-01T00:00:00.750Z",  # an older record after a newer one
    ]


def test_the_request_ids_of_the_call_are_on_its_lines() -> None:
    formatter = JsonFormatter()
    token = request_ids_var.set(("req_1", "client-7"))
    try:
        line = msgspec.json.decode(formatter.format(record(MIDNIGHT)))
    finally:
        request_ids_var.reset(token)
    assert (line["request_id"], line["client_request_id"]) == ("req_1", "client-7")
    assert "request_id" not in msgspec.json.decode(formatter.format(record(MIDNIGHT)))
