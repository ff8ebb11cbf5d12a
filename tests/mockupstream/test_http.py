"""The hand-written HTTP/1.1 layer, the entry points and the in-process API."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from circuitd.mockupstream.faults import Fault
from circuitd.mockupstream.server import start_server
from circuitd.mockupstream.testing import running_mock_upstream
from tests.mockupstream.conftest import MESSAGES

BODY = json.dumps({"model": "m", "messages": MESSAGES}).encode()


def post(body: bytes = BODY, extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"POST /v1/chat/completions %s\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s" % (
        version,
        extra,
        len(body),
        body,
    )


@pytest.fixture
def raw(mock_url: str) -> Iterator[socket.socket]:
    host, port = mock_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        yield sock


def read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, bytes]:
    """One Content-Length response from `sock` (leftovers stay in `buffer`)."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(buffer) < end + length:
        buffer += sock.recv(65536)
    body = bytes(buffer[end : end + length])
    del buffer[: end + length]
    return head, body


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_keep_alive_serves_many_requests_on_one_connection(http: httpx.Client) -> None:
    contents = [
        http.post("/v1/chat/completions", json={"model": "m", "messages": MESSAGES}).json()
        for _ in range(5)
    ]
    assert len({c["choices"][0]["message"]["content"] for c in contents}) == 1
    stream = http.post(
        "/v1/chat/completions", json={"model": "m", "messages": MESSAGES, "stream": True}
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.text.endswith("data: [DONE]\n\n")
    stats = http.get("/_mock/stats").json()
    assert stats["connections"] == 1 and stats["requests"] == 6


def test_pipelined_and_byte_by_byte_requests(raw: socket.socket) -> None:
    raw.sendall(post() + post(b"{bad"))
    buffer = bytearray()
    first, second = read_response(raw, buffer), read_response(raw, buffer)
    assert first[0].startswith(b"HTTP/1.1 200") and second[0].startswith(b"HTTP/1.1 400")
    for byte in post():
        raw.send(bytes([byte]))
    head, body = read_response(raw, buffer)
    assert head.startswith(b"HTTP/1.1 200")
    again, before = json.loads(body), json.loads(first[1])
    assert (again["choices"], again["usage"]) == (before["choices"], before["usage"])


def test_connection_close_and_http10(raw: socket.socket, mock_url: str) -> None:
    raw.sendall(post(extra=b"Connection: close\r\n"))
    data = read_to_eof(raw)
    assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data
    host, port = mock_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        stream = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
        sock.sendall(post(stream, version=b"HTTP/1.0"))
        data = read_to_eof(sock)  # HTTP/1.0: no chunked encoding, the body ends at EOF
    assert b"transfer-encoding" not in data and data.endswith(b"data: [DONE]\n\n")


def test_chunked_request_bodies_are_refused(raw: socket.socket) -> None:
    raw.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    data = read_to_eof(raw)
    assert data.startswith(b"HTTP/1.1 411") and b"invalid_request_error" in data


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_close(raw: socket.socket, request_bytes: bytes) -> None:
    raw.sendall(request_bytes)
    assert read_to_eof(raw).startswith(b"HTTP/1.1 400")


def test_expect_100_continue(raw: socket.socket) -> None:
    request = post(extra=b"Expect: 100-continue\r\n")
    head, body = request.split(b"\r\n\r\n", 1)
    raw.sendall(head + b"\r\n\r\n")
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        buffer += raw.recv(65536)
    assert buffer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    del buffer[: len(b"HTTP/1.1 100 Continue\r\n\r\n")]
    raw.sendall(body)
    assert read_response(raw, buffer)[0].startswith(b"HTTP/1.1 200")


def test_without_uvloop() -> None:
    with running_mock_upstream(use_uvloop=False, tokens=2) as url:
        reply = httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": MESSAGES})
        assert reply.json()["usage"]["completion_tokens"] == 2


def test_in_process_server_close_cuts_streams() -> None:
    async def scenario() -> tuple[bytes, int]:
        server = await start_server("127.0.0.1", 0, defaults=Fault(stall_after=1))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        stream = json.dumps({"model": "m", "messages": MESSAGES, "stream": True}).encode()
        writer.write(post(stream))
        received = b""
        while received.count(b"data: ") < 2:
            received += await reader.read(65536)
        await server.close()
        rest = await reader.read()  # EOF: the server dropped the connection
        writer.close()
        return received + rest, server.app.control.disconnects

    data, disconnects = asyncio.run(scenario())
    assert data.startswith(b"HTTP/1.1 200") and b"[DONE]" not in data
    assert disconnects == 1


def test_command_line_entry_point_and_sigterm() -> None:
    command = [sys.executable, "-m", "circuitd.mockupstream", "--port", "0", "--tokens", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("mock-upstream listening on http://127.0.0.1:")
            sdk = openai.OpenAI(base_url=line.split()[-1] + "/v1", api_key="x", max_retries=0)
            completion = sdk.chat.completions.create(model="m", messages=MESSAGES)
            assert completion.usage is not None and completion.usage.completion_tokens == 5
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_command_line_rejects_bad_defaults() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "circuitd.mockupstream", "--chunks", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2 and "chunks" in done.stderr
