"""A compromised application: it speaks the worker's protocol itself, as an intruder who
runs code in a worker would. It finds its own worker's sockets (the channel the worker
keeps, found here through the garbage collector, as any code in the process could), learns
its own request's stream id from the channel, and writes raw frames or passes descriptors
with sendmsg. Every route but /hello, /file and /noread breaks a rule of THREAT_MODEL.md;
the tests check that the server refuses each, says why, replaces the worker and serves on.

After a raw write a route blocks (the worker is killed for it): if it returned, the worker
would answer the stream itself and blur which frame broke the rule.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import socket
import termios
import threading
from urllib.parse import parse_qs

import msgspec

from webgarden.ipc import descriptors, frames, messages
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.worker.channel import Channel

HOLD = 60.0  # seconds a route that broke a rule waits to be killed


def _params(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _channel() -> Channel:
    for obj in gc.get_objects():
        if isinstance(obj, Channel):
            return obj
    raise RuntimeError("no channel in this process")


def _my_stream(channel: Channel, environ) -> int:
    target = environ["REQUEST_URI"].encode("latin-1")
    for sid, stream in list(channel.streams.items()):
        if stream.head.target == target:
            return sid
    raise RuntimeError("no stream for this request")


def _head(channel: Channel, sid: int, length: int) -> None:
    head = messages.ResponseHead(200, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
                                 length)
    channel.send_frame(FrameType.RESPONSE, sid, messages.encoder.encode(head))


def _sendfile(channel: Channel, sid: int, offset: int, count: int) -> None:
    payload = messages.encoder.encode(messages.SendFile(offset, count))
    channel.send_frame(FrameType.SENDFILE, sid, payload, FLAG_END)


def _hold() -> list[bytes]:
    threading.Event().wait(HOLD)
    return []


class _Handle:
    """A file-like the worker's file_wrapper path accepts: it has fileno() and tell()."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def tell(self) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        raise OSError("this handle is never read: the listener sends it, or nothing")

    def close(self) -> None:
        os.close(self.fd)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    params = _params(environ)
    if path == "/hello":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"hello"]
    if path == "/file":  # the legitimate path: seek, and an optional Content-Length
        f = open(params["path"], "rb")  # noqa: SIM115
        f.seek(int(params.get("offset", "0")))
        headers = [("Content-Type", "application/octet-stream")]
        if "length" in params:
            headers.append(("Content-Length", params["length"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f)
    if path == "/noread":  # zero-copy or nothing: the worker cannot read this file-like
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](_Handle(os.open(params["path"], os.O_RDONLY)))
    if path == "/opath":  # a file this user may not read, opened O_PATH, handed over as a file
        fd = os.open(params["path"], os.O_PATH)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", params["size"])])
        return environ["wsgi.file_wrapper"](_Handle(fd))
    if path == "/tiocsti":  # type a command into the terminal the server was started from
        results = []
        for fd in (0, 1, 2):
            try:
                fcntl.ioctl(fd, termios.TIOCSTI, b"#")
                results.append(f"{fd}:injected")
            except OSError as exc:
                results.append(f"{fd}:{errno.errorcode.get(exc.errno or 0, exc.errno)}")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [" ".join(results).encode()]
    if path == "/stray-stacks":  # a child that keeps the stack pipe open, writing forever
        fd = next(int(n) for n in os.listdir("/proc/self/fd")
                  if os.readlink(f"/proc/self/fd/{n}").startswith("pipe:")
                  and fcntl.fcntl(int(n), fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY)
        inode = os.fstat(fd).st_ino
        child = os.fork()
        if child == 0:
            try:
                while True:
                    os.write(fd, b"x" * 65536)
            finally:
                os._exit(0)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [msgspec.json.encode({"inode": inode, "child": child})]
    channel = _channel()
    sid = _my_stream(channel, environ)
    if path == "/raw-descriptor":  # a descriptor of the given kind, then its SENDFILE
        kind = params["kind"]
        if kind == "write-only":
            fd = os.open(params["path"], os.O_WRONLY)
        elif kind == "directory":
            fd = os.open(params["path"], os.O_RDONLY | os.O_DIRECTORY)
        else:  # "socket": one of its own worker's sockets
            fd = os.dup(channel.sock.fileno())
        _head(channel, sid, 10)
        socket.send_fds(channel.fd_sock, [descriptors.encode(sid)], [fd])
        _sendfile(channel, sid, 0, 10)
        return _hold()
    if path == "/beyond":  # a real, readable file, but more of it than the head allows
        fd = os.open(params["path"], os.O_RDONLY)
        _head(channel, sid, 10)
        socket.send_fds(channel.fd_sock, [descriptors.encode(sid)], [fd])
        _sendfile(channel, sid, 0, 100)
        return _hold()
    if path == "/short":  # a head that says 100 bytes, then 10 and END: a truncated body
        _head(channel, sid, 100)
        channel.send_frame(FrameType.RESPONSE_BODY, sid, b"0123456789", FLAG_END)
        return _hold()
    if path == "/two-descriptors":
        fd = os.open(params["path"], os.O_RDONLY)
        _head(channel, sid, 10)
        socket.send_fds(channel.fd_sock, [descriptors.encode(sid)], [fd, fd])
        _sendfile(channel, sid, 0, 10)
        return _hold()
    if path == "/old-style":  # the old SENDFILE: another process's pid and descriptor number
        count = int(params["count"])
        _head(channel, sid, count)
        old = msgspec.msgpack.encode([int(params["pid"]), int(params["fd"]), 0, count])
        channel.send_frame(FrameType.SENDFILE, sid, old, FLAG_END)
        return _hold()
    if path == "/no-descriptor":  # a well-formed SENDFILE whose descriptor never comes
        _head(channel, sid, int(params["count"]))
        _sendfile(channel, sid, 0, int(params["count"]))
        return _hold()
    if path == "/unknown-stream":  # a response for a stream this worker was never given
        head = messages.ResponseHead(200, b"HTTP/1.1 200 OK\r\n", 6, b"forged")
        channel.send_frame(FrameType.RESPONSE, sid + int(params.get("plus", "1000")),
                           messages.encoder.encode(head), FLAG_END)
        return _hold()
    if path == "/oversized":  # a frame header announcing more than MAX_PAYLOAD
        channel.send(frames.encode_header(FrameType.RESPONSE_BODY, sid, frames.MAX_PAYLOAD + 1))
        return _hold()
    if path == "/forbidden-type":  # a frame only the listener may send
        channel.send_frame(FrameType.REQUEST_BODY, sid, b"x", FLAG_END)
        return _hold()
    if path == "/second-ready":  # READY again, claiming an absurd capacity
        ready = messages.Ready(os.getpid(), 1_000_000)
        channel.send_frame(FrameType.READY, 0, messages.encoder.encode(ready))
        return _hold()
    if path == "/framing-header":  # a head that frames itself: the listener alone frames
        block = f"HTTP/1.1 200 OK\r\n{params['field']}\r\n".encode("latin-1")
        head = messages.ResponseHead(200, block, 6, b"forged")
        channel.send_frame(FrameType.RESPONSE, sid, messages.encoder.encode(head), FLAG_END)
        return _hold()
    if path == "/second-head":
        _head(channel, sid, 5)
        _head(channel, sid, 5)
        return _hold()
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such route"]
