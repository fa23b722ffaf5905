"""The ASGI host (ASGI 3, `http` scopes): runs each request as a task on the worker's loop.

The sibling of `worker.wsgi` (STYLE.md 9): the same frames, decided by the same rules
(`worker.responses`); only the waiting differs. Everything here runs on the loop thread,
where `worker.loop` also reads the channel, so a stream's state needs no lock.

Theory of operation:

* A REQUEST for an ASGI application starts one task (`start`). The listener sends no more
  requests than the capacity the worker announced (`asgiConcurrency`), so the task count is
  bounded without a semaphore here.
* `receive` hands out the request body as the listener sent it, one `http.request` per
  chunk with `more_body`, and returns the chunk's bytes to the listener as CREDIT: an upload
  is bounded by the request window (`ipc.flow_control`). Once the body is read it waits, and
  answers `http.disconnect` when the client leaves (the listener's ABORT) or once the
  response is complete (as uvicorn does).
* `send` validates and frames. A response that ends in its first body message goes out as
  one RESPONSE frame with END (the form the cache keeps and dynamic compression packs
  whole); so does one the cache may keep (`Cache-Control: public` with a max-age) that ends
  within `MAX_GATHER`. Anything else streams as RESPONSE_BODY frames within the stream's
  send window: `send` awaits the listener's CREDIT, so a slow client holds back only its
  own task.
* `http.response.pathsend`: the worker opens the file (as the pool's user), passes the
  descriptor by SCM_RIGHTS and sends SENDFILE, as `wsgi.file_wrapper` is sent; the listener
  checks it and transmits it zero-copy, then says FILE_DONE.
* Frames are batched: tasks append to `_out`, and one callback per loop turn writes them.
* Errors are logged with their traceback and never shown to the client: an exception
  before the head went out, or an app that returns without a response, is a 500; after the
  head, the stream is aborted (the listener closes the client's connection, so a truncated
  body is never taken for a whole one). Messages sent after the response is complete are
  dropped and logged. A `send` once the client is gone raises `ClientDisconnected`, an
  OSError, as ASGI 2.4 asks.

WebSockets: a REQUEST with scheme "ws" (an upgrade the listener validated) is a
`websocket` scope, served by `worker.websocket` over the same stream's body frames in
both directions after a 101 (wsproto in the worker).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

from webgarden.compression import CompressionRules, Packer, compress
from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, MAX_CHUNK, FrameType
from webgarden.worker.channel import Channel, Stream
from webgarden.worker.responses import (
    ERROR_500,
    ERROR_500_HEADERS,
    MAX_GATHER,
    ClientDisconnected,
    Head,
    check_head,
    dynamic_coding,
    file_extent,
    shared_cacheable,
)
from webgarden.worker.websocket import WEBSOCKET_SCHEMES, Sockets

log = logging.getLogger("webgarden.worker")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
#: The scope types this host serves. "websocket" joins "http" here.
_SCOPES = ("http", "websocket")
EXTENSIONS: dict[str, dict[str, Any]] = {"http.response.pathsend": {}}


def tls_extensions(head: Any) -> dict[str, dict[str, Any]]:
    """`extensions` of an https request: the ASGI TLS extension, with the client's
    certificate as the listener verified it, and SSL_CLIENT_CERT / SSL_CLIENT_VERIFY as a
    WSGI app sees them."""
    cert = head.ssl_client_cert
    tls = {"server_cert": None, "client_cert_chain": [cert] if cert else [],
           "client_cert_name": None, "client_cert_error": None, "tls_version": None,
           "cipher_suite": None,
           "SSL_CLIENT_CERT": cert or None, "SSL_CLIENT_VERIFY": head.ssl_client_verify}
    return {**EXTENSIONS, "tls": tls}
DISCONNECT: Message = {"type": "http.disconnect"}
#: Bytes read at once when a file cannot go zero-copy (no descriptor socket).
FILE_READ = 256 * 1024


_STATUS_LINES: dict[int, str] = {}


def status_line(status: int) -> str:
    """ "200 OK" for 200: the status line check_head takes (memoized: a hot path)."""
    line = _STATUS_LINES.get(status)
    if line is not None and type(status) is int:
        return line
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(f"http.response.start: status must be an int, not {status!r}")
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    line = f"{status} {phrase}"
    if 100 <= status <= 999:
        _STATUS_LINES[status] = line  # at most 900 entries
    return line


def decode_path(text: str) -> str:
    """A WSGI (latin-1 of UTF-8) path as ASGI's: decoded characters."""
    if text.isascii():
        return text
    return text.encode("latin-1").decode("utf-8", "replace")


class ASGIHost:
    """The worker's ASGI applications, by their index on the wire."""

    def __init__(
        self, apps: dict[int, ASGIApp], channel: Channel, pool: str,
        compression: CompressionRules | None, loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.apps = apps
        self.channel = channel
        self.pool = pool
        self.compression = compression  # None: dynamic compression is off
        self.loop = loop
        self.states: dict[int, dict[str, Any]] = {}  # lifespan state, per application
        self.tasks: set[asyncio.Task[None]] = set()
        self.requests_served = 0
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._out: list[bytes] = []
        self.feeders: dict[int, Callable[[], None]] = {}  # open WebSockets, by stream
        self.websockets = Sockets(self)  # open WebSockets, closed with 1012 at a drain

    # -- frames out: one write per loop turn --------------------------------------------

    def write(self, data: bytes) -> None:
        if not self._out:
            self.loop.call_soon(self.flush)
        self._out.append(data)

    def write_frame(self, ftype: int, sid: int, payload: bytes = b"", flags: int = 0) -> None:
        self.write(frames.encode(ftype, sid, payload, flags))

    def flush(self) -> None:
        out = self._out
        if out:
            data = b"".join(out) if len(out) > 1 else out[0]
            out.clear()
            self.channel.send(data)

    # -- frames in (from worker.loop, on this thread) -------------------------------------

    def start(self, stream: Stream) -> None:
        if stream.head.scheme in WEBSOCKET_SCHEMES:
            task = self.loop.create_task(self._serve_websocket(stream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        task = self.loop.create_task(self._serve(stream))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def wake(self, sid: int) -> None:
        """Something arrived for stream `sid` (body, credit, FILE_DONE, ABORT)."""
        if self.feeders:
            feeder = self.feeders.get(sid)
            if feeder is not None:
                feeder()  # an open WebSocket takes its bytes now (worker.websocket)
        waiters = self._waiters.pop(sid, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def wake_all(self) -> None:
        """The link closed: every waiter looks again (and finds the channel closed)."""
        for sid in [*self._waiters, *self.feeders]:
            self.wake(sid)

    async def wait(self, stream: Stream) -> None:
        if self.channel.closed:
            raise ClientDisconnected("the listener is gone")
        waiter = self.loop.create_future()
        self._waiters.setdefault(stream.id, []).append(waiter)
        await waiter

    # -- one request ----------------------------------------------------------------------

    def scope(self, stream: Stream) -> Scope:
        head = stream.head
        target = head.target
        query = target.find(b"?")
        scope: Scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": head.version[5:] if head.version.startswith("HTTP/") else "1.1",
            "method": head.method,
            "scheme": head.scheme,
            "path": decode_path(head.script_name + head.path),
            "raw_path": target if query < 0 else target[:query],
            "root_path": decode_path(head.script_name),
            "query_string": head.query,
            "headers": [(name.lower(), value) for name, value in head.headers],
            "client": head.client,
            "server": head.server,
            "extensions": EXTENSIONS if not head.ssl_client_verify else tls_extensions(head),
        }
        state = self.states.get(head.app)
        if state is not None:
            scope["state"] = state.copy()  # shallow: each request its own namespace
        return scope

    async def _serve_websocket(self, stream: Stream) -> None:
        try:
            await self.websockets.serve(stream, self.apps[stream.head.app])
        finally:
            self._waiters.pop(stream.id, None)
            self.requests_served += 1

    async def _serve(self, stream: Stream) -> None:
        exchange = Exchange(self, stream)
        try:
            if stream.aborted:  # its client left while it waited to start
                exchange.abort("client gone before the request ran")
                return
            app = self.apps[stream.head.app]
            await app(self.scope(stream), exchange.receive, exchange.send)
            exchange.returned()
        except ClientDisconnected:
            pass
        except Exception:
            head = stream.head
            log.exception("application error in %s %s", head.method,
                          head.target.decode("latin-1"))
            exchange.fail("application error")
        finally:
            if not stream.ended:
                exchange.abort("the response was abandoned")
            self.channel.finish(stream)
            self._waiters.pop(stream.id, None)
            self.requests_served += 1


class Exchange:
    """One request's `receive` and `send`, and what has been sent of its response."""

    __slots__ = ("body_read", "complete", "content_length", "content_type", "encoded",
                 "gathered", "head", "head_sent", "host", "packer", "raw_left", "sent",
                 "stream")

    def __init__(self, host: ASGIHost, stream: Stream) -> None:
        self.host = host
        self.stream = stream
        self.body_read = False  # the last http.request went out
        self.complete = False  # the response's last frame went out
        self.head: Head | None = None
        self.head_sent = False
        self.content_length = -1
        self.content_type = ""
        self.encoded = False  # the app set Content-Encoding itself
        self.gathered: list[bytes] | None = None  # a cacheable body gathered to go whole
        self.packer: Packer | None = None  # compressing a streamed body
        self.raw_left = -1  # with a packer: what the app's Content-Length still allows
        self.sent = 0

    # -- receive ----------------------------------------------------------------------------

    async def receive(self) -> Message:
        stream, host = self.stream, self.host
        while True:
            if stream.aborted or host.channel.closed:
                return DISCONNECT
            if stream.chunks:
                chunk = stream.chunks.popleft()
                if not stream.ended:  # a released stream gets no credit
                    host.write_frame(FrameType.CREDIT, stream.id,
                                     messages.count_payload(len(chunk)))
                more = bool(stream.chunks) or not stream.body_done
                self.body_read = not more
                return {"type": "http.request", "body": chunk, "more_body": more}
            if stream.body_done and not self.body_read:
                self.body_read = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.complete:
                return DISCONNECT
            await host.wait(stream)

    # -- send -------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if self.complete or self.stream.ended:
            if self.stream.aborted:
                raise ClientDisconnected("the client closed the connection")
            log.warning("dropped %r sent after the response to %s %s was complete", kind,
                        self.stream.head.method, self.stream.head.target.decode("latin-1"))
            return
        if self.stream.aborted or self.host.channel.closed:
            raise ClientDisconnected("the client closed the connection")
        if kind == "http.response.start":
            if self.head is not None:
                raise RuntimeError("http.response.start sent twice")
            try:
                headers = [(name.decode("latin-1"), value.decode("latin-1"))
                           for name, value in message.get("headers", ())]
            except AttributeError:
                raise TypeError("ASGI header names and values are bytes") from None
            self.head, self.content_length, self.content_type, self.encoded = check_head(
                status_line(message["status"]), headers)
        elif kind == "http.response.body":
            if self.head is None:
                raise RuntimeError("http.response.body sent before http.response.start")
            body = message.get("body", b"")
            if not isinstance(body, bytes | bytearray | memoryview):
                raise TypeError(f"http.response.body: body must be bytes, not {type(body)}")
            await self._body(bytes(body), bool(message.get("more_body", False)))
        elif kind == "http.response.pathsend":
            if self.head is None:
                raise RuntimeError("http.response.pathsend sent before http.response.start")
            await self._pathsend(message["path"])
        else:
            raise ValueError(f"unexpected ASGI message type {kind!r} for an http scope")

    async def _body(self, body: bytes, more: bool) -> None:
        head_only = self.stream.head.method == "HEAD"
        if self.head_sent:
            if body and not head_only:
                await self._stream(body)
            if not more:
                await self._end()
            return
        if self.gathered is None and not more:
            # Whole, HEAD included (as WSGI's list): the listener sends the head alone,
            # with the length a GET would get.
            self._send_whole(body, packable=not head_only)
            return
        if head_only:  # a HEAD whose body comes in pieces: the head now, END at the last
            self._send_head(b"", end=False)
            return
        assert self.head is not None
        if self.gathered is None and shared_cacheable(
                self.head, self.stream.head.method, self.content_length):
            self.gathered = []
        if self.gathered is not None:
            self.gathered.append(body)
            size = sum(map(len, self.gathered))
            if not more and self.content_length in (-1, size):
                self._send_whole(b"".join(self.gathered))
                return
            if more and size <= MAX_GATHER:
                return
            body, self.gathered = b"".join(self.gathered), None
        self._start_stream()
        await self._stream(body)
        if not more:
            await self._end()

    def _send_whole(self, body: bytes, packable: bool = True) -> None:
        """The whole response in one frame: the form the listener may cache."""
        rules = self.host.compression
        if (rules is not None and packable and body
                and not (0 <= self.content_length != len(body))):
            assert self.head is not None
            chosen = dynamic_coding(rules, self.stream.head, self.head, self.encoded,
                                    self.content_type, len(body))
            if chosen is not None:
                coding, self.head = chosen
                body = compress(body, coding, rules.level(coding, static=False))
                if self.content_length >= 0:
                    self.content_length = len(body)
        self._send_head(body, end=True)

    def _start_stream(self) -> None:
        """The head of a body that comes in pieces, compressed piece by piece when the
        rules say (its length, when the app gave one, applies to the uncompressed bytes)."""
        rules = self.host.compression
        if rules is not None:
            assert self.head is not None
            length = self.content_length
            chosen = dynamic_coding(rules, self.stream.head, self.head, self.encoded,
                                    self.content_type, length if length >= 0 else None)
            if chosen is not None:
                coding, self.head = chosen
                self.packer = Packer(coding, rules.level(coding, static=False))
                self.raw_left, self.content_length = length, -1
        self._send_head(b"", end=False)

    def _send_head(self, body: bytes, end: bool) -> None:
        assert self.head is not None
        status, serialized = self.head
        if 0 <= self.content_length < len(body):
            body = body[: self.content_length]
        payload = messages.encoder.encode(
            messages.ResponseHead(status, serialized, self.content_length, body))
        self.head_sent = True
        self.sent = len(body)
        if end:
            self._completed()
        self.host.write_frame(FrameType.RESPONSE, self.stream.id, payload,
                              FLAG_END if end else 0)

    async def _stream(self, data: bytes) -> None:
        """Send `data` within the send window, awaiting the listener's credit as needed."""
        if self.packer is not None:
            if self.raw_left >= 0:
                data = data[: self.raw_left]
                self.raw_left -= len(data)
            data = self.packer.pack(data) if data else b""
        await self._send_raw(data)

    async def _send_raw(self, data: bytes) -> None:
        if self.content_length >= 0:
            data = data[: max(self.content_length - self.sent, 0)]
        stream, host = self.stream, self.host
        view = memoryview(data)
        while view:
            while stream.send_window <= 0:
                if stream.aborted:
                    raise ClientDisconnected("the client closed the connection")
                await host.wait(stream)
            if stream.aborted:
                raise ClientDisconnected("the client closed the connection")
            n = min(len(view), stream.send_window, MAX_CHUNK)
            stream.send_window -= n
            host.write(frames.encode_header(FrameType.RESPONSE_BODY, stream.id, n)
                       + view[:n].tobytes())
            self.sent += n
            view = view[n:]

    async def _end(self) -> None:
        if self.packer is not None:
            if self.raw_left > 0:  # shorter than its Content-Length: not a whole response
                self.abort("the application sent less than its Content-Length")
                return
            tail, self.packer = self.packer.finish(), None
            await self._send_raw(tail)
        self._completed()
        self.host.write_frame(FrameType.RESPONSE_BODY, self.stream.id, b"", FLAG_END)

    def _completed(self) -> None:
        self.complete = True
        self.stream.ended = True
        self.host.wake(self.stream.id)  # a receive() waiting for http.disconnect returns

    async def _pathsend(self, path: str) -> None:
        """The file at `path`, zero-copy through the listener when it can be."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # as the pool's user; raises: a 500
        try:
            count = file_extent(fd, 0, self.content_length)
            host, stream = self.host, self.stream
            if count is None or host.channel.fd_sock is None:
                await self._read_file(fd)
                return
            self.content_length = count
            if stream.head.method == "HEAD" or count == 0:
                self._send_head(b"", end=True)
                return
            self._send_head(b"", end=False)
            # The descriptor first, on its own socket; then the frame that says which bytes
            # of it. The listener matches the two by stream id, in either order.
            if not host.channel.send_descriptor(stream.id, fd):
                self.abort("the listener is gone")
                return
            self._completed()
            host.write_frame(FrameType.SENDFILE, stream.id,
                             messages.encoder.encode(messages.SendFile(0, count)), FLAG_END)
            while not (stream.file_done or stream.aborted or host.channel.closed):
                await host.wait(stream)  # FILE_DONE: the listener holds its own reference
        finally:
            os.close(fd)

    async def _read_file(self, fd: int) -> None:
        """pathsend without the zero-copy path: the file read and streamed."""
        if self.content_length < 0:
            size = file_extent(fd, 0, -1)
            self.content_length = -1 if size is None else size
        self._start_stream()
        while block := os.read(fd, FILE_READ):
            await self._stream(block)
        await self._end()

    # -- the end of the app's call ------------------------------------------------------------

    def returned(self) -> None:
        """The app returned: a response it never finished is an error of its own."""
        if self.complete:
            return
        head = self.stream.head
        if not self.head_sent:
            log.error("the application returned without a response to %s %s", head.method,
                      head.target.decode("latin-1"))
            self._send_500()
        else:
            log.error("the application returned before its response to %s %s was complete",
                      head.method, head.target.decode("latin-1"))
            self.abort("the application returned before the response was complete")

    def fail(self, reason: str) -> None:
        if self.stream.ended:
            return
        if self.head_sent:
            self.abort(reason)
        else:
            self._send_500()

    def _send_500(self) -> None:
        self.packer = None
        self.head, self.content_length, _, _ = check_head(
            "500 Internal Server Error", ERROR_500_HEADERS)
        self._send_head(ERROR_500, end=True)

    def abort(self, reason: str) -> None:
        """End the stream without a whole response; the listener frees the worker's slot."""
        self.stream.ended = True
        self.complete = True
        self.host.write_frame(FrameType.ABORT, self.stream.id,
                              messages.encoder.encode(messages.Abort(reason)), FLAG_END)
        self.host.wake(self.stream.id)

