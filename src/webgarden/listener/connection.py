"""One client connection: the asyncio adapter around the HTTP/1.1 core (`http1.py`).

The protocol rules (limits, framing, keep-alive) live in the sans-IO core; this module
owns what needs the loop: the transport, timers, flow, the pipeline of exchanges, routing
and the response cache's fast path.

Theory of operation:

* Bytes go to `Http1Core.receive_data`, which calls back `on_request`, `on_body` and
  `on_request_end` for each request. Each request becomes an `Exchange` in
  the connection's pipeline; only the first is active (routed, queued, dispatched), so
  pipelined requests are answered in the order they came. Bodies of later ones wait,
  bounded, in their exchanges.
* A request the core refuses (a limit, a bad head) is answered with HTTP.sys's page after
  the requests before it in the pipeline; any listener-made error closes the connection
  after its answer, as HTTP.sys does.
* Timers (swept once a second by the listener, not one per request): `headerWaitTimeout`
  while a head is arriving, `connectionTimeout` while a body is arriving and while the
  connection idles between requests. Expiry closes the connection.
* Back-pressure: reading stops while the active exchange holds `BODY_BUFFER_LIMIT` bytes of
  body the worker has no credit for, or while `MAX_PIPELINE` requests wait.
* The fast path: a plain HTTP/1.1 GET seen before as a response-cache hit is answered as
  soon as its head is parsed, without an exchange; and the same bytes arriving alone
  again (a client repeating itself) are answered without the parser. The stored head is
  what `http1.frame_response` gives such a request (Content-Length, no Connection line).
* Logging: every response is logged once, when it ends, by the listener's `AccessLogs`:
  `exchange_done` for every exchange, the fast path for its cache hits, `_send_error` for
  a request that could not be parsed, and `connection_lost` for the requests a closed
  connection leaves unanswered. Bytes written are counted here (`sent`); a response's
  sc-bytes is what was written since the previous one ended.

Other protocols: HTTP/2 is a sibling adapter (`http2.py`, h2 instead of the core) that
makes one `Exchange` per stream from the same `RequestHead` and implements the same
`roles.Client` for it (`H2Stream`), with the stream's own write and flow; `negotiate.py`
picks which adapter serves a connection. A WebSocket upgrade hands the connection's bytes
to the upgraded exchange. None of them routes: `dispatch.start` does, for all.

WebSockets (`websocket.py` has the rules): a head that asks for an upgrade is checked in
`_upgrade` (a bad handshake is refused after routing, so the site's log has it); a good
one is routed and queued like any request, with the connection's later bytes as its
body (`tunnel`). It has no timers once its head is in: the worker pings. The exchange
writes the 101 when the worker accepts, and its END (or the client leaving) ends the
connection, which logs the WebSocket as one line.
"""

from __future__ import annotations

import asyncio
import collections
from time import monotonic
from typing import Any, Protocol

from webgarden.config.model import ServerConfig
from webgarden.listener import access, dispatch, errors, http1, tls, websocket
from webgarden.listener.access import AccessLogs
from webgarden.listener.exchange import Exchange
from webgarden.listener.http1 import Http1Core, RequestHead
from webgarden.listener.local import LocalResponder
from webgarden.listener.pool_queue import PoolQueue
from webgarden.listener.routing import Router, host_of
from webgarden.listener.sendfile import FileSender

#: Parsed requests held per connection before reading pauses.
MAX_PIPELINE = 32
#: Longest request remembered for answering its repeats without the parser, bytes.
REPEAT_MAX = 2048


def addresses(transport: Any) -> tuple[tuple[str, int], tuple[str, int]]:
    """A connection's (client, server) address and port, as the log and the application
    are told them (("", 0) where the transport has none, as a Unix socket)."""
    peer = transport.get_extra_info("peername")
    local = transport.get_extra_info("sockname")
    return ((peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0),
            (local[0], local[1]) if isinstance(local, tuple) else ("", 0))


class ListenerServices(Protocol):
    """What a connection needs of the listener that owns it (`server.Listener`)."""

    config: ServerConfig
    router: Router
    local: LocalResponder
    pools: dict[str, PoolQueue]
    logs: AccessLogs
    connections: set[Any]
    draining: bool
    now: float
    date_line: bytes
    header_wait: float
    idle_timeout: float
    head_limits: http1.HeadLimits
    counters: http1.ParseCounters

    def emit(self, event: str, **fields: Any) -> None: ...

    def connection_closed(self, conn: Any) -> None: ...

    def httperr(self, conn: Any, page: errors.ErrorPage | None, reason: str | None = None,
                ex: Exchange | None = None) -> None: ...


class HttpConnection(asyncio.Protocol):
    def __init__(self, listener: ListenerServices, port: int) -> None:
        self.listener = listener
        self.port = port  # the configured port of the binding (0: the kernel picked one)
        self.core = Http1Core(self, listener.head_limits, listener.counters, monotonic)
        self.transport: Any = None
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.pipeline: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None  # the exchange whose body is arriving
        self.fast_answered = False
        self.error_page: errors.ErrorPage | None = None
        self.reading_paused = False
        self.paused_writing = False
        self.closed = False
        self.deadline = 0.0
        self.file_sender: FileSender | None = None
        self.sent = 0  # response bytes written (access.py: sc-bytes)
        self.logged = 0  # `sent` when the last response was logged
        self.log_addresses: tuple[bytes, bytes, bytes] | None = None  # access.py's, cached
        self.log_last: tuple[Any, ...] | None = None  # access.py's: the last line's head
        self.local_close = False  # the server closed the connection, not the client
        self.failed_request = (b"", b"", b"")  # version, method, target of a bad request
        # A repeated request: the bytes of the last request answered on the fast path when
        # they came alone in one read, and its fast-path key. The same bytes again parse to
        # the same request, so they are answered without the parser (`data_received`).
        self.chunk = b""  # the data being parsed
        self.chunk_alone = False  # it began at a request boundary
        self.repeat_raw: bytes | None = None
        self.repeat_key: tuple[int, str, bytes, bytes, bytes] | None = None
        # An upgraded WebSocket's exchange: every byte that comes is its tunnel's.
        self.tunnel: Exchange | None = None
        # TLS (`tls.py`): the handshake's session, the scheme the app sees, and the
        # Strict-Transport-Security line every answer on this connection carries.
        self.tls: tls.Session | None = None
        self.scheme = "http"
        self.head_extra = b""

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.client, self.server = addresses(transport)
        self.listener.connections.add(self)
        self.deadline = self.listener.now + self.listener.header_wait
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls_made(ssl_object)

    def _tls_made(self, ssl_object: Any) -> None:
        """The handshake is done (uvloop calls connection_made after it). The protocol
        that serves the connection is ALPN's choice, `self.tls.alpn` (HTTP/2: "h2")."""
        session = self.tls = tls.session_of(ssl_object)
        self.scheme = "https"
        site = self.listener.router.site_for(self.server[0], self.port,
                                             session.server_name or "")
        if site is not None:
            self.head_extra = site.hsts_header

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connection_closed(self)
        if self.file_sender is not None:
            self.file_sender.cancel()
            self.file_sender = None
        logs = self.listener.logs
        win32 = access.SERVER_ABORTED if self.local_close else access.CLIENT_GONE
        for ex in self.pipeline:
            if not ex.done and not ex.abandoned:
                ex.client_gone()
                logs.exchange(self, ex, win32)
        self.pipeline.clear()

    def data_received(self, data: bytes) -> None:
        if (data == self.repeat_raw and not self.pipeline and not self.core.in_head
                and self.parsing is None):
            listener = self.listener
            entry = listener.local.fast_hit(self.repeat_key, listener.now)  # type: ignore[arg-type]
            if entry is not None and not listener.draining and self.error_page is None:
                head = self.core.head  # the remembered request's, as parsed
                head.began = monotonic()
                out = b"".join((entry.head, listener.date_line, self.head_extra, entry.tail))
                self.transport.write(out)
                listener.logs.hit(self, head, entry, len(out))
                self.deadline = listener.now + listener.idle_timeout
                return
        # Anything else is parsed, and the parser's state (what the access log reads) is no
        # longer the remembered request's: forget it until the next fast-path answer.
        self.repeat_raw = None
        if self.tunnel is not None:
            self.tunnel.add_body(data)  # to the worker under its credit; a flood pauses us
            return
        if self.error_page is not None:
            return
        core = self.core
        was_in_head = core.in_head
        self.chunk, self.chunk_alone = data, not was_in_head
        if not was_in_head and self.parsing is not None:
            self.deadline = self.listener.now + self.listener.idle_timeout  # entity body timer
        page = core.receive_data(data)
        if page is not None:
            self._parse_failed(page)
        elif core.in_head and not was_in_head:  # a head began and is still arriving
            self.deadline = self.listener.now + self.listener.header_wait

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.pipeline:
            self.pipeline[0].pay_credit()

    # -- events from the HTTP/1.1 core (http1.RequestSink) ------------------------------

    def on_request(self, head: RequestHead) -> None:
        listener = self.listener
        fast_key = None
        if (head.plain and not head.has_body and head.version == "HTTP/1.1" and not self.pipeline
                and (self.tls is None or not tls.misdirected(self.tls, host_of(head.host)))
                and head.method == b"GET" and head.keep_alive and not listener.draining):
            fast_key = (self.port, self.server[0], head.host, head.url, head.accept_encoding)
            entry = listener.local.fast_hit(fast_key, listener.now)
            if entry is not None:
                # A response-cache hit seen before: answered here, no exchange needed.
                data = b"".join((entry.head, listener.date_line, self.head_extra, entry.tail))
                self.transport.write(data)
                self.fast_answered = True
                listener.logs.hit(self, head, entry, len(data))
                chunk = self.chunk
                if (self.chunk_alone and len(chunk) <= REPEAT_MAX
                        and chunk.endswith(b"\r\n\r\n") and chunk.count(b"\r\n\r\n") == 1):
                    self.repeat_raw, self.repeat_key = chunk, fast_key  # exactly this request
                return
        ex = Exchange(self, head)
        ex.fast_key = fast_key
        if head.upgrade:
            self._upgrade(ex, head)
        self.parsing = ex
        self.deadline = listener.now + listener.idle_timeout
        pipeline = self.pipeline
        pipeline.append(ex)
        if len(pipeline) == 1:  # `_start`, inlined: this runs for every request
            dispatch.start(listener, ex, self.port, self.server[0])
        elif len(pipeline) >= MAX_PIPELINE:
            self.pause_reading()

    def on_body(self, data: bytes) -> None:
        if self.parsing is not None:
            self.parsing.add_body(data)

    def on_request_end(self) -> None:
        ex = self.parsing
        self.parsing = None
        self.deadline = 0.0
        if ex is not None:
            if ex.websocket is not None:
                self.tunnel = ex  # no timers from here: the worker pings (worker/websocket.py)
            else:
                ex.body_complete()
        elif self.fast_answered:
            self.fast_answered = False
            if not self.pipeline:  # idle again, as after any response
                self.deadline = self.listener.now + self.listener.idle_timeout

    def on_upgrade(self, data: bytes) -> None:
        """The bytes after an upgrade's head (the core parses nothing more)."""
        if self.tunnel is not None and data:
            self.tunnel.add_body(data)

    def _upgrade(self, ex: Exchange, head: RequestHead) -> None:
        """A WebSocket upgrade: validated now, refused after routing (so the site logs it)."""
        settings = self.listener.config.web_server.web_socket
        if not settings.enabled:
            return  # served as a plain HTTP request
        checked = websocket.check_upgrade(head, (
            settings.receive_buffer_limit, settings.ping_interval, settings.ping_timeout))
        if isinstance(checked, errors.ErrorPage):
            ex.refusal = checked
        elif checked is not None:
            ex.websocket = checked
            ex.body_done = False  # the tunnel is its body, open until the client leaves

    # -- the pipeline -----------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        """Route the active exchange and hand it to its pool's queue (`dispatch.start`)."""
        dispatch.start(self.listener, ex, self.port, self.server[0])

    def exchange_done(self, ex: Exchange) -> None:
        self.listener.logs.exchange(self, ex)
        pipeline = self.pipeline
        if pipeline and pipeline[0] is ex:
            pipeline.popleft()
        if self.closed:
            return
        if ex.close_after:
            self.close()
            return
        if pipeline:
            self._start(pipeline[0])
            return
        if self.error_page is not None:
            self._send_error()
            return
        in_head = self.core.in_head
        if self.listener.draining and not in_head:
            self.close()
            return
        if self.reading_paused and self.parsing is None:
            self.resume_reading()
        if self.parsing is None and not in_head:
            self.deadline = self.listener.now + self.listener.idle_timeout

    def may_keep_alive(self) -> bool:
        return not self.listener.draining or len(self.pipeline) > 1

    def _parse_failed(self, page: errors.ErrorPage) -> None:
        self.error_page = page
        core = self.core
        if core.in_head:
            self.failed_request = core.request_line()
        core.in_head = False
        self.pause_reading()
        broken = self.parsing
        self.parsing = None
        if broken is not None:
            self.failed_request = (broken.version.encode(), broken.method.encode(),
                                   broken.target)
            if broken in self.pipeline:
                self.pipeline.remove(broken)
            if broken.started:  # its body broke while its answer was going out
                broken.client_gone()
                self.listener.logs.exchange(self, broken, access.SERVER_ABORTED)
                self.listener.httperr(self, page)
                self.abort()
                return
            broken.client_gone()
        if not self.pipeline:
            self._send_error()

    def _send_error(self) -> None:
        page = self.error_page or errors.BAD_REQUEST
        self.listener.httperr(self, page)
        self.write(http1.error_response(page, self.date_line))
        self.close()

    # -- roles.Client: what exchanges, files and logs tell their connection -----------

    @property
    def date_line(self) -> bytes:
        extra = self.head_extra
        return self.listener.date_line + extra if extra else self.listener.date_line

    def observe(self, ex: Exchange, block: bytes, body: bytes) -> None:
        """A worker's whole 200 to a routed GET: the response cache may keep it."""
        listener = self.listener
        listener.local.observe(ex, block, body, listener.now)

    def httperr(self, status: int, reason: str, ex: Exchange | None) -> None:
        self.listener.logs.httperr(self, status, reason, ex)

    def emit(self, event: str, **fields: Any) -> None:
        self.listener.emit(event, **fields)

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)
            self.sent += len(data)

    def writelines(self, data: tuple[bytes, ...]) -> None:
        if not self.closed:
            self.transport.writelines(data)
            self.sent += sum(map(len, data))

    def start_file(self, sender: FileSender) -> None:
        self.file_sender = sender
        sender.start()

    def file_finished(self) -> None:
        self.file_sender = None

    def pause_reading(self) -> None:
        if not self.reading_paused and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.closed and self.error_page is None:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.local_close = True
            self.transport.close()

    def abort(self, client_gone: bool = False) -> None:
        """Reset the connection (`client_gone`: because the client's side failed)."""
        if not self.closed and self.transport is not None:
            self.local_close = not client_gone
            self.transport.abort()

    # -- timers and shutdown (called by the listener) ---------------------------------

    def expired(self, now: float) -> str | None:
        """The HTTPERR reason if this connection's timer ran out, else None."""
        if not self.deadline or now < self.deadline or self.reading_paused:
            return None
        if self.core.in_head:
            return "Timer_HeaderWait"
        if self.parsing is not None:
            return "Timer_EntityBody"
        if not self.pipeline:
            return "Timer_ConnectionIdle"
        return None

    def drain(self) -> None:
        """The server is shutting down. A busy connection closes after its last response;
        an idle one at the next tick, so a request already on its way is still served."""
        if not self.pipeline and not self.core.in_head and self.parsing is None:
            self.deadline = self.listener.now
