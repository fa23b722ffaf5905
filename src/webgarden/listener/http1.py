"""The HTTP/1.1 core, sans-IO: bytes in, request events out; response facts in, head bytes out.

No sockets, no event loop, no logging, and only the clock it is handed (after h11's
`_connection.py`): `Http1Core.receive_data` takes what the socket read and calls its
`RequestSink` (the asyncio adapter in `connection.py`, or a test) with one event per step
of each request, in the order they came; `frame_response` is the one place that decides
how a response is framed and whether the connection stays open. httptools (llhttp, in C)
parses underneath: one Python call per header is the price, and the limits ride on it.

Rules:

1. Request heads obey HTTP.sys's limits while they are parsed (iis-semantics.md §3.3):
   the URL over `MaxFieldLength` is 414; a header line over it, or a head over
   `MaxRequestBytes`, is 400 with HTTP.sys's page; bytes piling up in an unfinished head
   are bounded by `head_guard`, so one endless header cannot grow the parser's buffer.
   Two Host headers are 400 Hostname; a version other than 1.0 and 1.1 is 505; a bad
   method is 400 Verb; anything else llhttp refuses is 400. A refused request ends the
   parse: `receive_data` returns its page, after the requests before it were delivered.
2. A request header whose name holds `_` is dropped before anything sees it (nginx's
   `underscores_in_headers off`): with `X_User` and `X-User` both becoming `HTTP_X_USER`
   in WSGI, a proxy that strips `X-User` is bypassed otherwise. `allowUnderscoresInHeaders`
   keeps them; each dropped header is counted in `ParseCounters`, and nothing is said per
   request. It still counts toward the head's limits: they bound what the client sent.
3. One response-head writer: `frame_response` chooses Content-Length, chunked or
   close-delimited, and keep-alive with its `Connection` line, for every response the
   listener writes: a worker's, a cache hit's, a static file's, a 304, an error page.
   HEAD, 1xx, 204 and 304 have no body; 1xx and 204 never carry a Content-Length.
   HTTP/1.0 gets `Connection: keep-alive` when it stays open, and a body of unknown
   length ends with the connection. Cached heads are bytes prepared when the entry was
   stored (with their Content-Length): `frame_response(..., length_in_head=True)` adds
   only the connection line, and for the fast path's requests (HTTP/1.1, keep-alive) it
   is empty, which is why the fast path may write the stored bytes as they are.

Other protocols: an HTTP/2 connection (the `h2` library) is another producer of the same
`RequestHead` / body / end events, one set per stream, and frames its responses itself
(no Content-Length vs chunked: DATA frames and END_STREAM); an upgraded WebSocket hands
its frames to the exchange that upgraded (on `HttpParserUpgrade` this core gives the
adapter's `on_upgrade` the bytes after the head; `listener/websocket.py` validates the
handshake). Routing, the queue, the cache and the logs see exchanges made from
`RequestHead`s, never this module.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Protocol

import httptools

from webgarden.listener import errors

#: A response body's length, when it is not known yet.
UNKNOWN = -1

#: Request headers that can change what the cache answers: such a request takes the full
#: path (conditional requests, ranges, credentials, proxies), never the fast one.
NOT_PLAIN = frozenset({
    b"authorization", b"range", b"if-range", b"if-match", b"if-none-match",
    b"if-modified-since", b"if-unmodified-since", b"translate", b"expect", b"via",
})

#: `_` as a byte value: `int in bytes` is a memchr, while `bytes in bytes` first fails to
#: read its operand as an int, raising and clearing a TypeError (7x slower, measured).
_UNDERSCORE = ord("_")

#: The versions served, as llhttp says them -> as HTTP and WSGI say them.
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}

#: What a worker's response head must be: "HTTP/1.1 " and a status line, then header
#: lines, each non-empty and ended by CRLF, with no bare CR or LF anywhere (so no worker can
#: split a response), and none of the fields that frame a response or manage the connection
#: (an honest worker drops them, worker/responses.py): with those a compromised app could
#: frame its response its own way and desynchronise the client, or a proxy's connection
#: shared with other clients. One regex: cheaper than five
#: checks. The worker link checks every RESPONSE with it (a failure is a violation).
sound_response_head = re.compile(
    rb"HTTP/1\.1 [^\r\n]*\r\n"
    rb"(?:(?!(?i:content-length|transfer-encoding|connection|keep-alive|upgrade)[ \t]*:)"
    rb"[^\r\n]+\r\n)*").fullmatch

#: "method SP target SP HTTP/x.y CRLF" and the final CRLF, beyond method and target.
REQUEST_LINE_EXTRA = 14


class Body(enum.IntEnum):
    """How a response body ends, as the client must be told."""

    NONE = 0  # HEAD, 1xx, 204, 304
    LENGTH = 1  # after Content-Length bytes
    CHUNKED = 2  # at the zero-length chunk
    UNTIL_CLOSE = 3  # when the connection closes (HTTP/1.0, length unknown)


class HeadLimits:
    """HTTP.sys's request-head limits, in bytes, and the underscore policy."""

    __slots__ = ("allow_underscores", "head_guard", "max_field", "max_request")

    def __init__(self, max_field: int, max_request: int, allow_underscores: bool = False
                 ) -> None:
        self.max_field = max_field  # MaxFieldLength: the URL, or one header line
        self.max_request = max_request  # MaxRequestBytes: request line and headers
        # Raw bytes of one unfinished head (llhttp buffers nothing, but the callbacks do).
        self.head_guard = max_request + max_field
        self.allow_underscores = allow_underscores


class ParseCounters:
    """What the core counts across connections (the listener owns one; metrics read it)."""

    __slots__ = ("underscore_headers_dropped",)

    def __init__(self) -> None:
        self.underscore_headers_dropped = 0


class RequestHead:
    """One parsed request head: what the exchange, the cache's fast path and the log need."""

    __slots__ = ("accept_encoding", "began", "expect", "has_body", "headers", "host",
                 "keep_alive", "method", "plain", "referer", "size", "upgrade", "url",
                 "user_agent", "version")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.host = b""
        self.expect = False  # Expect: 100-continue
        self.has_body = False
        self.plain = True  # no header that could change a cached answer (fast path)
        self.accept_encoding = b""
        self.user_agent = b""  # the two headers IIS logs by default
        self.referer = b""
        self.size = 0  # bytes of the header lines, as parsed ("name: value\r\n")
        # Set by the core before the head is delivered (`on_headers_complete`; `began` at
        # its first byte), so not here: this runs for every request.
        self.method: bytes
        self.version: str  # "HTTP/1.1" or "HTTP/1.0"
        self.keep_alive: bool  # the request allows the connection to stay open
        self.began: float  # the core's clock when the request's first byte came
        self.upgrade: bool  # Upgrade and Connection: upgrade (llhttp's should_upgrade)

    @property
    def received(self) -> int:
        """The head's bytes: method SP target SP HTTP/x.y CRLF, the fields, CRLF."""
        return len(self.method) + len(self.url) + self.size + REQUEST_LINE_EXTRA


class RequestSink(Protocol):
    """What the core tells its adapter, in order, for each request on the connection. (A
    head that has begun but not ended shows as `Http1Core.in_head` after `receive_data`.)"""

    def on_request(self, head: RequestHead) -> None: ...

    def on_body(self, data: bytes) -> None: ...

    def on_request_end(self) -> None: ...


class Refused(Exception):
    """A request the core refuses; `page` is HTTP.sys's answer to it."""

    def __init__(self, page: errors.ErrorPage) -> None:
        super().__init__(page.reason)
        self.page = page


class Http1Core:
    """The request side of one HTTP/1.x connection. httptools calls the `on_*` methods."""

    def __init__(self, sink: RequestSink, limits: HeadLimits, counters: ParseCounters,
                 clock: Callable[[], float]) -> None:
        self.limits = limits
        self.clock = clock  # when a request's first byte came (the log's time-taken)
        self.max_field = limits.max_field
        self.max_request = limits.max_request
        self.counters = counters
        self.head = RequestHead()
        self.in_head = False  # between a request's first byte and the end of its head
        self.raw_head = 0  # bytes received since the head began (the guard)
        self.failed: errors.ErrorPage | None = None
        # The sink's methods, bound once: these run for every request. Body and end need
        # nothing of the core, so httptools calls the sink's own (it looks them up once,
        # when the parser is made: they must be set before).
        self._request = sink.on_request
        self.on_body = sink.on_body
        self.on_message_complete = sink.on_request_end
        # Bytes after an upgrade's head (optional: a sink without it drops them).
        self._upgrade: Callable[[bytes], None] | None = getattr(sink, "on_upgrade", None)
        self.parser = httptools.HttpRequestParser(self)

    def receive_data(self, data: bytes) -> errors.ErrorPage | None:
        """Parse what arrived. The page of a request refused on the way, or None; after a
        refusal the connection carries no more requests (the adapter answers and closes)."""
        if self.failed is not None:
            return self.failed
        if self.in_head:
            self.raw_head += len(data)
            if self.raw_head > self.limits.head_guard:
                return self._fail(errors.REQUEST_TOO_LONG)
        try:
            self.parser.feed_data(data)
        except Refused as exc:
            return self._fail(exc.page)
        except httptools.HttpParserUpgrade as exc:
            # The head asked for an upgrade and llhttp stops there: what follows it is the
            # upgraded protocol's (a WebSocket's frames), given to the adapter as they are.
            # Another upgrade (h2c, ...) is answered as HTTP, then the connection closes.
            if self._upgrade is not None:
                self._upgrade(data[exc.args[0]:] if exc.args else b"")
        except httptools.HttpParserCallbackError as exc:
            # httptools wraps what a callback raised; the limit that tripped is its context.
            cause = exc.__context__
            return self._fail(cause.page if isinstance(cause, Refused) else errors.BAD_REQUEST)
        except httptools.HttpParserInvalidMethodError:
            return self._fail(errors.INVALID_VERB)
        except httptools.HttpParserError:
            return self._fail(errors.BAD_REQUEST)
        return None

    def _fail(self, page: errors.ErrorPage) -> errors.ErrorPage:
        self.failed = page
        return page

    def request_line(self) -> tuple[bytes, bytes, bytes]:
        """Version, method and target of the head being parsed, as far as they came."""
        url = self.head.url
        if not url:
            return b"", b"", b""  # the method is known once the target is
        version = self.parser.get_http_version()
        return (b"" if version == "0.0" else b"HTTP/" + version.encode(),
                self.parser.get_method(), url)

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        head = self.head = RequestHead()
        head.began = self.clock()
        self.in_head = True
        self.raw_head = 0

    def on_url(self, url: bytes) -> None:
        head = self.head
        head.url += url
        if len(head.url) > self.max_field:
            raise Refused(errors.URL_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > self.max_field:
            raise Refused(errors.FIELD_TOO_LONG)
        head = self.head
        head.size += size + 4
        if head.size + len(head.url) > self.max_request:
            raise Refused(errors.REQUEST_TOO_LONG)
        if _UNDERSCORE in name and not self.limits.allow_underscores:
            self.counters.underscore_headers_dropped += 1
            return
        lower = name.lower()
        if lower == b"host":
            if head.host:
                raise Refused(errors.INVALID_HOSTNAME)  # two Host headers
            head.host = value
        elif lower == b"content-length":
            head.has_body = value != b"0"
        elif lower == b"transfer-encoding":
            head.has_body = True
        elif lower == b"expect" and value.lower() == b"100-continue":
            head.expect = True
        elif lower == b"accept-encoding":
            head.accept_encoding = value
        elif lower == b"user-agent":
            head.user_agent = value
        elif lower == b"referer":
            head.referer = value
        if lower in NOT_PLAIN:
            head.plain = False
        head.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise Refused(errors.VERSION_NOT_SUPPORTED)
        head = self.head
        head.version = version
        head.method = parser.get_method()
        head.upgrade = upgrade = parser.should_upgrade()
        head.keep_alive = parser.should_keep_alive() and not upgrade
        self._request(head)



# -- the response side ---------------------------------------------------------------------

_CLOSE = b"Connection: close\r\n"
_KEEP = b"Connection: keep-alive\r\n"
_CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = Body


#: Content-Length lines made before, by length: formatting one costs 4x a lookup, and a
#: site's responses come in few distinct lengths. Bounded: past it, lines are made anew.
_LENGTH_LINES: dict[int, bytes] = {}
MAX_LENGTH_LINES = 4096


def _length_line(length: int) -> bytes:
    line = b"Content-Length: %d\r\n" % length
    if len(_LENGTH_LINES) < MAX_LENGTH_LINES:
        _LENGTH_LINES[length] = line
    return line


def frame_response(version: str, head_only: bool, status: int, length: int, keep_alive: bool,
                   length_in_head: bool = False) -> tuple[bytes, Body, bool]:
    """How a response is framed: (header lines to add, how its body ends, keep-alive).

    `version`: the request's ("HTTP/1.1", "HTTP/1.0"); `head_only`: a HEAD request;
    `length`: the body's length if known (the app's Content-Length, or the whole body
    the worker sent in one piece), else UNKNOWN; `keep_alive`: the request allows it and
    the listener wants it (it is not draining, nor answering with an error);
    `length_in_head`: the head already says Content-Length (a cached entry's).
    The lines go after the response's own headers, before Date. (Written for speed: it
    runs for every response that is not a fast-path cache hit.)"""
    if status < 200 or status == 204:
        lines, mode = b"", _NONE  # no body, and never a Content-Length
    elif length >= 0:
        lines = b"" if length_in_head else (_LENGTH_LINES.get(length) or _length_line(length))
        mode = _NONE if head_only or status == 304 else _LENGTH
    elif head_only or status == 304:
        lines, mode = b"", _NONE
    elif version == "HTTP/1.1":
        lines, mode = _CHUNKED_LINE, _CHUNKED
    else:
        return _CLOSE, _UNTIL_CLOSE, False  # the body ends when the connection does
    if not keep_alive:
        return lines + _CLOSE, mode, False
    if version == "HTTP/1.1":
        return lines, mode, True
    return lines + _KEEP, mode, True


def error_response(page: errors.ErrorPage, date_line: bytes, version: str = "HTTP/1.1",
                   head_only: bool = False) -> bytes:
    """HTTP.sys's page for `page`, whole. The listener closes after each (HTTP.sys does)."""
    head, content = errors.head_and_body(page)
    lines, _, _ = frame_response(version, head_only, page.status, len(content), False)
    return b"".join((head, lines, date_line, b"\r\n", b"" if head_only else content))
