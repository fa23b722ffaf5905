"""1 GB each way with bounded memory, and a slow reader that stalls nobody else.

Stated bound: the server process (the listener) and the worker each stay below
`RSS_BOUND` resident memory while a gigabyte passes through them. Flow control holds each
stream to a 1 MiB window, so the real growth is a few MiB.
"""

from __future__ import annotations

import hashlib
import socket
import threading

import httpx
import psutil
import pytest

from harness import Client

GIB = 1024 * 1024 * 1024
RSS_BOUND = 120 * 1024 * 1024

pytestmark = pytest.mark.slow


class RssWatch:
    """Samples the peak RSS of processes from another thread until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(pid) for pid in pids]
        self.peak = {pid: 0 for pid in pids}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.05):  # a sampling period, not a synchronization
            for proc in self.procs:
                self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)

    def finish(self) -> dict[int, int]:
        self.stop.set()
        self.thread.join()
        return self.peak


def test_a_1_gb_upload_reaches_the_app_with_bounded_memory(start_server) -> None:
    server = start_server("testapp:application", "--threads", "2")
    watch = RssWatch([server.proc.pid, *server.worker_pids()])
    block = b"\x5a" * (1024 * 1024)
    digest = hashlib.sha256()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    sock.sendall(b"POST /digest HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % GIB)
    for _ in range(GIB // len(block)):
        sock.sendall(block)
        digest.update(block)
    client = Client.__new__(Client)
    client.sock, client.buf = sock, b""
    status, _, body = client.read_response()
    peaks = watch.finish()
    assert status == 200 and body == f"{GIB} {digest.hexdigest()}".encode()
    for pid, peak in peaks.items():
        assert peak < RSS_BOUND, f"process {pid} reached {peak / 2**20:.0f} MiB"


def test_a_1_gb_download_to_a_slow_reader_keeps_memory_bounded_and_stalls_no_one(start_server) -> None:
    server = start_server("testapp:application", "--threads", "4")
    watch = RssWatch([server.proc.pid, *server.worker_pids()])
    slow = Client(server.port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    slow.send(b"GET /big?size=%d HTTP/1.1\r\nHost: a\r\n\r\n" % GIB)
    first = slow.sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 OK")
    # The slow reader now reads nothing; its stream backs up to its window. Meanwhile the
    # same worker serves other requests at once.
    with httpx.Client(base_url=server.url) as http:
        for _ in range(20):
            assert http.get("/hello").text == "Hello, World!"
    received = len(first.partition(b"\r\n\r\n")[2])
    while received < GIB:
        chunk = slow.sock.recv(1 << 20)
        assert chunk, "the download ended early"
        received += len(chunk)
    peaks = watch.finish()
    assert received == GIB
    for pid, peak in peaks.items():
        assert peak < RSS_BOUND, f"process {pid} reached {peak / 2**20:.0f} MiB"
