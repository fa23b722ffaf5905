"""Per-request CPU cost of the listener's and the worker's Python paths, without sockets.

    .venv/bin/python bench/micro.py [--requests N]

The listener part drives the real `HttpConnection`, `Exchange`, pool queue and `WorkerLink`
with transports that only collect bytes; a canned worker answers every REQUEST frame with
a RESPONSE frame. The cache-hit parts send a GET whose response said `Cache-Control:
public`: after `frequentHitThreshold` misses the response cache's fast path answers it,
without a worker; "fast path" repeats the same bytes (answered without the parser),
"parsed" alternates two User-Agents (each head parsed, answered when it is complete).
The worker part runs the real `WSGIHost.handle` on decoded requests with
a channel whose socket only counts bytes. Syscalls are left out on purpose, but for the
W3C log's (one write(2) per 64 KB of lines, to a temporary directory): what remains is the
Python work per request, which is what a change to the hot path changes. Numbers are
microseconds of this process's CPU time (not wall time: other processes on a shared
machine do not count) per request, best of 5 runs: stable enough to compare two commits.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import tempfile
import time
from typing import Any

import uvloop

from webgarden.config.model import ServerConfig, single_app
from webgarden.events import EventLog
from webgarden.ipc import frames, messages
from webgarden.ipc.frames import FLAG_END, FrameType
from webgarden.listener.connection import HttpConnection
from webgarden.listener.pool_queue import PoolQueue
from webgarden.listener.server import Listener
from webgarden.listener.upstream import WorkerLink
from webgarden.worker.channel import Channel, Stream
from webgarden.worker.wsgi import WSGIHost

REQUEST = b"GET /hello HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n"
RESPONSE = messages.encoder.encode(
    messages.ResponseHead(
        200, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: webgarden\r\n", 13,
        b"Hello, World!",
    )
)
CACHED_REQUEST = b"GET /cached HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: wrk\r\n\r\n"
CACHED_RESPONSE = messages.encoder.encode(
    messages.ResponseHead(
        200, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: webgarden\r\n"
        b"Cache-Control: public, max-age=3600\r\n", 13, b"Hello, World!",
    )
)


class SinkTransport:
    def __init__(self, sockname: tuple[str, int] = ("127.0.0.1", 8080)) -> None:
        self.sockname = sockname
        self.written = 0
        self.chunks: list[bytes] = []

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": self.sockname}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, data: list[bytes]) -> None:
        self.chunks.extend(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


def listener_cost(n: int, log_dir: str) -> float:
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    config = _logging_to(single_app("x:app", port=8080), log_dir)
    queues = {"DefaultAppPool": PoolQueue("DefaultAppPool", 1000)}
    listener = Listener(config, queues, EventLog(None))
    pool = queues["DefaultAppPool"]
    link = WorkerLink(lambda t, p: None, lambda link, lost: None, lambda link: pool.pump())
    upstream_transport = SinkTransport()
    link.connection_made(upstream_transport)
    link.capacity = 1 << 30
    link.apps = {app: i for i, app in enumerate(config.applications_of("DefaultAppPool"))}
    queues["DefaultAppPool"].add_upstream(link)
    conn = HttpConnection(listener, 8080)
    client_transport = SinkTransport()
    conn.connection_made(client_transport)
    decoder = frames.FrameDecoder()
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            conn.data_received(REQUEST)
            link._flush()
            out = b"".join(upstream_transport.chunks)
            upstream_transport.chunks.clear()
            replies = [
                frames.encode(FrameType.RESPONSE, f.stream, RESPONSE, FLAG_END)
                for f in decoder.feed(out)
                if f.type == FrameType.REQUEST
            ]
            link.data_received(b"".join(replies))
            link._flush()
            upstream_transport.chunks.clear()
        best = min(best, (time.process_time() - start) / n)
    if client_transport.written < n * len(b"Hello, World!"):
        raise SystemExit("micro: the listener did not answer the requests; the bench is broken")
    # Subtract the canned worker's own work (decode and encode of the frames).
    start = time.process_time()
    sample = frames.encode(FrameType.REQUEST, 1, b"x" * 120, FLAG_END)
    for _ in range(n):
        for f in decoder.feed(sample):
            frames.encode(FrameType.RESPONSE, f.stream, RESPONSE, FLAG_END)
    harness = (time.process_time() - start) / n
    listener.close()
    loop.close()
    return (best - harness) * 1e6


def cache_hit_cost(n: int, log_dir: str, parsed: bool = False) -> float:
    """A cache hit's cost. `parsed`: two requests that differ in User-Agent alternate, so
    each is parsed and answered when its head is complete; otherwise the same bytes repeat
    and are answered without the parser (a client repeating itself, as wrk does)."""
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    config = _logging_to(single_app("x:app", port=8080), log_dir)
    queues = {"DefaultAppPool": PoolQueue("DefaultAppPool", 1000)}
    listener = Listener(config, queues, EventLog(None))
    pool = queues["DefaultAppPool"]
    link = WorkerLink(lambda t, p: None, lambda link, lost: None, lambda link: pool.pump())
    upstream_transport = SinkTransport()
    link.connection_made(upstream_transport)
    link.capacity = 1 << 30
    link.apps = {app: i for i, app in enumerate(config.applications_of("DefaultAppPool"))}
    pool.add_upstream(link)
    conn = HttpConnection(listener, 8080)
    client_transport = SinkTransport()
    conn.connection_made(client_transport)
    decoder = frames.FrameDecoder()
    for _ in range(config.server_runtime.frequent_hit_threshold + 2):  # misses, then a hit
        conn.data_received(CACHED_REQUEST)
        link._flush()
        replies = [frames.encode(FrameType.RESPONSE, f.stream, CACHED_RESPONSE, FLAG_END)
                   for f in decoder.feed(b"".join(upstream_transport.chunks))
                   if f.type == FrameType.REQUEST]
        upstream_transport.chunks.clear()
        link.data_received(b"".join(replies))
    requests = [CACHED_REQUEST.replace(b"wrk", b"browser %d" % i) if parsed
                else CACHED_REQUEST for i in range(2)]
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for i in range(n):
            conn.data_received(requests[i & 1])
        best = min(best, (time.process_time() - start) / n)
    link._flush()
    if upstream_transport.chunks:
        raise SystemExit("micro: cache hits reached the worker; the bench is broken")
    listener.close()
    loop.close()
    return best * 1e6


def _logging_to(config: ServerConfig, directory: str) -> ServerConfig:
    sites = tuple(dataclasses.replace(s, log_file=dataclasses.replace(s.log_file,
                                                                      directory=directory))
                  for s in config.sites)
    return dataclasses.replace(config, sites=sites)


def worker_cost(n: int) -> float:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
        return [b"Hello, World!"]

    a, b = socket.socketpair()
    channel = Channel(a)
    sent = [0]

    def send(data: bytes) -> None:
        sent[0] += len(data)

    channel.send = send  # type: ignore[method-assign]
    host = WSGIHost([app], channel, "DefaultAppPool")
    head = messages.RequestHead(
        0, "GET", b"/hello", "/hello", "", b"", "HTTP/1.1",
        [(b"Host", b"localhost:8080"), (b"User-Agent", b"wrk")],
        ("127.0.0.1", 40000), ("127.0.0.1", 8080),
    )
    payload = frames.encode(FrameType.REQUEST, 1, messages.encoder.encode(head), FLAG_END)
    decoder = frames.FrameDecoder()
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(n):
            for _, _flags, sid, body in decoder.feed(payload):
                stream = Stream(sid, messages.request_decoder.decode(body), True)
                channel.streams[sid] = stream
                host.handle(stream)
                channel.finish(stream)
        best = min(best, (time.process_time() - start) / n)
    a.close()
    b.close()
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="webgarden-micro-") as log_dir:
        print(f"listener Python path: {listener_cost(args.requests, log_dir):6.2f} us/request")
        print(f"cache hit (fast path): {cache_hit_cost(args.requests, log_dir):5.2f} us/request")
        print(f"cache hit (parsed):    "
              f"{cache_hit_cost(args.requests, log_dir, parsed=True):5.2f} us/request")
    print(f"worker Python path:   {worker_cost(args.requests):6.2f} us/request")


if __name__ == "__main__":
    main()
