"""WebSockets in the ASGI host: the `websocket` scope over one stream, framed by wsproto.

The listener validated the handshake (RFC 6455: version 13, the key) and queued the
upgrade like any request (`listener/websocket.py`); it arrives here as a REQUEST whose
`scheme` is "ws" (or "wss") and whose body is the client's bytes after the head. Frames are parsed
here, not in the listener, so the listener stays cheap and the work (masking, UTF-8,
permessage-deflate, ping/pong) is the pool's, within its own identity and limits.

Theory of operation:

* `receive` first gives `websocket.connect`. `websocket.accept` sends a 101 head with
  only the negotiated `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions` (the
  listener adds `Upgrade`, `Connection` and `Sec-WebSocket-Accept`, and checks both
  against what the client offered); `websocket.close` before that is a 403 (the ASGI
  spec), and so is an app that returns without accepting. The `websocket.http.response`
  extension answers with an HTTP response of the app's instead.
* After the accept, the client's bytes are fed to wsproto as they arrive (`feed`, called
  by the host's `wake` on the loop, without a task switch) and returned to the listener as
  CREDIT, batched by `CREDIT_BATCH`. Feeding stops while the messages the app has not
  received yet hold `max_message` bytes, so a client that floods a slow app is paused by
  the listener's credit, never buffered without bound; the app's `receive` resumes it. A
  message longer than the limit (`<webSocket receiveBufferLimit>`, 16 MiB by default)
  closes with 1009.
* Every RESPONSE_BODY frame carries whole WebSocket frames (messages are fragmented at
  `MAX_CHUNK`), and is sent only once the stream's send window holds it: the listener is
  at a frame boundary after each (it adds a 1011 close frame there if this worker dies),
  and a slow client holds back only its own socket's `send`.
* The common case skips wsproto's Python parser: while wsproto holds no partial frame or
  message and no extension is in use, whole small (< 126 bytes) masked text or binary
  frames at the front of a chunk are unmasked and delivered directly (`wsframes`), and
  small messages go out as one frame built there; anything else (a
  fragment, a control frame, invalid UTF-8, an unmasked frame, permessage-deflate) is
  wsproto's, which is where every error is decided. Measured: wsproto costs ~9 µs per
  small echoed message, the fast path ~1.5; this reads wsproto's private decoder state
  (`wsframes.idle`), hence its pinned major version.
* Pings (`pingInterval`): while the socket is open the worker pings; no pong within
  `pingTimeout` closes it with 1011 (the peer is gone or stuck). A client's ping is
  answered at once by the reader, whatever the app does.
* Closing: a close frame from the client is answered, the app gets `websocket.disconnect`
  with its code, and the stream ends. A close from the app waits up to `CLOSE_WAIT` for
  the client's answer, then ends the stream anyway. The listener closes the connection at
  the stream's END and logs the socket as one line.
* Drain (`drain`, the manager's DRAIN: a recycle, a configuration change, a stop): open
  sockets keep serving until `shutdownTimeLimit` is nearly over, then close with 1012
  (service restart), so their clients reconnect to the new worker; the worker cannot get
  STOP (and exit) while a socket is open, since each holds its stream.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from enum import Enum
from http import HTTPStatus
from typing import Any, Protocol

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.handshake import server_extensions_handshake

from webgarden.ipc import frames, messages
from webgarden.ipc.flow_control import CONTROL_SLACK, REQUEST_WINDOW
from webgarden.ipc.frames import FLAG_END, MAX_CHUNK, FrameType
from webgarden.worker.channel import Channel, Stream
from webgarden.worker.responses import ClientDisconnected, check_head
from webgarden.worker.wsframes import SMALL, BoundedDeflate, idle, small_frame, small_frames

log = logging.getLogger("webgarden.worker")

Scope = MutableMapping[str, Any]
AsgiMessage = MutableMapping[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[AsgiMessage]],
                Callable[[AsgiMessage], Awaitable[None]]], Awaitable[None]]

ASGI = {"version": "3.0", "spec_version": "2.4"}
#: The request head's scheme for an upgrade the listener validated (plain, and over TLS).
WEBSOCKET_SCHEMES = ("ws", "wss")
#: Seconds the worker waits for the client's close frame after sending its own.
CLOSE_WAIT = 5.0
#: Seconds before the drain's deadline (shutdownTimeLimit) at which sockets get 1012: the
#: close handshake must fit before the manager kills the worker. At most a quarter of it.
DRAIN_MARGIN = 1.0
#: Request-body bytes consumed before they are credited back in one CREDIT frame: a frame per
#: message would double the link's traffic, and a quarter window never stalls the client.
CREDIT_BATCH = REQUEST_WINDOW // 4
#: Largest body of a `websocket.http.response` (a refusal page, sent in one frame).
MAX_DENIAL = MAX_CHUNK
#: Close codes (RFC 6455 §7.4.1).
NORMAL, GOING_AWAY, TOO_BIG, INTERNAL, RESTART, ABNORMAL = 1000, 1001, 1009, 1011, 1012, 1006
#: Headers of an accept that are the server's, not the app's: the listener's, or negotiated.
_OURS = frozenset({"sec-websocket-accept", "sec-websocket-protocol",
                   "sec-websocket-extensions", "upgrade", "connection"})
_FORBIDDEN = ("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "0")])


class Host(Protocol):
    """What a socket needs of the ASGI host (`worker.asgi.ASGIHost`)."""

    loop: asyncio.AbstractEventLoop
    channel: Channel
    states: dict[int, dict[str, Any]]
    feeders: dict[int, Callable[[], None]]  # sid -> called by wake(sid), on the loop

    def write(self, data: bytes) -> None: ...

    def write_frame(self, ftype: int, sid: int, payload: bytes = b"", flags: int = 0
                    ) -> None: ...

    async def wait(self, stream: Stream) -> None: ...

    def wake(self, sid: int) -> None: ...


class Phase(Enum):
    CONNECTING = "connecting"  # before the app's accept (or refusal)
    OPEN = "open"
    CLOSING = "closing"  # our close frame went out; waiting for the client's
    ENDED = "ended"  # the stream's end went out


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


def decode_path(text: str) -> str:
    return text if text.isascii() else text.encode("latin-1").decode("utf-8", "replace")


def scope(stream: Stream, state: dict[str, Any] | None) -> Scope:
    """The ASGI `websocket` scope (spec 2.4)."""
    head = stream.head
    target = head.target
    query = target.find(b"?")
    protocols = [p.strip() for name, value in head.headers
                 if name.lower() == b"sec-websocket-protocol"
                 for p in value.decode("latin-1").split(",") if p.strip()]
    result: Scope = {
        "type": "websocket",
        "asgi": ASGI,
        "http_version": "1.1",
        "scheme": head.scheme,
        "path": decode_path(head.script_name + head.path),
        "raw_path": target if query < 0 else target[:query],
        "root_path": decode_path(head.script_name),
        "query_string": head.query,
        "headers": [(name.lower(), value) for name, value in head.headers],
        "client": head.client,
        "server": head.server,
        "subprotocols": protocols,
        "extensions": {"websocket.http.response": {}},
    }
    if state is not None:
        result["state"] = state.copy()
    return result


class Sockets:
    """The worker's open WebSockets, for the drain."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.open: set[Socket] = set()
        self.drain_at: float | None = None  # loop time at which open sockets get 1012

    async def serve(self, stream: Stream, app: App) -> None:
        host = self.host
        sock = Socket(host, stream, self)
        self.open.add(sock)
        try:
            if stream.aborted:
                return  # its client left while it waited to start
            await app(scope(stream, host.states.get(stream.head.app)), sock.receive,
                      sock.send)
            sock.returned()
        except ClientDisconnected:
            pass
        except Exception:
            log.exception("application error in WebSocket %s",
                          stream.head.target.decode("latin-1"))
            sock.failed()
        finally:
            self.open.discard(sock)
            await sock.finish()
            host.channel.finish(stream)

    def drain(self, grace: float) -> None:
        """The worker drains: sockets close with 1012 shortly before `grace` runs out."""
        loop = self.host.loop
        margin = min(DRAIN_MARGIN, grace / 4)
        self.drain_at = loop.time() + grace - margin
        loop.call_later(grace - margin, self._restart, margin / 2)

    def _restart(self, wait: float) -> None:
        for sock in list(self.open):
            sock.close_now(RESTART, "service restart", wait)


class Socket:
    """One WebSocket: the app's `receive` and `send`, wsproto, and the timers."""

    def __init__(self, host: Host, stream: Stream, sockets: Sockets) -> None:
        self.host = host
        self.stream = stream
        self.sockets = sockets
        head = stream.head
        self.max_message = head.ws_max_message or 16 * 1024 * 1024
        self.ping_interval = head.ws_ping_interval
        self.ping_timeout = head.ws_ping_timeout
        self.phase = Phase.CONNECTING
        self.ws: Connection | None = None
        self.connected = False  # websocket.connect was received
        self.inbox: collections.deque[AsgiMessage] = collections.deque()
        self.inbox_bytes = 0
        self.arrived = asyncio.Event()  # inbox has something, or the socket closed
        self.parts: list[Any] = []  # the message being received (str or bytes pieces)
        self.part_bytes = 0
        self.close_code: int | None = None  # what the app's websocket.disconnect says
        self.close_reason = ""
        self.feeding = False  # in feed() (wake may come back to it from inside)
        self.unacked = 0  # body bytes consumed and not credited yet
        self.ended = asyncio.Event()  # the stream's end went out
        self.timers: list[asyncio.TimerHandle] = []
        # websocket.http.response: the checked head and the body so far.
        self.denial: tuple[tuple[Any, int, str, bool], list[bytes]] | None = None
        self.pong_due = 0.0

    # -- receive --------------------------------------------------------------------------

    async def receive(self) -> AsgiMessage:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while not self.inbox:
            if self.phase is Phase.CONNECTING and self.stream.aborted:
                return {"type": "websocket.disconnect", "code": ABNORMAL, "reason": ""}
            if self.close_code is not None:
                return {"type": "websocket.disconnect", "code": self.close_code,
                        "reason": self.close_reason}
            self.arrived.clear()
            if self.phase is Phase.CONNECTING:
                await self.host.wait(self.stream)  # only an ABORT can come before accept
            else:
                await self.arrived.wait()
        message = self.inbox.popleft()
        self.inbox_bytes -= len(message.get("bytes") or message.get("text") or "")
        if self.stream.chunks and self.inbox_bytes < self.max_message:
            self.feed()  # it stopped at the bound: room again
        return message

    # -- send -----------------------------------------------------------------------------

    async def send(self, message: AsgiMessage) -> None:
        kind = message["type"]
        if self.phase is Phase.CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._refuse()
            elif kind == "websocket.http.response.start" and self.denial is None:
                headers = [(n.decode("latin-1"), v.decode("latin-1"))
                           for n, v in message.get("headers") or ()]
                self.denial = (check_head(_status_line(message["status"]), headers), [])
            elif kind == "websocket.http.response.body" and self.denial is not None:
                self._deny(bytes(message.get("body", b"")), bool(message.get("more_body")))
            else:
                raise RuntimeError(f"{kind!r} before websocket.accept")
            return
        if self.phase is not Phase.OPEN or self.stream.aborted:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.send":
            text, data = message.get("text"), message.get("bytes")
            if text is not None:
                await self._send_message(str(text))
            elif data is not None:
                await self._send_message(bytes(data))
            else:
                raise ValueError("websocket.send carries neither text nor bytes")
        elif kind == "websocket.close":
            self._close(int(message.get("code") or NORMAL), str(message.get("reason") or ""))
        else:
            raise ValueError(f"unexpected ASGI message type {kind!r} for a websocket scope")

    def _accept(self, message: AsgiMessage) -> None:
        head = self.stream.head
        offers = [o.strip() for name, value in head.headers
                  if name.lower() == b"sec-websocket-extensions"
                  for o in value.decode("latin-1").split(",") if o.strip()]
        deflate = BoundedDeflate(self.max_message)
        accepted = server_extensions_handshake(offers, [deflate]) if offers else None
        headers = [(n.decode("latin-1"), v.decode("latin-1"))
                   for n, v in message.get("headers") or ()
                   if n.decode("latin-1").lower() not in _OURS]
        subprotocol = message.get("subprotocol")
        if subprotocol:
            headers.append(("Sec-WebSocket-Protocol", str(subprotocol)))
        if accepted:
            headers.append(("Sec-WebSocket-Extensions", accepted.decode("ascii")))
        (status, block), _, _, _ = check_head("101 Switching Protocols", headers)
        self.ws = Connection(ConnectionType.SERVER, [deflate] if accepted else [])
        self.phase = Phase.OPEN
        self.host.write_frame(FrameType.RESPONSE, self.stream.id, messages.encoder.encode(
            messages.ResponseHead(status, block)))
        self.host.feeders[self.stream.id] = self.feed
        self.feed()  # bytes that came with the handshake, if any
        if self.ping_interval > 0:
            self._every(self.ping_interval, self._ping)

    def _deny(self, body: bytes, more: bool) -> None:
        """The `websocket.http.response` extension: an HTTP answer instead of the socket,
        sent whole once its last body message comes (bounded: `MAX_DENIAL`)."""
        assert self.denial is not None
        ((status, block), length, _, _), parts = self.denial
        parts.append(body)
        if sum(map(len, parts)) > MAX_DENIAL:
            raise ValueError(f"websocket.http.response body over {MAX_DENIAL} bytes")
        if more:
            return
        whole = b"".join(parts)
        if 0 <= length < len(whole):
            whole = whole[:length]
        self.phase = Phase.ENDED
        self.stream.ended = True
        self.host.write_frame(FrameType.RESPONSE, self.stream.id, messages.encoder.encode(
            messages.ResponseHead(status, block, length, whole)), FLAG_END)

    def _refuse(self) -> None:
        """Closed (or returned) before accept: 403, as the ASGI spec says."""
        self.phase = Phase.ENDED
        (status, block), length, _, _ = check_head(*_FORBIDDEN)
        self.stream.ended = True
        self.host.write_frame(FrameType.RESPONSE, self.stream.id, messages.encoder.encode(
            messages.ResponseHead(status, block, length)), FLAG_END)

    async def _send_message(self, data: Any) -> None:
        """One message as whole frames, each RESPONSE_BODY within the send window."""
        ws = self.ws
        assert ws is not None
        size = len(data)
        if size <= SMALL and idle(ws):  # one small frame, built by wsframes
            frame = small_frame(data)
            if frame is not None:
                await self._send_bytes(frame)
                return
        if size <= MAX_CHUNK:
            await self._send_bytes(ws.send(Message(data=data)))
            return
        for start in range(0, size, MAX_CHUNK):
            part = data[start:start + MAX_CHUNK]
            await self._send_bytes(ws.send(Message(data=part,
                                                   message_finished=start + MAX_CHUNK >= size)))
            if self.phase is not Phase.OPEN:
                raise ClientDisconnected("the WebSocket closed while a message was going out")

    async def _send_bytes(self, data: bytes) -> None:
        stream, host = self.stream, self.host
        while stream.send_window < len(data):
            if stream.aborted or host.channel.closed or self.phase is Phase.ENDED:
                raise ClientDisconnected("the client closed the connection")
            await host.wait(stream)
        self._write(data)

    def _write(self, data: bytes) -> None:
        """Whole frames out now (control frames skip the window: a few bytes each)."""
        if self.phase is Phase.ENDED or not data:
            return
        if self.stream.send_window - len(data) < -CONTROL_SLACK:
            return  # a client that reads nothing gets no more pongs: the listener counts them
        self.stream.send_window -= len(data)
        self.host.write(frames.encode_header(FrameType.RESPONSE_BODY, self.stream.id,
                                             len(data)) + data)

    # -- the client's bytes ---------------------------------------------------------------

    def feed(self) -> None:
        """Feed what came to wsproto, up to the inbox's bound; credit what was consumed."""
        if self.feeding or self.ws is None or self.phase is Phase.ENDED:
            return
        stream, host = self.stream, self.host
        if stream.aborted or host.channel.closed:
            self._gone()
            return
        ws = self.ws
        chunks = stream.chunks
        self.feeding = True
        try:
            while chunks and self.inbox_bytes < self.max_message and not stream.ended:
                chunk = chunks.popleft()
                self.unacked += len(chunk)
                if not self.parts and self.phase is Phase.OPEN and idle(ws):
                    chunk = self._fast_frames(chunk)
                    if not chunk:
                        continue
                ws.receive_data(chunk)
                for event in ws.events():
                    self._on_event(event)
            if self.unacked >= CREDIT_BATCH and not stream.ended:
                host.write_frame(FrameType.CREDIT, stream.id,
                                 messages.count_payload(self.unacked))
                self.unacked = 0
        finally:
            self.feeding = False

    def _fast_frames(self, data: bytes) -> bytes:
        """Deliver the whole small frames at the front of `data`; the rest is wsproto's."""
        found, used = small_frames(data, self.max_message)
        if not used:
            return data
        for message, size in found:
            self.inbox.append(message)
            self.inbox_bytes += size
        self.arrived.set()
        return data[used:]

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TextMessage | BytesMessage):
            if self.phase is not Phase.OPEN:
                return  # after our close frame: dropped (RFC 6455 §1.4)
            self.parts.append(event.data)
            self.part_bytes += len(event.data)
            if self.part_bytes > self.max_message:
                self.parts, self.part_bytes = [], 0
                self.close_now(TOO_BIG, "message too big")
            elif event.message_finished:
                self._deliver(isinstance(event, TextMessage))
        elif isinstance(event, Ping):
            if self.ws is not None and self.ws.state is ConnectionState.OPEN:
                self._write(self.ws.send(event.response()))
        elif isinstance(event, Pong):
            self.pong_due = 0.0
        elif isinstance(event, CloseConnection):
            self._closed_by_client(event)

    def _deliver(self, text: bool) -> None:
        parts, self.parts = self.parts, []
        size, self.part_bytes = self.part_bytes, 0
        if text:
            message: AsgiMessage = {"type": "websocket.receive", "text": "".join(parts)}
        else:
            message = {"type": "websocket.receive", "bytes": b"".join(parts)}
        self.inbox.append(message)
        self.inbox_bytes += size
        self.arrived.set()

    def _closed_by_client(self, event: CloseConnection) -> None:
        ws = self.ws
        assert ws is not None
        if ws.state is ConnectionState.REMOTE_CLOSING:
            self._write(ws.send(event.response()))  # our answer to its close
        elif ws.state is ConnectionState.OPEN:
            # wsproto refused a frame (ParseFailed: 1002, 1007, ...): fail the connection
            # with that code (RFC 6455 §7.1.7); the client's answer is not awaited.
            self._write(ws.send(CloseConnection(code=event.code, reason=event.reason)))
        if self.close_code is None:
            self.close_code, self.close_reason = event.code, event.reason or ""
        self._end()

    def _gone(self) -> None:
        """The client left without a close handshake (the listener's ABORT)."""
        if self.close_code is None:
            self.close_code = ABNORMAL
        self.phase = Phase.ENDED
        self.stream.ended = True  # the listener holds nothing more to hear: ABORT answers
        self.host.write_frame(FrameType.ABORT, self.stream.id,
                              messages.encoder.encode(messages.Abort("client gone")), FLAG_END)
        self._ended()

    # -- closing --------------------------------------------------------------------------

    def _close(self, code: int, reason: str, wait: float = CLOSE_WAIT) -> None:
        """Our close frame; the stream ends at the client's answer, or after `wait`."""
        ws = self.ws
        if self.phase is not Phase.OPEN or ws is None:
            return
        self._write(ws.send(CloseConnection(code=code, reason=reason)))
        self.phase = Phase.CLOSING
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.arrived.set()
        self.timers.append(self.host.loop.call_later(wait, self._end))

    def close_now(self, code: int, reason: str, wait: float = CLOSE_WAIT) -> None:
        """The server closes (1009, 1011 keep-alive timeout, 1012 drain)."""
        if self.phase is Phase.CONNECTING:
            return  # not accepted yet: the app answers (or the drain's kill ends it)
        self._close(code, reason, wait)
        if code == INTERNAL:
            self._end()  # the peer does not answer pings: no handshake to wait for
        self.host.wake(self.stream.id)  # a send waiting for credit gives up

    def _end(self) -> None:
        if self.phase is Phase.ENDED or self.phase is Phase.CONNECTING:
            return
        self.phase = Phase.ENDED
        self.stream.ended = True
        self.host.write_frame(FrameType.RESPONSE_BODY, self.stream.id, b"", FLAG_END)
        if self.close_code is None:
            self.close_code = NORMAL
        self._ended()
        self.host.wake(self.stream.id)  # a send waiting for credit gives up

    def _ended(self) -> None:
        self.host.feeders.pop(self.stream.id, None)
        self.arrived.set()
        self.ended.set()
        self._cancel_timers()

    # -- keep-alive -----------------------------------------------------------------------

    def _every(self, interval: float, callback: Callable[[], None]) -> None:
        def tick() -> None:
            if self.phase is Phase.OPEN:
                callback()
                self.timers.append(self.host.loop.call_later(interval, tick))
        self.timers.append(self.host.loop.call_later(interval, tick))

    def _ping(self) -> None:
        ws = self.ws
        if ws is None or ws.state is not ConnectionState.OPEN:
            return
        self._write(ws.send(Ping(payload=b"webgarden")))
        if self.ping_timeout > 0 and not self.pong_due:
            self.pong_due = self.host.loop.time() + self.ping_timeout
            self.timers.append(self.host.loop.call_later(self.ping_timeout, self._pong_late))

    def _pong_late(self) -> None:
        if self.pong_due and self.host.loop.time() >= self.pong_due:
            log.warning("WebSocket %s: no pong within %gs, closed",
                        self.stream.head.target.decode("latin-1"), self.ping_timeout)
            self.close_now(INTERNAL, "keepalive ping timeout")

    def _cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()

    # -- the end of the app's call ------------------------------------------------------

    def returned(self) -> None:
        if self.phase is Phase.CONNECTING:
            self._refuse()
        elif self.phase is Phase.OPEN:
            self._close(NORMAL, "")

    def failed(self) -> None:
        if self.phase is Phase.CONNECTING:
            (status, block), length, _, _ = check_head(
                "500 Internal Server Error", [("Content-Length", "0")])
            self.phase = Phase.ENDED
            self.stream.ended = True
            self.host.write_frame(FrameType.RESPONSE, self.stream.id, messages.encoder.encode(
                messages.ResponseHead(status, block, length)), FLAG_END)
        else:
            self.close_now(INTERNAL, "application error")
            self._end()

    async def finish(self) -> None:
        """After the app: wait for the close handshake (bounded), then end the stream."""
        if self.phase is Phase.CLOSING:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ended.wait(), CLOSE_WAIT)
        if self.phase is Phase.OPEN or self.phase is Phase.CLOSING:
            self._end()
        self.host.feeders.pop(self.stream.id, None)
        self._cancel_timers()
        if not self.stream.ended:  # never accepted nor refused: the stream still ends
            self._refuse()
