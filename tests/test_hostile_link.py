"""The listener's end of a worker link against hostile frames, in one process: a real
`WorkerLink` on a real event loop, its frames fed as bytes, its descriptors through a real
SOCK_SEQPACKET pair, and recording stand-ins for the exchanges (the listener's own HTTP side
is not what is tested here). The end-to-end versions, with real workers, are in
test_hostile_worker.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from webgarden.ipc import descriptors, frames, messages
from webgarden.ipc.flow_control import CONTROL_SLACK, REQUEST_WINDOW, RESPONSE_WINDOW
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.listener.upstream import WorkerLink


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def writelines(self, data: Any) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Recorder:
    """What an exchange is told by its link."""

    def __init__(self) -> None:
        self.link: WorkerLink | None = None
        self.sid = 0
        self.calls: list[tuple[str, object]] = []
        self.files: list[int] = []
        self.credit = 0  # request body the worker may still be sent (as an Exchange's)

    def attach(self, link: WorkerLink, sid: int) -> None:
        self.link, self.sid = link, sid

    def on_response_head(self, head: messages.ResponseHead, end: int) -> None:
        self.calls.append(("head", head.status))

    def on_response_body(self, data: bytes, end: int) -> None:
        self.calls.append(("body", data))

    def on_sendfile(self, request: messages.SendFile, fd: int) -> None:
        self.calls.append(("sendfile", (request.offset, request.count)))
        self.files.append(fd)

    def on_worker_abort(self) -> None:
        self.calls.append(("abort", None))

    def on_credit(self, n: int) -> None:
        self.credit += n
        self.calls.append(("credit", n))


class Rig:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.violations: list[tuple[str, str]] = []
        self.link = WorkerLink(lambda t, p: None, lambda link, lost: None, lambda link: None,
                               lambda link, rule, detail: self.violations.append((rule, detail)))
        self.transport = Transport()
        self.link.connection_made(self.transport)
        listener_end, self.worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.link.attach_descriptors(listener_end)

    def dispatch(self) -> Recorder:
        ex = Recorder()
        self.link.dispatch(ex)  # type: ignore[arg-type]
        return ex

    def frame(self, ftype: int, sid: int, payload: bytes = b"", flags: int = 0) -> None:
        self.link.data_received(frames.encode(ftype, sid, payload, flags))

    def head(self, sid: int, length: int, end: bool = False) -> None:
        head = messages.ResponseHead(200, b"HTTP/1.1 200 OK\r\n", length)
        self.frame(FrameType.RESPONSE, sid, messages.encoder.encode(head), FLAG_END if end else 0)

    def sendfile(self, sid: int, offset: int, count: int) -> None:
        payload = messages.encoder.encode(messages.SendFile(offset, count))
        self.frame(FrameType.SENDFILE, sid, payload, FLAG_END)

    def descriptor(self, sid: int, fd: int) -> None:
        socket.send_fds(self.worker_end, [descriptors.encode(sid)], [fd])

    def turn(self) -> None:
        """Let the loop run its readers once."""
        self.loop.run_until_complete(asyncio.sleep(0.01))


@pytest.fixture
def rig() -> Iterator[Rig]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    rig = Rig(loop)
    yield rig
    rig.worker_end.close()
    rig.link.connection_lost(None)
    loop.close()


@pytest.fixture
def ten(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "ten"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_descriptor_that_comes_before_its_sendfile_is_matched(rig: Rig, ten: int) -> None:
    ex = rig.dispatch()
    rig.head(ex.sid, 10)
    rig.descriptor(ex.sid, ten)
    rig.turn()
    rig.sendfile(ex.sid, 2, 8)
    assert ex.calls[-1] == ("sendfile", (2, 8)) and not rig.violations
    assert os.path.samestat(os.fstat(ex.files[0]), os.fstat(ten))  # the same open file
    assert ex.sid not in rig.link.streams  # the stream ended with it
    os.close(ex.files[0])


def test_a_descriptor_that_comes_after_its_sendfile_is_matched(rig: Rig, ten: int) -> None:
    ex = rig.dispatch()
    rig.head(ex.sid, 10)
    rig.sendfile(ex.sid, 0, 10)
    assert ex.calls[-1] == ("head", 200)  # waiting for its descriptor
    rig.descriptor(ex.sid, ten)
    rig.turn()
    assert ex.calls[-1] == ("sendfile", (0, 10)) and not rig.violations
    os.close(ex.files[0])


def test_a_descriptor_left_over_when_its_stream_ends_is_closed(rig: Rig, ten: int) -> None:
    ex = rig.dispatch()
    rig.head(ex.sid, 1)
    rig.descriptor(ex.sid, ten)
    rig.turn()
    before = _open_fds()
    rig.frame(FrameType.RESPONSE_BODY, ex.sid, b"x", FLAG_END)
    assert _open_fds() == before - 1 and not rig.violations


def test_a_violation_fails_its_stream_closes_the_link_and_every_pending_descriptor(
    rig: Rig, ten: int
) -> None:
    waiting, other = rig.dispatch(), rig.dispatch()
    rig.head(waiting.sid, 10)
    rig.descriptor(waiting.sid, ten)
    rig.turn()
    before = _open_fds()
    rig.frame(FrameType.RESPONSE_BODY, other.sid, b"too soon")
    assert rig.violations == [("body-before-head", f"stream {other.sid}")]
    assert other.calls == [("abort", None)] and rig.transport.closed
    assert _open_fds() < before  # the pending descriptor and the descriptor socket
    assert rig.link.capacity == 0 and other.sid not in rig.link.streams
    assert waiting.sid in rig.link.streams  # lost with the link, as in a crash


@pytest.mark.parametrize(("frames_sent", "rule"), [
    ([(FrameType.RESPONSE, 99)], "unknown-stream"),
    ([(FrameType.REQUEST, 1)], "forbidden-frame-type"),
    ([(FrameType.PING, 0)], "forbidden-frame-type"),
    ([(FrameType.CREDIT, 1, b"\0")], "bad-payload"),
    ([(FrameType.RESPONSE, 1, b"\xc1")], "bad-payload"),
])
def test_frames_a_worker_may_not_send_are_violations(rig: Rig, frames_sent, rule) -> None:
    rig.dispatch()
    for ftype, sid, *payload in frames_sent:
        rig.frame(ftype, sid, *payload)
    assert rig.violations[0][0] == rule and rig.transport.closed


@pytest.mark.parametrize("block", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",  # framing is the listener's
    b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n",  # a second response inside
    b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n",  # a bare LF
])
def test_a_response_head_that_frames_or_splits_the_response_is_a_violation(
    rig: Rig, block: bytes
) -> None:
    ex = rig.dispatch()
    head = messages.ResponseHead(200, block, 2, b"ok")
    rig.frame(FrameType.RESPONSE, ex.sid, messages.encoder.encode(head), FLAG_END)
    assert rig.violations[0][0] == "bad-response-head" and rig.transport.closed
    assert ex.calls == [("abort", None)]  # its client gets 502, never the forged head


def test_more_body_than_the_content_length_is_a_violation(rig: Rig) -> None:
    ex = rig.dispatch()
    rig.head(ex.sid, 5)
    rig.frame(FrameType.RESPONSE_BODY, ex.sid, b"abc")
    rig.frame(FrameType.RESPONSE_BODY, ex.sid, b"def")
    assert rig.violations[0][0] == "body-beyond-length"
    assert ex.calls == [("head", 200), ("body", b"abc"), ("abort", None)]


def test_a_sendfile_without_a_content_length_is_a_violation(rig: Rig) -> None:
    ex = rig.dispatch()
    rig.head(ex.sid, -1)  # chunked: raw file bytes could forge the chunk framing
    rig.sendfile(ex.sid, 0, 10)
    assert rig.violations[0][0] == "sendfile-without-length"


def test_a_second_descriptor_for_a_stream_is_a_violation(rig: Rig, ten: int) -> None:
    ex = rig.dispatch()
    rig.descriptor(ex.sid, ten)
    rig.descriptor(ex.sid, ten)
    rig.turn()
    assert rig.violations[0][0] == "second-descriptor"


def test_a_bad_descriptor_is_closed_and_its_stream_failed(rig: Rig, tmp_path: Path) -> None:
    ex = rig.dispatch()
    rig.head(ex.sid, 10)
    fd = os.open(tmp_path, os.O_PATH)
    rig.descriptor(ex.sid, fd)
    os.close(fd)
    rig.turn()
    before = _open_fds()
    rig.sendfile(ex.sid, 0, 10)
    assert rig.violations[0][0] == "bad-descriptor" and ex.calls[-1] == ("abort", None)
    assert _open_fds() < before and not ex.files


def test_a_worker_that_ignores_credit_breaks_the_link_at_the_end_of_its_window(
    rig: Rig,
) -> None:
    """The listener counts what it credited back: a worker sending on to a client that
    reads nothing would otherwise grow the listener's memory without bound."""
    ex = rig.dispatch()
    rig.head(ex.sid, -1)  # no Content-Length: only the window bounds the body
    chunk = b"x" * frames.MAX_CHUNK
    for _ in range(RESPONSE_WINDOW // len(chunk)):
        rig.frame(FrameType.RESPONSE_BODY, ex.sid, chunk)
    assert not rig.violations  # the whole window is the worker's to use
    rig.link.grant(ex.sid, len(chunk))  # the client took one chunk
    rig.frame(FrameType.RESPONSE_BODY, ex.sid, chunk)
    assert not rig.violations
    rig.frame(FrameType.RESPONSE_BODY, ex.sid, b"y" * (CONTROL_SLACK + 1))
    assert rig.violations[0][0] == "beyond-window" and rig.transport.closed
    assert ex.calls[-1] == ("abort", None)


def test_credit_for_more_request_body_than_the_listener_sent_is_a_violation(rig: Rig) -> None:
    """Inflated credit would make the listener push a client's upload into a worker that
    does not read it, buffering it in the listener without bound."""
    ex = rig.dispatch()
    ex.credit = REQUEST_WINDOW - 100  # the listener sent 100 bytes of body
    rig.frame(FrameType.CREDIT, ex.sid, messages.count_payload(100))
    assert not rig.violations and ex.credit == REQUEST_WINDOW
    rig.frame(FrameType.CREDIT, ex.sid, messages.count_payload(1))
    assert rig.violations[0][0] == "credit-beyond-window"
