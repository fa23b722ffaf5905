"""Messages between the manager and a pool's template process (smart spawning).

The two talk over a SOCK_SEQPACKET socketpair, one msgspec-encoded message per packet.
`Fork` carries three descriptors with it (SCM_RIGHTS), in this order: the worker's end
of its stream socketpair to the listener, the write end of its stack-dump pipe, and its end
of the descriptor socketpair (files for the zero-copy path, `ipc.descriptors`). The
template receives with room for exactly `FORK_FDS`; the manager receives none (it never
passes a control buffer, so the kernel discards any descriptor a template sends).

    template -> manager   Loaded | LoadFailed | Unforkable      once, after the import
    manager -> template   Fork                                   any number of times
    template -> manager   Forked | Stale | ForkFailed            one per Fork, in order
"""

from __future__ import annotations

import msgspec

#: Largest message either side sends, bytes (a Fork names a pool and compression rules).
MAX_MESSAGE = 64 * 1024
#: Descriptors that travel with a Fork: stream socket, stack-dump pipe, descriptor socket.
FORK_FDS = 3


class Loaded(msgspec.Struct, tag=True, frozen=True):
    """The applications are imported; the template waits for Fork."""

    pid: int
    load_ms: float
    modules: int  # module files watched for change


class LoadFailed(msgspec.Struct, tag=True, frozen=True):
    reason: str  # one line, as a worker's ABORT


class Unforkable(msgspec.Struct, tag=True, frozen=True):
    """Importing the applications started threads: a fork would copy only one of them."""

    reason: str


class Fork(msgspec.Struct, tag=True, frozen=True):
    pool: str
    threads: int
    prefetch: int
    compression: str
    server_pid: int  # the worker's parent once the template's intermediate process exits
    asgi_concurrency: int = 100  # requests its event loop runs at once (ASGI apps)


class Forked(msgspec.Struct, tag=True, frozen=True):
    pid: int


class Stale(msgspec.Struct, tag=True, frozen=True):
    """A module file changed since the template imported it: it forks no more."""

    path: str


class ForkFailed(msgspec.Struct, tag=True, frozen=True):
    reason: str


FromTemplate = Loaded | LoadFailed | Unforkable | Forked | Stale | ForkFailed

encoder = msgspec.msgpack.Encoder()
from_template = msgspec.msgpack.Decoder(FromTemplate)
fork_decoder = msgspec.msgpack.Decoder(Fork)
