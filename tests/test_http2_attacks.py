"""HTTP/2 attacks, sent with a raw h2 client over a real socket: rapid reset
(CVE-2023-44487), CONTINUATION floods, an HPACK bomb, more streams than SETTINGS allow.
Each ends the attacker's connection with GOAWAY (an `http2.goaway` event names why), and
the server goes on serving other clients, with bounded memory."""

from __future__ import annotations

import contextlib
import os
import struct
import time
from pathlib import Path

import psutil
import pytest
from h2.errors import ErrorCodes

from h2client import H2Client
from harness import _wait_for_growth
from test_http2 import Served

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", sid) + payload


@pytest.fixture
def served(start_server, tmp_path: Path, shared_tmp: Path) -> Served:
    (shared_tmp / "hello.txt").write_text("static hello\n")
    # No prefetch: a worker takes no more requests than its 4 threads run, so a request
    # behind 4 holds waits in the pool's queue.
    return Served(start_server, tmp_path, shared_tmp, pool='prefetch="0"')


def _healthy(served: Served) -> None:
    client = H2Client(served.port)
    assert client.response(client.request("/hello")) == (200, b"Hello, World!")
    client.close()


def _goaway(served: Served, reason: str) -> dict[str, object]:
    return served.server.wait_event(
        lambda e: e["event"] == "http2.goaway" and e["reason"] == reason)


def test_rapid_reset_ends_the_connection_with_enhance_your_calm(served: Served) -> None:
    client = H2Client(served.port)
    sent = 0
    while not client.closed and sent < 5000:
        for _ in range(50):  # HEADERS then RST_STREAM at once, in bursts
            sid = client.conn.get_next_available_stream_id()
            client.conn.send_headers(sid, [(":method", "GET"), (":path", "/hello"),
                                           (":scheme", "http"), (":authority", "x")])
            client.conn.reset_stream(sid)
            sent += 1
        try:
            client.flush()
        except (BrokenPipeError, ConnectionResetError):
            break
    client.wait_closed()
    assert client.goaway is not None
    assert client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert sent < 5000  # stopped near the bound (200 in 30 s), not at the attacker's end
    _goaway(served, "rapid-reset")
    _healthy(served)


def test_a_stream_reset_while_queued_leaves_the_queue_and_never_runs(served: Served) -> None:
    holder = H2Client(served.port)
    held = [holder.request(f"/hold?tag={i}") for i in range(4)]  # all 4 threads busy
    for i in range(4):
        _wait_stderr(served, f"holding {i}")
    client = H2Client(served.port)
    queued = [client.request(f"/hello?mark=queued{i}") for i in range(5)]
    for sid in queued:
        client.reset(sid)
    dropped = [served.server.wait_event(
        lambda e, i=i: e["event"] == "request.dropped" and f"queued{i}" in e["url"])
        for i in range(5)]
    assert all(not d["dispatched"] for d in dropped)
    for pid in served.server.worker_pids():
        psutil.Process(pid).send_signal(10)  # SIGUSR1: release the holds
    for sid in held:
        assert holder.response(sid)[0] == 200
    _healthy(served)
    assert "served queued" not in served.server.stderr


def _wait_stderr(served: Served, text: str) -> None:
    """Until the server's stderr (the workers' included) shows `text`."""
    server = served.server
    deadline = time.monotonic() + 30
    while text not in server.stderr:
        assert time.monotonic() < deadline, f"{text!r} never appeared in stderr"
        _wait_for_growth(server.stderr_path, os.path.getsize(server.stderr_path), 0.5)


def test_a_continuation_flood_is_refused_at_the_bound(served: Served) -> None:
    client = H2Client(served.port)
    encoded = client.conn.encoder.encode([(":method", "GET"), (":path", "/hello"),
                                          (":scheme", "http"), (":authority", "x")])
    flood = _frame(0x1, 0x0, 1, encoded)  # HEADERS, no END_HEADERS
    flood += b"".join(_frame(0x9, 0x0, 1, b"") for _ in range(10_000))  # empty CONTINUATIONs
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.send_raw(flood)
    client.wait_closed()
    _goaway(served, "continuation-flood")
    _healthy(served)


def test_a_header_block_past_the_bound_across_continuations_is_refused(served: Served) -> None:
    client = H2Client(served.port)
    junk = b"\x00" * 16384  # stays in the server's buffer only until the bound trips
    block = _frame(0x1, 0x0, 1, junk) + b"".join(_frame(0x9, 0x0, 1, junk) for _ in range(4))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.send_raw(block)
    client.wait_closed()
    _goaway(served, "header-block-too-large")
    _healthy(served)


def test_an_hpack_bomb_is_refused_before_it_grows(served: Served) -> None:
    client = H2Client(served.port)
    big = "a" * 4000  # indexed once in HPACK's dynamic table, then referenced: 1 byte each
    fields = [(":method", "GET"), (":path", "/hello"), (":scheme", "http"),
              (":authority", "x"), *[("x-bomb", big)] * 200]  # 800 KB decoded
    rss_before = psutil.Process(served.server.proc.pid).memory_info().rss
    client.conn.send_headers(1, fields, end_stream=True)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.flush()
    client.wait_closed()
    assert client.goaway is None or client.goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    _goaway(served, "header-list-too-large")
    _healthy(served)
    grown = psutil.Process(served.server.proc.pid).memory_info().rss - rss_before
    assert grown < 20 * 1024 * 1024


def test_more_streams_than_settings_allow_end_the_connection(served: Served) -> None:
    client = H2Client(served.port)
    frames = b""
    for i in range(150):  # raw HEADERS: h2 as a client would keep to the server's 100
        block = client.conn.encoder.encode([(":method", "GET"), (":path", f"/hold?tag=m{i}"),
                                            (":scheme", "http"), (":authority", "x")])
        frames += _frame(0x1, 0x5, 2 * i + 1, block)  # END_STREAM | END_HEADERS
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        client.send_raw(frames)
    client.wait_closed()
    _goaway(served, "too-many-streams")
    for pid in served.server.worker_pids():
        psutil.Process(pid).send_signal(10)
    _healthy(served)


def test_a_header_list_over_max_request_bytes_gets_400_on_its_stream(served: Served) -> None:
    client = H2Client(served.port)
    sid = client.request("/hello", headers=[(f"x-h{i}", "v" * 2000) for i in range(9)])
    status, body = client.response(sid)
    assert status == 400 and b"Request Too Long" in body
    assert client.response(client.request("/hello")) == (200, b"Hello, World!")  # same conn
    client.close()


def test_a_long_path_gets_414_and_a_long_field_400(served: Served) -> None:
    client = H2Client(served.port)
    assert client.response(client.request("/" + "a" * 17000))[0] == 414
    status, body = client.response(client.request("/hello", headers=[("x-long", "v" * 16390)]))
    assert status == 400 and b"Field Too Long" in body
    client.close()


def test_a_port_without_h2c_closes_on_the_preface(start_server, tmp_path: Path,
                                                  shared_tmp: Path) -> None:
    served = Served(start_server, tmp_path, shared_tmp, limits="")
    client = H2Client(served.port)
    client.wait_closed()
    assert client.goaway is None


HOSTILE = """<configuration>
  <system.applicationHost>
    <applicationPools><add name="P" startMode="AlwaysRunning" threads="2">
      <processModel shutdownTimeLimit="00:00:01" /></add></applicationPools>
    <sites>
      <site name="s" id="1">
        <bindings><binding protocol="http" bindingInformation="127.0.0.1:{port}:" /></bindings>
        <application path="/" applicationPool="P" app="hostile:application" />
      </site>
    </sites>
    <webLimits http2Cleartext="true" />
  </system.applicationHost>
</configuration>
"""


def test_a_body_short_of_its_content_length_resets_its_stream(start_server, tmp_path: Path
                                                              ) -> None:
    from harness import free_port

    port = free_port()
    config = tmp_path / "applicationHost.config"
    config.write_text(HOSTILE.format(port=port))
    start_server("serve", "-c", str(config))
    client = H2Client(port)
    sid = client.request("/short")  # its head says 100 bytes; 10 come, then its END
    client.wait(lambda: sid in client.resets or sid in client.ended)
    assert sid in client.resets and sid not in client.ended, (client.heads, client.bodies)
    assert client.response(client.request("/hello")) == (200, b"hello")  # same connection
    client.close()
