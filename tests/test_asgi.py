"""The worker's ASGI host (ASGI 3, http scopes), through real servers and real clients."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from harness import Client, free_port


@pytest.fixture
def server(start_server):
    return start_server("asgiapp:app")


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_the_http_scope_is_complete_to_the_asgi_spec(server) -> None:
    response = httpx.get(f"{server.url}/scope?q=%20x&y=2", headers={"X-Test": "Yes"})
    scope = response.json()
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert (scope["http_version"], scope["method"], scope["scheme"]) == ("1.1", "GET", "http")
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("/scope", "/scope", "")
    assert scope["query_string"] == "q=%20x&y=2"
    assert ["x-test", "Yes"] in scope["headers"]  # names lower case, values as sent
    assert all(name == name.lower() for name, _ in scope["headers"])
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", server.port]
    assert scope["extensions"] == {"http.response.pathsend": {}}
    assert scope["state"]["db"].startswith("connection of ")  # from lifespan startup


def test_a_path_is_decoded_into_characters_and_raw_path_keeps_the_bytes(server) -> None:
    scope = httpx.get(f"{server.url}/scope/caf%C3%A9").json()
    assert scope["path"] == "/scope/café" and scope["raw_path"] == "/scope/caf%C3%A9"


def test_request_bodies_stream_in_messages_with_more_body(server) -> None:
    body = os.urandom(3 * 1024 * 1024)  # three request windows: credit must flow back

    def pieces():
        for i in range(0, len(body), 256 * 1024):
            yield body[i:i + 256 * 1024]

    response = httpx.post(f"{server.url}/echo", content=pieces(), timeout=60)
    echoed, _, count = response.content.rpartition(b"\n")
    assert echoed == body
    assert int(count.split()[0]) > 1  # delivered in several http.request messages


def test_responses_stream_piece_by_piece(server) -> None:
    with httpx.stream("GET", f"{server.url}/stream?n=5") as response:
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.read() == b"".join(f"part {i}\n".encode() for i in range(5))


def test_a_slow_reader_holds_back_only_its_own_stream(server) -> None:
    size = 64 * 1024 * 1024  # far more than the socket buffers and the response window
    slow = Client(server.port)
    slow.send(_get(f"/big?size={size}"))
    slow.sock.recv(1024)  # the response has started; then this client stops reading
    with httpx.Client(base_url=server.url) as http:
        for _ in range(20):  # the worker's loop serves others meanwhile
            assert http.get("/hello").text == "Hello, World!"
    received = 1024
    while received < size:  # the stalled stream resumes when its client reads again
        chunk = slow.sock.recv(1 << 20)
        assert chunk
        received += len(chunk)
    slow.close()


def test_http_disconnect_arrives_when_the_client_leaves(server) -> None:
    client = Client(server.port)
    client.send(_get("/disconnect"))
    received = b""
    while b"waiting" not in received:  # the head, then the first piece of the body
        received += client.sock.recv(4096)
    client.close()
    assert httpx.get(f"{server.url}/seen/disconnect", timeout=40).text == "seen"


def test_a_send_after_the_client_left_raises_an_oserror_in_the_app(server) -> None:
    client = Client(server.port)
    client.send(_get(f"/big?size={256 * 1024 * 1024}"))
    client.sock.recv(1024)
    client.close()
    assert httpx.get(f"{server.url}/seen/big-refused", timeout=40).text == "seen"


def test_pathsend_is_sent_by_the_listener_zero_copy(server, shared_tmp: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = shared_tmp / "blob.bin"
    path.write_bytes(data)
    with httpx.Client(base_url=server.url) as http:
        for _ in range(3):  # several on one connection: each ends where it should
            response = http.get("/pathsend", params={"file": str(path)})
            assert response.headers["content-length"] == str(len(data))
            assert response.content == data
        head = http.head("/pathsend", params={"file": str(path)})
        assert head.headers["content-length"] == str(len(data)) and head.content == b""
    # Zero copy: the worker never framed the file's bytes (a read and a streamed copy would
    # be sent chunked, without a length known in advance).
    assert "Transfer-Encoding" not in response.headers


def test_an_exception_before_the_response_is_a_500_with_the_traceback_only_in_the_log(
        server) -> None:
    response = httpx.get(f"{server.url}/error-before")
    assert response.status_code == 500
    assert b"boom" not in response.content and b"Traceback" not in response.content
    server.stop()
    assert "RuntimeError: boom before the response" in server.stderr
    assert "Traceback" in server.stderr


def test_an_app_that_returns_without_a_response_gets_a_500_and_a_log_line(server) -> None:
    assert httpx.get(f"{server.url}/no-response").status_code == 500
    assert httpx.get(f"{server.url}/start-only").status_code == 500
    server.stop()
    assert "returned without a response to GET /no-response" in server.stderr
    assert "returned without a response to GET /start-only" in server.stderr


def test_an_exception_after_the_head_aborts_the_stream(server) -> None:
    client = Client(server.port)
    client.send(_get("/error-after"))
    with pytest.raises((AssertionError, ConnectionError, OSError, ValueError)):
        client.read_response()  # the chunked body never ends: the connection closes
    # The worker carries on.
    assert httpx.get(f"{server.url}/hello").text == "Hello, World!"
    server.stop()
    assert "RuntimeError: boom after the head" in server.stderr


def test_messages_sent_after_the_response_is_complete_are_dropped_and_logged(server) -> None:
    response = httpx.get(f"{server.url}/after-complete")
    assert response.content == b"done"
    server.stop()
    assert "dropped 'http.response.body' sent after the response to GET /after-complete" in (
        server.stderr)


def test_a_header_with_a_line_break_is_refused_with_a_500(server) -> None:
    response = httpx.get(f"{server.url}/bad-header")
    assert response.status_code == 500 and "set-cookie" not in response.headers


def test_a_public_response_streamed_in_pieces_is_cached_by_the_listener(server) -> None:
    with httpx.Client(base_url=server.url) as http:
        bodies = [http.get("/cached").text for _ in range(5)]
    # HTTP.sys's rule: stored on its second request, then the app is not called.
    assert bodies[:2] == ["call 1", "call 2"] and set(bodies[2:]) == {"call 2"}
    shown = server.admin("cache", "stats", "--json")
    assert json.loads(shown.stdout)["hits"] == 3


def test_dynamic_compression_packs_whole_and_streamed_asgi_responses(server) -> None:
    plain = ("compress me " * 500).encode()
    for query in ("", "&stream=1"):
        response = httpx.get(f"{server.url}/text?n=500{query}",
                             headers={"Accept-Encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Encoding"
        assert response.content == plain  # httpx decodes it
    raw = subprocess.run(["curl", "-s", "-H", "Accept-Encoding: gzip",
                          f"{server.url}/text?n=500"], capture_output=True, timeout=30).stdout
    assert gzip.decompress(raw) == plain and len(raw) < len(plain) // 10


def test_executing_and_logged_asgi_requests_are_seen_by_list_requests_and_w3c(
        start_server, tmp_path: Path) -> None:
    server = start_server("asgiapp:app", "--log-dir", str(tmp_path / "logs"))
    slow = Client(server.port)
    slow.send(_get("/slow"))
    listed = ""
    for _ in range(100):  # until the listener has dispatched it
        listed = server.admin("list", "requests").stdout
        if "/slow" in listed:
            break
    assert "/slow" in listed
    assert httpx.get(f"{server.url}/release").text == "ok"
    assert slow.read_response()[2] == b"released"
    server.stop()
    logs = list((tmp_path / "logs").rglob("*.log"))
    text = "".join(p.read_text() for p in logs)
    assert "GET /slow" in text and " 200 " in text


CONFIG = """<configuration><system.applicationHost>
    <applicationPools>
      <add name="P" startMode="AlwaysRunning" threads="2" {attrs}>
        <processModel maxProcesses="1" shutdownTimeLimit="00:00:03" />
        <failure {failure} />
      </add>
    </applicationPools>
    <sites><site name="s" id="1">
      <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
      <application path="/" applicationPool="P" app="asgiapp:app" />
      <application path="/shop" applicationPool="P" app="asgiapp:instance" />
      <application path="/wsgi" applicationPool="P" app="asgiapp:wsgi" />
    </site></sites>
</system.applicationHost></configuration>
"""


def serve_config(start_server, tmp_path: Path, attrs: str = "", failure: str = ""):
    port = free_port()
    config = tmp_path / "asgi.config"
    config.write_text(CONFIG.format(port=port, attrs=attrs, failure=failure))
    server = start_server("serve", "-c", str(config))
    server.port = port
    server.url = f"http://127.0.0.1:{port}"
    server.wait_event(lambda e: e["event"] == "worker.ready")
    return server


def test_an_asgi_and_a_wsgi_app_share_a_site_and_a_worker(start_server, tmp_path: Path) -> None:
    server = serve_config(start_server, tmp_path)
    with httpx.Client(base_url=server.url) as http:
        asgi_pid = http.get("/pid").text
        assert http.get("/wsgi/").text == f"wsgi {asgi_pid}"  # one worker hosts both
        scope = http.get("/shop/scope").json()
        assert (scope["root_path"], scope["path"], scope["raw_path"]) == (
            "/shop", "/shop/scope", "/shop/scope")
    ready = [e for e in server.events() if e["event"] == "worker.ready"]
    assert ready[0]["capacity"] == 100 + 2 + 6  # asgiConcurrency + threads + prefetch


def test_a_lost_workers_asgi_get_is_sent_again_once_and_then_502(start_server,
                                                                 tmp_path: Path) -> None:
    server = serve_config(start_server, tmp_path, failure='rapidFailProtection="false"')
    client = Client(server.port)
    client.send(_get("/crash"))
    status, _, _ = client.read_response()
    assert status == 502
    retries = [e for e in server.events() if e["event"] == "request.retry"]
    assert [e["url"] for e in retries] == ["/crash"]
    server.wait_event(lambda e: e["event"] == "worker.ready", after=1)
    assert httpx.get(f"{server.url}/hello").text == "Hello, World!"


def test_a_hung_coroutine_past_execution_timeout_gets_504_and_its_task_stack_is_logged(
        start_server, tmp_path: Path) -> None:
    server = serve_config(start_server, tmp_path, attrs='executionTimeout="00:00:01"')
    client = Client(server.port)
    client.send(_get("/hang"))
    assert client.read_response()[0] == 504
    stacks = server.wait_event(lambda e: e["event"] == "worker.stacks")
    assert "Thread" in stacks["stacks"]  # faulthandler, then the tasks
    assert "asyncio tasks" in stacks["stacks"]
    assert "asgiapp.py" in stacks["stacks"] and "in app" in stacks["stacks"]


def test_asgi_concurrency_is_the_capacity_and_the_pool_queue_answers_503_beyond_it(
        start_server) -> None:
    server = start_server("asgiapp:app", "--asgi-concurrency", "1", "--queue-length", "10")
    ready = server.wait_event(lambda e: e["event"] == "worker.ready")
    assert ready["capacity"] == 1
    holder = Client(server.port)
    holder.send(_get("/disconnect"))  # holds the worker's one slot until its client leaves
    received = b""
    while b"waiting" not in received:
        received += holder.sock.recv(4096)
    queued = [Client(server.port) for _ in range(12)]
    for client in queued:
        client.send(_get("/hello"))
    refused = server.wait_event(lambda e: e["event"] == "httperr"
                                and e.get("reason") == "QueueFull")
    assert refused["status"] == 503
    holder.close()  # http.disconnect ends it; the queue drains through the freed slot
    statuses = [client.read_response()[0] for client in queued]
    assert statuses.count(200) == 10 and set(statuses) == {200, 503}


def test_a_head_request_gets_the_length_a_get_would_and_no_body(server) -> None:
    with httpx.Client(base_url=server.url) as http:
        head = http.head("/hello")
        assert head.headers["content-length"] == "13" and head.content == b""
        streamed = http.head("/stream")
        assert streamed.status_code == 200 and streamed.content == b""
        assert http.get("/hello").text == "Hello, World!"  # the connection carries on
