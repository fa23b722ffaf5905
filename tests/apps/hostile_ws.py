"""A compromised ASGI application that forges WebSocket upgrades on its own worker's link
(tests/test_hostile_websocket.py): it finds the worker's channel through the garbage
collector, as any code in the process could, and writes raw RESPONSE frames."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from webgarden.ipc import messages
from webgarden.ipc.frames import FrameType
from webgarden.worker.channel import Channel

HOLD = 60.0  # seconds a route that broke a rule waits to be killed


def _channel() -> Channel:
    for obj in gc.get_objects():
        if isinstance(obj, Channel):
            return obj
    raise RuntimeError("no channel in this process")


def _forge(scope: dict[str, Any], block: bytes) -> None:
    channel = _channel()
    target = scope["raw_path"] + (b"?" + scope["query_string"] if scope["query_string"] else b"")
    sid = next(sid for sid, s in channel.streams.items() if s.head.target == target)
    head = messages.ResponseHead(101, block)
    channel.send_frame(FrameType.RESPONSE, sid, messages.encoder.encode(head))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    path = scope["path"]
    if scope["type"] == "http":
        if path == "/hello":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"hello"})
            return
        if path == "/unasked":  # a 101 for a plain GET: tunnel bytes nobody asked for
            _forge(scope, b"HTTP/1.1 101 Switching Protocols\r\n")
            await asyncio.sleep(HOLD)
        return
    if path == "/unoffered":  # a subprotocol the client never offered
        _forge(scope, b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: evil\r\n")
    elif path == "/own-accept":  # the accept value is the listener's to compute
        _forge(scope, b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: forged=\r\n")
    elif path == "/extension":  # an extension the client did not offer
        _forge(scope, b"HTTP/1.1 101 Switching Protocols\r\n"
                      b"Sec-WebSocket-Extensions: x-evil\r\n")
    await asyncio.sleep(HOLD)
