"""A FastAPI application for webgarden: JSON, a streamed response, a file, lifespan state.

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

from fastapi import FastAPI, Request
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
