"""An ASGI application with WebSockets for tests/test_websocket.py (no framework)."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        body = f"http {os.getpid()}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
        return
    path = scope["path"]
    assert (await receive())["type"] == "websocket.connect"
    if path == "/accept-once-marked":  # the first worker to see it hangs before accepting
        marker = scope["query_string"].decode().partition("=")[2]
        if not os.path.exists(marker):
            open(marker, "w").close()
            await asyncio.sleep(3600)
    if path == "/deny":  # the websocket.http.response extension
        assert "websocket.http.response" in scope["extensions"]
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"text/plain"), (b"x-why", b"no token")]})
        await send({"type": "websocket.http.response.body", "body": b"need ",
                    "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"a token"})
        return
    if path == "/refuse":
        await send({"type": "websocket.close", "code": 1000})
        return
    offered = scope["subprotocols"]
    await send({"type": "websocket.accept",
                "subprotocol": "chat" if "chat" in offered else None,
                "headers": [(b"x-accepted", b"yes")]})
    if path == "/scope":
        shown = {k: v for k, v in scope.items() if k not in ("asgi", "state")}
        shown["headers"] = [[k.decode(), v.decode()] for k, v in scope["headers"]]
        shown["raw_path"] = scope["raw_path"].decode()
        shown["query_string"] = scope["query_string"].decode()
        shown["state"] = dict(scope.get("state", {}))
        shown["pid"] = os.getpid()
        await send({"type": "websocket.send", "text": json.dumps(shown)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("flood "):
            # flood N SIZE: N binary messages of SIZE bytes, as fast as credit allows
            _, n, size = text.split()
            for i in range(int(n)):
                await send({"type": "websocket.send", "bytes": bytes([i % 256]) * int(size)})
            await send({"type": "websocket.send", "text": "flooded"})
        elif text == "pid":
            await send({"type": "websocket.send", "text": str(os.getpid())})
        elif text == "close 4001":
            await send({"type": "websocket.close", "code": 4001, "reason": "asked"})
            return
        elif text == "raise":
            raise RuntimeError("the app failed mid-socket")
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
