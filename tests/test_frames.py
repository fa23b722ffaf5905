"""The frame codec, sans-IO."""

from __future__ import annotations

import pytest

from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, FrameDecoder, FrameType, ProtocolError


def test_frames_split_at_every_byte_boundary_decode_the_same() -> None:
    head = messages.RequestHead(0, "GET", b"/x?y", "/x", "", b"y", "HTTP/1.1",
                                [(b"Host", b"a")], ("127.0.0.1", 5), ("127.0.0.1", 80))
    wire = (frames.encode(FrameType.REQUEST, 7, messages.encoder.encode(head))
            + frames.encode(FrameType.REQUEST_BODY, 7, b"body", FLAG_END)
            + frames.encode(FrameType.PING, 0))
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder()
        got = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert [(f.type, f.stream, f.flags) for f in got] == [
            (FrameType.REQUEST, 7, 0), (FrameType.REQUEST_BODY, 7, FLAG_END), (FrameType.PING, 0, 0)]
        assert messages.request_decoder.decode(got[0].payload) == head
        assert got[1].payload == b"body" and decoder.buffered == 0


def test_a_memoryview_of_a_reused_buffer_gives_independent_payloads() -> None:
    buffer = bytearray(frames.encode(FrameType.RESPONSE_BODY, 1, b"abc"))
    got = FrameDecoder().feed(memoryview(buffer))
    buffer[:] = b"\0" * len(buffer)
    assert got[0].payload == b"abc"


def test_a_bad_magic_or_version_is_a_protocol_error() -> None:
    good = frames.encode(FrameType.PING, 0)
    with pytest.raises(ProtocolError, match="magic"):
        FrameDecoder().feed(b"X" + good[1:])
    with pytest.raises(ProtocolError, match="version"):
        FrameDecoder().feed(good[:1] + b"\x09" + good[2:])


def test_a_length_over_the_maximum_is_refused_before_anything_is_buffered() -> None:
    header = frames.HEADER.pack(frames.MAGIC, frames.VERSION, FrameType.REQUEST_BODY, 0, 1,
                                frames.MAX_PAYLOAD + 1)
    with pytest.raises(ProtocolError, match="exceeds"):
        FrameDecoder().feed(header)
    with pytest.raises(ValueError):
        frames.encode(FrameType.REQUEST_BODY, 1, b"x" * (frames.MAX_PAYLOAD + 1))


def test_the_credit_payload_is_a_32_bit_count() -> None:
    assert messages.read_count(messages.count_payload(123456)) == 123456
