"""WebSocket echo, messages per second over 50 connections: webgarden against uvicorn
alone and nginx -> uvicorn (issue 10), side by side, alternated, with the CPU each whole
server spends per message.

    .venv/bin/python bench/websocket.py [--rounds N] [--duration S] [--connections N]

The load client is ours (no packaged WebSocket load tool fits): `CLIENT_PROCESSES`
processes, each driving its share of the connections from one epoll loop over raw
sockets. Every connection sends one masked 32-byte text frame, built once, waits for its
echo (34 bytes, unmasked), and sends again: a message in flight per connection, as a chat
or an RPC over WebSocket does. Nothing is negotiated (no permessage-deflate: the same
bytes for every server). The client's own CPU is reported beside the servers', so a
saturated client shows. Results go to bench/results/latest-websocket.json.

Servers: webgarden run (1 worker, ASGI, wsproto in the worker); uvicorn alone (1 worker,
httptools, uvloop, `--ws websockets`, its default when installed); nginx (1 worker
process) -> uvicorn over a Unix socket, `proxy_set_header Upgrade/Connection`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import selectors
import socket
import sys
import time
from multiprocessing import Pipe, Process
from multiprocessing.connection import Connection
from pathlib import Path
from statistics import median

from run import tree_cpu

from harness import (
    APPS_DIR,
    BENCH_DIR,
    HOST,
    Proc,
    Server,
    find_tool,
    module,
    nginx_conf,
    nginx_proc,
    python_env,
    rotate,
    tool,
)

BODY = b"Hello, World!"
CONNECTIONS = 50
CLIENT_PROCESSES = 2
WARMUP_SECONDS = 1.0
RESULTS = BENCH_DIR / "results" / "latest-websocket.json"
PAYLOAD = b"0123456789abcdef0123456789abcdef"  # 32 bytes of text
MASK = b"\x37\xfa\x21\x3d"
#: The client's frame: FIN + text, masked, length 32; and the server's echo, unmasked.
FRAME = bytes((0x81, 0x80 | len(PAYLOAD))) + MASK + bytes(
    b ^ MASK[i % 4] for i, b in enumerate(PAYLOAD))
ECHO = bytes((0x81, len(PAYLOAD))) + PAYLOAD
GOALS = {"nginx-uvicorn": 1.0}


# -- servers ---------------------------------------------------------------------------------

def build_webgarden(server: Server, tmp: Path, port: int) -> list[Proc]:
    exe = find_tool("webgarden")
    head = [exe] if exe else [sys.executable, "-m", "webgarden"]
    argv = [*head, "run", "ws_echo:app", "--bind", f"{HOST}:{port}", "--workers", "1",
            "--event-log", str(tmp / "events.jsonl"), "--log-dir", str(tmp / "logs")]
    return [Proc("webgarden", argv, ("tcp", (HOST, port)), cwd=APPS_DIR, env=python_env())]


def _uvicorn(bind: list[str], ready: tuple[str, object]) -> Proc:
    argv = [sys.executable, "-m", "uvicorn", "ws_echo:app", *bind, "--workers", "1",
            "--http", "httptools", "--loop", "uvloop", "--ws", "websockets", "--no-access-log",
            "--log-level", "warning"]
    return Proc("uvicorn", argv, ready, cwd=APPS_DIR, env=python_env())


def build_uvicorn(server: Server, tmp: Path, port: int) -> list[Proc]:
    return [_uvicorn(["--host", HOST, "--port", str(port)], ("tcp", (HOST, port)))]


def build_nginx_uvicorn(server: Server, tmp: Path, port: int) -> list[Proc]:
    sock = tmp / "uvicorn.sock"
    body = f"""\
    upstream uvicorn {{
        server unix:{sock};
        keepalive 128;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen {HOST}:{port};
        location / {{
            proxy_pass http://uvicorn;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 300s;
        }}
    }}"""
    return [_uvicorn(["--uds", str(sock)], ("unix", str(sock))),
            nginx_proc(tmp, nginx_conf(tmp, body), port)]


def servers() -> list[Server]:
    return [
        Server("webgarden", "webgarden", build_webgarden, expect_body=BODY,
               requires=[module("webgarden", extra=None), module("wsproto", extra=None)],
               description="webgarden run, 1 worker, ASGI, wsproto in the worker"),
        Server("uvicorn", "uvicorn", build_uvicorn, expect_body=BODY,
               requires=[module("uvicorn"), module("websockets")],
               description="uvicorn 1 worker, httptools, uvloop, ws=websockets (its default)"),
        Server("nginx-uvicorn", "nginx→uvicorn", build_nginx_uvicorn, expect_body=BODY,
               requires=[tool("nginx", apt="nginx"), module("uvicorn"), module("websockets")],
               description="nginx 1 worker_process -> uvicorn over a Unix socket"),
    ]


# -- the load client ---------------------------------------------------------------------------

def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /echo HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {data[:60]!r}")
    sock.setblocking(False)
    return sock


def _client(port: int, count: int, warmup: float, duration: float, out: Connection) -> None:
    """One client process: `count` connections, one message in flight on each."""
    socks = [_handshake(port) for _ in range(count)]
    selector = selectors.DefaultSelector()
    pending = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        pending[sock] = 0
        sock.send(FRAME)
    size = len(ECHO)
    start = time.monotonic()
    measure_from = start + warmup
    end = measure_from + duration
    counted = 0
    cpu_start = None
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if cpu_start is None and now >= measure_from:
            cpu_start, counted = os.times(), 0
        for key, _ in selector.select(0.1):
            sock = key.fileobj
            data = sock.recv(65536)  # type: ignore[union-attr]
            if not data:
                raise RuntimeError("a server closed a connection")
            got = pending[sock] + len(data)
            done, pending[sock] = divmod(got, size)
            if done:
                counted += done
                sock.send(FRAME)  # type: ignore[union-attr]
    cpu_end = os.times()
    cpu = ((cpu_end.user - cpu_start.user) + (cpu_end.system - cpu_start.system)
           if cpu_start is not None else 0.0)
    out.send((counted, cpu))
    for sock in socks:
        sock.close()


def load(port: int, connections: int, duration: float) -> tuple[int, float]:
    """(messages echoed in `duration`, the client's CPU seconds)."""
    pipes, procs = [], []
    per = [connections // CLIENT_PROCESSES + (i < connections % CLIENT_PROCESSES)
           for i in range(CLIENT_PROCESSES)]
    for n in per:
        parent, child = Pipe(duplex=False)
        proc = Process(target=_client, args=(port, n, WARMUP_SECONDS, duration, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    return sum(r[0] for r in results), sum(r[1] for r in results)


# -- rounds ----------------------------------------------------------------------------------

def run_slot(server: Server, args: argparse.Namespace) -> dict:
    with server:
        assert server.port is not None
        cpu_before = tree_cpu(server)
        started = time.monotonic()
        messages, client_cpu = load(server.port, args.connections, args.duration)
        # The servers' CPU over the whole slot (warm-up included) is scaled to the measured
        # part by wall time: the warm-up runs at the same rate.
        elapsed = time.monotonic() - started
        server_cpu = (tree_cpu(server) - cpu_before) * args.duration / max(elapsed, 1e-9)
    rate = messages / args.duration
    return {"messages": messages, "messages_per_sec": rate,
            "cpu_us_per_message": server_cpu / messages * 1e6 if messages else None,
            "client_cpu_us_per_message": client_cpu / messages * 1e6 if messages else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    every = servers()
    active = [s for s in every if not s.missing()]
    for s in every:
        if s.missing():
            print(f"skipped {s.label}: {', '.join(r.hint for r in s.missing())}",
                  file=sys.stderr)
    results: dict[str, list[dict]] = {s.key: [] for s in active}
    for r in range(args.rounds):
        for s in rotate(active, r):  # alternated: each server in each position
            print(f"[round {r + 1}/{args.rounds}] {s.label} ...", end=" ", file=sys.stderr,
                  flush=True)
            try:
                record = run_slot(s, args)
                print(f"{record['messages_per_sec']:,.0f} msg/s, "
                      f"{record['cpu_us_per_message']:.1f} µs CPU/msg (client "
                      f"{record['client_cpu_us_per_message']:.1f})", file=sys.stderr,
                      flush=True)
            except Exception as exc:  # one failed slot must not stop the run
                record = {"messages_per_sec": None, "error": str(exc)}
                print(f"FAILED: {exc}", file=sys.stderr, flush=True)
            results[s.key].append({"round": r + 1, **record})
    summary = {}
    for key, records in results.items():
        rates = [x["messages_per_sec"] for x in records if x.get("messages_per_sec")]
        cpus = [x["cpu_us_per_message"] for x in records if x.get("cpu_us_per_message")]
        summary[key] = {"median_messages_per_sec": median(rates) if rates else None,
                        "median_cpu_us_per_message": median(cpus) if cpus else None}
    base = summary.get("webgarden", {}).get("median_messages_per_sec")
    print(f"\nWebSocket echo, {args.connections} connections, {args.duration:g} s x "
          f"{args.rounds} rounds (medians):")
    for s in active:
        row = summary[s.key]
        rate, cpu = row["median_messages_per_sec"], row["median_cpu_us_per_message"]
        ratio = f"webgarden/{s.label} {base / rate:.2f}x" if base and rate else ""
        goal = GOALS.get(s.key)
        verdict = (f" (goal >= {goal}x: {'met' if base / rate >= goal else 'NOT met'})"
                   if goal and base and rate else "")
        print(f"  {s.label:<15} {rate or 0:>10,.0f} msg/s  {cpu or 0:>7.1f} µs CPU/msg  "
              f"{ratio}{verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "suite": "websocket-echo", "issue": 10, "connections": args.connections,
        "duration": args.duration, "rounds": args.rounds, "client_processes": CLIENT_PROCESSES,
        "servers": {s.key: s.description for s in active}, "results": results,
        "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
