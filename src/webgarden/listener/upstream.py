"""The listener's end of one worker's socketpair: streams out, responses in.

Theory of operation:

* `dispatch` gives a request a stream id and sends its head; its body follows within the
  worker's receive window (`ipc.flow_control`), topped up by CREDIT as the app reads.
* Frames from the worker are routed by stream id to their `Exchange`. A stream counts
  toward `inflight` from dispatch until the worker ends it (END, ABORT, or a SENDFILE
  whose file the listener took): only then is the worker's thread free again, whatever
  the client did. The listener never ends a stream on its own (`abandon` tells the worker
  and keeps the stream until the worker's end), so a legitimate worker never sends a
  frame for a stream the link does not hold.
* Frames on stream 0 (READY, PONG, STATS, RECYCLE, a load failure) go to the manager's
  `control` callback; the link itself knows nothing of process states.
* Writes are coalesced: `send` queues bytes and the first send in a loop turn schedules
  one `writelines` for all of them at the end of the turn.
* When the socket closes, `on_lost` gets the exchanges still in flight, so the listener
  can send the safe ones again and fail the rest.

Trust (THREAT_MODEL.md): the worker runs application code and may be hostile; all it says
is a claim. A frame that breaks a rule is a *violation*: `violate` answers the stream it
concerns with 502 (or cuts its client's connection if the response had begun), closes the
link, and tells the manager through `on_violation`, which logs `worker.violation` with the
rule and kills and replaces the worker. The other streams in flight are lost as in a crash
(sent again once if untouched, else 502): the violation was not theirs. The rules:

* a frame type a worker may not send, on that stream (`frames.FROM_WORKER_*`);
* a frame for a stream this link does not hold (never dispatched, or already ended);
* a payload that does not decode; a second response head; body before the head or after
  the end; more body than the head's Content-Length;
* a 101 (`bad-upgrade`) for a request that was not a validated WebSocket upgrade, or
  naming a subprotocol or an extension its client did not offer, or its own
  `Sec-WebSocket-Accept`: the tunnel exists only where the listener opened it;
* RESPONSE_BODY beyond the stream's response window (`beyond-window`): the listener
  counts what it credited back (`grant`), so a worker that ignores CREDIT cannot grow the
  listener's buffers for a client that does not read; CREDIT for more request body than
  the listener sent (`credit-beyond-window`), which would let it do the same upstream;
* a SENDFILE before a head, without a Content-Length, for more than it allows, not ending
  the stream, or whose descriptor does not arrive within `DESCRIPTOR_WAIT`;
* a descriptor message that is malformed (`ipc.descriptors`), for a stream the link does
  not hold, a second one for a stream, or a descriptor `sendfile.check_file` refuses.

Descriptors (the zero-copy file path) come on their own SOCK_SEQPACKET socket, read with
`add_reader` + `recvmsg`, and are matched with their SENDFILE frame by stream id in either
order. The pending tables hold at most one entry per stream in flight, which the worker's
capacity bounds; an entry is dropped (its descriptor closed) when its stream ends or the
link closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from webgarden.ipc import descriptors, frames, messages
from webgarden.ipc.flow_control import CONTROL_SLACK, REQUEST_WINDOW, RESPONSE_WINDOW
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.listener.http1 import sound_response_head
from webgarden.listener.sendfile import check_file
from webgarden.listener.websocket import tunnel_head

if TYPE_CHECKING:
    from webgarden.listener.exchange import Exchange

#: How long a SENDFILE frame waits for its descriptor, seconds. The worker sends the
#: descriptor first, so it is normally queued already; this only bounds a hostile wait.
DESCRIPTOR_WAIT = 5.0

#: A stream's body budget once its head is in: -1 unbounded (no Content-Length), >= 0 the
#: bytes the head's Content-Length still allows, ENDED after a SENDFILE (nothing may follow).
UNBOUNDED = -1
ENDED = -2

#: The frame types the read loop tests, as plain ints (an IntEnum attribute per frame
#: costs a class lookup; these compare equal to the members).
_RESPONSE = int(FrameType.RESPONSE)
_RESPONSE_BODY = int(FrameType.RESPONSE_BODY)
_CREDIT = int(FrameType.CREDIT)
_SENDFILE = int(FrameType.SENDFILE)
_ABORT = int(FrameType.ABORT)

#: Response-head blocks that passed `sound_response_head`, byte for byte: an app sends
#: few distinct heads, and a set lookup costs less than the regex. Only bytes that passed
#: are ever added, so a head is let through only if exactly these bytes passed the check;
#: bounded (past it, heads are checked each time and not remembered).
_SOUND_HEADS: set[bytes] = set()
MAX_SOUND_HEADS = 1024


def _sound(block: bytes) -> bool:
    """`sound_response_head(block)`, remembering blocks that passed."""
    if block in _SOUND_HEADS:
        return True
    if sound_response_head(block) is None:
        return False
    if len(_SOUND_HEADS) < MAX_SOUND_HEADS:
        _SOUND_HEADS.add(block)
    return True

Violation = Callable[["WorkerLink", str, str], None]


def _ignore_violation(link: WorkerLink, rule: str, detail: str) -> None:
    pass


class WorkerLink(asyncio.Protocol):
    def __init__(
        self,
        control: Callable[[int, bytes], None],
        on_lost: Callable[[WorkerLink, list[Exchange]], None],
        on_free: Callable[[WorkerLink], None],
        on_violation: Violation = _ignore_violation,
    ) -> None:
        self.control = control
        self.on_lost = on_lost
        self.on_free = on_free
        self.on_violation = on_violation
        self.capacity = 0
        # The applications this worker hosts, and their index in its --app list. After a
        # configuration change, old and new workers may host different ones.
        self.apps: dict[object, int] = {}
        self.streams: dict[int, Exchange] = {}
        self.transport: asyncio.Transport | None = None
        self._decoder = frames.FrameDecoder()
        self._next_id = 0
        self._out: list[bytes] = []
        self._loop = asyncio.get_event_loop()
        self.served = 0
        self.closed = False
        self.violation: str | None = None  # the rule broken, once one is
        self._budget: dict[int, int] = {}  # sid -> body budget, once its head is in
        # sid -> response body bytes it may still send; a stream in flight without an
        # entry has its whole RESPONSE_WINDOW (entries are made by its first body or grant,
        # so a response sent whole costs none).
        self._window: dict[int, int] = {}
        self._fd_sock: socket.socket | None = None
        self._fds: dict[int, int] = {}  # sid -> a descriptor waiting for its SENDFILE
        self._files: dict[int, tuple[messages.SendFile, asyncio.TimerHandle]] = {}

    @property
    def inflight(self) -> int:
        return len(self.streams)

    @property
    def broken(self) -> bool:
        """The worker broke a rule: the link is closing and reads nothing more."""
        return self.violation is not None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self._out:  # sent before the connection was made
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.capacity = 0
        self._close_descriptors()
        lost = list(self.streams.values())
        self.streams.clear()
        self._budget.clear()
        self._window.clear()
        self.on_lost(self, lost)

    def data_received(self, data: bytes) -> None:
        if self.violation is not None:
            return
        try:
            received = self._decoder.feed(data)
        except frames.ProtocolError as exc:
            self.violate(exc.rule, str(exc))
            return
        streams = self.streams
        budget = self._budget
        window = self._window
        for ftype, flags, sid, payload in received:
            ex = streams.get(sid)
            if ex is None:
                if sid == 0 and ftype in frames.FROM_WORKER_CONTROL:
                    self.control(ftype, payload)
                    if self.broken:  # the manager found the message a violation
                        return
                    continue
                if sid == 0:
                    self.violate("forbidden-frame-type", f"frame type {ftype} on stream 0")
                else:
                    self.violate("unknown-stream",
                                 f"frame type {ftype} for stream {sid}, which is not in flight")
                return
            try:
                if ftype == _RESPONSE:
                    if sid in budget:
                        self.violate("second-response-head", f"stream {sid}", sid)
                        return
                    head = messages.response_decoder.decode(payload)
                    block = head.head
                    if block not in _SOUND_HEADS and not _sound(block):
                        self.violate("bad-response-head", f"stream {sid}: {head.head[:200]!r}",
                                     sid)
                        return
                    if 0 <= head.content_length < len(head.body):
                        self.violate("body-beyond-length", f"stream {sid}: head", sid)
                        return
                    if head.status == 101:
                        if not self._open_tunnel(sid, ex, head, flags & FLAG_END):
                            return
                        continue
                    if flags & FLAG_END:
                        ex.on_response_head(head, FLAG_END)
                        self.release(sid)
                    else:
                        budget[sid] = (head.content_length - len(head.body)
                                       if head.content_length >= 0 else UNBOUNDED)
                        ex.on_response_head(head, 0)
                elif ftype == _RESPONSE_BODY:
                    left = budget.get(sid)
                    if left != UNBOUNDED:
                        if left is None or left < 0 or len(payload) > left:
                            self._violate_body(sid, left)
                            return
                        budget[sid] = left - len(payload)
                    left_window = window.get(sid, RESPONSE_WINDOW)
                    room = left_window - len(payload)
                    if room < -CONTROL_SLACK:
                        self.violate("beyond-window", f"stream {sid}: {len(payload)} bytes of "
                                     f"body with {left_window} left of its window", sid)
                        return
                    window[sid] = room
                    ex.on_response_body(payload, flags & FLAG_END)
                    if flags & FLAG_END:
                        self.release(sid)
                elif ftype == _CREDIT:
                    if budget.get(sid) == ENDED:
                        self.violate("frame-after-end", f"CREDIT on stream {sid}", sid)
                        return
                    n = messages.read_count(payload)
                    if n > REQUEST_WINDOW - ex.credit:  # more than the listener sent it
                        self.violate("credit-beyond-window",
                                     f"CREDIT of {n} on stream {sid}, {ex.credit} unspent", sid)
                        return
                    ex.on_credit(n)
                elif ftype == _SENDFILE:
                    if not self._on_sendfile(sid, ex, flags, payload):
                        return
                elif ftype == _ABORT:
                    if budget.get(sid) == ENDED:
                        self.violate("frame-after-end", f"ABORT on stream {sid}", sid)
                        return
                    self.release(sid)
                    ex.on_worker_abort()
                else:
                    self.violate("forbidden-frame-type", f"frame type {ftype} on stream {sid}",
                                 sid)
                    return
            except (msgspec.DecodeError, struct.error) as exc:
                self.violate("bad-payload", f"frame type {ftype} on stream {sid}: {exc}", sid)
                return

    def _open_tunnel(self, sid: int, ex: Exchange, head: messages.ResponseHead, end: int
                     ) -> bool:
        """A 101: only for a WebSocket upgrade the listener validated, claiming only what
        its client offered (`websocket.tunnel_head`). False: a violation."""
        upgrade = ex.websocket
        made = ("a 101 for a request that asked for no WebSocket" if upgrade is None
                else tunnel_head(head.head, upgrade, ex.conn.date_line))
        if isinstance(made, str):
            self.violate("bad-upgrade", f"stream {sid}: {made}", sid)
            return False
        if end:
            ex.open_tunnel(made, head.body, end)
            self.release(sid)
        else:
            self._budget[sid] = UNBOUNDED  # a tunnel: frames until the close handshake
            ex.open_tunnel(made, head.body, 0)
        return True

    def _violate_body(self, sid: int, left: int | None) -> None:
        if left is None:
            self.violate("body-before-head", f"stream {sid}", sid)
        elif left == ENDED:
            self.violate("frame-after-end", f"body on stream {sid} after its SENDFILE", sid)
        else:
            self.violate("body-beyond-length", f"stream {sid}: more than its Content-Length",
                         sid)

    # -- the zero-copy file path ------------------------------------------------------

    def attach_descriptors(self, sock: socket.socket) -> None:
        """The listener's end of the worker's descriptor socketpair (SOCK_SEQPACKET)."""
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)  # descriptors go one way only: worker -> listener
        self._fd_sock = sock
        self._loop.add_reader(sock.fileno(), self._read_descriptors)

    def _on_sendfile(self, sid: int, ex: Exchange, flags: int, payload: bytes) -> bool:
        """A SENDFILE frame. False: it was a violation (the link is closing)."""
        left = self._budget.get(sid)
        problem = (
            "sendfile-before-head" if left is None
            else "frame-after-end" if left == ENDED
            else "sendfile-without-length" if left == UNBOUNDED
            else "sendfile-not-last" if not flags & FLAG_END
            else None
        )
        if problem is not None:
            self.violate(problem, f"SENDFILE on stream {sid}", sid)
            return False
        request = messages.sendfile_decoder.decode(payload)
        assert left is not None
        if request.count > left:
            self.violate("body-beyond-length",
                         f"SENDFILE of {request.count} bytes on stream {sid}, {left} allowed", sid)
            return False
        self._budget[sid] = ENDED
        fd = self._fds.pop(sid, None)
        if fd is None:  # normally queued already: the worker sends it before the frame
            self._read_descriptors()
            if self.broken:
                return False
            fd = self._fds.pop(sid, None)
        if fd is None:
            timer = self._loop.call_later(DESCRIPTOR_WAIT, self._descriptor_missing, sid)
            self._files[sid] = (request, timer)
            return True
        return self._send_file(sid, ex, request, fd)

    def _send_file(self, sid: int, ex: Exchange, request: messages.SendFile, fd: int) -> bool:
        problem = check_file(fd, request.offset, request.count)
        if problem is not None:
            os.close(fd)
            self.violate("bad-descriptor", f"stream {sid}: {problem}", sid)
            return False
        ex.on_sendfile(request, fd)  # the exchange owns fd now
        self.send(frames.encode(FrameType.FILE_DONE, sid))
        self.release(sid)
        return True

    def _read_descriptors(self) -> None:
        sock = self._fd_sock
        while sock is not None and self.violation is None:
            try:
                data, ancdata, msg_flags, _ = sock.recvmsg(
                    descriptors.DATA_SPACE, descriptors.ANCILLARY_SPACE, descriptors.RECV_FLAGS
                )
            except BlockingIOError:
                return
            except OSError:
                data, ancdata, msg_flags = b"", [], 0
            fds = descriptors.received_fds(ancdata)
            truncated = msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
            if not data and not fds and not truncated:  # closed: later SENDFILEs time out
                self._stop_descriptors()
                return
            try:
                sid = descriptors.read_message(data, ancdata, fds, msg_flags)
            except frames.ProtocolError as exc:
                for fd in fds:
                    os.close(fd)
                self.violate(exc.rule, str(exc))
                return
            self._on_descriptor(sid, fds[0])

    def _on_descriptor(self, sid: int, fd: int) -> None:
        ex = self.streams.get(sid)
        if ex is None or sid in self._fds:
            os.close(fd)
            if ex is None:
                self.violate("unknown-stream", f"a descriptor for stream {sid}, not in flight")
            else:
                self.violate("second-descriptor", f"stream {sid}", sid)
            return
        waiting = self._files.pop(sid, None)
        if waiting is None:
            self._fds[sid] = fd
            return
        request, timer = waiting
        timer.cancel()
        self._send_file(sid, ex, request, fd)

    def _descriptor_missing(self, sid: int) -> None:
        if self._files.pop(sid, None) is not None:
            self.violate("descriptor-missing",
                         f"no descriptor for the SENDFILE of stream {sid} within "
                         f"{DESCRIPTOR_WAIT:g} s", sid)

    def _drop_pending(self, sid: int) -> None:
        fd = self._fds.pop(sid, None)
        if fd is not None:
            os.close(fd)
        waiting = self._files.pop(sid, None)
        if waiting is not None:
            waiting[1].cancel()

    def _stop_descriptors(self) -> None:
        if self._fd_sock is not None:
            self._loop.remove_reader(self._fd_sock.fileno())
            self._fd_sock.close()
            self._fd_sock = None

    def _close_descriptors(self) -> None:
        self._stop_descriptors()
        for sid in list(self._fds) + list(self._files):
            self._drop_pending(sid)

    # -- violations -------------------------------------------------------------------

    def violate(self, rule: str, detail: str, sid: int = 0) -> None:
        """The worker broke `rule`: fail the stream it concerns, close the link, and tell
        the manager (which logs it and replaces the worker)."""
        if self.violation is not None:
            return
        self.violation = rule
        self.capacity = 0  # nothing more is dispatched here
        ex = self.streams.pop(sid, None) if sid else None
        self._budget.pop(sid, None)
        self._window.pop(sid, None)
        self._drop_pending(sid)
        if ex is not None:
            ex.link = None
            ex.on_worker_abort()  # 502, or the client's connection cut if it had begun
        self.on_violation(self, rule, detail)
        self._close_descriptors()
        self.close()

    # -- used by the pool queue and exchanges ---------------------------------------

    def serves(self, ex: Exchange) -> bool:
        return ex.app in self.apps

    def dispatch(self, ex: Exchange) -> None:
        streams = self.streams
        self._next_id = sid = (self._next_id % 0xFFFFFFFE) + 1
        while sid in streams:  # ids wrap after 2**32 - 2 requests; skip one still in flight
            self._next_id = sid = (sid % 0xFFFFFFFE) + 1
        streams[sid] = ex
        ex.attach(self, sid)

    def release(self, sid: int) -> None:
        if self.streams.pop(sid, None) is not None:
            if self._budget:
                self._budget.pop(sid, None)
            if self._window:
                self._window.pop(sid, None)
            if self._fds or self._files:
                self._drop_pending(sid)
            self.served += 1
            self.on_free(self)

    def grant(self, sid: int, n: int) -> None:
        """Credit `n` response body bytes back to stream `sid` (the client took them): the
        worker may send that many more, and the link counts it (`beyond-window`)."""
        if sid in self.streams:  # a stream in flight (its window starts whole)
            window = self._window
            window[sid] = window.get(sid, RESPONSE_WINDOW) + n
        self.send(frames.encode(FrameType.CREDIT, sid, messages.count_payload(n)))

    def abandon(self, sid: int) -> None:
        """The client is gone: tell the worker; the stream stays counted until it ends."""
        self.send(frames.encode(FrameType.ABORT, sid, b"", FLAG_END))

    def send(self, data: bytes) -> None:
        out = self._out
        out.append(data)
        if len(out) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out, transport = self._out, self.transport
        if transport is None and not self.closed:
            return  # connection_made sends it
        if transport is not None and not self.closed and out:
            transport.writelines(out)
        self._out = []

    def send_control(self, ftype: int, payload: bytes = b"") -> None:
        self.send(frames.encode(ftype, 0, payload))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
