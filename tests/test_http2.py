"""HTTP/2 end to end: real servers, real clients (curl, httpx, h2load, and h2 as a raw
client), h2c by prior knowledge on cleartext (`<webLimits http2Cleartext="true">`).

Each stream is an exchange of the same core as HTTP/1.1's: routing, the pool queue, the
response cache, static files, compression and the W3C log are shared."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from h2client import H2Client, SettingCodes
from harness import free_port

CONFIG = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" threads="4" {pool}>
      <processModel maxProcesses="{workers}" /></add></applicationPools>
    <sites>
      <siteDefaults><logFile directory="{logs}" logExtFileFlags="Date, Time, Method, UriStem, HttpStatus, ProtocolVersion, BytesSent" /></siteDefaults>
      <site name="s" id="1">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
        <application path="/" applicationPool="P" app="testapp:application">
          <virtualDirectory path="/" physicalPath="{root}" />
        </application>
      </site>
    </sites>
    <webLimits {limits} />
  </system.applicationHost>
</configuration>
"""

H2C = 'http2Cleartext="true"'
HAS_H2LOAD = shutil.which("h2load") is not None


class Served:
    def __init__(self, start_server: Any, tmp: Path, root: Path, limits: str = H2C,
                 workers: int = 1, pool: str = "") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logs = tmp / "logs"
        config = tmp / "applicationHost.config"
        config.write_text(CONFIG.format(port=self.port, root=root, logs=self.logs,
                                        limits=limits, workers=workers, pool=pool))
        self.server = start_server("serve", "-c", str(config))

    def curl(self, path: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["curl", "-s", "--http2-prior-knowledge", *args,
                               self.url + path], capture_output=True, timeout=60)


@pytest.fixture
def root(shared_tmp: Path) -> Path:
    www = shared_tmp / "www"
    www.mkdir()
    (www / "hello.txt").write_text("static hello\n")
    (www / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: past every window
    (www / "page.html").write_text("<p>compress me</p>\n" * 500)
    (www / "mid.bin").write_bytes(bytes(range(7, 256)) * 800)  # 199 KB: cached, past 64 KiB
    return www


@pytest.fixture
def served(start_server, tmp_path: Path, root: Path) -> Served:
    return Served(start_server, tmp_path, root)


def test_curl_speaks_http2_by_prior_knowledge_to_an_app_and_a_file(served: Served) -> None:
    out = served.curl("/hello", "-w", "\n%{http_version} %{http_code}")
    assert out.stdout == b"Hello, World!\n2 200"
    out = served.curl("/hello.txt", "-i")
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/2 200")
    assert b"content-length: 13" in head and b"date: " in head
    assert b"connection:" not in head.lower()
    assert body == b"static hello\n"


def test_h2c_is_off_by_default(start_server, tmp_path: Path, root: Path) -> None:
    served = Served(start_server, tmp_path, root, limits="")
    out = served.curl("/hello", "-w", "%{http_code}")
    assert not out.stdout.startswith(b"Hello")  # the preface is no HTTP/1.1 request
    assert httpx.get(served.url + "/hello").text == "Hello, World!"  # HTTP/1.1 still is


def test_http1_still_works_where_h2c_is_on(served: Served) -> None:
    response = httpx.get(served.url + "/hello")
    assert response.http_version == "HTTP/1.1" and response.text == "Hello, World!"


def test_httpx_with_http2_gets_the_app_the_cache_and_the_environ(served: Served) -> None:
    with httpx.Client(http1=False, http2=True, base_url=served.url) as client:
        response = client.get("/environ", headers={"X-Test": "yes"})
        assert response.http_version == "HTTP/2"
        environ = response.json()
        assert environ["SERVER_PROTOCOL"] == "HTTP/2"
        assert environ["HTTP_HOST"] == f"127.0.0.1:{served.port}"
        assert environ["HTTP_X_TEST"] == "yes"
        bodies = [client.get("/cached").text for _ in range(4)]
        assert bodies[-1] == bodies[-2]  # stored after its frequent hits, then answered
        assert client.get("/hello.txt").text == "static hello\n"


def test_compression_and_conditional_requests_apply_over_http2(served: Served) -> None:
    with httpx.Client(http1=False, http2=True, base_url=served.url) as client:
        first = client.get("/page.html", headers={"Accept-Encoding": "gzip"})
        assert first.headers["content-encoding"] == "gzip"
        assert first.text == "<p>compress me</p>\n" * 500
        again = client.get("/hello.txt", headers={"If-None-Match": client.get(
            "/hello.txt").headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_the_w3c_log_writes_http2_as_the_protocol_version(served: Served) -> None:
    served.curl("/hello")
    served.curl("/hello.txt")
    for _ in range(3):
        served.curl("/hello.txt")  # a cache hit, on the fast path at last
    served.server.stop()
    lines = [ln for f in (served.logs / "W3SVC1").glob("*.log")
             for ln in f.read_text().splitlines() if not ln.startswith("#")]
    assert len(lines) == 5
    assert all(" HTTP/2 " in ln for ln in lines), lines


def test_request_and_response_bodies_larger_than_the_windows(served: Served, tmp_path: Path
                                                            ) -> None:
    upload = bytes(range(251)) * 12000  # 3 MB: past the stream and connection windows
    source = tmp_path / "up.bin"
    source.write_bytes(upload)
    out = served.curl("/digest", "--data-binary", f"@{source}")
    assert out.stdout.decode() == f"{len(upload)} {hashlib.sha256(upload).hexdigest()}"
    out = served.curl("/big?size=5000000")
    assert len(out.stdout) == 5_000_000
    out = served.curl("/big.bin")
    assert out.stdout == bytes(range(256)) * 4096  # a file read under flow control
    for _ in range(4):  # from the file, then from the cache (fast path): past the window
        assert served.curl("/mid.bin").stdout == bytes(range(7, 256)) * 800
    with httpx.Client(http1=False, http2=True, base_url=served.url) as client:
        assert client.post("/echo", content=upload).content == upload


def test_a_slow_reading_stream_does_not_stall_another_on_the_same_connection(served: Served
                                                                           ) -> None:
    # The connection's window wide open, each stream's left at 64 KiB: the client never
    # reopens the big stream's, so it stalls; the others on the connection must not.
    client = H2Client(served.port, connection_window=50_000_000)
    client.auto_ack = False
    big = client.request("/big?size=5000000")
    client.wait(lambda: len(client.bodies.get(big, b"")) >= 65535)
    small = client.request("/hello")
    client.wait(lambda: small in client.ended)
    assert bytes(client.bodies[small]) == b"Hello, World!"
    file = client.request("/big.bin")  # a file is read only as its window allows, too
    client.wait(lambda: len(client.bodies.get(file, b"")) >= 65535)
    after = client.request("/hello.txt")
    client.wait(lambda: after in client.ended)
    assert big not in client.ended and file not in client.ended
    # Reopening the window lets the stalled stream finish.
    client.auto_ack = True
    for sid in (big, file):
        client.conn.acknowledge_received_data(len(client.bodies[sid]), sid)
    client.flush()
    client.wait(lambda: big in client.ended and file in client.ended, timeout=60)
    assert len(client.bodies[big]) == 5_000_000
    assert bytes(client.bodies[file]) == bytes(range(256)) * 4096
    client.close()


def test_a_worker_crash_resets_its_stream_and_the_others_carry_on(
        start_server, tmp_path: Path, root: Path) -> None:
    served = Served(start_server, tmp_path, root, workers=2)
    client = H2Client(served.port)
    slow = client.request("/slow?ms=300")
    crash = client.request("/crash", method="POST", body=b"x")  # not retried: 502
    status, _ = client.response(crash)
    assert status == 502 or crash in client.resets
    assert client.response(slow) == (200, b"slow done")
    assert client.response(client.request("/hello")) == (200, b"Hello, World!")
    client.close()


def test_settings_are_http_sys_s_and_nothing_is_pushed(served: Served) -> None:
    client = H2Client(served.port, settings={SettingCodes.ENABLE_PUSH: 0})
    client.wait(lambda: SettingCodes.MAX_CONCURRENT_STREAMS in client.remote_settings)
    settings = client.remote_settings
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 16384 + 16384
    assert settings[SettingCodes.ENABLE_PUSH] == 0
    client.response(client.request("/hello"))
    assert not [e for e in client.events if type(e).__name__ == "PushedStreamReceived"]
    client.close()


@pytest.mark.skipif(not HAS_H2LOAD, reason="h2load (nghttp2-client) is not installed")
@pytest.mark.parametrize("path", ["/hello", "/hello.txt"])
def test_h2load_2000_requests_multiplexed_10_deep_all_succeed(served: Served, path: str
                                                             ) -> None:
    out = subprocess.run(["h2load", "-n", "2000", "-c", "10", "-m", "10", served.url + path],
                         capture_output=True, text=True, timeout=120)
    assert re.search(r"status codes: 2000 2xx", out.stdout), out.stdout
    assert "2000 succeeded, 0 failed, 0 errored" in out.stdout


def test_an_upload_to_an_app_that_does_not_read_is_held_within_the_windows(
        start_server, tmp_path: Path, root: Path) -> None:
    import os
    import signal

    from harness import _wait_for_growth

    served = Served(start_server, tmp_path, root)
    client = H2Client(served.port)
    sid = client.request("/hold?tag=upload", method="POST", end=False)
    while "holding upload" not in served.server.stderr:
        _wait_for_growth(served.server.stderr_path, os.path.getsize(
            served.server.stderr_path), 0.5)
    sent, piece = 0, b"u" * 16384
    while True:  # send while the server's windows let us; stop once it has none for 1 s
        window = client.conn.local_flow_control_window(sid)
        if window > 0:
            client.conn.send_data(sid, piece[:window])
            client.flush()
            sent += min(window, len(piece))
            continue
        client.sock.settimeout(1.0)
        try:
            data = client.sock.recv(65536)
        except TimeoutError:
            break  # no WINDOW_UPDATE came: the server holds what it took
        for event in client.conn.receive_data(data):
            client._note(event)
        client.flush()
        assert sent < 8 * 1024 * 1024, "the server kept reopening its window"
    # The worker's request window (1 MiB) and the stream's (256 KiB), nothing more.
    assert 256 * 1024 <= sent <= 1024 * 1024 + 256 * 1024 + 65536, sent
    for pid in served.server.worker_pids():
        os.kill(pid, signal.SIGUSR1)
    status, body = client.response(sid)
    assert (status, body) == (200, b"released")
    assert client.resets.get(sid) == 0  # then NO_ERROR: the rest of the upload is not wanted
    client.close()


def test_a_stream_in_flight_finishes_when_the_server_stops(served: Served) -> None:
    import signal

    client = H2Client(served.port)
    sid = client.request("/slow?ms=500")
    served.server.wait_event(lambda e: e["event"] == "server.started")
    served.server.signal(signal.SIGTERM)
    assert client.response(sid) == (200, b"slow done")
    client.wait_closed()
    assert client.goaway is not None and client.goaway.error_code == 0


def test_an_idle_http2_connection_is_closed_at_connection_timeout(
        start_server, tmp_path: Path, root: Path) -> None:
    served = Served(start_server, tmp_path, root,
                    limits=f'{H2C} connectionTimeout="00:00:02"')
    client = H2Client(served.port)
    assert client.response(client.request("/hello")) == (200, b"Hello, World!")
    client.wait_closed(timeout=10)  # GOAWAY, then the close, once idle for 2 s
    assert client.goaway is not None and client.goaway.error_code == 0
    served.server.wait_event(lambda e: e["event"] == "httperr"
                             and e["reason"] == "Timer_ConnectionIdle")


def test_a_file_the_worker_hands_over_is_sent_in_data_frames(served: Served, root: Path
                                                            ) -> None:
    # wsgi.file_wrapper: the worker passes its open file (SCM_RIGHTS); over HTTP/2 the
    # listener reads it under flow control instead of sendfile.
    out = served.curl(f"/file?path={root / 'big.bin'}", "-w", "%{http_version}")
    assert out.stdout == bytes(range(256)) * 4096 + b"2"


def test_a_client_that_stops_reading_for_a_while_gets_its_responses_whole(served: Served
                                                                          ) -> None:
    # Windows wide open, then the client reads nothing for a moment: the server's socket
    # buffer fills (pause_writing), its streams stop crediting their workers, and when the
    # socket drains they must pay back what they owe, or the workers' windows shrink to
    # nothing and the responses stall.
    import time

    client = H2Client(served.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**30},
                      connection_window=2**30)
    sids = [client.request("/big?size=20000000") for _ in range(2)]
    client.wait(lambda: all(len(client.bodies.get(s, b"")) > 1_000_000 for s in sids))
    for _ in range(3):  # stop, read a little, stop again
        time.sleep(0.3)  # reads nothing: how a client makes the server's socket buffer fill
        for _ in range(50):
            client.read_once()
    client.wait(lambda: all(s in client.ended for s in sids), timeout=60)
    assert [len(client.bodies[s]) for s in sids] == [20_000_000] * 2
    client.close()
