"""WebSockets end to end: real servers, the `websockets` client library, raw sockets for
malformed handshakes. The listener validates and tunnels; the worker frames (wsproto)."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from harness import ServerProcess, free_port, raw_request
from test_access_log import wait_for
from tlscerts import CertAuthority, write_pem

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools>
      <add name="WS" startMode="AlwaysRunning" executionTimeout="00:00:01">
        <processModel shutdownTimeLimit="00:00:04" />
      </add>
      <add name="W" startMode="AlwaysRunning" threads="2" />
    </applicationPools>
    <sites>
      <siteDefaults><logFile directory="{logs}" logExtFileFlags="Date, Time, ClientIP,
        Method, UriStem, UriQuery, HttpStatus, Win32Status, BytesSent, BytesRecv, TimeTaken"
        /></siteDefaults>
      <site name="ws" id="4">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
        <application path="/" applicationPool="WS" app="wsapp:app" />
        <application path="/wsgi" applicationPool="W" app="testapp:application" />
      </site>
    </sites>
  </system.applicationHost>
  <system.webServer>
    <webSocket receiveBufferLimit="65536" pingInterval="00:00:01" pingTimeout="00:00:02" />
  </system.webServer>
</configuration>
"""


@pytest.fixture
def server(start_server) -> ServerProcess:
    return start_server("wsapp:app")


@pytest.fixture
def configured(start_server, tmp_path: Path) -> ServerProcess:
    """Small limits: 64 KiB messages, a ping a second, shutdownTimeLimit 4 s,
    executionTimeout 1 s (which WebSockets ignore), and a WSGI application at /wsgi."""
    port = free_port()
    config = tmp_path / "applicationHost.config"
    config.write_text(CONFIG.format(port=port, logs=tmp_path / "logs"))
    srv = start_server("serve", "-c", str(config))
    srv.logs = tmp_path / "logs"  # type: ignore[attr-defined]
    for _ in range(2):
        srv.wait_event(lambda e: e["event"] == "worker.ready")
    return srv


def ws_url(server: ServerProcess, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def handshake(port: int, extra: str = "", key: str = KEY, version: str = "13",
              path: str = "/echo") -> bytes:
    request = (f"GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n").encode()
    return raw_request(port, request)


def ready_pid(server: ServerProcess, after: int = 0, not_pid: int = 0) -> int:
    event = server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != not_pid,
                              after=after)
    return int(event["pid"])


# -- the handshake ------------------------------------------------------------------------

def test_text_and_binary_messages_echo_with_a_negotiated_subprotocol(server) -> None:
    with connect(ws_url(server, "/echo"), subprotocols=["other", "chat"]) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response.headers["X-Accepted"] == "yes"  # the app's own header
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\xff" * 1000)
        assert ws.recv() == b"\x00\xff" * 1000
        big = os.urandom(600_000)  # more than one frame chunk: fragmented, reassembled
        ws.send(big)
        assert ws.recv() == big


def test_permessage_deflate_is_negotiated_and_compresses(server) -> None:
    with connect(ws_url(server, "/echo")) as ws:  # the client offers permessage-deflate
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        text = "compress me " * 50_000
        ws.send(text)
        assert ws.recv() == text
    with connect(ws_url(server, "/echo"), compression=None) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv() == "plain"


def test_the_websocket_scope_is_complete_to_the_asgi_spec(server) -> None:
    with connect(ws_url(server, "/scope?a=1"), subprotocols=["chat"]) as ws:
        scope = json.loads(ws.recv())
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert (scope["path"], scope["raw_path"], scope["root_path"]) == ("/scope", "/scope", "")
    assert scope["query_string"] == "a=1" and scope["subprotocols"] == ["chat"]
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", server.port]
    assert ["upgrade", "websocket"] in scope["headers"]
    assert scope["state"] == {"started": True}  # from lifespan startup
    assert scope["extensions"] == {"websocket.http.response": {}}


def test_a_bad_version_is_426_naming_version_13(server) -> None:
    answer = handshake(server.port, version="8")
    assert answer.startswith(b"HTTP/1.1 426 ")
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in answer


@pytest.mark.parametrize("key", ["not base64!", "c2hvcnQ=", ""])
def test_a_key_that_is_not_16_bytes_of_base64_is_400(server, key: str) -> None:
    assert handshake(server.port, key=key).startswith(b"HTTP/1.1 400 ")


def test_an_upgrade_that_is_not_a_get_is_400(server) -> None:
    request = (f"POST /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade"
               f"\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
               "Content-Length: 0\r\n\r\n").encode()
    assert raw_request(server.port, request).startswith(b"HTTP/1.1 400 ")


def test_closing_before_accept_is_a_403(server) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(server, "/refuse"))
    assert caught.value.response.status_code == 403


def test_the_http_response_extension_answers_with_the_apps_own_response(server) -> None:
    answer = handshake(server.port, path="/deny")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 401 ") and b"\r\nx-why: no token" in head
    assert body == b"need a token"


def test_a_wsgi_application_refuses_the_upgrade_with_a_clear_body(configured) -> None:
    answer = handshake(configured.port, path="/wsgi/echo")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"WSGI application: it cannot accept a WebSocket" in answer


# -- messages, pings, limits ---------------------------------------------------------------

def test_a_message_over_receive_buffer_limit_closes_with_1009(configured) -> None:
    with connect(ws_url(configured, "/echo"), compression=None) as ws:
        ws.send(b"x" * 65536)  # at the limit: fine
        assert len(ws.recv()) == 65536
        ws.send(b"x" * 65537)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv()
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


def test_a_compressed_message_that_inflates_past_the_limit_closes_with_1009(
        configured) -> None:
    with connect(ws_url(configured, "/echo")) as ws:  # permessage-deflate negotiated
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send("z" * 60_000)  # within 64 KiB once inflated
        assert ws.recv(timeout=10) == "z" * 60_000
        ws.send("z" * (8 * 1024 * 1024))  # a few KiB on the wire, 8 MiB inflated
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1009


def test_pings_are_answered_and_the_server_pings_an_idle_socket(configured) -> None:
    with connect(ws_url(configured, "/echo")) as ws:
        assert ws.ping(b"client").wait(10)  # the worker's pong
        # Idle past three ping intervals and three executionTimeouts (1 s each): the
        # client library answers the server's pings, and the socket stays open.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=3.5)
        ws.send("yes")
        assert ws.recv(timeout=10) == "yes"
    with _socket(configured.port) as raw:  # the worker's ping, as bytes: opcode 9, unmasked
        raw.settimeout(10)
        raw.sendall((f"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += raw.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in head
        while len(rest) < 2:
            rest += raw.recv(4096)
        assert rest[0] == 0x89 and not rest[1] & 0x80  # FIN + PING, server frames unmasked
        # No pong from this client: after pingTimeout (2 s) the worker closes with 1011.
        while True:
            chunk = raw.recv(4096)
            if not chunk:
                break
            rest += chunk
        assert b"\x88" in rest and (1011).to_bytes(2, "big") in rest


# -- flow ----------------------------------------------------------------------------------

def test_a_slow_reader_holds_back_only_its_own_socket(server) -> None:
    slow = connect(ws_url(server, "/echo"), max_queue=1, compression=None)
    fast = connect(ws_url(server, "/echo"), compression=None)
    try:
        slow.send("pid")
        fast.send("pid")
        assert slow.recv() == fast.recv()  # the same worker
        slow.send("flood 400 65536")  # 25 MiB the client does not read yet
        for i in range(50):  # meanwhile, the other socket flows
            fast.send(f"m{i}")
            assert fast.recv(timeout=10) == f"m{i}"
        got = 0
        while True:
            message = slow.recv(timeout=30)
            if message == "flooded":
                break
            got += 1
        assert got == 400
    finally:
        slow.close()
        fast.close()


# -- lifecycle -----------------------------------------------------------------------------

def test_a_websocket_outlives_a_recycle_then_gets_1012_after_shutdown_time_limit(
        configured) -> None:
    with connect(ws_url(configured, "/echo")) as ws:
        ws.send("pid")
        old = int(ws.recv())
        before = len(configured.events())
        assert configured.admin("recycle", "apppool", "WS").returncode == 0
        new = ready_pid(configured, after=before, not_pid=old)
        assert new != old
        ws.send("still served")  # the old worker drains: its socket keeps serving
        assert ws.recv(timeout=10) == "still served"
        with connect(ws_url(configured, "/echo")) as fresh:  # new sockets: the new worker
            fresh.send("pid")
            assert int(fresh.recv()) == new
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=15)  # shutdownTimeLimit is 4 s
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1012
    exit_event = configured.wait_event(lambda e: e["event"] == "worker.exit"
                                       and e["pid"] == old, after=before)
    assert exit_event.get("code") == 0, exit_event  # it stopped; it was not killed
    assert not [e for e in configured.events()[before:]
                if e["event"] == "worker.shutdown_timeout"]


def test_a_crashed_workers_socket_gets_1011(server) -> None:
    with connect(ws_url(server, "/echo")) as ws:
        ws.send("pid")
        pid = int(ws.recv())
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1011


def test_a_queued_upgrade_is_served_after_a_worker_crash(start_server) -> None:
    server = start_server("wsapp:app", "--asgi-concurrency", "1")
    with connect(ws_url(server, "/echo")) as first:
        first.send("pid")
        pid = int(first.recv())
        before = len(server.events())
        queued: list[object] = []

        def second() -> None:  # waits in the pool's queue: the worker's one slot is taken
            try:
                with connect(ws_url(server, "/echo"), open_timeout=30) as ws:
                    ws.send("pid")
                    queued.append(int(ws.recv()))
            except Exception as exc:  # reported below, in the assertion
                queued.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        wait_for(lambda: _queued(server), bool, Path(server.event_log), timeout=20)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            first.recv(timeout=10)
        thread.join(30)
    new = ready_pid(server, after=before, not_pid=pid)
    assert queued == [new]


def test_an_upgrade_whose_worker_dies_before_accepting_is_sent_to_another(
        server, shared_tmp: Path) -> None:
    shared_tmp.chmod(0o777)  # the workers may run as nobody
    marker = shared_tmp / "seen"
    first = ready_pid(server)
    before = len(server.events())
    result: list[object] = []

    def client() -> None:
        try:
            with connect(ws_url(server, f"/accept-once-marked?m={marker}"),
                         open_timeout=30) as ws:
                ws.send("pid")
                result.append(int(ws.recv(timeout=10)))
        except Exception as exc:  # reported below, in the assertion
            result.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    wait_for(marker.exists, bool, shared_tmp, timeout=20)  # the first worker holds it
    os.kill(first, signal.SIGKILL)
    thread.join(30)
    retry = server.wait_event(lambda e: e["event"] == "request.retry", after=before)
    assert retry["url"].startswith("/accept-once-marked")
    assert result == [ready_pid(server, after=before, not_pid=first)]


def test_upgrades_wait_in_the_pools_queue_and_past_it_get_503(start_server) -> None:
    server = start_server("wsapp:app", "--asgi-concurrency", "1", "--queue-length", "10")
    request = (f"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode()
    with connect(ws_url(server, "/echo")) as first:  # the worker's one slot
        waiting = [_socket(server.port) for _ in range(10)]
        try:
            for sock in waiting:
                sock.sendall(request)
            wait_for(lambda: len(_queued(server)), lambda n: n == 10,
                     Path(server.event_log), timeout=20)
            answer = raw_request(server.port, request)
            assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After" in answer
            first.send("still")
            assert first.recv(timeout=10) == "still"
        finally:
            for sock in waiting:
                sock.close()


def test_the_app_closing_with_a_code_and_an_app_error_reach_the_client(server) -> None:
    with connect(ws_url(server, "/echo")) as ws:
        ws.send("close 4001")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (4001, "asked")
    with connect(ws_url(server, "/echo")) as ws:
        ws.send("raise")
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=10)
    assert caught.value.rcvd is not None and caught.value.rcvd.code == 1011


# -- logs and admin --------------------------------------------------------------------------

def test_a_websocket_is_one_access_log_line_written_when_it_closes(configured) -> None:
    log = configured.logs / "W3SVC4" / datetime.now(UTC).strftime(  # type: ignore[attr-defined]
        "u_ex%y%m%d.log")
    with connect(ws_url(configured, "/echo?logged=1"), compression=None) as ws:
        ws.send(b"x" * 1000)
        assert len(ws.recv()) == 1000
        rows = configured.admin("list", "requests", "--json")
        assert rows.returncode == 0, rows.stderr
        shown = json.loads(rows.stdout)
        assert [r["state"] for r in shown if r["url"] == "/echo?logged=1"] == ["websocket"]
        assert all("age" in r for r in shown)

    def lines() -> list[str]:
        if not log.exists():
            return []
        return [line for line in log.read_text().splitlines() if "logged=1" in line]

    found = wait_for(lines, lambda got: len(got) == 1, log)
    fields = next(line for line in log.read_text().splitlines() if line.startswith("#Fields"))
    row = dict(zip(fields.split()[1:], found[0].split(), strict=True))
    assert row["sc-status"] == "101" and row["cs-uri-stem"] == "/echo"
    assert int(row["time-taken"]) >= 0 and row["sc-win32-status"] == "0"
    # Each way: the handshake, then 1000 bytes of message and the close handshake.
    assert 1000 < int(row["sc-bytes"]) < 1500 and 1000 < int(row["cs-bytes"]) < 1500


def _queued(server: ServerProcess) -> list[dict[str, object]]:
    rows = json.loads(server.admin("list", "requests", "--json").stdout)
    return [r for r in rows if r["state"] == "queued"]


def _socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port))


def _masked(first: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    return bytes((first, 0x80 | len(payload))) + mask + bytes(
        b ^ mask[i % 4] for i, b in enumerate(payload))


def test_small_frames_and_fragments_both_echo_in_order(server) -> None:
    # Small whole frames take the worker's fast path; fragments and control frames go
    # through wsproto; the two interleave on one socket without losing order.
    with connect(ws_url(server, "/echo"), compression=None) as ws:
        ws.send(["frag", "mented ", "text"])  # one message in three fragments
        ws.send("small")
        assert ws.ping(b"between").wait(10)
        ws.send([b"\x01", b"\x02"])
        ws.send(b"\x03")
        assert [ws.recv(timeout=10) for _ in range(4)] == [
            "fragmented text", "small", b"\x01\x02", b"\x03"]


def test_invalid_utf8_in_a_small_text_frame_closes_with_1007(server) -> None:
    with _socket(server.port) as raw:
        raw.settimeout(10)
        raw.sendall((f"GET /echo HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        raw.sendall(_masked(0x81, b"ok") + _masked(0x81, b"\xff\xfe bad"))
        data = b""
        while chunk := raw.recv(4096):
            data += chunk
    rest = data.partition(b"\r\n\r\n")[2]
    close = rest.rindex(b"\x88")  # the last frame: a close, after "ok" if the app was quick
    assert rest[close + 2:close + 4] == (1007).to_bytes(2, "big"), rest


TLS_CONFIG = """<configuration>
  <system.applicationHost>
    <centralCertProvider enabled="true" physicalPath="{store}" />
    <applicationPools><add name="P" startMode="AlwaysRunning" /></applicationPools>
    <sites>
      <site name="secure" id="1">
        <bindings>
          <binding protocol="https" bindingInformation="127.0.0.1:{port}:" sslFlags="3" />
        </bindings>
        <application path="/" applicationPool="P" app="wsapp:app" />
      </site>
    </sites>
  </system.applicationHost>
</configuration>
"""


def test_a_websocket_over_tls_is_wss_to_the_app(start_server, tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path / "ca")
    store = tmp_path / "store"
    store.mkdir()
    cert, key, _ = ca.leaf(["localhost"])
    write_pem(store / "localhost.pem", cert, key)
    port = free_port()
    config = tmp_path / "applicationHost.config"
    config.write_text(TLS_CONFIG.format(store=store, port=port))
    start_server("serve", "-c", str(config))
    context = ssl.create_default_context(cafile=str(ca.cert))
    with connect(f"wss://localhost:{port}/scope", ssl=context) as ws:
        scope = json.loads(ws.recv(timeout=10))
        ws.send("over tls")
        assert ws.recv(timeout=10) == "over tls"
    assert scope["scheme"] == "wss"
