"""HTTP/1.1 syntax both sides share (RFC 9110, RFC 9112): the errors, the patterns, framing."""

from __future__ import annotations

import re
from typing import Final

MAX_HEAD_BYTES: Final = 64 * 1024  # a response head, or a chunked body's trailers
MAX_CHUNK_LINE: Final = 1024  # a chunk's size line, extensions included
LAST_CHUNK: Final = b"0\r\n\r\n"


class LocalProtocolError(ValueError):
    """What we were asked to send cannot be sent as HTTP/1.1 (a bad header, a body its
    headers do not frame)."""


class RemoteProtocolError(Exception):
    """The peer's bytes are not HTTP/1.1 we can trust. `status` is the answer a server gives
    to such a request (400 unless a more precise one applies)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
METHOD = re.compile(TOKEN)
TARGET = re.compile(rb"[\x21-\x7e]+")
# What header lines must be once written: the count of line ends is checked too, since a
# value holding CR LF would otherwise pass as two lines.
WRITTEN_FIELDS = re.compile(rb"(?:" + TOKEN + rb": [^\x00\r\n]*\r\n)*")

HEAD_END = re.compile(rb"\n\r?\n")
STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([^\x00\r\n]*))?\r?\n")
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])\r?\n")
# A field value: any byte but NUL and the whitespace that is not a space or a tab (as h11:
# a vertical tab or a form feed could hide a framing header from some other parser).
_VALUE = rb"[^\x00\x0b\x0c\r\n]"
FIELD = re.compile(rb"(" + TOKEN + rb"):[ \t]*(" + _VALUE + rb"*?)[ \t]*\r?\n")
FIELDS = re.compile(rb"(?:" + TOKEN + rb":" + _VALUE + rb"*\r?\n)*\r?\n")
# Chunked framing takes CR LF only (RFC 9112 7.1), trailers included: a bare LF there is
# where parsers in a chain disagree on where a chunk ends.
TRAILER_FIELDS = re.compile(rb"(?:" + TOKEN + rb":" + _VALUE + rb"*\r\n)*\r\n")
OBS_FOLD = re.compile(rb"\r?\n[ \t]+")
CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r")  # up to its LF
DIGITS = re.compile(rb"[0-9]{1,20}")


def tokens(value: bytes) -> list[bytes]:
    """A comma-separated header value's elements, trimmed and lower-cased."""
    return [token.strip(b" \t").lower() for token in value.split(b",")]


def content_length(
    value: bytes, seen: int | None, error: type[Exception] = RemoteProtocolError
) -> int:
    """A Content-Length value (a list of equal values is one value), checked against one seen
    before in the same head; `error` is raised when it is not one (ours to send: a
    `LocalProtocolError`)."""
    if value.isdigit() and len(value) <= 20:  # the usual: one number, no spaces (ASCII only)
        if seen is not None and int(value) != seen:
            raise error("conflicting Content-Length headers")
        return int(value)
    length = seen
    for declared in value.split(b","):
        declared = declared.strip(b" \t")
        if DIGITS.fullmatch(declared) is None:
            raise error(f"bad Content-Length {value!r}")
        if length is not None and int(declared) != length:
            raise error("conflicting Content-Length headers")
        length = int(declared)
    assert length is not None
    return length


def chunk(data: bytes) -> bytes:
    """`data` as one chunk of a chunked body (not empty: an empty chunk ends the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def written_fields(lines: list[bytes]) -> bytes:
    """Header lines (`name: value\\r\\n` each) joined, once checked: names are tokens, values
    hold no CR, LF or NUL (no header can smuggle in another)."""
    fields = b"".join(lines)
    if WRITTEN_FIELDS.fullmatch(fields) is None or fields.count(b"\n") != len(lines):
        bad = next(
            line
            for line in lines
            if line.count(b"\n") != 1 or WRITTEN_FIELDS.fullmatch(line) is None
        )
        name = bad.partition(b":")[0]
        raise LocalProtocolError(f"illegal header {name!r}: a bad name or a bad value")
    return fields
