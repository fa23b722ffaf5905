"""The worker's end of its socketpair: one reader thread, any number of writer threads.

Theory of operation:

* The worker's main thread is the only reader. It decodes frames and routes them: a
  REQUEST becomes a `Stream` on the `requests` queue that the app threads pull from (the
  pull model: the listener sends no more requests than the capacity the worker announced:
  its threads plus a bounded prefetch, see `worker.main`); body chunks, credit, file
  acknowledgements and aborts update their `Stream` and wake whoever waits on it; PING is
  answered at once.
* Any thread may write. Writes are coalesced: a writer appends its frame and, if nobody is
  writing, becomes the flusher and sends everything queued, in a loop, until the queue is
  empty. Frames queued by other threads while a `sendall` runs go out in the next write.
* Flow control (see `worker.wsgi`): a thread may send response body bytes only while its
  stream has send credit; it waits on `cond` otherwise. Request body bytes it consumes are
  returned to the listener as credit, so an upload is bounded by the window (the windows:
  `ipc.flow_control`). Once a stream's end went out, nothing more is sent for it: the
  listener has released it and would take any later frame as a violation of the link.
* A file for the zero-copy path goes to the listener as a descriptor (SCM_RIGHTS) on the
  second socket, `fd_sock`, before the SENDFILE frame that names the same stream.
"""

from __future__ import annotations

import collections
import queue
import socket
import threading
from collections.abc import Callable

from webgarden.ipc import descriptors, frames, messages
from webgarden.ipc.flow_control import RESPONSE_WINDOW
from webgarden.ipc.frames import FLAG_END, FrameType

RECV_SIZE = 256 * 1024


class Stream:
    """One request as the worker sees it."""

    __slots__ = (
        "aborted",
        "body_done",
        "chunks",
        "ended",
        "file_done",
        "head",
        "id",
        "send_window",
    )

    def __init__(self, sid: int, head: messages.RequestHead, body_done: bool) -> None:
        self.id = sid
        self.head = head
        self.chunks: collections.deque[bytes] = collections.deque()
        self.body_done = body_done
        self.aborted = False
        self.ended = False  # a frame that ends the stream went out: send nothing more
        self.file_done = False
        self.send_window = RESPONSE_WINDOW


class Channel:
    def __init__(self, sock: socket.socket, fd_sock: socket.socket | None = None) -> None:
        self.sock = sock
        self.fd_sock = fd_sock  # SOCK_SEQPACKET, for descriptors only
        self.streams: dict[int, Stream] = {}
        self.requests: queue.SimpleQueue[Stream | None] = queue.SimpleQueue()
        self.cond = threading.Condition()
        self._out: list[bytes] = []
        self._out_lock = threading.Lock()
        self._writing = False
        self.closed = False

    # -- writing (any thread) ---------------------------------------------------------

    def send(self, data: bytes) -> None:
        with self._out_lock:
            self._out.append(data)
            if self._writing:
                return
            self._writing = True
        while True:
            with self._out_lock:
                if not self._out:
                    self._writing = False
                    return
                buf = b"".join(self._out) if len(self._out) > 1 else self._out[0]
                self._out.clear()
            try:
                self.sock.sendall(buf)
            except OSError:
                # The listener is gone; the reader sees EOF and ends the process.
                with self._out_lock:
                    self._out.clear()
                    self._writing = False
                self.closed = True
                return

    def send_frame(self, ftype: int, sid: int, payload: bytes = b"", flags: int = 0) -> None:
        self.send(frames.encode(ftype, sid, payload, flags))

    def send_descriptor(self, sid: int, fd: int) -> bool:
        """Pass `fd` to the listener for stream `sid`. False: no descriptor socket, or the
        listener is gone."""
        if self.fd_sock is None:
            return False
        try:
            socket.send_fds(self.fd_sock, [descriptors.encode(sid)], [fd])
        except OSError:
            return False
        return True

    def finish(self, stream: Stream) -> None:
        """The app thread is done with this stream; late frames for it are ignored."""
        self.streams.pop(stream.id, None)

    # -- waiting (app threads) ----------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool]) -> None:
        with self.cond:
            while not predicate() and not self.closed:
                self.cond.wait()

    # -- reading (main thread only) -----------------------------------------------------

    def run_reader(self, on_control: Callable[[int, bytes], None]) -> None:
        """Read and route frames until the listener closes the socket."""
        decoder = frames.FrameDecoder()
        # recv_into one reused buffer: sock.recv(256 KiB) would allocate (mmap) that much
        # on every call and cost more than the request it reads.
        buffer = bytearray(RECV_SIZE)
        view = memoryview(buffer)
        recv_into = self.sock.recv_into
        streams = self.streams
        put = self.requests.put
        decode_head = messages.request_decoder.decode
        try:
            while True:
                n = recv_into(buffer)
                if not n:
                    break
                for ftype, flags, sid, payload in decoder.feed(view[:n]):
                    if ftype == FrameType.REQUEST:
                        stream = Stream(sid, decode_head(payload), bool(flags & FLAG_END))
                        streams[sid] = stream
                        put(stream)
                    elif ftype == FrameType.REQUEST_BODY:
                        self._on_body(sid, payload, flags)
                    elif ftype in _STREAM_UPDATES:
                        self._on_update(ftype, sid, payload)
                    elif ftype == FrameType.PING:
                        self.send_frame(FrameType.PONG, 0, payload)
                    else:
                        on_control(ftype, payload)
        except (OSError, frames.ProtocolError):
            pass
        finally:
            self.closed = True
            with self.cond:
                self.cond.notify_all()

    def _on_body(self, sid: int, payload: bytes, flags: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        with self.cond:
            if payload:
                stream.chunks.append(payload)
            if flags & FLAG_END:
                stream.body_done = True
            self.cond.notify_all()

    def _on_update(self, ftype: int, sid: int, payload: bytes) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        with self.cond:
            if ftype == FrameType.CREDIT:
                stream.send_window += messages.read_count(payload)
            elif ftype == FrameType.FILE_DONE:
                stream.file_done = True
            else:  # ABORT: the client is gone
                stream.aborted = True
            self.cond.notify_all()


_STREAM_UPDATES = frozenset({FrameType.CREDIT, FrameType.FILE_DONE, FrameType.ABORT})

