"""WebSocket upgrades in the listener, sans-IO: the handshake checked, the 101 written, a
close frame made. Frames themselves are never parsed here.

Where frames are parsed, and why: in the worker, with `wsproto` (`worker/websocket.py`).
The listener stays cheap (one process on one core serves every pool), and an upgraded
connection costs it what a streamed body costs: bytes in, bytes out, under the stream's
credit. Masking, fragmentation, UTF-8 checks, permessage-deflate and ping/pong cost the
pool's own CPU, inside its own identity and limits.

Rules:

1. An upgrade is validated before it is routed (RFC 6455 §4.2.1): GET, HTTP/1.1,
   `Upgrade: websocket`, `Connection` containing `upgrade`, no request body,
   `Sec-WebSocket-Version: 13` (else 426 with `Sec-WebSocket-Version: 13`, §4.4), and a
   `Sec-WebSocket-Key` that is the base64 of 16 bytes (else 400). A request that does not
   ask for `websocket` in `Upgrade` is not a WebSocket request: it is served as HTTP.
2. Then it is routed and queued like any request (the pool queue, 503 QueueFull, held
   during restarts, sent again once on a lost worker if no byte of it went to a worker).
3. The worker accepts with a 101 head carrying at most `Sec-WebSocket-Protocol` (one of
   the client's offers) and `Sec-WebSocket-Extensions` (only extensions the client
   offered); the listener writes `Upgrade`, `Connection` and `Sec-WebSocket-Accept`
   itself (`tunnel_head`), computed from the client's key: a worker's head may never carry
   those (`http1.sound_response_head`). A 101 for a request that asked for no upgrade, or
   a head that claims what the client never offered, is a violation of the link.
4. After the 101 the connection is a tunnel for that exchange: client bytes go to the
   worker as request body under its credit (a flood pauses reading), the worker's
   RESPONSE_BODY frames go to the client as they are, under response credit. An honest
   worker sends whole WebSocket frames in each, so after each the client's stream is at a
   frame boundary: when the worker is lost, the listener adds `CLOSE_1011` there and
   closes (RFC 6455 §7.4.1: 1011, an unexpected condition). A hostile worker can garble
   only its own client's stream.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from webgarden.listener import errors
from webgarden.listener.http1 import RequestHead

#: RFC 6455 §1.3: the GUID appended to the client's key.
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Bytes of a client's key once decoded (§4.1: "a randomly selected 16-byte value").
KEY_BYTES = 16

#: <webSocket>'s receiveBufferLimit (bytes), pingInterval and pingTimeout (seconds).
Limits = tuple[int, float, float]


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A server's close frame: FIN + opcode 8, unmasked (§5.1: servers never mask)."""
    payload = struct.pack(">H", code) + reason[:123]
    return bytes((0x88, len(payload))) + payload


#: What a client gets when its worker dies with the socket open (1011: internal error).
CLOSE_1011 = close_frame(1011, b"worker lost")


class Upgrade:
    """A validated WebSocket handshake: what the 101 and its checks need."""

    __slots__ = ("accept", "extensions", "limits", "protocols")

    def __init__(self, key: bytes, protocols: frozenset[bytes], extensions: frozenset[bytes],
                 limits: Limits) -> None:
        self.accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.protocols = protocols  # subprotocols offered, as written
        self.extensions = extensions  # extension names offered, lower case
        self.limits = limits  # for the worker: <webSocket>'s, as the request head carries


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip() for t in value.split(b",") if t.strip()]


def check_upgrade(head: RequestHead, limits: Limits) -> Upgrade | errors.ErrorPage | None:
    """None: not a WebSocket request. Else the upgrade, or the page that refuses it."""
    upgrade = connection = version = key = None
    protocols: set[bytes] = set()
    extensions: set[bytes] = set()
    for name, value in head.headers:
        lower = name.lower()
        if lower == b"upgrade":
            upgrade = value
        elif lower == b"connection":
            connection = value
        elif lower == b"sec-websocket-version":
            version = value
        elif lower == b"sec-websocket-key":
            key = value
        elif lower == b"sec-websocket-protocol":
            protocols.update(_tokens(value))
        elif lower == b"sec-websocket-extensions":
            extensions.update(t.split(b";")[0].strip().lower() for t in _tokens(value))
    if upgrade is None or b"websocket" not in (t.lower() for t in _tokens(upgrade)):
        return None
    if (head.method != b"GET" or head.version != "HTTP/1.1" or head.has_body
            or connection is None
            or b"upgrade" not in (t.lower() for t in _tokens(connection))):
        return errors.BAD_REQUEST
    if version is None or version.strip() != b"13":
        return errors.WEBSOCKET_VERSION
    if key is None:
        return errors.BAD_REQUEST
    key = key.strip()
    try:
        if len(base64.b64decode(key, validate=True)) != KEY_BYTES:
            return errors.BAD_REQUEST
    except (binascii.Error, ValueError):
        return errors.BAD_REQUEST
    return Upgrade(key, frozenset(protocols), frozenset(extensions), limits)


_STATUS_101 = b"HTTP/1.1 101 Switching Protocols\r\n"


def tunnel_head(block: bytes, upgrade: Upgrade, date_line: bytes) -> bytes | str:
    """The 101 the client gets, from the worker's head `block` (already checked sound by
    the link). A str: what is wrong with the worker's head (a violation)."""
    first, _, fields = block.partition(b"\r\n")
    if not first.startswith(b"HTTP/1.1 101"):
        return f"a 101 head with status line {first[:40]!r}"
    for line in fields.split(b"\r\n"):
        if not line:
            continue
        name, _, value = line.partition(b":")
        lower = name.strip().lower()
        if lower == b"sec-websocket-protocol":
            if value.strip() not in upgrade.protocols:
                return f"subprotocol {value.strip()[:40]!r} was not offered"
        elif lower == b"sec-websocket-extensions":
            for offer in _tokens(value):
                ext = offer.split(b";")[0].strip().lower()
                if ext not in upgrade.extensions:
                    return f"extension {ext[:40]!r} was not offered"
        elif lower == b"sec-websocket-accept":
            return "Sec-WebSocket-Accept is the listener's to write"
    return b"".join((_STATUS_101, fields, b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Accept: ", upgrade.accept, b"\r\n", date_line, b"\r\n"))
