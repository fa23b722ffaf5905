"""HTTP/2's sans-IO rules (`listener/http2_core.py`), without sockets."""

from __future__ import annotations

import struct

from webgarden.listener import errors
from webgarden.listener.http1 import HeadLimits, ParseCounters
from webgarden.listener.http2_core import (
    MAX_CONTINUATIONS,
    MAX_RESETS,
    PREFACE,
    RESET_WINDOW,
    FrameGauge,
    PreparedHeads,
    ResetMeter,
    request_head,
    response_headers,
)

LIMITS = HeadLimits(16384, 16384)


def _frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(
        ">I", sid) + payload


def _head(*fields: tuple[bytes, bytes], ended: bool = True, limits: HeadLimits = LIMITS):
    base = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/a?b=1"),
            (b":authority", b"example.com")]
    return request_head([*base, *fields], ended, limits, ParseCounters(), 1.0)


def test_a_stream_s_headers_make_the_same_request_head_as_http1() -> None:
    head, page = _head((b"user-agent", b"ua"), (b"accept-encoding", b"gzip"))
    assert page is None
    assert (head.method, head.url, head.host, head.version) == (b"GET", b"/a?b=1",
                                                                 b"example.com", "HTTP/2")
    assert (b"host", b"example.com") in head.headers  # so WSGI has HTTP_HOST
    assert head.user_agent == b"ua" and head.accept_encoding == b"gzip"
    assert head.plain and not head.has_body and head.keep_alive


def test_split_cookies_are_joined_and_underscored_names_dropped() -> None:
    counters = ParseCounters()
    head, _ = request_head([(b":method", b"GET"), (b":path", b"/"), (b"cookie", b"a=1"),
                            (b"x_user", b"admin"), (b"cookie", b"b=2")], True, LIMITS,
                           counters, 0.0)
    assert (b"cookie", b"a=1; b=2") in head.headers
    assert all(name != b"x_user" for name, _ in head.headers)
    assert counters.underscore_headers_dropped == 1


def test_http_sys_limits_refuse_a_stream_with_its_page() -> None:
    assert _head((b"x", b"v" * 16384))[1] is errors.FIELD_TOO_LONG
    many = [(b"x-%d" % i, b"v" * 2000) for i in range(9)]
    assert _head(*many)[1] is errors.REQUEST_TOO_LONG
    _, page = request_head([(b":method", b"GET"), (b":path", b"/" + b"a" * 16384)], True,
                           LIMITS, ParseCounters(), 0.0)
    assert page is errors.URL_TOO_LONG
    assert _head((b"host", b"other.example"))[1] is errors.INVALID_HOSTNAME


def test_a_request_with_a_body_or_conditions_leaves_the_fast_path() -> None:
    assert _head(ended=False)[0].has_body
    assert not _head((b"if-none-match", b'"x"'))[0].plain


def test_a_response_head_becomes_h2_headers_without_connection_fields() -> None:
    block = (b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nConnection: close\r\n"
             b"Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nUpgrade: x\r\n"
             b"Content-Length: 3\r\nX-Multi: a\r\nX-Multi: b\r\nnot a field\r\n"
             b"Bad Name: v\r\n")
    assert response_headers(block) == [
        (b":status", b"404"), (b"content-type", b"text/plain"), (b"content-length", b"3"),
        (b"x-multi", b"a"), (b"x-multi", b"b")]


def test_prepared_heads_are_converted_once_and_bounded() -> None:
    prepared = PreparedHeads()
    block = b"HTTP/1.1 200 OK\r\nServer: w\r\n"
    assert prepared.get(block) is prepared.get(block)
    for i in range(2000):
        prepared.get(b"HTTP/1.1 200 OK\r\nX: %d\r\n" % i)
    assert len(prepared.heads) <= 1024


def test_the_gauge_passes_ordinary_frames_cut_anywhere() -> None:
    gauge = FrameGauge(32768)
    data = PREFACE + _frame(0x4, 0, 0, b"") + _frame(0x1, 0x4, 1, b"h" * 100) + _frame(
        0x0, 0x1, 1, b"d" * 70000)
    for i in range(0, len(data), 7):
        assert gauge.feed(data[i:i + 7]) is None
    assert gauge.block == -1


def test_the_gauge_refuses_a_continuation_flood_and_a_long_block() -> None:
    gauge = FrameGauge(32768)
    flood = PREFACE + _frame(0x1, 0, 1, b"h") + _frame(0x9, 0, 1, b"") * (MAX_CONTINUATIONS + 1)
    assert gauge.feed(flood) == "continuation-flood"
    gauge = FrameGauge(32768)
    assert gauge.feed(PREFACE + _frame(0x1, 0, 1, b"h" * 16384)) is None
    assert gauge.feed(_frame(0x9, 0, 1, b"h" * 16384)) is None
    assert gauge.feed(_frame(0x9, 0, 1, b"h")[:9]) == "header-block-too-large"


def test_the_gauge_counts_each_header_block_on_its_own() -> None:
    gauge = FrameGauge(32768)
    data = PREFACE
    for sid in range(1, 40, 2):  # many blocks, each in 2 frames: never a flood
        data += _frame(0x1, 0, sid, b"h" * 10000) + _frame(0x9, 0x4, sid, b"h" * 10000)
    assert gauge.feed(data) is None


def test_rapid_resets_trip_the_meter_and_slow_ones_do_not() -> None:
    now = [0.0]
    meter = ResetMeter(lambda: now[0])
    assert not any(meter.reset() for _ in range(MAX_RESETS))
    assert meter.reset()  # one past the bound within the window
    slow = ResetMeter(lambda: now[0])
    for _ in range(20 * MAX_RESETS):
        now[0] += RESET_WINDOW / MAX_RESETS * 1.5  # two thirds of the bound's pace
        assert not slow.reset()


def test_the_stateless_encoder_encodes_a_head_once_and_the_client_keeps_no_table() -> None:
    from hpack import Decoder

    from webgarden.listener.http2_core import StatelessEncoder

    encoder, decoder = StatelessEncoder(), Decoder()
    head = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"x-app", b"v1")]
    first, second = encoder.encode(head), encoder.encode(head)
    assert first[0] == 0x20 and first[1:] == second  # a size update to 0, first block only
    for block in (first, second):
        assert decoder.decode(block, raw=True) == head
    assert not decoder.header_table.dynamic_entries
    encoder.header_table_size = 4096  # the client's table size: nothing changes
    assert encoder.encode(head) == second
