"""ASGI test applications served by real webgarden servers (tests/test_asgi*.py).

`app` answers by path; `events` records what only the app can see (an http.disconnect, a
send refused) so a test can wait for it through `/seen/<what>`, with no sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]

events: dict[str, asyncio.Event] = {}
served_by_lifespan: list[str] = []


def _event(name: str) -> asyncio.Event:
    return events.setdefault(name, asyncio.Event())


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


async def respond(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None,
                  content_type: bytes = b"text/plain") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any) -> tuple[bytes, int]:
    parts, messages = [], 0
    while True:
        message = await receive()
        messages += 1
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts), messages


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(scope["query_string"].decode()))


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    path = scope["path"][len(scope["root_path"]):] or "/"
    query = _query(scope)
    if path == "/hello":
        await respond(send, 200, b"Hello, World!")
    elif path.startswith("/scope"):
        await respond(send, 200, json.dumps(_jsonable(dict(scope))).encode(),
                      content_type=b"application/json")
    elif path == "/echo":
        # Echo the request body back as it arrives, one response chunk per message.
        await send({"type": "http.response.start", "status": 200, "headers": []})
        count = 0
        while True:
            message = await receive()
            count += 1
            await send({"type": "http.response.body", "body": message.get("body", b""),
                        "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": f"\n{count} messages".encode()})
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        for i in range(int(query.get("n", "3"))):
            await send({"type": "http.response.body", "body": f"part {i}\n".encode(),
                        "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/big":
        size, chunk = int(query.get("size", "1000")), 64 * 1024
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(size).encode())]})
        sent = 0
        try:
            while sent < size:
                n = min(chunk, size - sent)
                await send({"type": "http.response.body", "body": b"x" * n, "more_body": True})
                sent += n
            await send({"type": "http.response.body", "body": b""})
        except OSError:
            _event("big-refused").set()
            raise
    elif path == "/disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        _event("disconnect-waiting").set()
        while (await receive())["type"] != "http.disconnect":
            pass
        _event("disconnect").set()
    elif path.startswith("/seen/"):
        await asyncio.wait_for(_event(path[6:]).wait(), 30)
        await respond(send, 200, b"seen")
    elif path == "/pathsend":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.pathsend", "path": query["file"]})
    elif path == "/pid":
        await respond(send, 200, str(os.getpid()).encode())
    elif path == "/state":
        state = scope.get("state", {})
        seen = dict(state)
        state["touched"] = True  # a shallow copy: the next request must not see this
        await respond(send, 200, json.dumps(seen).encode(), content_type=b"application/json")
    elif path == "/error-before":
        raise RuntimeError("boom before the response")
    elif path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("boom after the head")
    elif path == "/no-response":
        return
    elif path == "/start-only":
        await send({"type": "http.response.start", "status": 200, "headers": []})
    elif path == "/after-complete":
        await respond(send, 200, b"done")
        await send({"type": "http.response.body", "body": b"extra"})
    elif path == "/bad-header":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-evil", b"a\r\nSet-Cookie: injected=1")]})
        await send({"type": "http.response.body", "body": b"never"})
    elif path == "/cached":
        calls = served_by_lifespan.count("cached") + 1
        served_by_lifespan.append("cached")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"cache-control", b"public, max-age=60")]})
        await send({"type": "http.response.body", "body": b"call ", "more_body": True})
        await send({"type": "http.response.body", "body": str(calls).encode()})
    elif path == "/text":
        body = ("compress me " * int(query.get("n", "500"))).encode()
        if query.get("stream"):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            for i in range(0, len(body), 1000):
                await send({"type": "http.response.body", "body": body[i:i + 1000],
                            "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            await respond(send, 200, body)
    elif path == "/slow":
        await asyncio.wait_for(_event("release").wait(), 60)
        await respond(send, 200, b"released")
    elif path == "/release":
        _event("release").set()
        await respond(send, 200, b"ok")
    elif path == "/crash":
        os._exit(1)  # the worker dies with this request in flight
    elif path == "/hang":
        _event("hanging").set()
        await asyncio.Event().wait()  # a coroutine stuck forever (its stack is dumped)
    else:
        await respond(send, 404, b"not found")


async def lifespan(scope: Scope, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            marker = os.environ.get("ASGI_STARTUP_FAIL_IF", "")
            if os.environ.get("ASGI_STARTUP_FAIL") or (marker and os.path.exists(marker)):
                await send({"type": "lifespan.startup.failed",
                            "message": "the database is unreachable"})
                return
            scope["state"]["db"] = f"connection of {os.getpid()}"
            served_by_lifespan.append("startup")
            print(f"lifespan startup in {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            print(f"lifespan shutdown in {os.getpid()}", file=sys.stderr, flush=True)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def no_lifespan(scope: Scope, receive: Any, send: Any) -> None:
    """An app that raises on any scope but http (as Django's handler does)."""
    if scope["type"] != "http":
        raise ValueError(f"no {scope['type']} here")
    await app(scope, receive, send)


class AsgiClass:
    """An ASGI app as an instance with an async __call__ (as Starlette's)."""

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await app(scope, receive, send)


instance = AsgiClass()


def wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"wsgi {os.getpid()}".encode()]
