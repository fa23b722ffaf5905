"""The listener's HTTP/1.x behaviour, over real sockets against a real server."""

from __future__ import annotations

import socket

import pytest

from harness import Client, raw_request


@pytest.fixture
def server(start_server):
    return start_server("testapp:application", "--workers", "1", "--threads", "4")


def test_keep_alive_serves_many_requests_on_one_connection(server) -> None:
    client = Client(server.port)
    for _ in range(20):
        client.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
        status, headers, body = client.read_response()
        assert (status, body) == (200, b"Hello, World!")
        assert "close" not in headers.get("connection", "")
    client.close()


def test_responses_carry_date_and_server_headers(server) -> None:
    client = Client(server.port)
    client.send(b"GET /hello HTTP/1.1\r\nHost: localhost\r\n\r\n")
    _, headers, _ = client.read_response()
    assert headers["server"].startswith("webgarden/")
    assert headers["date"].endswith("GMT")


def test_three_pipelined_requests_in_one_write_get_three_responses_in_order(server) -> None:
    client = Client(server.port)
    client.send(
        b"GET /slow?ms=200 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nthird"
    )
    bodies = [client.read_response()[2] for _ in range(3)]
    assert bodies == [b"slow done", b"Hello, World!", b"third"]


def test_a_chunked_upload_reaches_the_app_whole(server) -> None:
    client = Client(server.port)
    client.send(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    )
    status, _, body = client.read_response()
    assert (status, body) == (200, b"hello world!")


def test_expect_100_continue_gets_an_interim_response_before_the_body(server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    )
    interim = sock.recv(100)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"ping")
    data = b""
    while not data.endswith(b"ping"):
        data += sock.recv(1000)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    sock.close()


def test_head_gets_the_headers_of_get_and_no_body(server) -> None:
    client = Client(server.port)
    client.send(b"HEAD /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    status, headers, body = client.read_response(head_only=True)
    assert (status, headers["content-length"], body) == (200, "13", b"")
    # The next response starts right after the head: no stray body bytes in between.
    assert client.read_response()[2] == b"Hello, World!"


def test_http_1_0_closes_after_the_response_unless_keep_alive_is_asked(server) -> None:
    data = raw_request(server.port, b"GET /hello HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"Hello, World!")
    client = Client(server.port)
    client.send(b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _, headers, _ = client.read_response()
    assert headers["connection"] == "keep-alive"
    client.send(b"GET /stream?n=2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    _status, headers, body = client.read_response()  # no length: ends with the connection
    assert body == b"part 0\npart 1\n" and headers["connection"] == "close"


def test_a_streamed_response_without_length_is_chunked_on_http_1_1(server) -> None:
    client = Client(server.port)
    client.send(b"GET /stream?n=3 HTTP/1.1\r\nHost: a\r\n\r\n")
    _status, headers, body = client.read_response()
    assert headers["transfer-encoding"] == "chunked"
    assert body == b"part 0\npart 1\npart 2\n"


def test_a_malformed_request_gets_400_and_the_connection_closes(server) -> None:
    data = raw_request(server.port, b"GET /hello HTTP/1.1\r\nHost a\r\nBad Header\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in data and b"HTTP Error 400" in data
    server.wait_event(lambda e: e["event"] == "httperr" and e["status"] == 400)


def test_a_lowercase_verb_is_refused_as_http_sys_does(server) -> None:
    data = raw_request(server.port, b"get /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")


def test_a_header_field_over_16_kb_is_refused(server) -> None:
    big = b"a" * 17000
    data = raw_request(server.port, b"GET /hello HTTP/1.1\r\nHost: a\r\nX-Big: " + big + b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Header Field Too Long" in data


def test_a_header_block_over_16_kb_is_refused(server) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(20))
    data = raw_request(server.port, b"GET /hello HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Request Too Long" in data


def test_a_url_over_the_field_limit_gets_414(server) -> None:
    data = raw_request(server.port, b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 414 Request URL Too Long\r\n")


def test_a_url_climbing_above_the_root_is_an_invalid_url(server) -> None:
    data = raw_request(server.port, b"GET /a/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"Invalid URL" in data


def test_http_1_1_without_host_is_an_invalid_hostname(server) -> None:
    data = raw_request(server.port, b"GET /hello HTTP/1.1\r\n\r\n")
    assert b"400 Bad Request" in data and b"Bad Request - Invalid Hostname" in data


def test_an_unsupported_http_version_gets_505(server) -> None:
    data = raw_request(server.port, b"GET /hello HTTP/2.0\r\nHost: a\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 505") or data.startswith(b"HTTP/1.1 400")


def test_requests_before_a_malformed_one_in_a_pipeline_are_answered_first(server) -> None:
    data = raw_request(
        server.port,
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n",
    )
    first, _, rest = data.partition(b"Hello, World!")
    assert first.startswith(b"HTTP/1.1 200 OK") and rest.startswith(b"HTTP/1.1 400")


def test_a_silent_connection_is_closed_after_the_header_wait_timeout(start_server) -> None:
    server = start_server("testapp:application", "--header-wait-timeout", "1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: a\r\n")  # the head never ends
    assert sock.recv(100) == b""  # closed by the server
    server.wait_event(lambda e: e.get("reason") == "Timer_HeaderWait")


def test_an_idle_keep_alive_connection_is_closed_after_the_connection_timeout(start_server) -> None:
    server = start_server("testapp:application", "--connection-timeout", "1")
    client = Client(server.port)
    client.send(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
    assert client.read_response()[0] == 200
    assert client.closed_by_server()
    server.wait_event(lambda e: e.get("reason") == "Timer_ConnectionIdle")
