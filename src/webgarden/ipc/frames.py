"""The listener <-> worker frame codec. Sans-IO: bytes in, frames out; frames in, bytes out.

Every message between the server process and a worker travels as one frame on the
worker's socketpair::

     0        1        2        3        4                 8                 12
    +--------+--------+--------+--------+-----------------+-----------------+
    | magic  | version|  type  | flags  |    stream id    | payload length  |
    | 0x57   |  0x01  |  u8    |  u8    |   u32, big end. |   u32, big end. |
    +--------+--------+--------+--------+-----------------+-----------------+
    | payload: `length` bytes (msgpack for structured messages, raw for bodies) ...
    +------------------------------------------------------------------------

Rules:

* One `struct` format (`HEADER`) describes the header; nothing else packs or unpacks it.
* The payload length is checked against `MAX_PAYLOAD` *before* anything is buffered for
  it, so a corrupt or hostile peer cannot make the other side allocate without bound.
* A wrong magic or version is a `ProtocolError`: the stream of bytes cannot be trusted
  past that point, and the owner of the connection must drop it.
* Stream id 0 is the connection itself (ready, ping, stats, drain, stop); requests use
  ids from 1 up, chosen by the listener.
* `FLAG_END` on a frame closes the sending half of its stream.
* Each frame type goes one way only. What a worker may send is `FROM_WORKER_STREAM` (on a
  request stream) and `FROM_WORKER_CONTROL` (on stream 0); anything else from a worker is a
  violation of the link (THREAT_MODEL.md), and so is a `ProtocolError`. Its `rule` names
  the rule broken, for the event log.

The decoder keeps at most one partial frame; the writer side coalesces frames itself
(see `listener.upstream` and `worker.channel`): the prototype measured about twice the
throughput with one write per loop turn instead of one per frame.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

MAGIC = 0x57  # "W"
VERSION = 1
HEADER = struct.Struct(">BBBBII")
HEADER_SIZE = HEADER.size  # 12

#: Largest payload one frame may carry. Bodies are cut into chunks well below this.
MAX_PAYLOAD = 4 * 1024 * 1024
#: Body bytes sent in one frame; a larger write is split.
MAX_CHUNK = 256 * 1024

FLAG_END = 0x01


class FrameType(IntEnum):
    READY = 1  # worker -> listener: loaded, with its capacity
    REQUEST = 2  # listener -> worker: request head (FLAG_END: no body follows)
    REQUEST_BODY = 3  # listener -> worker: raw body bytes (FLAG_END: last)
    RESPONSE = 4  # worker -> listener: response head, maybe with the whole body
    RESPONSE_BODY = 5  # worker -> listener: raw body bytes (FLAG_END: last)
    ABORT = 6  # either way: the stream is abandoned (client gone, app failed mid-body)
    SENDFILE = 7  # worker -> listener: send the file it passed (SCM_RIGHTS) zero-copy
    FILE_DONE = 8  # listener -> worker: the listener holds the file; the worker may close it
    CREDIT = 9  # either way: flow-control window update for one stream
    PING = 10  # listener -> worker
    PONG = 11  # worker -> listener
    STATS = 12  # worker -> listener: memory, requests served
    RECYCLE = 13  # worker -> listener: the app asks to be recycled
    DRAIN = 14  # listener -> worker: no new requests will come; finish and report
    STOP = 15  # listener -> worker: exit once idle


#: Frame types a worker may send on a request stream (stream id >= 1).
FROM_WORKER_STREAM = frozenset({
    FrameType.RESPONSE, FrameType.RESPONSE_BODY, FrameType.CREDIT, FrameType.SENDFILE,
    FrameType.ABORT,
})
#: Frame types a worker may send on stream 0 (ABORT there: the applications failed to load).
FROM_WORKER_CONTROL = frozenset({
    FrameType.READY, FrameType.PONG, FrameType.STATS, FrameType.RECYCLE, FrameType.ABORT,
})


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame. The connection must be dropped.
    `rule` names the rule broken (the event log's reason); the message says how."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule = rule


class Frame(NamedTuple):
    type: int
    flags: int
    stream: int
    payload: bytes


def encode(ftype: int, stream: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """One frame as bytes. `payload` must not exceed `MAX_PAYLOAD`."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return HEADER.pack(MAGIC, VERSION, ftype, flags, stream, len(payload)) + payload


def encode_header(ftype: int, stream: int, length: int, flags: int = 0) -> bytes:
    """Only the header, for a payload the caller writes separately (no copy of big bodies)."""
    return HEADER.pack(MAGIC, VERSION, ftype, flags, stream, length)


class FrameDecoder:
    """Turns a byte stream into frames. Feed it whatever the socket gave; get whole frames."""

    __slots__ = ("_buf", "_missing", "_parts")

    def __init__(self) -> None:
        self._buf = b""
        # A frame whose header is in but not all its payload: its pieces, and how many
        # bytes it still lacks. They are joined once, when it is whole: appending each read
        # to one buffer made each read cost the whole partial frame, so a worker trickling
        # 4 MiB frames in 4 KiB writes cost the listener's loop 140 ms a frame (8 ms now).
        self._parts: list[bytes] = []
        self._missing = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) + sum(len(p) for p in self._parts)

    def feed(self, data: bytes | memoryview) -> list[Frame]:
        """Frames whole in what came so far. `data` may be a view of a reused buffer: every
        payload returned, and the partial frame kept, is a copy."""
        if self._missing:
            self._parts.append(bytes(data))
            if len(data) < self._missing:
                self._missing -= len(data)
                return []
            buf: bytes | memoryview = b"".join(self._parts)
            self._parts = []
            self._missing = 0
        else:
            buf = self._buf + data if self._buf else data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        unpack = HEADER.unpack_from
        while end - pos >= HEADER_SIZE:
            magic, version, ftype, flags, stream, length = unpack(buf, pos)
            if magic != MAGIC or version != VERSION:
                raise ProtocolError(
                    "bad-frame-header",
                    f"bad frame header at byte {pos}: magic {magic:#x}, version {version}",
                )
            if length > MAX_PAYLOAD:
                raise ProtocolError(
                    "frame-too-large", f"frame payload of {length} bytes exceeds {MAX_PAYLOAD}"
                )
            start = pos + HEADER_SIZE
            stop = start + length
            if stop > end:
                self._parts = [bytes(buf[pos:])]
                self._missing = stop - end
                self._buf = b""
                return frames
            frames.append(Frame(ftype, flags, stream, bytes(buf[start:stop])))
            pos = stop
        self._buf = bytes(buf[pos:]) if pos < end else b""
        return frames
