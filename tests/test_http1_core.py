"""The sans-IO HTTP/1.1 core and the exchange state table, without sockets or a loop.

In h11's `tests/helpers.py` manner: a `Recorder` sink collects what the core says, as
plain tuples, and the tests compare lists of them."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from webgarden.listener import errors
from webgarden.listener.http1 import (
    UNKNOWN,
    Body,
    HeadLimits,
    Http1Core,
    ParseCounters,
    RequestHead,
    error_response,
    frame_response,
    sound_response_head,
)
from webgarden.listener.lifecycle import (
    TABLE,
    TRANSITIONS,
    ExchangeEvent,
    ExchangeState,
    IllegalTransition,
    advance,
)

S, E = ExchangeState, ExchangeEvent


class Recorder:
    """A RequestSink that writes down every event."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.heads: list[RequestHead] = []

    def on_request(self, head: RequestHead) -> None:
        self.heads.append(head)
        self.events.append(("request", head.method, head.url, head.version))

    def on_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def on_request_end(self) -> None:
        self.events.append(("end",))


def core(max_field: int = 16384, max_request: int = 16384, allow: bool = False
         ) -> tuple[Http1Core, Recorder, ParseCounters]:
    sink, counters = Recorder(), ParseCounters()
    ticks = itertools.count(1)
    return Http1Core(sink, HeadLimits(max_field, max_request, allow), counters,
                     lambda: float(next(ticks))), sink, counters


GET = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"

# -- requests in, events out --------------------------------------------------------------


def test_a_request_becomes_request_and_end_events_with_its_head_classified() -> None:
    c, sink, _ = core()
    assert c.receive_data(b"GET /x?q=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\n"
                          b"Referer: r\r\nAccept-Encoding: gzip\r\n\r\n") is None
    assert sink.events == [("request", b"GET", b"/x?q=1", "HTTP/1.1"), ("end",)]
    (head,) = sink.heads
    assert (head.host, head.user_agent, head.referer, head.accept_encoding) == \
        (b"h", b"ua", b"r", b"gzip")
    assert head.plain and not head.has_body and head.keep_alive and head.began == 1.0
    assert head.received == len(b"GET /x?q=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: ua\r\n"
                                b"Referer: r\r\nAccept-Encoding: gzip\r\n\r\n")


def test_a_head_split_across_reads_is_one_request_and_the_core_says_it_is_in_a_head() -> None:
    c, sink, _ = core()
    c.receive_data(b"GET /a HT")
    assert c.in_head and sink.events == []
    c.receive_data(b"TP/1.1\r\nHost: h\r\n\r\n")
    assert not c.in_head and sink.events == [("request", b"GET", b"/a", "HTTP/1.1"), ("end",)]


@pytest.mark.parametrize(("header", "plain"), [
    (b"Range: bytes=0-1", False), (b"Authorization: x", False), (b"If-None-Match: x", False),
    (b"Accept: */*", True), (b"Cookie: a=b", True),
])
def test_headers_that_can_change_a_cached_answer_make_a_request_not_plain(
        header: bytes, plain: bool) -> None:
    c, sink, _ = core()
    c.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n" + header + b"\r\n\r\n")
    assert sink.heads[0].plain is plain


@pytest.mark.parametrize(("request_bytes", "keep_alive"), [
    (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
])
def test_keep_alive_is_what_the_request_allows(request_bytes: bytes, keep_alive: bool) -> None:
    c, sink, _ = core()
    c.receive_data(request_bytes)
    assert sink.heads[0].keep_alive is keep_alive


def test_a_body_comes_between_its_head_and_its_end_and_expect_is_seen() -> None:
    c, sink, _ = core()
    c.receive_data(b"POST /u HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                   b"Expect: 100-continue\r\n\r\nhel")
    c.receive_data(b"lo")
    assert sink.events == [("request", b"POST", b"/u", "HTTP/1.1"), ("body", b"hel"),
                           ("body", b"lo"), ("end",)]
    assert sink.heads[0].has_body and sink.heads[0].expect


def test_pipelined_requests_come_out_in_the_order_they_came_with_their_bodies() -> None:
    c, sink, _ = core()
    c.receive_data(GET + b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi"
                   + b"HEAD /c HTTP/1.1\r\nHost: h\r\n\r\n")
    assert sink.events == [
        ("request", b"GET", b"/a", "HTTP/1.1"), ("end",),
        ("request", b"POST", b"/b", "HTTP/1.1"), ("body", b"hi"), ("end",),
        ("request", b"HEAD", b"/c", "HTTP/1.1"), ("end",),
    ]


def test_requests_before_a_malformed_one_are_delivered_then_its_page_and_nothing_after(
        ) -> None:
    c, sink, _ = core()
    page = c.receive_data(GET + b"BAD\x01 / HTTP/1.1\r\n\r\n" + GET)
    assert page is not None and page.status == 400
    assert sink.events == [("request", b"GET", b"/a", "HTTP/1.1"), ("end",)]
    assert c.receive_data(GET) is page  # a refused connection carries nothing more
    assert len(sink.heads) == 1


# -- HTTP.sys's limits ----------------------------------------------------------------------


@pytest.mark.parametrize(("request_bytes", "page"), [
    (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n", errors.URL_TOO_LONG),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 100 + b"\r\n\r\n",
     errors.FIELD_TOO_LONG),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-A: 0123456789\r\n" * 20 + b"\r\n",
     errors.REQUEST_TOO_LONG),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errors.INVALID_HOSTNAME),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", errors.VERSION_NOT_SUPPORTED),
    (b"G@T / HTTP/1.1\r\nHost: h\r\n\r\n", errors.INVALID_VERB),
    (b"GET / HTTP/1.1\r\nHost h\r\n\r\n", errors.BAD_REQUEST),
])
def test_a_head_over_a_limit_or_malformed_gets_http_sys_page(
        request_bytes: bytes, page: errors.ErrorPage) -> None:
    c, sink, _ = core(max_field=64, max_request=256)
    found = c.receive_data(request_bytes)
    assert found is not None
    if page is errors.VERSION_NOT_SUPPORTED:  # llhttp may refuse the version itself
        assert found in (errors.VERSION_NOT_SUPPORTED, errors.BAD_REQUEST)
    else:
        assert found is page
    assert sink.heads == []


def test_an_endless_head_is_cut_by_the_guard_without_waiting_for_its_end() -> None:
    c, sink, _ = core(max_field=64, max_request=256)
    assert c.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: ") is None
    page = None
    for _ in range(100):  # the value never ends; each read is under the field limit
        page = c.receive_data(b"v" * 30)
        if page is not None:
            break
    assert page in (errors.REQUEST_TOO_LONG, errors.FIELD_TOO_LONG)
    assert sink.heads == []


def test_request_line_of_a_refused_head_says_what_came() -> None:
    c, _, _ = core(max_field=64, max_request=256)
    c.receive_data(b"GET /partial HTTP/1.1\r\nHost: h\r\nX-Long: " + b"v" * 100)
    assert c.request_line() == (b"HTTP/1.1", b"GET", b"/partial")


# -- underscore headers ------------------------------------------------------------------


def test_a_header_with_an_underscore_is_dropped_and_counted() -> None:
    c, sink, counters = core()
    c.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX_User: admin\r\nX-User: alice\r\n\r\n")
    assert sink.heads[0].headers == [(b"Host", b"h"), (b"X-User", b"alice")]
    assert counters.underscore_headers_dropped == 1
    c.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nA_B: 1\r\nC_D: 2\r\n\r\n")
    assert counters.underscore_headers_dropped == 3


def test_a_dropped_header_still_counts_toward_the_head_limits() -> None:
    c, sink, _ = core(max_field=64, max_request=128)
    page = c.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X_A: 0123456789\r\n" * 10
                          + b"\r\n")
    assert page is errors.REQUEST_TOO_LONG and sink.heads == []


def test_underscore_headers_pass_when_allowed() -> None:
    c, sink, counters = core(allow=True)
    c.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nX_User: admin\r\n\r\n")
    assert (b"X_User", b"admin") in sink.heads[0].headers
    assert counters.underscore_headers_dropped == 0


# -- the one response framer ---------------------------------------------------------------

CL13 = b"Content-Length: 13\r\n"
CLOSE = b"Connection: close\r\n"
KEEP = b"Connection: keep-alive\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


@pytest.mark.parametrize(("version", "head_only", "status", "length", "keep", "expected"), [
    # a length: Content-Length, kept open
    ("HTTP/1.1", False, 200, 13, True, (CL13, Body.LENGTH, True)),
    # no length on HTTP/1.1: chunked
    ("HTTP/1.1", False, 200, UNKNOWN, True, (CHUNKED, Body.CHUNKED, True)),
    # no length on HTTP/1.0: the body ends with the connection, whatever was asked
    ("HTTP/1.0", False, 200, UNKNOWN, True, (CLOSE, Body.UNTIL_CLOSE, False)),
    # HTTP/1.0 with keep-alive and a length: it says so
    ("HTTP/1.0", False, 200, 13, True, (CL13 + KEEP, Body.LENGTH, True)),
    ("HTTP/1.0", False, 200, 13, False, (CL13 + CLOSE, Body.LENGTH, False)),
    # the request or the listener wants it closed
    ("HTTP/1.1", False, 200, 13, False, (CL13 + CLOSE, Body.LENGTH, False)),
    ("HTTP/1.1", False, 200, UNKNOWN, False, (CHUNKED + CLOSE, Body.CHUNKED, False)),
    # HEAD: the GET's length, no body; no length: no framing at all
    ("HTTP/1.1", True, 200, 13, True, (CL13, Body.NONE, True)),
    ("HTTP/1.1", True, 200, UNKNOWN, True, (b"", Body.NONE, True)),
    ("HTTP/1.0", True, 200, UNKNOWN, True, (KEEP, Body.NONE, True)),
    # 1xx and 204 never carry a Content-Length; 304 keeps a declared one
    ("HTTP/1.1", False, 204, 0, True, (b"", Body.NONE, True)),
    ("HTTP/1.1", False, 101, UNKNOWN, True, (b"", Body.NONE, True)),
    ("HTTP/1.1", False, 304, UNKNOWN, True, (b"", Body.NONE, True)),
    ("HTTP/1.1", False, 304, 13, True, (CL13, Body.NONE, True)),
])
def test_framing_and_keep_alive_are_decided_in_one_place(
        version: str, head_only: bool, status: int, length: int, keep: bool,
        expected: tuple[bytes, Body, bool]) -> None:
    assert frame_response(version, head_only, status, length, keep) == expected


def test_a_prepared_head_with_its_length_gets_only_the_connection_line() -> None:
    # The response cache stores heads with Content-Length: for the fast path's requests
    # (HTTP/1.1, keep-alive) the framer adds nothing, so the stored bytes go out as they are.
    assert frame_response("HTTP/1.1", False, 200, 13, True, length_in_head=True) == \
        (b"", Body.LENGTH, True)
    assert frame_response("HTTP/1.1", False, 200, 13, False, length_in_head=True) == \
        (CLOSE, Body.LENGTH, False)
    assert frame_response("HTTP/1.0", False, 200, 13, True, length_in_head=True) == \
        (KEEP, Body.LENGTH, True)


def test_an_error_page_is_framed_by_the_same_writer_and_closes() -> None:
    date = b"Date: Sat, 28 Nov 2026 08:00:00 GMT\r\n"
    whole = error_response(errors.QUEUE_FULL, date)
    head, _, body = whole.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nConnection: close\r\n" in head + b"\r\n" and b"Retry-After: 1" in head
    assert b"Content-Length: %d" % len(body) in head and body == errors.body(errors.QUEUE_FULL)
    head_only = error_response(errors.NOT_FOUND, date, head_only=True)
    assert head_only.endswith(b"\r\n\r\n") and b"Content-Length: " in head_only


# -- the exchange state table --------------------------------------------------------------


def test_an_exchange_walks_from_received_to_done() -> None:
    state = S.RECEIVED
    for event in (E.DISPATCH, E.RESPOND, E.COMPLETE):
        state = advance(state, event)
    assert state is S.DONE
    assert advance(advance(S.RECEIVED, E.DISPATCH), E.REQUEUE) is S.RECEIVED
    assert advance(S.RECEIVED, E.RESPOND) is S.RESPONDING  # answered by the listener


@pytest.mark.parametrize("state", [S.RECEIVED, S.DISPATCHED, S.RESPONDING])
def test_a_client_that_leaves_abandons_an_unfinished_exchange(state: ExchangeState) -> None:
    assert advance(state, E.CLIENT_GONE) is S.ABANDONED


def test_an_illegal_transition_names_the_state_and_the_event() -> None:
    with pytest.raises(IllegalTransition, match=r"DONE.*RESPOND") as caught:
        advance(S.DONE, E.RESPOND)
    assert (caught.value.state, caught.value.event) == (S.DONE, E.RESPOND)
    with pytest.raises(IllegalTransition, match=r"ABANDONED.*COMPLETE"):
        advance(S.ABANDONED, E.COMPLETE)


def test_the_fast_table_is_the_transition_table() -> None:
    for state, event in itertools.product(ExchangeState, ExchangeEvent):
        assert TABLE[state][event] == TRANSITIONS.get((state, event))


def test_every_state_is_reachable_and_done_and_abandoned_are_final() -> None:
    reached, frontier = {S.RECEIVED}, [S.RECEIVED]
    while frontier:
        state = frontier.pop()
        for event in ExchangeEvent:
            nxt = TRANSITIONS.get((state, event))
            if nxt is not None and nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    assert reached == set(ExchangeState)
    assert not [key for key in TRANSITIONS if key[0] in (S.DONE, S.ABANDONED)]


# -- an exchange between a fake client connection and a fake worker link --------------------


class FakeClock:
    now = 100.0
    date_line = b"Date: Sat, 28 Nov 2026 08:00:00 GMT\r\n"


class FakeClient:
    """roles.Client, writing into a list and recording what it is told."""

    def __init__(self) -> None:
        self.listener = FakeClock()
        self.date_line = FakeClock.date_line
        self.client, self.server = ("127.0.0.1", 40000), ("127.0.0.1", 8080)
        self.transport: Any = None
        self.paused_writing = False
        self.sent = self.logged = 0
        self.log_addresses = self.log_last = None
        self.failed_request = (b"", b"", b"")
        self.tls: Any = None
        self.scheme = "http"
        self.out: list[bytes] = []
        self.done: list[Any] = []
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.out.append(data)

    def writelines(self, data: tuple[bytes, ...]) -> None:
        self.out.extend(data)

    def may_keep_alive(self) -> bool:
        return True

    def exchange_done(self, ex: Any) -> None:
        self.done.append(ex)

    def observe(self, ex: Any, block: bytes, body: bytes) -> None:
        pass

    def httperr(self, status: int, reason: str, ex: Any) -> None:
        pass

    def emit(self, event: str, **fields: Any) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def abort(self, client_gone: bool = False) -> None:
        self.aborted = True

    def start_file(self, sender: Any) -> None:
        pass

    def file_finished(self) -> None:
        pass


class FakeLink:
    def __init__(self) -> None:
        self.apps: dict[object, int] = {None: 0}
        self.streams: dict[int, Any] = {}
        self.frames: list[bytes] = []
        self.abandoned: list[int] = []

    def send(self, data: bytes) -> None:
        self.frames.append(data)

    def grant(self, sid: int, n: int) -> None:
        from webgarden.ipc import frames, messages

        self.frames.append(frames.encode(frames.FrameType.CREDIT, sid, messages.count_payload(n)))

    def abandon(self, sid: int) -> None:
        self.abandoned.append(sid)


def exchange(request: bytes = GET) -> tuple[Any, FakeClient, FakeLink]:
    from webgarden.listener.exchange import Exchange

    c, sink, _ = core()
    c.receive_data(request)
    client, link = FakeClient(), FakeLink()
    ex = Exchange(client, sink.heads[0])  # type: ignore[arg-type]
    ex.attach(link, 1)
    link.streams[1] = ex
    return ex, client, link


def response_head(length: int, body: bytes = b"") -> Any:
    from webgarden.ipc import messages

    return messages.ResponseHead(200, b"HTTP/1.1 200 OK\r\nServer: t\r\n", length, body)


def test_a_response_with_a_length_is_complete_at_its_last_byte_before_the_workers_end() -> None:
    ex, client, link = exchange()
    ex.on_response_head(response_head(6), 0)
    ex.on_response_body(b"abc", 0)
    assert ex.state is S.RESPONDING and client.done == []
    ex.on_response_body(b"def", 0)
    assert ex.state is S.DONE and client.done == [ex]  # logged now, not at END
    credits = len(link.frames)
    ex.on_response_body(b"", 1)  # the worker's END comes later: nothing more happens
    ex.client_gone()  # and a client leaving now drops nothing
    assert ex.state is S.DONE and client.done == [ex] and link.abandoned == []
    assert len(link.frames) == credits
    assert b"".join(client.out).endswith(b"\r\n\r\nabcdef")


def test_bytes_past_the_content_length_never_reach_the_client_but_are_credited() -> None:
    ex, client, link = exchange()
    ex.on_response_head(response_head(4, b"ab"), 0)
    ex.on_response_body(b"cdEXTRA", 0)
    sent = b"".join(client.out)
    assert sent.endswith(b"\r\n\r\nabcd") and b"EXTRA" not in sent
    before = len(link.frames)
    ex.on_response_body(b"more", 1)
    assert len(link.frames) == before + 1  # a CREDIT, so the worker's stream can end
    assert b"more" not in b"".join(client.out) and not ex.close_after


def test_a_head_response_is_complete_with_its_head() -> None:
    ex, client, _ = exchange(b"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n")
    ex.on_response_head(response_head(13), 0)
    assert ex.state is S.DONE and client.done == [ex]
    ex.on_response_body(b"Hello, World!", 1)
    assert b"Hello" not in b"".join(client.out)


def test_a_stream_without_a_length_ends_only_with_the_workers_end() -> None:
    ex, client, _ = exchange()
    ex.on_response_head(response_head(UNKNOWN), 0)
    ex.on_response_body(b"part", 0)
    assert ex.state is S.RESPONDING
    ex.on_response_body(b"", 1)
    assert ex.state is S.DONE
    assert b"".join(client.out).endswith(b"4\r\npart\r\n0\r\n\r\n")


def test_an_error_after_the_response_began_cuts_the_connection_instead_of_a_page() -> None:
    ex, client, _ = exchange()
    ex.on_response_head(response_head(10, b"abc"), 0)
    ex.fail(errors.GATEWAY_TIMEOUT)
    assert client.aborted and ex.state is S.RESPONDING
    assert b"504" not in b"".join(client.out)


def test_an_error_page_before_any_byte_abandons_the_workers_stream() -> None:
    ex, client, link = exchange()
    ex.fail(errors.GATEWAY_TIMEOUT)
    assert ex.state is S.DONE and link.abandoned == [1] and ex.close_after
    assert b"".join(client.out).startswith(b"HTTP/1.1 504 ")
    ex.on_response_head(response_head(2, b"ok"), 1)  # too late: dropped
    assert b"ok" not in b"".join(client.out)


def test_a_worker_lost_after_the_whole_answer_went_out_fails_nothing() -> None:
    ex, client, _ = exchange()
    ex.on_response_head(response_head(2, b"ok"), 0)  # complete; the END never comes
    assert ex.done and ex.abandoned  # the fate of its stream no longer matters
    assert ex.worker_lost() is False
    assert ex.state is S.DONE and not client.aborted and client.done == [ex]


def test_a_request_failed_by_its_workers_loss_is_not_abandoned() -> None:
    ex, client, _ = exchange(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    assert ex.worker_lost() is False  # not idempotent: 502
    assert ex.done and not ex.abandoned  # the caller reports it as failed
    assert b"".join(client.out).startswith(b"HTTP/1.1 502 ")


def test_an_idempotent_request_whose_worker_died_goes_back_in_line() -> None:
    ex, client, _ = exchange()
    assert ex.worker_lost() is True
    assert ex.state is S.RECEIVED and ex.link is None and client.out == []


#: Worker heads the listener refuses: fields that frame the response or manage the
#: connection (the listener's alone), and anything that could split the response.
UNSOUND_HEADS = [
    *(b"HTTP/1.1 200 OK\r\n" + field + b"\r\n" for field in (
        b"Content-Length: 0", b"transfer-encoding: chunked", b"CONNECTION: keep-alive",
        b"Keep-Alive: timeout=5", b"Upgrade: websocket", b"Content-Length : 0")),
    b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n",  # a bare LF
    b"HTTP/1.1 200 OK\r\nX-A: 1\rX-B: 2\r\n",  # a bare CR
    b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 200 OK\r\n",  # an empty line: a second response
    b"HTTP/1.1 200 OK\r\nX-A: 1",  # not ended by CRLF
    b"http/1.1 200 OK\r\n", b"HTTP/1.0 200 OK\r\n", b"",
]


@pytest.mark.parametrize("block", UNSOUND_HEADS)
def test_a_worker_head_that_frames_or_splits_its_response_is_unsound(block: bytes) -> None:
    assert sound_response_head(block) is None


def test_a_worker_head_may_carry_fields_that_only_resemble_framing_ones() -> None:
    from webgarden.ipc import messages

    block = b"HTTP/1.1 200 OK\r\nX-Content-Length: 3\r\nContent-Type: text/plain\r\n"
    assert sound_response_head(block) is not None
    ex, client, _ = exchange()
    ex.on_response_head(messages.ResponseHead(200, block, 2, b"ok"), 1)
    assert b"".join(client.out).startswith(b"HTTP/1.1 200 OK\r\nX-Content-Length: 3\r\n")
