"""The WSGI application the server tests run. Every route exercises one part of PEP 3333.

`/hold` blocks its thread until the worker gets SIGUSR1 (or 30 s pass): tests use it to
keep a worker busy and release it by a real signal, not by timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import parse_qs

RELEASE = threading.Event()


def _release(signum, frame):
    RELEASE.set()


signal.signal(signal.SIGUSR1, _release)

CHUNK = b"x" * (256 * 1024)
GROWN: list[object] = []  # memory /grow and /reserve keep
CALLS: dict[str, int] = {}  # how often the cacheable routes ran


def _params(environ):
    return {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _reply(start_response, body, status="200 OK", ctype="text/plain"):
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


class ClosingIterable:
    def __init__(self, parts, tag):
        self.parts = parts
        self.tag = tag

    def __iter__(self):
        yield from self.parts

    def close(self) -> None:
        print(f"closed {self.tag}", file=sys.stderr, flush=True)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    params = _params(environ)
    if "mark" in params:
        print(f"served {params['mark']}", file=sys.stderr, flush=True)
    if path == "/hello":
        return _reply(start_response, b"Hello, World!")
    if path == "/pid":
        return _reply(start_response, str(os.getpid()).encode())
    if path == "/spawn-child":
        # A child process the app never waits for: it outlives the worker's interest.
        child = subprocess.Popen(["sh", "-c", params.get("cmd", "exit 7")])
        child.returncode = 0  # so that Popen never waits for it: the worker leaves it behind
        return _reply(start_response, str(child.pid).encode())
    if path == "/echo":
        data = environ["wsgi.input"].read()
        return _reply(start_response, data, ctype="application/octet-stream")
    if path == "/digest":
        # Reads the body in pieces; answers its length and sha256 (for large uploads).
        stream, digest, total = environ["wsgi.input"], hashlib.sha256(), 0
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            total += len(chunk)
        return _reply(start_response, f"{total} {digest.hexdigest()}".encode())
    if path == "/lines":
        lines = environ["wsgi.input"].readlines()
        return _reply(start_response, str(len(lines)).encode())
    if path == "/big":
        size = int(params.get("size", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])
        return _big(size)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (f"part {i}\n".encode() for i in range(int(params.get("n", "3"))))
    if path == "/slow":
        time.sleep(int(params.get("ms", "100")) / 1000)
        return _reply(start_response, b"slow done")
    if path == "/hold":
        print(f"holding {params.get('tag', '')}", file=sys.stderr, flush=True)
        RELEASE.wait(30)
        return _reply(start_response, b"released")
    if path == "/recycle-me":
        from webgarden.worker import request_recycle

        return _reply(start_response, b"asked" if request_recycle() else b"not a worker")
    if path == "/grow":
        GROWN.append(b"g" * (int(params.get("mb", "100")) * 1024 * 1024))  # touched: resident
        return _reply(start_response, b"grown")
    if path == "/reserve":
        import mmap  # address space only: the virtual size grows, the resident one does not

        GROWN.append(mmap.mmap(-1, int(params.get("mb", "100")) * 1024 * 1024))
        return _reply(start_response, b"reserved")
    if path in ("/cached", "/cached-cookie", "/cached-private"):
        CALLS[path] = CALLS.get(path, 0) + 1
        control = "private, max-age=60" if path == "/cached-private" else "public, max-age=60"
        headers = [("Content-Type", "text/plain"), ("Cache-Control", control)]
        if path == "/cached-cookie":
            headers.append(("Set-Cookie", "session=abc"))
        body = f"call {CALLS[path]}".encode()
        start_response("200 OK", [*headers, ("Content-Length", str(len(body)))])
        return [body]
    if path in ("/cached-gen", "/cached-gen-big", "/uncached-gen"):
        # Generators, not lists: the response cache must not depend on the iterable's type.
        CALLS[path] = CALLS.get(path, 0) + 1
        control = "no-cache" if path == "/uncached-gen" else "public, max-age=60"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Cache-Control", control)])
        pieces = int(params.get("pieces", "3"))
        size = 300 * 1024 if path == "/cached-gen-big" else 0
        return (piece for piece in [f"call {CALLS[path]}".encode()]
                + [b"." * (size // pieces)] * pieces)
    if path == "/text":
        body = b"All work and no play makes a dull garden.\n" * int(params.get("lines", "100"))
        return _reply(start_response, body, ctype="text/plain; charset=utf-8")
    if path == "/crash":
        os._exit(70)  # the worker dies in the middle of a request
    if path == "/spin":
        # Catastrophic backtracking: the regex engine runs in C and holds the GIL throughout,
        # so the whole interpreter, the worker's reader thread included, stops.
        import re

        re.match(r"(a+)+$", "a" * int(params.get("n", "30")) + "b")
        return _reply(start_response, b"spun")
    if path == "/error":
        raise RuntimeError("boom: the test app failed on purpose")
    if path == "/error-after-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _fail_midway()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"and returned"]
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                           sys.exc_info())
        return [b"replaced"]
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingIterable([b"a", b"b"], params.get("tag", "x"))
    if path == "/close-error":
        start_response("200 OK", [("Content-Type", "text/plain")])

        class Failing(ClosingIterable):
            def __iter__(self):
                yield b"a"
                raise RuntimeError("iteration failed")

        return Failing([], params.get("tag", "x"))
    if path == "/file":
        f = open(params["path"], "rb")  # noqa: SIM115
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f)
    if path == "/environ":
        keys = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
                "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "CONTENT_TYPE",
                "CONTENT_LENGTH", "HTTP_HOST", "HTTP_X_TEST", "wsgi.url_scheme",
                "webgarden.pool", "REQUEST_URI"]
        data = {k: environ.get(k) for k in keys}
        return _reply(start_response, json.dumps(data).encode(), ctype="application/json")
    if path == "/headers":
        data = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
        return _reply(start_response, json.dumps(data).encode(), ctype="application/json")
    if path == "/drip":
        # Every byte of its Content-Length goes out in pieces; then the response waits for
        # SIGUSR1 before it ends, so its END frame comes after the client has it all.
        parts = [f"drop {i}\n".encode() for i in range(int(params.get("n", "3")))]
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(sum(map(len, parts))))])
        return _drip(parts)
    return _reply(start_response, b"no such route", status="404 Not Found")


def _drip(parts):
    yield from parts
    print("dripped", file=sys.stderr, flush=True)
    RELEASE.wait(30)


def _big(size: int):
    while size > 0:
        piece = CHUNK if size >= len(CHUNK) else CHUNK[:size]
        size -= len(piece)
        yield piece


def _fail_midway():
    yield b"first part"
    raise RuntimeError("failed after the head was sent")


def validated():
    from wsgiref.validate import validator

    return validator(application)


validated_app = validated()
