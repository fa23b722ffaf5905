"""A FastAPI application for webgarden: JSON, a streamed response, a file, lifespan state,
and a WebSocket chat (/chat/{room}).

    cd examples/fastapi_app && webgarden run main:app

webgarden tells from the callable that `app` is ASGI (`--interface asgi` says so
explicitly). Lifespan startup runs in each worker process before it takes requests, and
shutdown when the worker stops or is recycled; what startup yields is each request's
`request.state`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, StreamingResponse

# Not resolve()d: under a private directory the worker reaches this file by another path.
DOWNLOAD = Path(os.path.dirname(os.path.abspath(__file__))) / "static" / "garden.txt"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    # Opened here, in each worker, never in the template a smart-spawned worker is forked
    # from: a connection pool made at startup belongs to one process.
    yield {"started_by": os.getpid(), "greeting": "Hello from FastAPI on webgarden"}


app = FastAPI(lifespan=lifespan)


@app.get("/")
async def index(request: Request) -> dict[str, Any]:
    return {"message": request.state.greeting, "pid": os.getpid(),
            "started_by": request.state.started_by}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str | None = None) -> dict[str, Any]:
    return {"item_id": item_id, "q": q}


@app.post("/echo")
async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    return {"json": payload}


@app.get("/stream")
async def stream(n: int = 5) -> StreamingResponse:
    async def lines() -> AsyncIterator[bytes]:
        for i in range(n):
            yield f"line {i}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/download")
async def download() -> FileResponse:
    # Starlette sends http.response.pathsend when the server offers it: webgarden passes
    # the open file to its listener, which sends it zero-copy.
    return FileResponse(DOWNLOAD, media_type="text/plain")


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("this endpoint fails on purpose")


# A chat room per name, in this worker process. With several workers (or a recycle), the
# members of one room may sit in different processes: a real chat shares messages through
# a broker (Redis pub/sub, Postgres LISTEN), not a dict.
rooms: dict[str, set[WebSocket]] = {}


@app.websocket("/chat/{room}")
async def chat(websocket: WebSocket, room: str, name: str = "anonymous") -> None:
    await websocket.accept()
    members = rooms.setdefault(room, set())
    members.add(websocket)
    try:
        await _tell(members, f"{name} joined")
        while True:
            text = await websocket.receive_text()
            await _tell(members, f"{name}: {text}")
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)
        await _tell(members, f"{name} left")


async def _tell(members: set[WebSocket], text: str) -> None:
    for member in list(members):
        try:
            await member.send_text(text)
        except Exception:  # a member that left meanwhile; its own handler removes it
            members.discard(member)
