"""One request and its response as the listener carries them between client and worker.

An `Exchange` is made from a parsed `RequestHead` (by the HTTP/1.1 adapter, for a plain
request or a WebSocket upgrade, and by an HTTP/2 stream: they produce the same calls). It is routed,
queued in its pool, then attached to a worker stream; its body flows to the worker within
the stream's credit, and the worker's response flows back to the client. Its life is the
state machine of `lifecycle.py`; framing and keep-alive are decided by
`http1.frame_response` through `frame`, for the worker's responses as for the listener's
own (the cache, files, 304s, error pages):

* the app's Content-Length when it gave one; else the length of a response the worker sent
  whole; else chunked (HTTP/1.1) or close-delimited (HTTP/1.0);
* HEAD, 1xx, 204 and 304 responses carry no body;
* a response with a length is complete when its last byte is written: it is logged then,
  and the connection moves on, even if the worker's END frame comes later (a client that
  got every byte and closed did not drop anything). Bytes past the length are dropped;
* response body bytes are credited back to the worker as soon as the client's transport
  takes them without pausing, and only when it resumes otherwise: a slow client holds at
  most `RESPONSE_WINDOW` bytes of its stream in the listener and stalls nobody else.

Whose fault is it: a malformed response head from the worker gives 502; a worker that
dies before the first response byte gives 502 unless the request can be sent again
(idempotent method, no body, not sent again before); after the first byte, the client's
connection is closed so that a truncated body is never taken for a whole one.

The exchange hears from its connection and from the worker link through method calls,
and tells its connection what happened through `roles.Client` (`exchange_done`,
`observe`, `httperr`): it imports neither.

Other protocols: the request side is protocol-free already (a `RequestHead`, body
chunks, an end). On the response side, heads travel as HTTP/1.1 header blocks (how the
worker, the cache and static files express them) and `frame` with the three writers
(`on_response_head`, `on_response_body`, `fail`) turn them into HTTP/1.1 bytes. An HTTP/2
stream replaces exactly that step, in its own `roles.Client` (`http2.H2Stream`): HEADERS
from the block, DATA and END_STREAM instead of Content-Length or chunks, no `Connection`
line. Its exchange's version is "HTTP/2", for which the framer never chunks. A
WebSocket upgrade (`listener/websocket.py`) stays one exchange for its whole life: its
request body is the client's bytes after the handshake, its response the 101
(`open_tunnel`) and then the worker's frames written as they are, until the worker's END
(the close handshake) or the client leaving; a lost worker leaves it a 1011 close frame.
It is RESPONDING all along and DONE at the end, when it is logged: one line per socket.
The states, the queue, the cache and the logs do not change.
"""

from __future__ import annotations

import collections
import os
from typing import TYPE_CHECKING, Any

from webgarden.ipc import frames, messages
from webgarden.ipc.flow_control import REQUEST_WINDOW, RESPONSE_WINDOW
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.listener import errors, http1
from webgarden.listener.http1 import REQUEST_LINE_EXTRA, UNKNOWN, Body, RequestHead
from webgarden.listener.lifecycle import FINISHED, TABLE, ExchangeEvent, ExchangeState, illegal
from webgarden.listener.roles import Client, StreamLink
from webgarden.listener.sendfile import FileSender
from webgarden.listener.websocket import CLOSE_1011, Upgrade

if TYPE_CHECKING:
    from webgarden.config.model import ApplicationConfig
    from webgarden.listener.cache import CacheKey
    from webgarden.listener.pool_queue import PoolQueue
    from webgarden.listener.routing import Route

#: Response bytes of a WebSocket tunnel written before they are credited in one frame.
TUNNEL_CREDIT_BATCH = RESPONSE_WINDOW // 4
#: Request body bytes buffered in the listener before it stops reading from the client.
BODY_BUFFER_LIMIT = 1024 * 1024

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Common methods, decoded once.
_METHODS = {m.encode(): m for m in (*IDEMPOTENT, "POST", "PATCH", "CONNECT")}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Bound once: module globals are the cheapest names on the hot path.
_RECEIVED, _DISPATCHED, _RESPONDING, _DONE, _ABANDONED = ExchangeState
_DISPATCH, _REQUEUE, _RESPOND, _COMPLETE, _CLIENT_GONE = ExchangeEvent
_NONE, _LENGTH, _CHUNKED, _UNTIL_CLOSE = Body
_REQUEST = int(FrameType.REQUEST)  # an IntEnum attribute is a class lookup each time


_PLAIN: Any = {}  # keyword arguments, hence Any: mypy would match them to every field


def _client_cert(session: Any) -> Any:
    """The TLS client certificate fields of a request's head (`tls.Session`)."""
    return {"ssl_client_cert": session.client_cert or "",
            "ssl_client_verify": session.client_verify}


class Exchange:
    __slots__ = (
        "app",
        "began",
        "body",
        "body_done",
        "body_mode",
        "body_size",
        "cache_key",
        "close_after",
        "conn",
        "credit",
        "end_sent",
        "error",
        "expect_continue",
        "fast_key",
        "head_only",
        "headers",
        "host",
        "keep_alive",
        "link",
        "method",
        "owed",
        "path",
        "pool",
        "query",
        "received",
        "referer",
        "refusal",
        "remaining",
        "retried",
        "route",
        "script_name",
        "sent_body",
        "sid",
        "since",
        "state",
        "status",
        "substatus",
        "target",
        "url_path",
        "user_agent",
        "version",
        "websocket",
        "win32",
    )

    def __init__(self, conn: Client, head: RequestHead) -> None:
        self.conn = conn
        self.state = _RECEIVED
        self.since = conn.listener.now  # coarse (the listener's clock ticks each second)
        self.began = head.began  # monotonic, at the request's first byte (time-taken)
        # Request bytes: the head (as `RequestHead.received` counts it), then the body.
        self.received = len(head.method) + len(head.url) + head.size + REQUEST_LINE_EXTRA
        self.user_agent = head.user_agent  # for the log
        self.referer = head.referer
        self.method = method = _METHODS.get(head.method) or head.method.decode("ascii")
        self.target = head.url
        self.version = head.version
        self.headers = head.headers
        self.host = head.host  # the Host header's value (b"" without one)
        self.keep_alive = head.keep_alive
        self.expect_continue = head.expect and head.version == "HTTP/1.1"
        self.head_only = method == "HEAD"
        self.path = ""
        self.query = b""
        self.script_name = ""
        self.app: ApplicationConfig | None = None
        self.pool: PoolQueue | None = None
        self.route: Route | None = None
        self.url_path = ""  # the whole canonical path (self.path is below the application)
        self.cache_key: CacheKey | None = None  # the response cache's key, if it may be stored
        self.fast_key: tuple[int, str, bytes, bytes, bytes] | None = None  # see LocalResponder
        self.body: collections.deque[bytes] = collections.deque()
        self.body_size = 0
        self.body_done = not head.has_body  # True from the start when no body was announced
        self.sent_body = False  # some body bytes went to a worker (no resending then)
        self.link: StreamLink | None = None
        self.sid = 0
        self.credit = 0
        self.end_sent = False
        self.owed = 0
        self.retried = False
        self.body_mode = _NONE
        self.close_after = False
        self.remaining = 0
        self.status = 0
        self.substatus = 0  # the log's sc-substatus (request filtering's 404.x)
        self.win32 = 0  # the log's sc-win32-status
        self.error: errors.ErrorPage | None = None  # an HTTP.sys error page (HTTPERR)
        # A WebSocket upgrade (listener/websocket.py): validated, or the page refusing it.
        # Its "body" is the tunnel: every client byte after the head, until the client goes.
        self.websocket: Upgrade | None = None
        self.refusal: errors.ErrorPage | None = None

    # -- the state, as the manager and the log read it ---------------------------------

    @property
    def started(self) -> bool:
        """A response byte went to the client (or the response is over)."""
        return self.state is _RESPONDING or self.state is _DONE

    @property
    def done(self) -> bool:
        return self.state is _DONE

    @property
    def abandoned(self) -> bool:
        """Nothing its worker stream still sends matters: the client left (ABANDONED), or
        it had its whole answer while a stream was still attached (DONE with a link: an
        error page, or every byte before the worker's END), so losing that worker fails no
        request. An exchange that `worker_lost` itself fails has no link: not abandoned."""
        state = self.state
        return state is _ABANDONED or (state is _DONE and self.link is not None)

    # -- request side -----------------------------------------------------------------

    def attach(self, link: StreamLink, sid: int) -> None:
        """Dispatched to a worker stream: send the head, then what body we have."""
        self.state = TABLE[self.state][_DISPATCH] or illegal(self.state, _DISPATCH)
        self.link = link
        self.sid = sid
        conn = self.conn
        if self.expect_continue and not self.body_done and not self.body:
            conn.write(CONTINUE)
            self.expect_continue = False
        upgrade = self.websocket
        if upgrade is None and conn.tls is None:  # the common case, without unpacking
            head = messages.RequestHead(
                link.apps[self.app], self.method, self.target, self.path, self.script_name,
                self.query, self.version, self.headers, conn.client, conn.server,
                conn.scheme, REQUEST_WINDOW,
            )
        else:
            head = messages.RequestHead(
                link.apps[self.app],
                self.method,
                self.target,
                self.path,
                self.script_name,
                self.query,
                self.version,
                self.headers,
                conn.client,
                conn.server,
                conn.scheme if upgrade is None else "wss" if conn.scheme == "https" else "ws",
                REQUEST_WINDOW,
                *(() if upgrade is None else upgrade.limits),
                **(_PLAIN if conn.tls is None else _client_cert(conn.tls)),
            )
        no_body = self.body_done and not self.body
        self.end_sent = no_body
        link.send(
            frames.encode(
                _REQUEST, sid, messages.encoder.encode(head), FLAG_END if no_body else 0
            )
        )
        self.credit = REQUEST_WINDOW
        if not no_body:
            self.pump_body()

    def add_body(self, chunk: bytes) -> None:
        self.body.append(chunk)
        n = len(chunk)
        self.body_size += n
        self.received += n
        if self.link is not None:
            self.pump_body()
        if self.body_size > BODY_BUFFER_LIMIT:
            self.conn.pause_reading()

    def body_complete(self) -> None:
        if self.end_sent:
            return  # a body-less request: its head went out with END
        self.body_done = True
        if self.link is not None:
            self.pump_body()

    def pump_body(self) -> None:
        link = self.link
        if link is None or self.end_sent:
            return
        body = self.body
        while body and self.credit > 0:
            chunk = body.popleft()
            n = len(chunk)
            limit = min(self.credit, frames.MAX_CHUNK)
            if n > limit:
                body.appendleft(chunk[limit:])
                chunk, n = chunk[:limit], limit
            self.credit -= n
            self.body_size -= n
            self.sent_body = True
            last = self.body_done and not body
            flags = FLAG_END if last else 0
            link.send(frames.encode_header(FrameType.REQUEST_BODY, self.sid, n, flags) + chunk)
            self.end_sent = last
        if self.body_done and not body and not self.end_sent:
            link.send(frames.encode(FrameType.REQUEST_BODY, self.sid, b"", FLAG_END))
            self.end_sent = True
        if self.body_size <= BODY_BUFFER_LIMIT // 2:
            self.conn.resume_reading()

    def on_credit(self, n: int) -> None:
        self.credit += n
        self.pump_body()

    # -- the response head: the one writer, for every kind of answer ------------------

    def frame(self, status: int, length: int, length_in_head: bool = False) -> bytes:
        """Decide this response's framing and keep-alive (`http1.frame_response`), mark
        the first byte as going out, and return the header lines the decision adds."""
        self.state = TABLE[self.state][_RESPOND] or illegal(self.state, _RESPOND)
        self.status = status
        lines, mode, keep = http1.frame_response(
            self.version, self.head_only, status, length,
            self.keep_alive and self.conn.may_keep_alive(), length_in_head)
        self.body_mode = mode
        self.close_after = not keep
        return lines

    # -- response side ----------------------------------------------------------------

    def on_response_head(self, head: messages.ResponseHead, end: int) -> None:
        if self.state is not _DISPATCHED:
            return  # answered already (an error page), or its client left
        conn = self.conn
        status = head.status
        block = head.head
        body = head.body
        if head.content_length >= 0:
            length = head.content_length  # the app's
        elif end and not (status < 200 or status == 204 or status == 304):
            length = len(body)  # sent whole (a bodiless status's empty body declares nothing)
        else:
            length = UNKNOWN
        # `frame`, inlined (this runs for every worker response): the same transition and
        # the same call to the one framer, with the same keep-alive inputs.
        state = self.state
        self.state = TABLE[state][_RESPOND] or illegal(state, _RESPOND)
        self.status = status
        framing, mode, keep = http1.frame_response(
            self.version, self.head_only, status, length,
            self.keep_alive and conn.may_keep_alive())
        self.body_mode = mode
        self.close_after = not keep
        if mode is _LENGTH:
            self.remaining = length
        date = conn.date_line  # with the connection's own lines (HSTS)
        if not body or mode is _NONE:
            conn.write(b"".join((block, framing, date, b"\r\n")))
        elif mode is _CHUNKED:
            conn.write(b"".join((block, framing, date, b"\r\n%x\r\n" % len(body), body,
                                 b"\r\n")))
        elif mode is _LENGTH:
            body = body[:length]  # never past its Content-Length
            self.remaining -= len(body)
            conn.write(b"".join((block, framing, date, b"\r\n", body)))
        else:
            conn.write(b"".join((block, framing, date, b"\r\n", body)))
        if end:
            if (status == 200 and self.method == "GET" and self.route is not None
                    and self.remaining <= 0):  # whole: the cache never keeps a short body
                conn.observe(self, block, body)
            self.finish()
        elif mode is _NONE or (mode is _LENGTH and self.remaining <= 0):
            self.finish()  # complete for the client; the worker's END may come later

    def on_response_body(self, data: bytes, end: int) -> None:
        state = self.state
        if state is not _RESPONDING:
            if state is _DONE and data and self.link is not None:
                # Past the response's end (its END frame was still to come): dropped, but
                # credited, so the worker's stream can finish.
                self.link.grant(self.sid, len(data))
            return
        conn = self.conn
        n = len(data)
        if n:
            mode = self.body_mode
            if mode is _CHUNKED:
                conn.writelines((b"%x\r\n" % n, data, b"\r\n"))
            elif mode is _LENGTH:
                if n > self.remaining:
                    data = data[:self.remaining]  # past the length: never sent
                self.remaining -= len(data)
                conn.write(data)
            elif mode is _UNTIL_CLOSE:
                conn.write(data)
            if conn.paused_writing:
                self.owed += n
            elif self.websocket is not None:
                # A tunnel: many small frames, credited in batches (a frame per message
                # would double the link's traffic); a quarter window never stalls it.
                self.owed += n
                if self.owed >= TUNNEL_CREDIT_BATCH:
                    self.pay_credit()
            elif self.link is not None:
                self.link.grant(self.sid, n)
        if end:
            if self.body_mode is _CHUNKED:
                conn.write(b"0\r\n\r\n")
            self.finish()
        elif self.body_mode is _LENGTH and self.remaining <= 0:
            self.finish()  # the client has it all; the END frame may come later

    def pay_credit(self) -> None:
        """The client's transport drained: give the worker back what it was owed."""
        if self.owed and self.link is not None and self.state is _RESPONDING:
            self.link.grant(self.sid, self.owed)
            self.owed = 0

    def open_tunnel(self, head: bytes, first: bytes, end: int) -> None:
        """The worker accepted the WebSocket: `head` is the 101 the link made and checked
        (`websocket.tunnel_head`); from now on the worker's body bytes go out as they are,
        until its END (the close handshake done) ends the exchange and the connection."""
        state = self.state
        if state is not _DISPATCHED:
            return  # its client left while it waited
        self.state = TABLE[state][_RESPOND] or illegal(state, _RESPOND)
        self.status = 101
        self.body_mode = _UNTIL_CLOSE
        self.close_after = True
        self.conn.write(head + first if first else head)
        if end:
            self.finish()

    # -- H1's: the zero-copy file path ------------------------------------------------

    def on_sendfile(self, request: messages.SendFile, fd: int) -> None:
        """The body is `request.count` bytes of the file the worker passed (SCM_RIGHTS), which
        the link checked (a regular file open for reading, the range inside it, within the
        head's Content-Length). `fd` is ours: sent from and closed, or closed at once."""
        if self.abandoned or self.done:
            os.close(fd)
            return
        if self.head_only or self.status < 200 or self.status in (204, 304):
            os.close(fd)  # a response without a body
            self.finish()
            return
        self.remaining -= request.count  # short of the Content-Length: the connection closes
        self.conn.start_file(
            FileSender(self.conn, fd, request.offset, request.count, self.file_sent)
        )

    def file_sent(self, ok: bool) -> None:
        self.conn.file_finished()
        if ok:
            self.finish()
        else:
            self.conn.abort(client_gone=True)  # the socket refused the rest (or closed)

    def on_worker_abort(self) -> None:
        """The worker gave up on this stream (app error mid-body, or a bad head)."""
        state = self.state
        if state is _RESPONDING and self.websocket is not None:
            # An open WebSocket: the worker wrote whole frames, so the client's stream is at
            # a frame boundary. A close frame 1011 there, then the connection closes.
            self.conn.write(CLOSE_1011)
            self.close_after = True
            self.finish()
        elif state is _RESPONDING:
            self.conn.httperr(self.status, errors.BAD_GATEWAY.reason, self)
            self.conn.abort()
        elif state is _DISPATCHED or state is _RECEIVED:
            self.fail(errors.BAD_GATEWAY)

    def worker_lost(self) -> bool:
        """The worker died with this request on it. True: send it again (the caller does)."""
        if self.state is not _DISPATCHED and self.state is not _RESPONDING:
            return False  # answered, or its client left: nothing to decide
        self.link = None
        if (
            self.state is _DISPATCHED
            and not self.retried
            and not self.sent_body
            and self.method in IDEMPOTENT
            and (self.body_done or self.websocket is not None)  # a tunnel nobody wrote to
        ):
            self.state = TABLE[self.state][_REQUEUE] or illegal(self.state, _REQUEUE)
            self.retried = True
            self.credit = 0
            self.end_sent = False
            return True
        self.on_worker_abort()
        return False

    def finish(self) -> None:
        """The client has the whole response: log it, and let the connection move on."""
        after = TABLE[self.state][_COMPLETE]
        if after is None:
            return  # not responding: finished already, or nothing went out yet
        self.state = after
        if self.remaining > 0:
            self.close_after = True  # the worker ended short of its Content-Length
        if self.owed and self.link is not None:
            # Held back while the client was slow; its stream may still be ending.
            self.link.grant(self.sid, self.owed)
            self.owed = 0
        self.conn.exchange_done(self)

    def fail(self, page: errors.ErrorPage, httperr: bool = True) -> None:
        """Answer with a listener-made error page and close the connection after it.
        `httperr`: HTTP.sys's own error, logged in HTTPERR too (False: the site's answer,
        such as a static file's 404, which only the site's log has). Too late for a page
        once the response has begun: the connection is cut instead."""
        state = self.state
        if state in FINISHED:
            return
        if state is _RESPONDING:
            self.conn.abort()
            return
        self.state = TABLE[state][_RESPOND] or illegal(state, _RESPOND)
        self.status = page.status
        if httperr:
            self.error = page
        self.body_mode = _NONE
        self.remaining = 0
        self.close_after = True
        self.conn.write(http1.error_response(page, self.conn.date_line, self.version,
                                             self.head_only))
        self.finish()
        link = self.link
        if link is not None and self.sid in link.streams:
            link.abandon(self.sid)  # whatever the worker still sends for it is dropped

    def client_gone(self) -> None:
        """The client closed its connection: drop the request, or abandon its stream."""
        state = self.state
        if state in FINISHED:
            return
        self.state = TABLE[state][_CLIENT_GONE] or illegal(state, _CLIENT_GONE)
        pool = self.pool
        if self.link is not None:
            self.link.abandon(self.sid)
        elif pool is None or not pool.remove(self):
            return
        self.conn.emit(
            "request.dropped", pool=pool.name if pool else None, reason="Client_Reset",
            dispatched=self.link is not None, method=self.method,
            url=self.target.decode("latin-1"),
        )
