"""Zero-copy file transmission on an asyncio transport (IIS: TransmitFile).

uvloop's transports have no `sendfile` (its `loop.sendfile` raises NotImplementedError), so
the listener does it itself:

1. the response head is written through the transport as usual;
2. once the transport's own buffer is empty, `os.sendfile` writes straight from the page
   cache to the socket, in steps of `STEP` bytes;
3. when the socket is full (EAGAIN), it waits for writability on a *duplicate* of the
   socket's descriptor: the transport keeps its own registration untouched, and nothing
   else writes to the socket while a file is in flight (responses are sent in order).

The sender owns the file descriptor and closes it, whatever happens.

The descriptor came from a worker by SCM_RIGHTS (`ipc.descriptors`): `check_file` must
have accepted it first. The listener never opens a file a worker names; it sends from
the worker's own open file, so it can send nothing the worker could not read itself.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
from collections.abc import Callable

from webgarden.ipc.descriptors import user_filesystem
from webgarden.listener.roles import Client

STEP = 1024 * 1024


def check_file(fd: int, offset: int, count: int) -> str | None:
    """Why a worker's descriptor must not be sent, or None. It must be a regular file
    (not a socket, pipe, device or directory), opened for reading (`O_RDONLY` or `O_RDWR`,
    and not `O_PATH`, which any user can open on a file it may not read), and `count` bytes
    from `offset` must lie inside it. The size check also refuses procfs files, which say
    they are empty."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        info = os.fstat(fd)
    except OSError as exc:
        return f"the descriptor cannot be examined ({exc.strerror})"
    if flags & os.O_PATH:
        return "the descriptor was opened with O_PATH"
    if flags & os.O_ACCMODE not in (os.O_RDONLY, os.O_RDWR):
        return "the descriptor is not open for reading"
    if not stat.S_ISREG(info.st_mode):
        return "the descriptor is not a regular file"
    try:
        served = user_filesystem(fd)
    except OSError as exc:
        return f"the descriptor's filesystem cannot be examined ({exc.strerror})"
    if served is not None:  # its reads could stall the loop for as long as its server likes
        return f"the file is on {served}, whose reads a process of the worker's may hold"
    if offset < 0 or count <= 0 or offset + count > info.st_size:
        return f"{count} bytes at offset {offset} are not inside the file ({info.st_size} bytes)"
    return None


class FileSender:
    def __init__(
        self,
        conn: Client,
        fd: int,
        offset: int,
        count: int,
        on_done: Callable[[bool], None],
    ) -> None:
        self.conn = conn
        self.fd = fd
        self.offset = offset
        self.remaining = count
        self.on_done = on_done
        self.sock_fd = -1
        self.loop = asyncio.get_event_loop()
        self.finished = False

    def start(self) -> None:
        transport = self.conn.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            self._end(False)
            return
        self.sock_fd = os.dup(sock.fileno())
        self.loop.add_writer(self.sock_fd, self._step)

    def _step(self) -> None:
        transport = self.conn.transport
        if transport is None or transport.is_closing():
            self._end(False)
            return
        if transport.get_write_buffer_size():
            return  # the head is still queued in the transport: wait until it is out
        while self.remaining > 0:
            try:
                sent = os.sendfile(self.sock_fd, self.fd, self.offset, min(self.remaining, STEP))
            except BlockingIOError:
                return  # wait for writability
            except OSError:
                self._end(False)
                return
            if sent == 0:  # the file shrank under us
                self._end(False)
                return
            self.offset += sent
            self.remaining -= sent
            self.conn.sent += sent
        self._end(True)

    def cancel(self) -> None:
        self._end(False, notify=False)

    def _end(self, ok: bool, notify: bool = True) -> None:
        if self.finished:
            return
        self.finished = True
        if self.sock_fd >= 0:
            self.loop.remove_writer(self.sock_fd)
            os.close(self.sock_fd)
            self.sock_fd = -1
        os.close(self.fd)
        if notify:
            self.on_done(ok)
