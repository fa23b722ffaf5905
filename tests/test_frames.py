"""The frame codec and message types, sans-IO; the descriptor messages and the descriptor
check of the zero-copy file path over a real socketpair."""

from __future__ import annotations

import os
import socket

import msgspec
import pytest

from webgarden.ipc import descriptors, frames, messages
from webgarden.ipc.frames import FLAG_END, FrameDecoder, FrameType, ProtocolError
from webgarden.listener.sendfile import check_file


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


def test_frame_errors_name_the_rule_they_break() -> None:
    good = frames.encode(FrameType.PING, 0)
    with pytest.raises(ProtocolError) as bad_header:
        FrameDecoder().feed(b"X" + good[1:])
    assert bad_header.value.rule == "bad-frame-header"
    huge = frames.encode_header(FrameType.RESPONSE_BODY, 1, frames.MAX_PAYLOAD + 1)
    with pytest.raises(ProtocolError) as too_large:
        FrameDecoder().feed(huge)
    assert too_large.value.rule == "frame-too-large"


def test_a_worker_may_send_no_frame_type_that_only_the_listener_sends() -> None:
    listener_only = {FrameType.REQUEST, FrameType.REQUEST_BODY, FrameType.FILE_DONE,
                     FrameType.PING, FrameType.DRAIN, FrameType.STOP}
    assert not listener_only & (frames.FROM_WORKER_STREAM | frames.FROM_WORKER_CONTROL)
    assert FrameType.READY not in frames.FROM_WORKER_STREAM


def test_a_sendfile_names_only_an_offset_and_a_count_and_any_other_shape_is_refused() -> None:
    request = messages.SendFile(10, 20)
    assert messages.sendfile_decoder.decode(messages.encoder.encode(request)) == request
    old_style = msgspec.msgpack.encode([1234, 7, 0, 100])  # pid, fd, offset, count
    with pytest.raises(msgspec.ValidationError):
        messages.sendfile_decoder.decode(old_style)
    with pytest.raises(msgspec.ValidationError):
        messages.ready_decoder.decode(msgspec.msgpack.encode([1, 2, 3]))


# -- descriptor messages (ipc.descriptors), through a real SOCK_SEQPACKET pair ------------


def _receive(sender: socket.socket, receiver: socket.socket, data: bytes, fds: list[int]):
    socket.send_fds(sender, [data], fds)
    got, ancdata, flags, _ = receiver.recvmsg(
        descriptors.DATA_SPACE, descriptors.ANCILLARY_SPACE, descriptors.RECV_FLAGS)
    received = descriptors.received_fds(ancdata)
    try:
        return descriptors.read_message(got, ancdata, received, flags)
    finally:
        for fd in received:
            os.close(fd)


@pytest.fixture
def seqpacket():
    pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    yield pair
    for sock in pair:
        sock.close()


def test_a_descriptor_message_is_one_stream_id_and_one_descriptor(seqpacket, tmp_path) -> None:
    sender, receiver = seqpacket
    with open(tmp_path / "f", "wb") as f:
        assert _receive(sender, receiver, descriptors.encode(9), [f.fileno()]) == 9


@pytest.mark.parametrize(("data", "count", "why"), [
    (descriptors.encode(9), 2, "2 descriptors"),
    (descriptors.encode(9), 3, "larger than"),  # past the ancillary buffer: truncated, flagged
    (descriptors.encode(9), 0, "0 descriptors"),
    (descriptors.encode(9) + b"x", 1, "5 bytes"),
    (descriptors.encode(9) * 10, 1, "larger than"),
    (b"\0\0", 1, "2 bytes"),
    (descriptors.encode(0), 1, "stream 0"),
])
def test_a_malformed_descriptor_message_is_refused(seqpacket, tmp_path, data, count, why) -> None:
    sender, receiver = seqpacket
    with open(tmp_path / "f", "wb") as f, pytest.raises(ProtocolError, match=why) as refused:
        _receive(sender, receiver, data, [f.fileno()] * count)
    assert refused.value.rule == "bad-descriptor-message"


# -- the descriptor check (listener.sendfile.check_file) ------------------------------


def test_only_a_readable_regular_file_and_a_range_inside_it_may_be_sent(tmp_path) -> None:
    path = tmp_path / "ten"
    path.write_bytes(b"0123456789")
    opened = {
        "read": os.open(path, os.O_RDONLY),
        "read-write": os.open(path, os.O_RDWR),
        "write": os.open(path, os.O_WRONLY),
        "path": os.open(path, os.O_PATH),
        "directory": os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY),
        "procfs": os.open("/proc/self/status", os.O_RDONLY),
    }
    try:
        assert check_file(opened["read"], 0, 10) is None
        assert check_file(opened["read-write"], 3, 7) is None
        assert "reading" in (check_file(opened["write"], 0, 10) or "")
        assert "O_PATH" in (check_file(opened["path"], 0, 10) or "")
        assert "regular" in (check_file(opened["directory"], 0, 1) or "")
        assert "inside" in (check_file(opened["procfs"], 0, 1) or "")  # it says it is empty
        for offset, count in ((0, 11), (5, 6), (-1, 2), (0, 0), (10, 1)):
            assert "inside" in (check_file(opened["read"], offset, count) or ""), (offset, count)
    finally:
        for fd in opened.values():
            os.close(fd)


def test_a_large_frame_in_small_pieces_costs_about_what_it_costs_whole() -> None:
    """A worker may trickle MAX_PAYLOAD frames in small writes without end: the listener's
    decoder joins a frame's pieces once, so it costs linear time, not quadratic (it once
    rebuilt the whole partial frame on each read: 140 ms for one frame in 4 KiB pieces,
    against 8 ms now and 1.4 ms whole, on the machine of 2026-11-28)."""
    import time

    wire = frames.encode(FrameType.PONG, 0, b"x" * frames.MAX_PAYLOAD)
    pieces = [wire[i:i + 4096] for i in range(0, len(wire), 4096)]

    def cost(parts: list[bytes]) -> float:
        best = float("inf")
        for _ in range(3):
            decoder = FrameDecoder()
            start = time.perf_counter()
            got = [f for part in parts for f in decoder.feed(part)]
            best = min(best, time.perf_counter() - start)
            assert len(got) == 1 and len(got[0].payload) == frames.MAX_PAYLOAD
        return best

    assert cost(pieces) < 20 * cost([wire])


def test_a_descriptors_filesystem_is_read_from_the_descriptor_and_fuse_is_never_sent(
    tmp_path,
) -> None:
    """FUSE's reads are answered by a user-space process, which a worker can be (in a user
    namespace of its own): `sendfile` from it could stall the listener's one loop. No FUSE
    mount here, so this checks the pieces: fstatfs through the descriptor, and the list."""
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        assert descriptors.filesystem_type(fd) == 0x9FA0  # PROC_SUPER_MAGIC
        assert descriptors.user_filesystem(fd) is None
    finally:
        os.close(fd)
    assert descriptors.USER_FILESYSTEMS[0x65735546] == "FUSE"  # FUSE_SUPER_MAGIC
    (tmp_path / "f").write_bytes(b"0123456789")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert check_file(fd, 0, 10) is None  # an ordinary file on an ordinary filesystem
    finally:
        os.close(fd)
