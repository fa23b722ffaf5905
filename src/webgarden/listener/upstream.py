"""The listener's end of one worker's socketpair: streams out, responses in.

Theory of operation:

* `dispatch` gives a request a stream id and sends its head; its body follows within the
  worker's receive window (`REQUEST_WINDOW`), topped up by CREDIT as the app reads.
* Frames from the worker are routed by stream id to their `Exchange`. A stream counts
  toward `inflight` from dispatch until the worker ends it (END, ABORT, or the listener's
  FILE_DONE): only then is the worker's thread free again, whatever the client did.
* Frames on stream 0 (READY, PONG, STATS, RECYCLE, a load failure) go to the manager's
  `control` callback; the link itself knows nothing of process states.
* Writes are coalesced: `send` queues bytes and the first send in a loop turn schedules
  one `writelines` for all of them at the end of the turn.
* When the socket closes, `on_lost` gets the exchanges still in flight, so the manager can
  send the safe ones again and fail the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, FrameType

if TYPE_CHECKING:
    from webgarden.listener.exchange import Exchange

#: Must match the worker's windows (webgarden.worker.channel).
REQUEST_WINDOW = 1024 * 1024
RESPONSE_WINDOW = 1024 * 1024


class WorkerLink(asyncio.Protocol):
    def __init__(
        self,
        control: Callable[[int, bytes], None],
        on_lost: Callable[[WorkerLink, list[Exchange]], None],
        on_free: Callable[[WorkerLink], None],
    ) -> None:
        self.control = control
        self.on_lost = on_lost
        self.on_free = on_free
        self.capacity = 0
        # The applications this worker hosts, and their index in its --app list. After a
        # configuration change, old and new workers may host different ones.
        self.apps: dict[object, int] = {}
        self.streams: dict[int, Exchange] = {}
        self.transport: asyncio.Transport | None = None
        self._decoder = frames.FrameDecoder()
        self._next_id = 0
        self._out: list[bytes] = []
        self._loop = asyncio.get_event_loop()
        self.served = 0
        self.closed = False

    @property
    def inflight(self) -> int:
        return len(self.streams)

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self._out:  # sent before the connection was made
            self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.capacity = 0
        lost = list(self.streams.values())
        self.streams.clear()
        self.on_lost(self, lost)

    def data_received(self, data: bytes) -> None:
        try:
            received = self._decoder.feed(data)
        except frames.ProtocolError:
            self.close()
            return
        streams = self.streams
        for ftype, flags, sid, payload in received:
            if sid == 0:
                self.control(ftype, payload)
                continue
            ex = streams.get(sid)
            if ex is None:
                continue
            if ftype == FrameType.RESPONSE:
                ex.on_response_head(messages.response_decoder.decode(payload), flags & FLAG_END)
                if flags & FLAG_END:
                    self.release(sid)
            elif ftype == FrameType.RESPONSE_BODY:
                ex.on_response_body(payload, flags & FLAG_END)
                if flags & FLAG_END:
                    self.release(sid)
            elif ftype == FrameType.CREDIT:
                ex.on_credit(messages.read_count(payload))
            elif ftype == FrameType.SENDFILE:
                ex.on_sendfile(messages.sendfile_decoder.decode(payload))
                self.send(frames.encode(FrameType.FILE_DONE, sid))
                self.release(sid)
            elif ftype == FrameType.ABORT:
                self.release(sid)
                ex.on_worker_abort()

    # -- used by the pool queue and exchanges ---------------------------------------

    def serves(self, ex: Exchange) -> bool:
        return ex.app in self.apps

    def dispatch(self, ex: Exchange) -> None:
        self._next_id = sid = (self._next_id % 0xFFFFFFFE) + 1
        self.streams[sid] = ex
        ex.attach(self, sid)

    def release(self, sid: int) -> None:
        if self.streams.pop(sid, None) is not None:
            self.served += 1
            self.on_free(self)

    def abandon(self, sid: int) -> None:
        """The client is gone: tell the worker; the stream stays counted until it ends."""
        self.send(frames.encode(FrameType.ABORT, sid, b"", FLAG_END))

    def send(self, data: bytes) -> None:
        out = self._out
        out.append(data)
        if len(out) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out, transport = self._out, self.transport
        if transport is None and not self.closed:
            return  # connection_made sends it
        if transport is not None and not self.closed and out:
            transport.writelines(out)
        self._out = []

    def send_control(self, ftype: int, payload: bytes = b"") -> None:
        self.send(frames.encode(ftype, 0, payload))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
