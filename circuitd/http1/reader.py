"""What reading a request and reading a response share: the bytes received, finding the end
of a head, and the body as its head frames it (a length, chunks, or up to the close)."""

from __future__ import annotations

from circuitd.http1.syntax import (
    CHUNK_SIZE,
    HEAD_END,
    MAX_CHUNK_LINE,
    TRAILER_FIELDS,
    RemoteProtocolError,
)

# Reader states
HEAD, LENGTH, CHUNK_SIZE_LINE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, DONE = range(8)


class Reader:
    """`receive` what the socket gave (b"" once it closed); then the subclass reads a head,
    then `read_body()` until it returns b"" (the end; None: more bytes needed). Errors raise
    `RemoteProtocolError`."""

    __slots__ = (
        "_buf",
        "_eof",
        "_keep_alive",
        "_max_head",
        "_pos",
        "_remaining",
        "_searched",
        "_state",
    )

    def __init__(self, max_head: int, keep_alive: bool = True) -> None:
        self._max_head = max_head
        self._keep_alive = keep_alive
        # What came and was not read yet starts at `_pos`. Usually one receive's bytes, read
        # whole; a head that comes in pieces grows a bytearray instead (a client trickling a
        # head byte by byte costs O(n), not O(n²)), and `_searched` is where the search for
        # its end resumes.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._searched = 0
        self._eof = False
        self._state = HEAD
        self._remaining = 0  # bytes left of the body (`LENGTH`) or of the chunk (`CHUNK_DATA`)

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read."""
        return len(self._buf) - self._pos

    @property
    def body_done(self) -> bool:
        """The body has all been read: `read_body` would give b"" (its end)."""
        return self._state == DONE

    def receive(self, data: bytes) -> None:
        if not data:
            self._eof = True
            return
        buf, pos = self._buf, self._pos
        if pos == len(buf):
            self._buf = data
            self._searched = 0
        elif pos == 0 and type(buf) is bytearray:
            buf += data
        else:
            rest = bytearray(buf[pos:])
            rest += data
            self._buf = rest
            self._searched = max(0, self._searched - pos)
        self._pos = 0

    def _blank_line(self, limit: int, what: str) -> int:
        """The end of the blank line that ends the head (or trailers) starting at `_pos`; -1 if
        more bytes are needed. Past `limit` bytes, a 431."""
        buf, pos = self._buf, self._pos
        found = HEAD_END.search(buf, max(pos, self._searched))
        if found is None:
            if len(buf) - pos > limit:
                raise RemoteProtocolError(f"the {what} is too large", status=431)
            self._searched = max(pos, len(buf) - 2)  # a blank line may straddle the next piece
            return -1
        self._searched = 0
        if found.end() - pos > limit:
            raise RemoteProtocolError(f"the {what} is too large", status=431)
        return found.end()

    def _head_block(self, what: str) -> int:
        """The end of the head starting at `_pos` (after its blank line); -1 if more bytes are
        needed. The head is bytes from here on (names and values are slices of it)."""
        end = self._blank_line(self._max_head, f"{what} head")
        if end < 0:
            if self._eof:
                raise RemoteProtocolError(f"the peer closed the connection in the {what} head")
            return -1
        if type(self._buf) is bytearray:
            self._buf = bytes(self._buf)
        return end

    def _frame_body(self, length: int | None, chunked: bool) -> None:
        if chunked:
            self._state = CHUNK_SIZE_LINE
        elif length:
            self._remaining = length
            self._state = LENGTH
        else:
            self._state = DONE

    def read_body(self) -> bytes | None:
        """The next bytes of the body (all that is here), b"" at its end, None when more
        must be received first."""
        state = self._state
        buf, pos = self._buf, self._pos
        if state == LENGTH:
            size = len(buf) - pos
            if size == 0:
                if self._eof:
                    raise RemoteProtocolError(
                        f"the peer closed the connection {self._remaining} bytes before the "
                        "end of the body"
                    )
                return None
            if size <= self._remaining:
                data = buf if pos == 0 and type(buf) is bytes else bytes(buf[pos:])
            else:
                data = bytes(buf[pos : pos + self._remaining])
            self._pos = pos + len(data)
            self._remaining -= len(data)
            if not self._remaining:
                self._state = DONE
            return data
        if state == DONE:
            return b""
        if state == UNTIL_CLOSE:
            if pos < len(buf):
                self._pos = len(buf)
                return buf if pos == 0 and type(buf) is bytes else bytes(buf[pos:])
            if self._eof:
                self._state = DONE
                return b""
            return None
        if state == HEAD:
            raise RuntimeError("the head was not read yet")
        return self._read_chunks()

    def _read_chunks(self) -> bytes | None:
        """Every chunk's data already here, as one piece."""
        pieces = []
        buf, pos, state = self._buf, self._pos, self._state
        end = len(buf)
        while True:
            if state == CHUNK_DATA:
                if pos == end:
                    break
                take = min(self._remaining, end - pos)
                pieces.append(bytes(buf[pos : pos + take]))
                pos += take
                self._remaining -= take
                if self._remaining:
                    break
                state = CHUNK_END
            elif state == CHUNK_SIZE_LINE:
                line_end = buf.find(b"\n", pos)
                if line_end < 0:
                    if end - pos > MAX_CHUNK_LINE:
                        raise RemoteProtocolError("a chunk size line is too long")
                    break
                size = CHUNK_SIZE.fullmatch(buf, pos, line_end)
                if size is None or line_end - pos > MAX_CHUNK_LINE:
                    bad = buf[pos:line_end][:40]
                    raise RemoteProtocolError(f"bad chunk size line {bad!r}")
                pos = line_end + 1
                self._remaining = int(size.group(1), 16)
                state = CHUNK_DATA if self._remaining else TRAILERS
            elif state == CHUNK_END:
                if end - pos < 2:
                    if buf[pos:end] not in (b"", b"\r"):
                        raise RemoteProtocolError("a chunk longer than its size")
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise RemoteProtocolError("a chunk longer than its size")
                pos += 2
                state = CHUNK_SIZE_LINE
            else:  # TRAILERS: none, or header lines up to a blank line; they are dropped
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                elif buf.startswith(b"\n", pos):
                    raise RemoteProtocolError("a bare LF ends a chunked body")
                else:
                    self._pos = pos
                    trailers_end = self._blank_line(self._max_head, "trailers")
                    if trailers_end < 0:
                        break
                    if TRAILER_FIELDS.fullmatch(buf, pos, trailers_end) is None:
                        raise RemoteProtocolError("malformed trailer")
                    pos = trailers_end
                state = DONE
                break
        self._pos = pos
        self._state = state
        if pieces:
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if state == DONE:
            return b""
        if self._eof:
            raise RemoteProtocolError(
                "the peer closed the connection before the end of the chunked body"
            )
        return None
