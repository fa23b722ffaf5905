"""The WSGI host (PEP 3333): turns a `Stream` into an environ, runs the app, streams back.

Rules:

* `start_response` validates what it is given (status form, header types, no CR or LF)
  and drops hop-by-hop headers: framing is the listener's job.
* An exception before the response head is sent gives a 500 with an IIS-style page; its
  traceback goes to the log, never to the client. After the head is sent, the stream is
  aborted and the listener closes the client's connection, so a truncated body is never
  mistaken for a whole one.
* `close()` of the app's iterable is always called, whatever happened.
* A response that is one small piece goes out as one RESPONSE frame (head and body, END).
  So does an iterator the listener's cache may keep (a 200 to a GET, public with a
  max-age) that ends within MAX_GATHER: the cache stores only whole responses.
  Anything else streams as RESPONSE_BODY frames within the stream's send window.
* `wsgi.file_wrapper` over a real file is not read here: the worker passes its descriptor
  (SCM_RIGHTS) and sends SENDFILE; the listener checks it and transmits the file zero-copy
  (IIS's TransmitFile), then says FILE_DONE.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from webgarden import SERVER_NAME
from webgarden.compression import CompressionRules, Packer, compress
from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, MAX_CHUNK, FrameType
from webgarden.worker.channel import Channel, Stream
from webgarden.worker.responses import (
    ERROR_500,
    ERROR_500_HEADERS,
    MAX_GATHER,
    ClientDisconnected,
    dynamic_coding,
    file_extent,
    shared_cacheable,
)
from webgarden.worker.responses import check_head as _check_head

log = logging.getLogger("webgarden.worker")

WSGIApp = Callable[..., Iterable[bytes]]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

#: The answer to a WebSocket upgrade for a WSGI application (the listener validated it).
WSGI_NO_WEBSOCKET = (b"This application is a WSGI application: it cannot accept a WebSocket "
                     b"upgrade. Serve an ASGI application (interface=\"asgi\") for "
                     b"WebSockets.\n")


class FileWrapper:
    """`wsgi.file_wrapper`: iterable over a file-like, and a sendfile hint for the host."""

    def __init__(self, filelike: Any, blksize: int = 64 * 1024) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block


class Input:
    """`wsgi.input`: the request body, read from the stream's chunks as the app asks."""

    __slots__ = ("_buf", "_channel", "_stream")

    def __init__(self, channel: Channel, stream: Stream) -> None:
        self._channel = channel
        self._stream = stream
        self._buf = b""

    def _next_chunk(self) -> bytes:
        stream = self._stream
        if not stream.chunks:
            if stream.body_done:
                return b""
            self._channel.wait_for(
                lambda: bool(stream.chunks) or stream.body_done or stream.aborted
            )
            if not stream.chunks:
                if stream.aborted or self._channel.closed:
                    raise ClientDisconnected("the client closed the connection")
                return b""
        chunk = stream.chunks.popleft()
        if not stream.ended:  # read after the response ended (in close()): nobody to credit
            self._channel.send_frame(
                FrameType.CREDIT, stream.id, messages.count_payload(len(chunk))
            )
        return chunk

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buf]
            self._buf = b""
            while chunk := self._next_chunk():
                parts.append(chunk)
            return b"".join(parts)
        while len(self._buf) < size:
            chunk = self._next_chunk()
            if not chunk:
                break
            self._buf += chunk
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            newline = self._buf.find(b"\n")
            if newline >= 0 and (limit < 0 or newline < limit):
                cut = newline + 1
                break
            if 0 <= limit <= len(self._buf):
                cut = limit
                break
            chunk = self._next_chunk()
            if not chunk:
                cut = len(self._buf) if limit < 0 else min(limit, len(self._buf))
                break
            self._buf += chunk
        line, self._buf = self._buf[:cut], self._buf[cut:]
        return line

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class Response:
    """What the app has said so far about one response, and the sending of it."""

    __slots__ = ("channel", "content_length", "content_type", "encoded", "ended", "head",
                 "head_sent", "host", "packer", "raw_left", "sent", "stream")

    def __init__(self, channel: Channel, stream: Stream, host: WSGIHost | None = None) -> None:
        self.channel = channel
        self.stream = stream
        self.host = host
        self.packer: Packer | None = None  # compressing a streamed body
        self.raw_left = -1  # with a packer: what the app's Content-Length still allows
        self.head: tuple[int, bytes] | None = None  # status code, serialized head
        self.content_length = -1
        self.content_type = ""
        self.encoded = False  # the app set Content-Encoding itself
        self.head_sent = False
        # A frame that ends the stream went out (END, SENDFILE, ABORT). Also said on the
        # stream, where `Input` sees it: no credit goes for a stream the listener released.
        self.ended = False
        self.sent = 0

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
        elif self.head is not None:
            raise AssertionError("start_response called a second time without exc_info")
        self.head, self.content_length, self.content_type, self.encoded = _check_head(
            status, headers
        )
        return self.write

    def write(self, data: bytes) -> None:
        """The PEP 3333 `write()` callable: an unbuffered piece of the body."""
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not self.head_sent:
            self.start_stream()
        self.send_body(bytes(data))

    def start_stream(self) -> None:
        """Send the head of a body that comes in pieces (compressed when the rules say)."""
        if self.host is not None and self.host.compression is not None:
            self.host.start_packing(self)
        self.send_head(b"", end=False)

    def send_head(self, body: bytes, end: bool) -> None:
        if self.head is None:
            raise AssertionError("the application sent a body before calling start_response")
        status, serialized = self.head
        length = self.content_length
        if length >= 0 and len(body) > length:
            body = body[:length]
        head = messages.ResponseHead(status, serialized, length, body)
        self.head_sent = True
        self.ended = self.stream.ended = end
        self.sent = len(body)
        self.channel.send_frame(
            FrameType.RESPONSE, self.stream.id, messages.encoder.encode(head),
            FLAG_END if end else 0,
        )

    def send_body(self, data: bytes) -> None:
        """Stream `data` within the send window, waiting for credit as needed."""
        if self.packer is not None:
            if self.raw_left >= 0:
                data = data[: self.raw_left]
                self.raw_left -= len(data)
            data = self.packer.pack(data) if data else b""
            if not data:
                return
        if self.content_length >= 0:
            room = self.content_length - self.sent
            if len(data) > room:
                data = data[: max(room, 0)]
        stream, channel = self.stream, self.channel
        view = memoryview(data)
        while view:
            if stream.send_window <= 0 or stream.aborted:
                channel.wait_for(lambda: stream.send_window > 0 or stream.aborted)
                if stream.aborted or channel.closed:
                    raise ClientDisconnected("the client closed the connection")
            n = min(len(view), stream.send_window, MAX_CHUNK)
            stream.send_window -= n
            channel.send(
                frames.encode_header(FrameType.RESPONSE_BODY, stream.id, n) + view[:n].tobytes()
            )
            self.sent += n
            view = view[n:]

    def end(self) -> None:
        if self.packer is not None:
            if self.raw_left > 0:  # shorter than its Content-Length: not a whole response
                self.abort("the application sent less than its Content-Length")
                return
            tail, self.packer = self.packer.finish(), None
            self.send_body(tail)
        self.ended = self.stream.ended = True
        self.channel.send_frame(FrameType.RESPONSE_BODY, self.stream.id, b"", FLAG_END)

    def abort(self, reason: str) -> None:
        """End the stream without a whole response; the listener frees the worker's slot."""
        self.ended = self.stream.ended = True
        payload = messages.encoder.encode(messages.Abort(reason))
        self.channel.send_frame(FrameType.ABORT, self.stream.id, payload, FLAG_END)


def _shared_cacheable(response: Response) -> bool:
    """Whether the listener's cache may keep this response (`responses.shared_cacheable`),
    asked only of iterators that have not started: what a list or write() would not meet.
    A generator that calls start_response only when first iterated has no head yet: it
    streams, uncached."""
    if response.head is None:
        return False
    return shared_cacheable(response.head, response.stream.head.method,
                            response.content_length)


def _gather(result: Iterable[bytes], limit: int) -> tuple[list[bytes], Iterator[bytes] | None]:
    """The app's chunks until they pass `limit` bytes, and the rest of its iterator (None:
    it ended within the limit). Holds at most `limit` plus one chunk."""
    iterator = iter(result)
    chunks: list[bytes] = []
    size = 0
    for chunk in iterator:
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return chunks, iterator
    return chunks, None


class WSGIHost:
    def __init__(
        self, apps: list[WSGIApp], channel: Channel, pool: str,
        compression: CompressionRules | None = None,
    ) -> None:
        self.apps = apps
        self.compression = compression  # None: dynamic compression is off
        self.channel = channel
        self.requests_served = 0
        self.base_environ: dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "SERVER_SOFTWARE": SERVER_NAME,
            "webgarden.pool": pool,
        }

    def serve_forever(self) -> None:
        get = self.channel.requests.get
        while (stream := get()) is not None:
            try:
                if stream.aborted:  # a prefetched request whose client already left
                    Response(self.channel, stream).abort("client gone before the request ran")
                else:
                    self.handle(stream)
            finally:
                self.channel.finish(stream)
                self.requests_served += 1

    def environ(self, stream: Stream) -> dict[str, Any]:
        head = stream.head
        env = self.base_environ.copy()
        env["REQUEST_METHOD"] = head.method
        env["SCRIPT_NAME"] = head.script_name
        env["PATH_INFO"] = head.path
        env["QUERY_STRING"] = head.query.decode("latin-1")
        env["REQUEST_URI"] = env["RAW_URI"] = head.target.decode("latin-1")
        env["SERVER_PROTOCOL"] = head.version
        env["REMOTE_ADDR"], remote_port = head.client
        env["REMOTE_PORT"] = str(remote_port)
        server_name, server_port = head.server
        env["SERVER_PORT"] = str(server_port)
        env["wsgi.url_scheme"] = head.scheme
        if head.ssl_client_verify:  # https: the listener's claims from its handshake
            env["HTTPS"] = "on"
            env["SSL_CLIENT_VERIFY"] = head.ssl_client_verify
            if head.ssl_client_cert:
                env["SSL_CLIENT_CERT"] = head.ssl_client_cert
        env["wsgi.input"] = Input(self.channel, stream)
        for raw_name, raw_value in head.headers:
            name = raw_name.decode("latin-1").upper().replace("-", "_")
            value = raw_value.decode("latin-1")
            if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
                env[name] = value
                continue
            key = "HTTP_" + name
            if key in env:
                env[key] += "," + value
            else:
                env[key] = value
        host = env.get("HTTP_HOST")
        env["SERVER_NAME"] = host.rsplit(":", 1)[0] if host and not host.endswith("]") else (
            host or server_name
        )
        return env

    def handle(self, stream: Stream) -> None:
        response = Response(self.channel, stream, self)
        if stream.head.scheme in ("ws", "wss"):  # WSGI has no WebSockets: say so, never hang
            response.start_response("400 Bad Request", [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(WSGI_NO_WEBSOCKET)))])
            response.send_head(WSGI_NO_WEBSOCKET, end=True)
            return
        result: Iterable[bytes] | None = None
        try:
            environ = self.environ(stream)
            result = self.apps[stream.head.app](environ, response.start_response)
            if isinstance(result, FileWrapper) and self._send_file(response, result):
                return
            self._send_result(response, result, stream.head.method == "HEAD")
        except ClientDisconnected:
            pass
        except Exception:
            self._fail(response, stream)
        finally:
            if not response.ended:
                response.abort("the response was abandoned")
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("close() of the response iterable failed")

    def _send_result(self, response: Response, result: Iterable[bytes], head_only: bool) -> None:
        if isinstance(result, list | tuple) and not response.head_sent:
            body = b"".join(result)
            if len(body) <= MAX_CHUNK:
                self._send_whole(response, body, head_only)
                return
        elif not response.head_sent and not head_only and _shared_cacheable(response):
            # The listener's cache stores only whole responses (one RESPONSE frame with END):
            # gather a cacheable iterator up to the bound, as a list would be, and stream it
            # past that. Only 200s to GET that say public and max-age wait for this.
            gathered, rest = _gather(result, MAX_GATHER)
            body = b"".join(gathered)
            if rest is None and response.content_length in (-1, len(body)):
                self._send_whole(response, body, head_only)
                return
            result = itertools.chain(gathered, rest or ())
        for chunk in result:
            if not isinstance(chunk, bytes | bytearray):
                raise TypeError(f"the application yielded {type(chunk).__name__}, not bytes")
            if not chunk:
                continue
            if not response.head_sent:
                if head_only:
                    response.send_head(b"", end=False)
                else:
                    response.start_stream()
            if not head_only:
                response.send_body(bytes(chunk))
        if not response.head_sent:
            response.send_head(b"", end=True)
        else:
            response.end()

    def _send_whole(self, response: Response, body: bytes, head_only: bool) -> None:
        """The whole response in one frame: the form the listener may cache."""
        if self.compression is not None and not head_only:
            body = self._compress(response, body)
        response.send_head(body, end=True)

    def _compress(self, response: Response, body: bytes) -> bytes:
        """IIS's dynamic compression (urlCompression, httpCompression) of a whole body: a
        200 of a compressible type, at least minFileSizeForComp long, for a client that
        accepts it. Done here, in the worker's thread (zlib releases the GIL), not in the
        listener."""
        if 0 <= response.content_length != len(body):
            return body
        coding = self._coding(response, len(body))
        if coding is None:
            return body
        assert self.compression is not None
        packed = compress(body, coding, self.compression.level(coding, static=False))
        if response.content_length >= 0:
            response.content_length = len(packed)
        return packed

    def start_packing(self, response: Response) -> None:
        """A body that comes in pieces is compressed piece by piece, each flushed, under the
        same rules; its length, when the app gave one, applies to the uncompressed bytes
        and must reach minFileSizeForComp; without one, it is not checked."""
        length = response.content_length
        coding = self._coding(response, length if length >= 0 else None)
        if coding is None:
            return
        assert self.compression is not None
        response.packer = Packer(coding, self.compression.level(coding, static=False))
        response.raw_left, response.content_length = length, -1

    def _coding(self, response: Response, size: int | None) -> str | None:
        """The coding to compress this response with, or None (`responses.dynamic_coding`);
        the response's head then says it."""
        assert self.compression is not None and response.head is not None
        chosen = dynamic_coding(self.compression, response.stream.head, response.head,
                                response.encoded, response.content_type, size)
        if chosen is None:
            return None
        coding, response.head = chosen
        return coding

    def _send_file(self, response: Response, wrapper: FileWrapper) -> bool:
        """Hand a real file to the listener. False: not a plain file, iterate it instead."""
        try:
            fd = wrapper.filelike.fileno()
            offset = wrapper.filelike.tell()
            count = file_extent(fd, offset, response.content_length)
        except (AttributeError, OSError, ValueError):
            return False
        if count is None:
            return False
        response.content_length = count
        stream = response.stream
        if stream.head.method == "HEAD" or count == 0:
            response.send_head(b"", end=True)
            return True
        if self.channel.fd_sock is None:
            return False
        response.send_head(b"", end=False)
        # The descriptor goes first (SCM_RIGHTS, on its own socket), then the frame that
        # says which bytes of it: the listener never opens a file by name or number.
        if not self.channel.send_descriptor(stream.id, fd):
            response.abort("the listener is gone")
            return True
        response.ended = stream.ended = True
        request = messages.SendFile(offset, count)
        self.channel.send_frame(
            FrameType.SENDFILE, stream.id, messages.encoder.encode(request), FLAG_END
        )
        # The listener holds its own reference once it has the descriptor; FILE_DONE says it
        # took it, and frees this thread in step with the listener's count of it.
        self.channel.wait_for(lambda: stream.file_done or stream.aborted)
        return True

    def _fail(self, response: Response, stream: Stream) -> None:
        head = stream.head
        log.exception("application error in %s %s", head.method, head.target.decode("latin-1"))
        if response.head_sent:
            response.abort("application error")
            return
        response.head, response.content_length, _, _ = _check_head(
            "500 Internal Server Error", ERROR_500_HEADERS
        )
        response.send_head(ERROR_500, end=True)
