"""One request and its response as the listener carries them between client and worker.

An `Exchange` is created when a request's head is parsed. It is queued in its pool, then
attached to a worker stream; its body flows to the worker within the stream's credit, and
the worker's response flows back to the client, framed by the listener:

* the app's Content-Length when it gave one; else the length of a response the worker sent
  whole; else chunked (HTTP/1.1) or close-delimited (HTTP/1.0);
* HEAD, 1xx, 204 and 304 responses carry no body;
* response body bytes are credited back to the worker as soon as the client's transport
  takes them without pausing, and only when it resumes otherwise: a slow client holds at
  most `RESPONSE_WINDOW` bytes of its stream in the listener and stalls nobody else.

Whose fault is it: a malformed response head from the worker gives 502; a worker that
dies before the first response byte gives 502 unless the request can be sent again
(idempotent method, no body, not sent again before); after the first byte, the client's
connection is closed so that a truncated body is never taken for a whole one.
"""

from __future__ import annotations

import collections
import os
from typing import TYPE_CHECKING

from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.listener import errors
from webgarden.listener.sendfile import FileSender
from webgarden.listener.upstream import REQUEST_WINDOW, WorkerLink

if TYPE_CHECKING:
    from webgarden.config.model import ApplicationConfig
    from webgarden.listener.cache import CacheKey
    from webgarden.listener.connection import HttpConnection
    from webgarden.listener.pool_queue import PoolQueue
    from webgarden.listener.routing import Route

#: Request body bytes buffered in the listener before it stops reading from the client.
BODY_BUFFER_LIMIT = 1024 * 1024

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

class Exchange:
    __slots__ = (
        "abandoned",
        "app",
        "began",
        "body",
        "body_done",
        "body_size",
        "cache_key",
        "chunked",
        "close_after",
        "conn",
        "credit",
        "done",
        "end_sent",
        "error",
        "expect_continue",
        "fast_key",
        "head_only",
        "headers",
        "keep_alive",
        "link",
        "method",
        "owed",
        "path",
        "pool",
        "query",
        "received",
        "referer",
        "remaining",
        "retried",
        "route",
        "script_name",
        "sent_body",
        "sid",
        "since",
        "started",
        "status",
        "substatus",
        "target",
        "url_path",
        "user_agent",
        "version",
        "win32",
    )

    def __init__(
        self,
        conn: HttpConnection,
        method: str,
        target: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        keep_alive: bool,
        expect_continue: bool,
        body_done: bool,
        began: float = 0.0,
        received: int = 0,
        user_agent: bytes = b"",
        referer: bytes = b"",
    ) -> None:
        self.conn = conn
        self.since = conn.listener.now  # coarse (the listener's clock ticks each second)
        self.began = began  # monotonic, at the request's first byte (the log's time-taken)
        self.received = received  # request bytes: the head, then the body as it comes
        self.user_agent = user_agent  # for the log
        self.referer = referer
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
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
        self.body_done = body_done  # True from the start when the head announced no body
        self.sent_body = False  # some body bytes went to a worker (no resending then)
        self.link: WorkerLink | None = None
        self.sid = 0
        self.credit = 0
        self.end_sent = False
        self.owed = 0
        self.started = False  # a response byte went to the client
        self.done = False
        self.abandoned = False
        self.retried = False
        self.chunked = False
        self.close_after = False
        self.remaining = 0
        self.status = 0
        self.substatus = 0  # the log's sc-substatus (request filtering's 404.x)
        self.win32 = 0  # the log's sc-win32-status
        self.error: errors.ErrorPage | None = None  # an HTTP.sys error page (HTTPERR)

    # -- request side -----------------------------------------------------------------

    def attach(self, link: WorkerLink, sid: int) -> None:
        """Dispatched to a worker stream: send the head, then what body we have."""
        self.link = link
        self.sid = sid
        conn = self.conn
        if self.expect_continue and not self.body_done and not self.body:
            conn.write(CONTINUE)
            self.expect_continue = False
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
            "http",
            REQUEST_WINDOW,
        )
        no_body = self.body_done and not self.body
        self.end_sent = no_body
        link.send(
            frames.encode(
                FrameType.REQUEST, sid, messages.encoder.encode(head), FLAG_END if no_body else 0
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

    # -- response side ----------------------------------------------------------------

    def on_response_head(self, head: messages.ResponseHead, end: int) -> None:
        if self.abandoned:
            return
        conn = self.conn
        status = self.status = head.status
        block = head.head
        # The worker serialized the head; whatever it is, it must not split the response.
        lines = block.count(b"\r\n")
        if (
            block.count(b"\n") != lines
            or block.count(b"\r") != lines
            or b"\r\n\r\n" in block
            or block[-2:] != b"\r\n"
            or block[:9] != b"HTTP/1.1 "
        ):
            self.on_worker_abort()
            return
        no_body = self.head_only or status < 200 or status == 204 or status == 304
        keep = self.keep_alive and conn.may_keep_alive()
        body = head.body
        parts = [block]
        if head.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % head.content_length)
            self.remaining = 0 if no_body else head.content_length - len(body)
        elif end:
            if not (status < 200 or status == 204 or status == 304):
                parts.append(b"Content-Length: %d\r\n" % len(body))
        elif no_body:
            pass
        elif self.version == "HTTP/1.1":
            parts.append(b"Transfer-Encoding: chunked\r\n")
            self.chunked = True
        else:
            keep = False  # HTTP/1.0 with no length: the body ends when the connection does
        self.close_after = not keep
        if not keep:
            parts.append(b"Connection: close\r\n")
        elif self.version == "HTTP/1.0":
            parts.append(b"Connection: keep-alive\r\n")
        parts.append(conn.listener.date_line)
        parts.append(b"\r\n")
        if body and not no_body:
            if self.chunked:
                parts.append(b"%x\r\n" % len(body))
                parts.append(body)
                parts.append(b"\r\n")
            else:
                parts.append(body)
        conn.write(b"".join(parts))
        self.started = True
        if end:
            if status == 200 and self.method == "GET" and self.route is not None:
                local = conn.listener.local
                local.observe(self, self.route.site, self.url_path, block, body,
                              conn.listener.now)
            self.finish()

    def on_response_body(self, data: bytes, end: int) -> None:
        if self.abandoned:
            return
        conn = self.conn
        n = len(data)
        if n:
            if not self.head_only:
                if self.chunked:
                    conn.writelines((b"%x\r\n" % n, data, b"\r\n"))
                else:
                    conn.write(data)
                    self.remaining -= n
            if conn.paused_writing:
                self.owed += n
            elif self.link is not None:
                self.link.send(frames.encode(FrameType.CREDIT, self.sid, messages.count_payload(n)))
        if end:
            if self.chunked:
                conn.write(b"0\r\n\r\n")
            self.finish()

    def pay_credit(self) -> None:
        """The client's transport drained: give the worker back what it was owed."""
        if self.owed and self.link is not None and not self.done:
            self.link.send(
                frames.encode(FrameType.CREDIT, self.sid, messages.count_payload(self.owed))
            )
            self.owed = 0

    def on_sendfile(self, request: messages.SendFile) -> None:
        if self.abandoned:
            return
        try:
            fd = os.open(f"/proc/{request.pid}/fd/{request.fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.conn.abort()
            return
        count = request.count if request.count >= 0 else os.fstat(fd).st_size - request.offset
        self.remaining = 0
        self.conn.start_file(FileSender(self.conn, fd, request.offset, count, self.file_sent))

    def file_sent(self, ok: bool) -> None:
        self.conn.file_finished()
        if ok:
            self.finish()
        else:
            self.conn.abort(client_gone=True)  # the socket refused the rest (or closed)

    def on_worker_abort(self) -> None:
        """The worker gave up on this stream (app error mid-body, or a bad head)."""
        if self.abandoned or self.done:
            return
        if self.started:
            self.conn.listener.logs.httperr(self.conn, self.status, errors.BAD_GATEWAY.reason, self)
            self.conn.abort()
        else:
            self.fail(errors.BAD_GATEWAY)

    def worker_lost(self) -> bool:
        """The worker died with this request on it. True: send it again (the caller does)."""
        self.link = None
        if self.abandoned or self.done:
            return False
        if (
            not self.started
            and not self.retried
            and not self.sent_body
            and self.method in IDEMPOTENT
            and self.body_done
        ):
            self.retried = True
            self.credit = 0
            self.end_sent = False
            return True
        self.on_worker_abort()
        return False

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.remaining > 0:
            self.close_after = True  # the worker ended short of its Content-Length
        self.conn.exchange_done(self)

    def fail(self, page: errors.ErrorPage, httperr: bool = True) -> None:
        """Answer with a listener-made error page and close the connection after it.
        `httperr`: HTTP.sys's own error, logged in HTTPERR too (False: the site's answer,
        such as a static file's 404, which only the site's log has)."""
        if self.done or self.abandoned:
            return
        self.status = page.status
        if httperr:
            self.error = page
        self.conn.write(errors.render(page, self.conn.date_line, self.head_only))
        self.started = True
        self.close_after = True
        self.finish()
        if self.link is not None and self.sid in self.link.streams:
            self.abandoned = True  # whatever the worker still sends for it is dropped
            self.link.abandon(self.sid)

    def client_gone(self) -> None:
        """The client closed its connection: drop the request, or abandon its stream."""
        if self.done or self.abandoned:
            return
        self.abandoned = True
        pool = self.pool
        if self.link is not None:
            self.link.abandon(self.sid)
        elif pool is None or not pool.remove(self):
            return
        self.conn.listener.events.emit(
            "request.dropped", pool=pool.name if pool else None, reason="Client_Reset",
            dispatched=self.link is not None, method=self.method,
            url=self.target.decode("latin-1"),
        )
