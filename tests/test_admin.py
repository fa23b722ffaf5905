"""The control socket and the appcmd-style verbs, against a real server."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from harness import Client
from test_resilience import _get_many, _wait_for_stderr


def _json(server, *args: str):
    result = server.admin(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_shows_pools_workers_and_executing_and_queued_requests(start_server) -> None:
    server = start_server("testapp:application", "--workers", "2", "--threads", "1",
                          "--prefetch", "0")
    server.wait_event(lambda e: e["event"] == "worker.ready", after=0)
    pools = _json(server, "list", "apppools")
    assert pools[0]["name"] == "DefaultAppPool" and pools[0]["state"] == "Started"
    holders = [Client(server.port) for _ in range(3)]
    for i, holder in enumerate(holders):
        holder.send(b"GET /hold?tag=h%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
    _wait_for_stderr(server, "holding h")
    while len([r for r in _json(server, "list", "requests") if r["state"] == "queued"]) != 1:
        pass  # the third request reaches the queue: both workers hold one each
    requests = _json(server, "list", "requests")
    executing = [r for r in requests if r["state"] == "executing"]
    assert len(executing) == 2 and {r["url"] for r in requests} <= {
        "/hold?tag=h0", "/hold?tag=h1", "/hold?tag=h2"}
    workers = _json(server, "list", "wp")
    assert {w["pid"] for w in workers} == {r["pid"] for r in executing}
    assert all(w["state"] == "Ready" and w["rss"] > 0 for w in workers)
    table = server.admin("list", "wp")
    assert table.returncode == 0 and "pid" in table.stdout.splitlines()[0]
    for pid in server.worker_pids():
        os.kill(pid, signal.SIGUSR1)
    for holder in holders:
        assert holder.read_response()[0] == 200


def test_the_control_socket_is_owner_only(start_server) -> None:
    server = start_server("testapp:application")
    mode = stat.S_IMODE(os.stat(server.control).st_mode)
    assert mode == 0o600


def test_recycle_apppool_replaces_every_worker_without_a_failed_request(start_server) -> None:
    server = start_server("testapp:application", "--workers", "2")
    first = server.wait_event(lambda e: e["event"] == "worker.ready")
    server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != first["pid"])
    before = set(server.worker_pids())
    done = threading.Event()
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(_get_many, server.port, ["/slow?ms=2"] * 100) for _ in range(8)]
        answer = _json(server, "recycle", "apppool", "DefaultAppPool")
        assert set(answer["recycling"]) == before
        results = [f.result() for f in futures]
    done.set()
    statuses = [s for batch in results for s in batch]
    assert set(statuses) == {200}
    event = server.wait_event(lambda e: e["event"] == "pool.recycle")
    assert event["reason"] == "OnDemand"
    for pid in before:
        server.wait_event(lambda e, pid=pid: e["event"] == "worker.exit" and e["pid"] == pid)
    assert set(server.worker_pids()).isdisjoint(before) and len(server.worker_pids()) == 2


def test_a_stopped_pool_answers_503_and_start_brings_it_back(start_server) -> None:
    server = start_server("testapp:application")
    assert _json(server, "stop", "apppool", "DefaultAppPool")["state"] == "Stopping"
    response = httpx.get(f"{server.url}/hello")
    assert response.status_code == 503 and "HTTP Error 503" in response.text
    server.wait_event(lambda e: e["event"] == "pool.state" and e["state"] == "Stopped")
    assert _json(server, "list", "wp") == []
    assert _json(server, "start", "apppool", "DefaultAppPool")["state"] == "Starting"
    server.wait_event(lambda e: e["event"] == "pool.state" and e["state"] == "Started",
                      after=len(server.events()) - 1)
    assert httpx.get(f"{server.url}/hello").text == "Hello, World!"


def test_verbs_on_an_unknown_pool_or_without_a_server_are_clear_errors(start_server, tmp_path) -> None:
    server = start_server("testapp:application")
    result = server.admin("recycle", "apppool", "NoSuchPool")
    assert result.returncode == 2 and "no application pool named 'NoSuchPool'" in result.stderr
    server.control = str(tmp_path / "nothing.sock")
    result = server.admin("list", "apppools")
    assert result.returncode == 2 and "no webgarden server is listening" in result.stderr


def test_verbs_answer_people_in_text_and_programs_in_json(start_server) -> None:
    server = start_server("testapp:application")
    server.wait_event(lambda e: e["event"] == "worker.ready")
    stats = server.admin("cache", "stats")
    assert stats.returncode == 0, stats.stderr
    lines = stats.stdout.splitlines()
    assert [line.split()[0] for line in lines][:3] == ["entries", "bytes", "hits"]
    assert lines[1].split(None, 1)[1] == "0 B" and "{" not in stats.stdout
    assert _json(server, "cache", "stats")["bytes"] == 0
    pid = server.worker_pids()[0]
    recycled = server.admin("recycle", "apppool", "DefaultAppPool")
    assert recycled.returncode == 0, recycled.stderr
    assert recycled.stdout == (f"recycling application pool 'DefaultAppPool'; "
                               f"replacing worker(s) {pid}\n")
    flushed = server.admin("cache", "flush")
    assert flushed.stdout == "flushed 0 cache entries\n"


def test_list_wp_shows_memory_in_binary_units(start_server) -> None:
    server = start_server("testapp:application")
    server.wait_event(lambda e: e["event"] == "worker.ready")
    table = server.admin("list", "wp").stdout.splitlines()
    header = table[0].split()
    rss = table[1].split()[header.index("rss"):][:2]  # "12.3 MiB": a number and a unit
    assert float(rss[0]) > 0 and rss[1] in ("KiB", "MiB", "GiB"), table
    assert isinstance(_json(server, "list", "wp")[0]["rss"], int)  # bytes, for programs
