"""Queues, worker deaths and shutdown: nothing queued is lost, nothing in flight is dropped."""

from __future__ import annotations

import http.client
import os
import select
import signal
from concurrent.futures import ThreadPoolExecutor

from harness import Client, WorkerKiller


def _get_many(port: int, paths: list[str]) -> list[int]:
    """GET each path on one keep-alive connection; the statuses (0: a connection failure)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses = []
    for path in paths:
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        except (OSError, http.client.HTTPException):
            statuses.append(0)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    return statuses


def test_every_response_is_200_while_a_worker_is_killed_every_300_ms(start_server) -> None:
    server = start_server("testapp:application", "--workers", "2", "--threads", "4",
                          "--rapid-fail-max-crashes", "0")
    with WorkerKiller(server, 0.3) as killer, ThreadPoolExecutor(50) as pool:
        # 0.3 s: the fault's period, as the issue states it
        results = list(pool.map(lambda _: _get_many(server.port, ["/slow?ms=5"] * 40), range(50)))
    kills = killer.killed
    statuses = [s for batch in results for s in batch]
    assert len(statuses) == 2000
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert len(kills) >= 3, "the load ended before enough workers were killed"
    for pid in kills:
        server.wait_event(lambda e, pid=pid: e["event"] == "worker.exit" and e["pid"] == pid)


def test_a_full_queue_gives_503_with_retry_after_and_queued_requests_are_then_served(start_server) -> None:
    server = start_server(
        "testapp:application", "--threads", "1", "--prefetch", "0", "--queue-length", "2"
    )
    holder = Client(server.port)
    holder.send(b"GET /hold?tag=first HTTP/1.1\r\nHost: a\r\n\r\n")
    _wait_for_stderr(server, "holding first")
    clients = [Client(server.port) for _ in range(3)]
    for i, client in enumerate(clients):
        client.send(b"GET /hello?mark=q%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
    # The queue holds two; whichever of the three came third is refused at once.
    readable, _, _ = select.select([c.sock for c in clients], [], [], 30)
    assert len(readable) >= 1
    refused = next(c for c in clients if c.sock is readable[0])
    status, headers, body = refused.read_response()
    assert status == 503 and headers["retry-after"] == "1"
    assert b"HTTP Error 503. The service is unavailable." in body
    os.kill(server.worker_pids()[0], signal.SIGUSR1)  # release the held request
    assert holder.read_response()[2] == b"released"
    for client in clients:
        if client is not refused:
            assert client.read_response()[0] == 200
    server.wait_event(lambda e: e["event"] == "worker.ready")


def test_a_client_that_leaves_while_queued_is_dropped_from_the_queue(start_server) -> None:
    server = start_server("testapp:application", "--threads", "1", "--prefetch", "0")
    holder = Client(server.port)
    holder.send(b"GET /hold?tag=h HTTP/1.1\r\nHost: a\r\n\r\n")
    _wait_for_stderr(server, "holding h")
    leaver = Client(server.port)
    leaver.send(b"GET /hello?mark=leaver HTTP/1.1\r\nHost: a\r\n\r\n")
    stayer = Client(server.port)
    stayer.send(b"GET /hello?mark=stayer HTTP/1.1\r\nHost: a\r\n\r\n")
    leaver.close()
    server.wait_event(lambda e: e["event"] == "request.dropped" and "leaver" in e["url"])
    os.kill(server.worker_pids()[0], signal.SIGUSR1)
    assert holder.read_response()[2] == b"released"
    assert stayer.read_response()[0] == 200
    server.stop()
    assert "served stayer" in server.stderr and "served leaver" not in server.stderr


def test_queued_requests_wait_for_a_restarted_worker_and_are_then_served(start_server) -> None:
    server = start_server("testapp:application", "--threads", "1", "--prefetch", "0")
    holder = Client(server.port)
    holder.send(b"POST /hold?tag=h HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
    _wait_for_stderr(server, "holding h")
    queued = [Client(server.port) for _ in range(5)]
    for client in queued:
        client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # The POST was running: not safe to send again, so 502; the queued GETs are served by
    # the replacement.
    assert holder.read_response()[0] == 502
    pids = {int(client.read_response()[2]) for client in queued}
    assert victim not in pids and len(pids) == 1
    server.wait_event(lambda e: e["event"] == "request.failed" and e["status"] == 502)


def test_sigterm_during_load_lets_in_flight_and_queued_requests_complete(start_server) -> None:
    server = start_server("testapp:application", "--threads", "2", "--workers", "1")
    clients = [Client(server.port) for _ in range(12)]
    for client in clients:  # every connection is accepted and served once
        client.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.read_response()[0] == 200
    for client in clients:
        client.send(b"GET /slow?ms=150 HTTP/1.1\r\nHost: a\r\n\r\n")
    server.signal(signal.SIGTERM)
    results = [client.read_response() for client in clients]
    assert [r[0] for r in results] == [200] * 12
    assert all(r[2] == b"slow done" for r in results)
    assert all(r[1].get("connection") == "close" for r in results)
    assert server.proc.wait(60) == 0
    events = [e["event"] for e in server.events()]
    assert "server.stopped" in events and "server.drain_incomplete" not in events


def test_a_second_sigint_cuts_the_shutdown_short(start_server) -> None:
    server = start_server("testapp:application", "--threads", "1", "--prefetch", "0")
    holder = Client(server.port)
    holder.send(b"GET /hold?tag=h HTTP/1.1\r\nHost: a\r\n\r\n")
    _wait_for_stderr(server, "holding h")
    server.signal(signal.SIGINT)
    server.wait_event(lambda e: e["event"] == "server.stopping")
    server.signal(signal.SIGINT)
    assert server.proc.wait(30) == 0
    server.wait_event(lambda e: e["event"] == "server.drain_incomplete")


def _wait_for_stderr(server, text: str) -> None:
    """Wait until the server's stderr (which includes the workers') shows `text`."""
    import time

    from harness import _wait_for_growth

    deadline = time.monotonic() + 30
    while text not in server.stderr:
        assert time.monotonic() < deadline, f"{text!r} never appeared in stderr"
        _wait_for_growth(server.stderr_path, os.path.getsize(server.stderr_path), 0.5)


def test_a_prefetched_request_whose_client_left_frees_its_slot(start_server) -> None:
    server = start_server("testapp:application", "--threads", "1", "--prefetch", "2",
                          "--shutdown-time-limit", "20")
    holder = Client(server.port)
    holder.send(b"GET /hold?tag=h HTTP/1.1\r\nHost: a\r\n\r\n")
    _wait_for_stderr(server, "holding h")
    leaver = Client(server.port)  # capacity 3: this one waits inside the worker, prefetched
    leaver.send(b"GET /hello?mark=prefetched-leaver HTTP/1.1\r\nHost: a\r\n\r\n")
    leaver.close()
    server.wait_event(lambda e: e["event"] == "request.dropped")
    os.kill(server.worker_pids()[0], signal.SIGUSR1)
    assert holder.read_response()[2] == b"released"
    # Whether the worker saw the abort before its thread got there or not, the stream ends
    # and its slot is free: the shutdown does not wait for it.
    assert server.stop() == 0
    events = [e["event"] for e in server.events()]
    assert "server.drain_incomplete" not in events and "worker.shutdown_timeout" not in events
