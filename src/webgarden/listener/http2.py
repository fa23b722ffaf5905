"""One HTTP/2 connection: the asyncio adapter around `h2` (sans-IO) and `http2_core`.

Each stream is an `Exchange` in the same core as HTTP/1.1's requests: its HEADERS become a
`RequestHead` (`http2_core.request_head`), and `dispatch.start` routes it, answers it from
the cache or a file, or queues it in its pool; its DATA is the exchange's body; the
exchange's response comes back through the stream (`http2_stream.H2Stream`, a
`roles.Client`), which turns the HTTP/1.1 head the core wrote into HEADERS and the body
into DATA frames. The
exchange's version is "HTTP/2": the framer then never chunks (a body of unknown length
ends with the stream), the worker's environ says `SERVER_PROTOCOL` HTTP/2 and the W3C log
`HTTP/2`.

Rules:

1. Flow control, request side: a stream's window (`STREAM_WINDOW`) and the connection's
   (`CONNECTION_WINDOW`) are what the listener holds. Received DATA is acknowledged (its
   window reopened) only once the exchange has passed it to the worker within the
   worker's credit, so an exchange holds at most one stream window of body, and a
   connection at most its connection window, whatever the client sends.
2. Flow control, response side: DATA goes out as the client's windows allow; what waits
   for a window is held per stream. While a stream holds `PENDING_LOW` bytes or more, or
   the socket's buffer is full, its exchange credits the worker nothing more, so a slow
   stream holds back only itself and at most a worker's response window. A file is
   read (sendfile cannot go inside frames) `FILE_PIECE` at a time, only while its stream
   holds less than `PENDING_LOW`.
3. SETTINGS as HTTP.sys's: `Http2MaxConcurrentStreams` (100) streams at once (h2 refuses
   more), a header list up to MaxRequestBytes + MaxFieldLength decoded (h2 stops an HPACK
   bomb there), no server push (SETTINGS_ENABLE_PUSH 0; nothing is ever pushed).
4. A client's abuse ends its connection with GOAWAY and an `http2.goaway` event naming
   the reason: a header block too large or a CONTINUATION flood (`http2_core.FrameGauge`,
   before h2 buffers them), rapid reset (`http2_core.ResetMeter`), and every protocol
   error h2 finds. A stream reset while it waits in its pool's queue leaves the queue and
   is never dispatched (`Exchange.client_gone`).
5. Writes are coalesced: what streams produce in one turn of the loop goes out in one
   write at its end.
6. Logging: each stream is logged when its exchange ends, as HTTP/1.1's are; sc-bytes
   counts the response as its HTTP/1.1 text (head and body), not HPACK's encoding.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

import h2.events as ev
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from webgarden.listener import access, dispatch, http2_core, tls
from webgarden.listener.connection import ListenerServices, addresses
from webgarden.listener.exchange import Exchange
from webgarden.listener.http2_stream import H2Stream
from webgarden.listener.routing import host_of

#: A stream's receive window: request body held per stream (HTTP/1.1 holds up to 1 MiB
#: per request, `exchange.BODY_BUFFER_LIMIT`; a quarter of that keeps 4 uploads moving).
STREAM_WINDOW = 256 * 1024
#: The connection's receive window: request body held per connection, all streams.
CONNECTION_WINDOW = 1024 * 1024
#: h2's default window, before our WINDOW_UPDATE widens the connection's.
_DEFAULT_WINDOW = 65535


class Http2Connection(asyncio.Protocol):
    """The connection: h2's state, the streams by id, the timers and the socket."""

    def __init__(self, listener: ListenerServices, port: int) -> None:
        self.listener = listener
        self.port = port
        limits = listener.head_limits
        # h2 validates what the client sends (pseudo-headers, names, values); our own
        # heads are checked where they are made (`http2_core.response_headers`), and
        # split cookies are joined by `http2_core.request_head`.
        self.h2 = h2c = H2Connection(H2Configuration(
            client_side=False, header_encoding=None, validate_outbound_headers=False,
            normalize_outbound_headers=False, normalize_inbound_headers=False))
        header_list = limits.max_request + limits.max_field
        config_limits = listener.config.limits
        h2c.local_settings = Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: config_limits.http2_max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: header_list,
            SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            SettingCodes.ENABLE_PUSH: 0,
        })
        h2c.decoder.max_header_list_size = header_list
        h2c.encoder = http2_core.StatelessEncoder()
        self.gauge = http2_core.FrameGauge(header_list)
        self.resets = http2_core.ResetMeter(monotonic)
        self.prepared = _PREPARED
        self.streams: dict[int, H2Stream] = {}
        self.dirty: dict[int, H2Stream] = {}  # streams with something to send
        self.transport: Any = None
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.failed_request = (b"HTTP/2", b"", b"")
        # TLS: the handshake's session (`tls.Session`: ALPN chose "h2"), set by whoever
        # made the connection (`negotiate.py`); None on h2c. The scheme the app sees.
        self.tls: tls.Session | None = None
        self.scheme = "http"
        self.head_extra = b""  # <hsts>: the Strict-Transport-Security line (https)
        self.extra_headers: list[tuple[bytes, bytes]] = []  # the same, as h2 headers
        self.log_addresses: tuple[bytes, bytes, bytes] | None = None
        self.log_last: tuple[Any, ...] | None = None
        self.paused = False  # the socket's buffer is full
        self.closed = False
        self.ending = False  # GOAWAY sent or received: no new streams, close when idle
        self.local_close = False
        self.flush_scheduled = False
        self.deadline = 0.0
        self._date = (b"", b"")  # the listener's Date line, and its value
        self.loop = asyncio.get_event_loop()

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client, self.server = addresses(transport)
        listener = self.listener
        listener.connections.add(self)
        self.deadline = listener.now + listener.header_wait
        h2c = self.h2
        h2c.initiate_connection()
        h2c.increment_flow_control_window(CONNECTION_WINDOW - _DEFAULT_WINDOW)
        transport.write(h2c.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connection_closed(self)
        win32 = access.SERVER_ABORTED if self.local_close else access.CLIENT_GONE
        for stream in list(self.streams.values()):
            stream.gone(win32)
        self.streams.clear()
        self.dirty.clear()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        why = self.gauge.feed(data)
        if why is not None:
            self.refuse(why, ErrorCodes.ENHANCE_YOUR_CALM)
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:  # h2 has queued its GOAWAY
            self.refuse(_reason(exc), None)
            return
        self._handle(events)

    def _handle(self, events: list[ev.Event]) -> None:
        handlers = _HANDLERS
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                handler(self, event)
                if self.closed:  # refused (rapid reset)
                    return
        self.flush()

    def pause_writing(self) -> None:
        self.paused = True
        for stream in self.streams.values():
            stream.paused_writing = True
        if not self.closed:
            self.transport.pause_reading()  # no new streams while the client does not read

    def resume_writing(self) -> None:
        self.paused = False
        if self.closed:
            return
        self.transport.resume_reading()
        for sid, stream in self.streams.items():
            self.dirty[sid] = stream  # sends, and pays its worker what it owes (`send_ready`)
        self.flush()

    # -- h2's events --------------------------------------------------------------------

    def secure(self, session: tls.Session, head_extra: bytes) -> None:
        """Made over TLS (ALPN chose "h2"): the handshake's session, the HSTS line."""
        self.tls, self.scheme, self.head_extra = session, "https", head_extra
        if head_extra:
            self.extra_headers = http2_core.response_headers(b"HTTP/1.1 200 \r\n" + head_extra)[1:]

    def _on_request(self, event: ev.RequestReceived) -> None:
        sid = event.stream_id
        listener = self.listener
        head, page = http2_core.request_head(
            event.headers or (), event.stream_ended is not None, listener.head_limits,
            listener.counters, monotonic())
        stream = self.streams[sid] = H2Stream(self, sid)
        self.deadline = 0.0
        fast_key = None
        if (page is None and head.plain and not head.has_body and head.method == b"GET"
                and (self.tls is None or not tls.misdirected(self.tls, host_of(head.host)))
                and not listener.draining):
            fast_key = (self.port, self.server[0], head.host, head.url, head.accept_encoding)
            entry = listener.local.fast_hit(fast_key, listener.now)
            if entry is not None:
                stream.answer_cached(head, entry)
                return
        ex = stream.ex = Exchange(stream, head)
        ex.fast_key = fast_key
        if page is not None:
            ex.fail(page)
        else:
            dispatch.start(listener, ex, self.port, self.server[0])

    def _on_data(self, event: ev.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        size = event.flow_controlled_length or 0
        ex = stream.ex if stream is not None else None
        if stream is None or ex is None or ex.done or ex.abandoned:
            self.h2.acknowledge_received_data(size, event.stream_id)  # dropped: reopen
            return
        stream.held += size
        ex.add_body(event.data or b"")
        stream.settle()

    def _on_end(self, event: ev.StreamEnded) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        stream.remote_ended = True
        ex = stream.ex
        if ex is not None and not ex.done and not ex.abandoned:
            ex.body_complete()

    def _on_reset(self, event: ev.StreamReset) -> None:
        if event.remote_reset and self.resets.reset():
            self.refuse("rapid-reset", ErrorCodes.ENHANCE_YOUR_CALM)
            return
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.gone(access.CLIENT_GONE)

    def _on_window(self, event: ev.WindowUpdated) -> None:
        sid = event.stream_id
        if sid:
            stream = self.streams.get(sid)
            if stream is not None and (stream.pending or stream.file is not None):
                self.dirty[sid] = stream
        else:
            self._all_may_send()  # the connection's window opened

    def _on_settings(self, event: ev.RemoteSettingsChanged) -> None:
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._all_may_send()

    def _all_may_send(self) -> None:
        for sid, stream in self.streams.items():
            if stream.pending or stream.file is not None:
                self.dirty[sid] = stream

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        self.ending = True
        if not self.streams:
            self.transport.close()

    # -- sending ------------------------------------------------------------------------

    def schedule(self, stream: H2Stream) -> None:
        """`stream` has something to send: at the end of this turn of the loop."""
        self.dirty[stream.sid] = stream
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.closed:
            return
        while self.dirty:
            dirty, self.dirty = self.dirty, {}
            for stream in dirty.values():
                stream.send_ready()
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def stream_closed(self, stream: H2Stream) -> None:
        self.streams.pop(stream.sid, None)
        self.dirty.pop(stream.sid, None)
        if not self.streams:
            listener = self.listener
            if self.ending or listener.draining:
                self.close()
            else:
                self.deadline = listener.now + listener.idle_timeout

    def date(self) -> tuple[bytes, bytes]:
        """The listener's Date line and its value (the line changes once a second)."""
        line = self.listener.date_line
        if self._date[0] is not line:
            self._date = (line, line[6:-2])
        return self._date

    def refuse(self, reason: str, code: ErrorCodes | None) -> None:
        """End the connection for the client's abuse: GOAWAY (with `code`, unless h2 has
        queued its own), then close."""
        if self.closed:
            return
        if code is not None:
            self.h2.close_connection(error_code=code)
        self.listener.emit("http2.goaway", client=f"{self.client[0]}:{self.client[1]}",
                           reason=reason, streams=len(self.streams))
        self.transport.write(self.h2.data_to_send())
        self.local_close = True
        self.closed = True
        self.transport.close()
        self.connection_lost(None)

    # -- timers and shutdown (called by the listener) ---------------------------------

    def expired(self, now: float) -> str | None:
        if self.deadline and now >= self.deadline and not self.streams:
            return "Timer_ConnectionIdle"
        return None

    def close(self) -> None:
        """Close gracefully: GOAWAY NO_ERROR, then the socket."""
        if self.closed or self.transport is None:
            return
        self.local_close = True
        self.h2.close_connection()
        self.transport.write(self.h2.data_to_send())
        self.transport.close()

    def abort(self, client_gone: bool = False) -> None:
        if not self.closed and self.transport is not None:
            self.local_close = not client_gone
            self.transport.abort()

    def drain(self) -> None:
        """The server is shutting down: an idle connection closes at the next tick, a busy
        one when its last stream ends."""
        self.ending = True
        if not self.streams:
            self.deadline = self.listener.now


def _reason(exc: ProtocolError) -> str:
    """A short name for what h2 refused (the event's `reason`)."""
    name = type(exc).__name__
    return {"DenialOfServiceError": "header-list-too-large",
            "TooManyStreamsError": "too-many-streams",
            "FlowControlError": "flow-control"}.get(name, "protocol-error")


_PREPARED = http2_core.PreparedHeads()

_HANDLERS: dict[type, Any] = {
    ev.RequestReceived: Http2Connection._on_request,
    ev.DataReceived: Http2Connection._on_data,
    ev.StreamEnded: Http2Connection._on_end,
    ev.StreamReset: Http2Connection._on_reset,
    ev.WindowUpdated: Http2Connection._on_window,
    ev.RemoteSettingsChanged: Http2Connection._on_settings,
    ev.ConnectionTerminated: Http2Connection._on_goaway,
}
