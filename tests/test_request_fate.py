"""The listener owns every request's fate: retry once or 502 on a lost worker, 504 at
executionTimeout, 503 when its pool goes offline. The manager only hears about processes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from harness import Client, free_port
from webgarden.listener import errors
from webgarden.listener.pool_queue import PoolQueue

CONFIG = """<configuration><system.applicationHost>
    <applicationPools>
      <add name="P" startMode="AlwaysRunning" threads="{threads}" prefetch="0" {attrs}>
        <processModel maxProcesses="1" />
        <failure {failure} />
      </add>
    </applicationPools>
    <sites><site name="s" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="P" app="testapp:application" />
    </site></sites>
</system.applicationHost></configuration>
"""


def _serve(start_server, tmp_path: Path, threads: int = 1, attrs: str = "", failure: str = ""):
    port = free_port()
    config = tmp_path / "fate.config"
    config.write_text(CONFIG.format(port=port, threads=threads, attrs=attrs, failure=failure))
    server = start_server("serve", "-c", str(config))
    server.port = port
    return server


def _get(path: str, method: str = "GET", body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)


def _answered_once(client: Client) -> int:
    """The one response the client got; nothing follows it, and the server closes."""
    status, _, _ = client.read_response()
    assert client.closed_by_server(), f"more than one answer: {client.buf!r}"
    return status


class _Waiting:
    """A queued request as the queue sees it: it counts how it was answered."""

    def __init__(self) -> None:
        self.pages: list[errors.ErrorPage] = []
        self.resets = 0
        self.conn = self

    def fail(self, page: errors.ErrorPage) -> None:
        self.pages.append(page)

    def abort(self) -> None:
        self.resets += 1


def test_go_offline_answers_each_waiting_request_once_and_refuses_new_ones() -> None:
    queue = PoolQueue("p", 10)
    waiting = [_Waiting() for _ in range(3)]
    for request in waiting:
        assert queue.submit(request) is None  # no worker: they wait
    assert queue.go_offline(errors.APP_OFFLINE) == 3
    assert [r.pages for r in waiting] == [[errors.APP_OFFLINE]] * 3
    assert not queue.waiting and queue.go_offline(errors.APP_OFFLINE) == 0
    assert [r.pages for r in waiting] == [[errors.APP_OFFLINE]] * 3  # once, not twice
    assert queue.submit(_Waiting()) is errors.APP_OFFLINE
    retried = _Waiting()
    queue.requeue(retried)  # a lost worker's request, sent again to an offline pool
    assert retried.pages == [errors.APP_OFFLINE] and not queue.waiting
    queue.go_online()
    assert queue.submit(_Waiting()) is None


def test_go_offline_at_tcp_level_resets_instead_of_answering() -> None:
    queue = PoolQueue("p", 10)
    waiting = [_Waiting() for _ in range(2)]
    for request in waiting:
        queue.submit(request)
    queue.go_offline(errors.APP_OFFLINE, reset=True)
    assert [(r.pages, r.resets) for r in waiting] == [([], 1), ([], 1)]


def test_queued_requests_get_503_once_when_rapid_fail_takes_the_pool_offline(
        start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, failure='rapidFailProtectionMaxCrashes="1"')
    worker = server.wait_event(lambda e: e["event"] == "worker.ready")["pid"]
    busy = Client(server.port)
    busy.send(_get("/slow?ms=30000"))  # the worker's one thread
    queued = [Client(server.port) for _ in range(3)]
    for client in queued:
        client.send(_get("/hello"))
    for _ in range(600):  # the queue is a state: poll it through the control socket
        rows = json.loads(server.admin("list", "apppools", "--json").stdout)
        if rows[0]["queued"] == 3:
            break
    else:
        raise AssertionError(f"the requests never queued: {rows}")
    os.kill(worker, signal.SIGKILL)
    server.wait_event(lambda e: e["event"] == "pool.rapid_fail")
    assert [_answered_once(c) for c in queued] == [503, 503, 503]
    # The request that was running is idempotent: sent again, to a pool now offline: 503.
    assert _answered_once(busy) == 503
    assert len([e for e in server.events() if e["event"] == "pool.rapid_fail"]) == 1


def test_a_lost_workers_get_is_sent_again_once_and_a_post_gets_502(start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, failure='rapidFailProtection="false"')
    server.wait_event(lambda e: e["event"] == "worker.ready")
    client = Client(server.port)
    client.send(_get("/crash"))  # kills every worker it reaches
    assert _answered_once(client) == 502
    retries = [e for e in server.events() if e["event"] == "request.retry"]
    assert [e["url"] for e in retries] == ["/crash"]  # sent again once, not twice
    failed = server.wait_event(lambda e: e["event"] == "request.failed")
    assert (failed["url"], failed["status"], failed["method"]) == ("/crash", 502, "GET")
    server.wait_event(lambda e: e["event"] == "worker.ready", after=len(server.events()) - 1)
    mark = len(server.events())
    client = Client(server.port)
    client.send(_get("/crash", "POST", b"not safe to send twice"))
    assert _answered_once(client) == 502
    failed = server.wait_event(lambda e: e["event"] == "request.failed", after=mark)
    assert failed["method"] == "POST"
    assert not [e for e in server.events()[mark:] if e["event"] == "request.retry"]
    # The pool carries on: the replacement serves.
    server.wait_event(lambda e: e["event"] == "worker.ready", after=mark)
    client = Client(server.port)
    client.send(_get("/hello"))
    assert client.read_response()[0] == 200


def test_a_request_past_execution_timeout_gets_504_and_its_worker_is_recycled(
        start_server, tmp_path) -> None:
    server = _serve(start_server, tmp_path, threads=2, attrs='executionTimeout="00:00:01"')
    worker = server.wait_event(lambda e: e["event"] == "worker.ready")["pid"]
    client = Client(server.port)
    client.send(_get("/slow?ms=15000"))
    assert _answered_once(client) == 504
    timeout = server.wait_event(lambda e: e["event"] == "request.timeout")
    assert (timeout["pid"], timeout["url"], timeout["limit"]) == (worker, "/slow?ms=15000", 1.0)
    recycle = server.wait_event(lambda e: e["event"] == "pool.recycle")
    assert (recycle["reason"], recycle["pids"]) == ("ExecutionTimeout", [worker])
    # The late request is answered once: no second 504 while the worker finishes it.
    assert len([e for e in server.events() if e["event"] == "request.timeout"]) == 1
