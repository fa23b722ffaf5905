"""One client connection: parse (httptools/llhttp), enforce limits, route, answer in order.

Theory of operation:

* Requests are parsed as bytes arrive. Each parsed head becomes an `Exchange` in the
  connection's pipeline; only the first is active (routed, queued, dispatched), so
  pipelined requests are answered in the order they came. Bodies of later ones wait,
  bounded, in their exchanges.
* HTTP.sys limits hold while parsing: a header field or the URL over `MaxFieldLength`, or a
  head over `MaxRequestBytes`, is refused with HTTP.sys's 400 (414 for the URL). Bytes
  piling up in an unfinished head are bounded too, so one endless header cannot grow the
  parser's buffer.
* Any listener-made error closes the connection after its answer, as HTTP.sys does; the
  requests before it in the pipeline are answered first.
* Timers (swept once a second by the listener, not one per request): `headerWaitTimeout`
  while a head is arriving, `connectionTimeout` while a body is arriving and while the
  connection idles between requests. Expiry closes the connection.
* Back-pressure: reading stops while the active exchange holds `BODY_BUFFER_LIMIT` bytes of
  body the worker has no credit for, or while `MAX_PIPELINE` requests wait.
* Logging: every response is logged once, when it ends, by the listener's `AccessLogs`
  (access.py): `exchange_done` for every exchange, the fast path for its cache hits,
  `_send_error` for a request that could not be parsed, and `connection_lost` for the
  requests a closed connection leaves unanswered. Bytes written are counted here
  (`sent`); a response's sc-bytes is what was written since the previous one ended.
"""

from __future__ import annotations

import asyncio
import collections
from time import monotonic
from typing import TYPE_CHECKING, Any

import httptools

from webgarden.listener import access, errors
from webgarden.listener.exchange import Exchange
from webgarden.listener.sendfile import FileSender
from webgarden.listener.urls import InvalidURL, split_target

if TYPE_CHECKING:
    from webgarden.listener.server import Listener

#: Parsed requests held per connection before reading pauses.
MAX_PIPELINE = 32

#: Request headers that can change what the cache answers: such a request takes the full
#: path (conditional requests, ranges, credentials, proxies), never the fast one.
_NOT_PLAIN = frozenset({
    b"authorization", b"range", b"if-range", b"if-match", b"if-none-match",
    b"if-modified-since", b"if-unmodified-since", b"translate", b"expect", b"via",
})


class LimitExceeded(Exception):
    def __init__(self, page: errors.ErrorPage) -> None:
        super().__init__(page.reason)
        self.page = page


#: Longest request remembered for answering its repeats without the parser, bytes.
REPEAT_MAX = 2048


class HttpConnection(asyncio.Protocol):
    def __init__(self, listener: Listener, port: int) -> None:
        self.listener = listener
        self.port = port  # the configured port of the binding (0: the kernel picked one)
        limits = listener.config.limits
        self.max_field = limits.max_field_length
        self.max_request = limits.max_request_bytes
        self.head_guard = limits.max_request_bytes + limits.max_field_length
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.client: tuple[str, int] = ("", 0)
        self.server: tuple[str, int] = ("", 0)
        self.pipeline: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None
        self.fast_answered = False
        self._new_head()
        self.in_head = False
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
        self.began = 0.0  # monotonic time of the current request's first byte
        # A repeated request: the bytes of the last request answered on the fast path when
        # they came alone in one read, and its fast-path key. The same bytes again parse to
        # the same request, so they are answered without the parser (`data_received`).
        self.chunk = b""  # the data being parsed
        self.chunk_alone = False  # it began at a request boundary
        self.repeat_raw: bytes | None = None
        self.repeat_key: tuple[int, str, bytes, bytes, bytes] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else ("", 0)
        self.server = (local[0], local[1]) if isinstance(local, tuple) else ("", 0)
        self.listener.connections.add(self)
        self.deadline = self.listener.now + self.listener.header_wait

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
        if (data == self.repeat_raw and not self.pipeline and not self.in_head
                and self.parsing is None):
            listener = self.listener
            entry = listener.local.fast_hit(self.repeat_key, listener.now)  # type: ignore[arg-type]
            if entry is not None and not listener.draining and self.error_page is None:
                self.began = monotonic()
                out = b"".join((entry.head, listener.date_line, entry.tail))
                self.transport.write(out)
                listener.logs.hit(self, entry, len(out))
                self.deadline = listener.now + listener.idle_timeout
                return
        # Anything else is parsed, and the parser's state (what the access log reads) is no
        # longer the remembered request's: forget it until the next fast-path answer.
        self.repeat_raw = None
        if self.error_page is not None:
            return
        self.chunk, self.chunk_alone = data, not self.in_head
        if self.in_head:
            self.raw_head += len(data)
            if self.raw_head > self.head_guard:
                self._parse_failed(errors.REQUEST_TOO_LONG)
                return
        elif self.parsing is not None:
            self.deadline = self.listener.now + self.listener.idle_timeout  # entity body timer
        try:
            self.parser.feed_data(data)
        except LimitExceeded as exc:
            self._parse_failed(exc.page)
        except httptools.HttpParserUpgrade:
            pass  # WSGI has no upgrades: the request is answered, then the connection closes
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised; the limit that tripped is its context.
            cause = exc.__context__
            page = cause.page if isinstance(cause, LimitExceeded) else errors.BAD_REQUEST
            self._parse_failed(page)
        except httptools.HttpParserInvalidMethodError:
            self._parse_failed(errors.INVALID_VERB)
        except httptools.HttpParserError:
            self._parse_failed(errors.BAD_REQUEST)

    def pause_writing(self) -> None:
        self.paused_writing = True

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.pipeline:
            self.pipeline[0].pay_credit()

    # -- httptools callbacks ----------------------------------------------------------

    def _new_head(self) -> None:
        """What the parser collects of one request head, empty."""
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.host = b""
        self.expect = False
        self.has_body = False
        self.plain = True  # no header that could change a cached answer (fast path)
        self.accept_encoding = b""
        self.user_agent = b""
        self.referer = b""
        self.head_bytes = 0
        self.raw_head = 0

    def on_message_begin(self) -> None:
        self._new_head()
        self.began = monotonic()  # the log's time-taken runs from the request's first byte
        self.in_head = True
        self.deadline = self.listener.now + self.listener.header_wait

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.max_field:
            raise LimitExceeded(errors.URL_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > self.max_field:
            raise LimitExceeded(errors.FIELD_TOO_LONG)
        self.head_bytes += size + 4
        if self.head_bytes + len(self.url) > self.max_request:
            raise LimitExceeded(errors.REQUEST_TOO_LONG)
        lower = name.lower()
        if lower == b"host":
            if self.host:
                raise LimitExceeded(errors.INVALID_HOSTNAME)  # two Host headers
            self.host = value
        elif lower == b"content-length":
            self.has_body = value != b"0"
        elif lower == b"transfer-encoding":
            self.has_body = True
        elif lower == b"expect" and value.lower() == b"100-continue":
            self.expect = True
        elif lower == b"accept-encoding":
            self.accept_encoding = value
        elif lower == b"user-agent":  # the two headers IIS logs by default
            self.user_agent = value
        elif lower == b"referer":
            self.referer = value
        if lower in _NOT_PLAIN:
            self.plain = False
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise LimitExceeded(errors.VERSION_NOT_SUPPORTED)
        listener = self.listener
        fast_key = None
        if (self.plain and not self.has_body and version == "1.1" and not self.pipeline
                and parser.get_method() == b"GET" and parser.should_keep_alive()
                and not listener.draining):
            fast_key = (self.port, self.server[0], self.host, self.url, self.accept_encoding)
            entry = listener.local.fast_hit(fast_key, listener.now)
            if entry is not None:
                # A response-cache hit seen before: answered here, no exchange needed.
                data = b"".join((entry.head, listener.date_line, entry.tail))
                self.transport.write(data)
                self.fast_answered = True
                listener.logs.hit(self, entry, len(data))
                chunk = self.chunk
                if (self.chunk_alone and len(chunk) <= REPEAT_MAX
                        and chunk.endswith(b"\r\n\r\n") and chunk.count(b"\r\n\r\n") == 1):
                    self.repeat_raw, self.repeat_key = chunk, fast_key  # exactly this request
                return
        method = parser.get_method()
        ex = Exchange(
            self,
            method.decode("ascii"),
            self.url,
            "HTTP/" + version,
            self.headers,
            parser.should_keep_alive() and not parser.should_upgrade(),
            self.expect and version == "1.1",
            not self.has_body,
            self.began,
            # The head's bytes: method SP target SP HTTP/x.y CRLF, the fields, CRLF.
            len(method) + len(self.url) + self.head_bytes + 14,
            self.user_agent,
            self.referer,
        )
        ex.fast_key = fast_key
        self.parsing = ex
        self.deadline = self.listener.now + self.listener.idle_timeout
        pipeline = self.pipeline
        pipeline.append(ex)
        if len(pipeline) == 1:
            self._start(ex)
        elif len(pipeline) >= MAX_PIPELINE:
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        if self.parsing is not None:
            self.parsing.add_body(body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        self.deadline = 0.0
        if ex is not None:
            ex.body_complete()
        elif self.fast_answered:
            self.fast_answered = False
            if not self.pipeline:  # idle again, as after any response
                self.deadline = self.listener.now + self.listener.idle_timeout

    # -- the pipeline -----------------------------------------------------------------

    def _start(self, ex: Exchange) -> None:
        """Route the active exchange and hand it to its pool's queue."""
        try:
            target = split_target(ex.target)
        except InvalidURL:
            ex.fail(errors.INVALID_URL)
            return
        host = target.host if target.host is not None else self.host
        if not host and ex.version == "HTTP/1.1":
            ex.fail(errors.INVALID_HOSTNAME)
            return
        listener = self.listener
        site = listener.router.site_for_header(self.server[0], self.port, host)
        if site is None:
            ex.fail(errors.INVALID_HOSTNAME)
            return
        matched = site.match(target.path)
        if matched is None:
            ex.fail(errors.NOT_FOUND)
            return
        route, ex.path = matched
        ex.script_name = route.script_name
        ex.app = route.app
        ex.query = target.query
        ex.route = route
        ex.url_path = target.path
        if listener.local.answer(ex, route, target.path, ex.path, listener.now):
            return  # a cache hit or a file: no worker needed
        pool = ex.pool = listener.pools[route.pool]
        page = pool.submit(ex)
        if page is not None:
            if pool.reset_when_offline and page is pool.offline:
                self.listener.httperr(self, page, ex=ex)
                self.abort()  # loadBalancerCapabilities TcpLevel: a reset, not a page
            else:
                ex.fail(page)

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
        if self.listener.draining and not self.in_head:
            self.close()
            return
        if self.reading_paused and self.parsing is None:
            self.resume_reading()
        if self.parsing is None and not self.in_head:
            self.deadline = self.listener.now + self.listener.idle_timeout

    def may_keep_alive(self) -> bool:
        return not self.listener.draining or len(self.pipeline) > 1

    def _parse_failed(self, page: errors.ErrorPage) -> None:
        self.error_page = page
        if self.in_head:
            self.failed_request = self._request_line()
        self.in_head = False
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

    def _request_line(self) -> tuple[bytes, bytes, bytes]:
        """Version, method and target of the head being parsed, as far as they came."""
        if not self.url:
            return b"", b"", b""  # the method is known once the target is
        version = self.parser.get_http_version()
        return (b"" if version == "0.0" else b"HTTP/" + version.encode(),
                self.parser.get_method(), self.url)

    def _send_error(self) -> None:
        page = self.error_page or errors.BAD_REQUEST
        self.listener.httperr(self, page)
        self.write(errors.render(page, self.listener.date_line))
        self.close()

    # -- output and flow --------------------------------------------------------------

    @property
    def date_line(self) -> bytes:
        return self.listener.date_line

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
        if self.in_head:
            return "Timer_HeaderWait"
        if self.parsing is not None:
            return "Timer_EntityBody"
        if not self.pipeline:
            return "Timer_ConnectionIdle"
        return None

    def drain(self) -> None:
        """The server is shutting down. A busy connection closes after its last response;
        an idle one at the next tick, so a request already on its way is still served."""
        if not self.pipeline and not self.in_head and self.parsing is None:
            self.deadline = self.listener.now
