"""Descriptors from a worker to the listener (the zero-copy file path), sans-IO.

A worker hands the listener an open file by `SCM_RIGHTS` on a second socketpair, one
`AF_UNIX` `SOCK_SEQPACKET` pair per worker that carries nothing else. The main link cannot
carry them: it is a stream socket read through a uvloop transport, which drops ancillary
data. Each message is::

    +--------------------------+      ancillary data: exactly one SCM_RIGHTS descriptor
    | stream id: u32, big end. |
    +--------------------------+

and the SENDFILE frame on the main link names the same stream, with only the offset and
count (`messages.SendFile`). The two arrive on different sockets, in either order; the
listener matches them by stream id (`listener.upstream`).

Rules (the server never opens a file by a path, pid or descriptor number a worker names):

* the listener receives into `DATA_SPACE` bytes and `ANCILLARY_SPACE`, the room for
  `MAX_FDS` descriptors (which alignment may round up to room for two): a message larger
  than either is flagged (`MSG_TRUNC`, `MSG_CTRUNC`; the kernel closes the descriptors it
  could not install) and is a violation;
* exactly one descriptor and exactly `MESSAGE.size` bytes per message, and nothing in the
  ancillary data but SCM_RIGHTS; anything else is a violation;
* every descriptor received is closed unless it is used (the caller closes what
  `received_fds` returns when `read_message` raises);
* the descriptor is checked before use (`listener.sendfile.check_file`), its filesystem
  too: a file on FUSE (`USER_FILESYSTEMS`) is never sent zero-copy.
"""

from __future__ import annotations

import array
import ctypes
import os
import socket
import struct

from webgarden.ipc.frames import ProtocolError

MESSAGE = struct.Struct(">I")
#: Descriptors per message. One: a SENDFILE sends one file.
MAX_FDS = 1
#: Receive buffer, one byte over the message: a longer one is truncated and flagged.
DATA_SPACE = MESSAGE.size + 1
#: Ancillary buffer for exactly `MAX_FDS` descriptors: more is truncated and flagged.
ANCILLARY_SPACE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
#: Flags for recvmsg: descriptors arrive close-on-exec, never inherited by a child.
RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


#: Filesystems whose reads a user-space process answers (`statfs` f_type): FUSE, which an
#: unprivileged user may mount in a user namespace of its own. A read there blocks for as
#: long as that process likes, and `sendfile` on the listener's one loop would stop every
#: pool: the worker reads such files itself, and the listener refuses their descriptors.
USER_FILESYSTEMS = {0x65735546: "FUSE"}
#: Room for `struct statfs` (120 bytes on 64-bit Linux); its first field is f_type.
_STATFS_SIZE = 256
_libc = ctypes.CDLL(None, use_errno=True)


def filesystem_type(fd: int) -> int:
    """The `statfs` magic number of the filesystem `fd` is on (os has no fstatfs)."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc.fstatfs(fd, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def user_filesystem(fd: int) -> str | None:
    """The name of the user-served filesystem `fd` is on (see USER_FILESYSTEMS), or None."""
    return USER_FILESYSTEMS.get(filesystem_type(fd))


def encode(sid: int) -> bytes:
    return MESSAGE.pack(sid)


def received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    """Every descriptor the kernel installed for this message (to use or to close)."""
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return list(fds)


def read_message(
    data: bytes, ancdata: list[tuple[int, int, bytes]], fds: list[int], msg_flags: int
) -> int:
    """The stream id a well-formed descriptor message names. ProtocolError (with `rule`
    "bad-descriptor-message") names what is wrong; the caller then closes `fds`."""
    if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        raise ProtocolError("bad-descriptor-message",
                            "a descriptor message larger than one stream id and one descriptor")
    if any(level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS
           for level, kind, _ in ancdata):
        raise ProtocolError("bad-descriptor-message", "ancillary data other than SCM_RIGHTS")
    if len(fds) != MAX_FDS:
        raise ProtocolError("bad-descriptor-message",
                            f"{len(fds)} descriptors in one message, not {MAX_FDS}")
    if len(data) != MESSAGE.size:
        raise ProtocolError("bad-descriptor-message",
                            f"a descriptor message of {len(data)} bytes, not {MESSAGE.size}")
    sid: int = MESSAGE.unpack(data)[0]
    if sid == 0:
        raise ProtocolError("bad-descriptor-message", "a descriptor for stream 0")
    return sid
