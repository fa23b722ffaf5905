"""The demo site `make run` serves: a start page about webgarden, and a small demo app.

It is an ordinary WSGI application, run in a worker process like any other.
"""

from __future__ import annotations

import html
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from webgarden import __version__

START_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webgarden</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; padding: 0 1rem; color: #1d2a1d; }}
h1 {{ color: #2f6b2f; }} code {{ background: #eef3ee; padding: 0 .3em; }}
table {{ border-collapse: collapse; }} td {{ padding: .2em .8em .2em 0; vertical-align: top; }}
</style></head><body>
<h1>webgarden {version}</h1>
<p>IIS 6.0's architecture for Python web applications. This page was made by a WSGI
application running in worker process <b>{pid}</b> of application pool <b>{pool}</b>;
the listener process that accepted your connection runs no application code.</p>
<table>
<tr><td><b>listener</b></td><td>owns the port, parses and checks requests, queues them per pool (503 when full)</td></tr>
<tr><td><b>manager</b></td><td>starts and restarts worker processes, keeps each pool at its size</td></tr>
<tr><td><b>workers</b></td><td>host the application; a request waits in the queue while one restarts</td></tr>
</table>
<h2>The demo app</h2>
<ul>
<li><a href="/hello">/hello</a>: the smallest response</li>
<li><a href="/worker">/worker</a>: which process and thread answered (reload to see the web garden)</li>
<li><a href="/stream">/stream</a>: a response streamed in pieces</li>
<li><form method="post" action="/echo" style="display:inline">
  <input name="text" value="hello, webgarden"> <button>POST /echo</button></form></li>
</ul>
<p>Serve your own app: <code>webgarden run myproject.wsgi:application --workers 2</code></p>
</body></html>
"""

StartResponse = Callable[..., Any]


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/":
        body = START_PAGE.format(
            version=__version__, pid=os.getpid(), pool=html.escape(environ.get("webgarden.pool", "?"))
        ).encode()
        return _send(start_response, "200 OK", "text/html; charset=utf-8", body)
    if path == "/hello":
        return _send(start_response, "200 OK", "text/plain", b"Hello, World!")
    if path == "/worker":
        info = {
            "pid": os.getpid(),
            "pool": environ.get("webgarden.pool"),
            "thread": threading.current_thread().name,
        }
        return _send(start_response, "200 OK", "application/json", json.dumps(info).encode())
    if path == "/echo":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(size) if size else environ["wsgi.input"].read()
        return _send(start_response, "200 OK", "text/plain; charset=utf-8", data)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    return _send(start_response, "404 Not Found", "text/plain", b"not found\n")


def _stream() -> Iterable[bytes]:
    for i in range(5):
        yield f"piece {i} at {time.strftime('%H:%M:%S')}\n".encode()
        time.sleep(0.2)


def _send(start_response: StartResponse, status: str, ctype: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]
