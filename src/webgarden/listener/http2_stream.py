"""One HTTP/2 stream as its exchange sees it: a `roles.Client` (`H2Stream`).

Its connection (`http2.Http2Connection`, seen here as `Owner`) owns it and h2's state. The
exchange writes its response as HTTP/1.1 text, as it writes for any client: the first
write is the head (turned into HEADERS, `http2_core.PreparedHeads`), the rest is body,
held in `pending` until the client's windows let it go out as DATA (`send_ready`, called
by the connection at the end of the loop's turn). Rules 1, 2 and 6 of `http2.py` are
kept here: request DATA is acknowledged as the exchange passes it on (`settle`); a stream
holding `PENDING_LOW` bytes or more, or on a full socket, credits its worker nothing more
and pays back what it owes once it drains; a file is read `FILE_PIECE` at a time under
flow control; sc-bytes counts the HTTP/1.1 text.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
from typing import Any, Protocol

from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError

from webgarden.listener import access, http2_core, tls
from webgarden.listener.connection import ListenerServices
from webgarden.listener.exchange import Exchange
from webgarden.listener.http1 import Body, RequestHead
from webgarden.listener.sendfile import FileSender

#: Response bytes a stream may hold waiting for the client's window before its worker
#: is credited nothing more.
PENDING_LOW = 64 * 1024
#: A file's bytes read per step.
FILE_PIECE = 64 * 1024

_LENGTH = Body.LENGTH


class Owner(Protocol):
    """The connection, as its streams see it (`http2.Http2Connection`)."""

    listener: ListenerServices
    h2: H2Connection
    prepared: http2_core.PreparedHeads
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int]
    server: tuple[str, int]
    transport: Any
    failed_request: tuple[bytes, bytes, bytes]
    tls: tls.Session | None
    scheme: str
    head_extra: bytes
    extra_headers: list[tuple[bytes, bytes]]
    log_addresses: tuple[bytes, bytes, bytes] | None
    log_last: tuple[Any, ...] | None
    paused: bool
    closed: bool

    def date(self) -> tuple[bytes, bytes]: ...

    def schedule(self, stream: H2Stream) -> None: ...

    def stream_closed(self, stream: H2Stream) -> None: ...

    def flush(self) -> None: ...


class H2Stream:
    """One stream: a `roles.Client` for its exchange."""

    __slots__ = (
        "client",
        "connection",
        "end_sent",
        "ending",
        "ex",
        "failed_request",
        "file",
        "head",
        "head_sent",
        "held",
        "log_addresses",
        "log_last",
        "logged",
        "paused_writing",
        "pending",
        "pending_size",
        "remote_ended",
        "scheme",
        "sent",
        "server",
        "sid",
        "tls",
        "transport",
    )

    def __init__(self, connection: Owner, sid: int) -> None:
        self.connection = connection
        self.sid = sid
        self.client = connection.client
        self.server = connection.server
        self.transport = connection.transport
        self.failed_request = connection.failed_request
        self.tls: tls.Session | None = connection.tls
        self.scheme: str = connection.scheme
        self.log_addresses = connection.log_addresses
        self.log_last = connection.log_last
        self.ex: Exchange | None = None
        self.head: list[tuple[bytes, bytes]] | None = None  # HEADERS to send
        self.head_sent = False
        self.pending: collections.deque[bytes | memoryview] = collections.deque()
        self.pending_size = 0
        self.file: FileSender | None = None
        self.ending = False  # the exchange is complete: END_STREAM after what is pending
        self.end_sent = False
        self.remote_ended = False
        self.held = 0  # request body received and not yet acknowledged
        self.paused_writing = connection.paused
        self.sent = 0
        self.logged = 0

    @property
    def listener(self) -> ListenerServices:
        return self.connection.listener

    @property
    def date_line(self) -> bytes:
        extra = self.connection.head_extra
        line = self.connection.listener.date_line
        return line + extra if extra else line

    # -- the request side --------------------------------------------------------------

    def settle(self) -> None:
        """Reopen the windows for the body the exchange has passed on to its worker."""
        ex = self.ex
        release = self.held - (ex.body_size if ex is not None else 0)
        if release > 0:
            self.held -= release
            self.connection.h2.acknowledge_received_data(release, self.sid)
            self.connection.schedule(self)

    def answer_cached(self, head: RequestHead, entry: Any) -> None:
        """A response-cache hit on the fast path (no exchange): HEADERS and DATA at once."""
        connection = self.connection
        self.head = [*connection.prepared.get(entry.head), (b"date", connection.date()[1]),
                     *connection.extra_headers]
        # The tail is the empty line, then the body: a view, so a hundred streams waiting
        # for their windows share the entry's bytes instead of copying them.
        body = memoryview(entry.tail)[2:]
        if body:
            self.pending.append(body)
            self.pending_size = len(body)
        self.sent = len(entry.head) + len(self.date_line) + len(entry.tail)
        self.ending = True
        connection.listener.logs.hit(self, head, entry, self.sent, "HTTP/2")
        connection.schedule(self)

    # -- roles.Client: what the exchange writes ----------------------------------------

    def write(self, data: bytes) -> None:
        if self.end_sent or self.connection.closed:
            return
        self.sent += len(data)
        if not self.head_sent:
            self.head_sent = True
            end = data.find(b"\r\n\r\n") + 2
            block, data = data[:end], data[end + 2:]
            date_line, date = self.connection.date()
            at = block.find(date_line)  # the line changes each second: not in the key
            if at >= 0:
                block = block[:at] + block[at + len(date_line):]
            self.head = [*self.connection.prepared.get(block), (b"date", date)]
        if data:
            self.pending.append(data)
            self.pending_size += len(data)
            if self.pending_size >= PENDING_LOW:
                self.paused_writing = True
        self.connection.schedule(self)

    def writelines(self, data: tuple[bytes, ...]) -> None:
        self.write(b"".join(data))

    def may_keep_alive(self) -> bool:
        return True  # the connection's fate is not a stream's

    def exchange_done(self, ex: Exchange) -> None:
        connection = self.connection
        connection.listener.logs.exchange(self, ex)
        connection.log_addresses, connection.log_last = self.log_addresses, self.log_last
        if ex.body_mode is _LENGTH and ex.remaining > 0:
            self.abort()  # short of its Content-Length: a reset, never a whole-looking body
            return
        self.ending = True
        connection.schedule(self)

    def observe(self, ex: Exchange, block: bytes, body: bytes) -> None:
        listener = self.connection.listener
        listener.local.observe(ex, block, body, listener.now)

    def httperr(self, status: int, reason: str, ex: Exchange | None) -> None:
        self.connection.listener.logs.httperr(self, status, reason, ex)

    def emit(self, event: str, **fields: Any) -> None:
        self.connection.listener.emit(event, **fields)

    def pause_reading(self) -> None:
        pass  # the stream's window does it: nothing is acknowledged while the body waits

    def resume_reading(self) -> None:
        self.settle()

    def abort(self, client_gone: bool = False) -> None:
        """Reset this stream only (later in this turn: the exchange is mid-call)."""
        if not self.end_sent:
            self.end_sent = True
            self.connection.loop.call_soon(self._reset, client_gone)

    def _reset(self, client_gone: bool) -> None:
        connection = self.connection
        if connection.closed:
            return
        with contextlib.suppress(ProtocolError):  # closed already
            connection.h2.reset_stream(self.sid, ErrorCodes.INTERNAL_ERROR)
        self.gone(access.CLIENT_GONE if client_gone else access.SERVER_ABORTED)
        connection.flush()

    def start_file(self, sender: FileSender) -> None:
        self.file = sender  # read into DATA frames by `emit`, under flow control
        self.connection.schedule(self)

    def file_finished(self) -> None:
        self.file = None

    # -- sending ------------------------------------------------------------------------

    def send_ready(self) -> None:
        """Send what the windows allow: HEADERS, DATA, END_STREAM."""
        if self.end_sent and self.head is None:
            return
        connection = self.connection
        h2c, sid = connection.h2, self.sid
        try:
            if self.head is not None:
                head, self.head = self.head, None
                done = self.ending and not self.pending and self.file is None
                h2c.send_headers(sid, head, end_stream=done)
                if done:
                    self._ended()
                    return
            if not connection.paused:
                self._send_data(h2c, sid)
        except ProtocolError:  # the stream closed under us (a reset crossing our frames)
            self.gone(access.CLIENT_GONE)
            return
        if self.paused_writing and self.pending_size < PENDING_LOW and not connection.paused:
            self.paused_writing = False
            if self.ex is not None:
                self.ex.pay_credit()

    def _send_data(self, h2c: H2Connection, sid: int) -> None:
        pending = self.pending
        while True:
            while pending:
                window = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
                if window <= 0:
                    return  # WindowUpdated brings us back
                chunk = pending[0]
                if len(chunk) > window:
                    pending[0], chunk = chunk[window:], chunk[:window]
                else:
                    pending.popleft()
                self.pending_size -= len(chunk)
                last = self.ending and not pending and self.file is None
                h2c.send_data(sid, chunk, end_stream=last)
                if last:
                    self._ended()
                    return
            if self.file is None or not self._read_file():
                break
        if self.ending and not self.end_sent and self.file is None:
            h2c.end_stream(sid)
            self._ended()

    def _read_file(self) -> bool:
        """Read the next piece of the file into `pending`. False: nothing more to read."""
        sender = self.file
        assert sender is not None
        try:
            piece = os.pread(sender.fd, min(FILE_PIECE, sender.remaining), sender.offset)
        except OSError:
            piece = b""
        if not piece:  # unreadable, or the file shrank under us
            self.file = None
            sender.cancel()
            sender.on_done(False)
            return False
        sender.offset += len(piece)
        sender.remaining -= len(piece)
        self.pending.append(piece)
        self.pending_size += len(piece)
        self.sent += len(piece)
        if sender.remaining <= 0:
            self.file = None
            sender.cancel()  # closes the file
            sender.on_done(True)  # the exchange finishes: `ending`
        return True

    def _ended(self) -> None:
        self.end_sent = True
        connection = self.connection
        if not self.remote_ended:
            # A whole response before the whole request: ask the client to stop sending
            # (RFC 9113 §8.1), and reopen the connection's window for what we held.
            connection.h2.reset_stream(self.sid, ErrorCodes.NO_ERROR)
            self._release()
        connection.stream_closed(self)

    def _release(self) -> None:
        if self.held:
            self.connection.h2.acknowledge_received_data(self.held, self.sid)
            self.held = 0

    def gone(self, win32: int) -> None:
        """The stream ended before its response did (reset by either side, or the
        connection closed): drop the request or abandon its worker stream, and log it."""
        self.end_sent = True
        connection = self.connection
        file = self.file
        if file is not None:
            self.file = None
            file.cancel()
        ex = self.ex
        if ex is not None and not ex.done and not ex.abandoned:
            ex.client_gone()
            connection.listener.logs.exchange(self, ex, win32)
        if not connection.closed:
            self._release()
            connection.stream_closed(self)
