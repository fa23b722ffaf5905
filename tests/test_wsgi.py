"""The worker's WSGI host (PEP 3333), through a real server."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from harness import Client


@pytest.fixture
def server(start_server):
    return start_server("testapp:application", "--threads", "4")


def test_the_whole_app_under_wsgiref_validator_raises_no_warning(start_server) -> None:
    server = start_server("testapp:validated_app", "--threads", "2")
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/hello").text == "Hello, World!"
        assert http.get("/stream?n=2").text == "part 0\npart 1\n"
        assert http.get("/write").text == "written and returned"
        assert http.post("/lines", content=b"a\nb\nc\n").text == "3"
        assert http.post("/digest", content=b"x" * 100_000).text.startswith("100000 ")
        assert http.get("/big?size=1000").content == b"x" * 1000
        assert http.get("/environ?a=1", headers={"X-Test": "t"}).json()["HTTP_X_TEST"] == "t"
    server.stop()
    for word in ("Warning", "AssertionError", "Traceback"):
        assert word not in server.stderr, server.stderr


def test_environ_follows_pep_3333(server) -> None:
    response = httpx.get(
        f"{server.url}/environ?q=%20x&y=2", headers={"X-Test": "yes", "Content-Type": "text/x"}
    )
    env = response.json()
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == "" and env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "q=%20x&y=2"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1" and env["wsgi.url_scheme"] == "http"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(server.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_TEST"] == "yes" and env["CONTENT_TYPE"] == "text/x"
    assert env["webgarden.pool"] == "DefaultAppPool"
    assert env["REQUEST_URI"] == "/environ?q=%20x&y=2"


def test_percent_encoded_paths_reach_the_app_decoded_as_latin_1_of_utf_8(server) -> None:
    env = httpx.get(f"{server.url}/environ%2F..%2Fenviron").json()
    assert env["PATH_INFO"] == "/environ"
    client = Client(server.port)
    client.send(b"GET /caf%C3%A9 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert client.read_response()[0] == 404  # routed to the app, which has no such route


def test_an_app_exception_gives_500_with_the_traceback_in_the_log_only(server) -> None:
    response = httpx.get(f"{server.url}/error")
    assert response.status_code == 500
    assert "Traceback" not in response.text and "boom" not in response.text
    assert "HTTP Error 500" in response.text
    server.stop()
    assert "Traceback" in server.stderr and "boom: the test app failed on purpose" in server.stderr


def test_an_exception_after_the_head_closes_the_connection_instead_of_faking_an_end(server) -> None:
    client = Client(server.port)
    client.send(b"GET /error-after-start HTTP/1.1\r\nHost: a\r\n\r\n")
    with pytest.raises(ConnectionError):
        client.read_response()  # a chunked body that never gets its last chunk


def test_start_response_with_exc_info_replaces_an_unsent_head(server) -> None:
    response = httpx.get(f"{server.url}/exc-info")
    assert (response.status_code, response.text) == (500, "replaced")


def test_close_is_called_after_a_normal_response_and_after_a_failing_one(server) -> None:
    assert httpx.get(f"{server.url}/close?tag=normal").text == "ab"
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{server.url}/close-error?tag=failing")
    server.stop()
    assert "closed normal" in server.stderr and "closed failing" in server.stderr


def test_file_wrapper_is_sent_by_the_listener_zero_copy(server, shared_tmp: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = shared_tmp / "blob.bin"
    path.write_bytes(data)
    with httpx.Client(base_url=server.url) as http:
        for _ in range(3):  # several on one keep-alive connection: each ends where it should
            response = http.get("/file", params={"path": str(path)})
            assert response.headers["content-length"] == str(len(data))
            assert response.content == data
        head = http.head("/file", params={"path": str(path)})
        assert head.headers["content-length"] == str(len(data)) and head.content == b""


def test_the_write_callable_and_the_iterable_both_reach_the_client(server) -> None:
    assert httpx.get(f"{server.url}/write").text == "written and returned"


def test_a_response_larger_than_one_frame_streams_whole(server) -> None:
    size = 5 * 1024 * 1024 + 3
    response = httpx.get(f"{server.url}/big", params={"size": size})
    assert len(response.content) == size and response.content == b"x" * size


def test_a_post_body_round_trips_exactly(server) -> None:
    body = os.urandom(3 * 1024 * 1024)
    response = httpx.post(f"{server.url}/echo", content=body)
    assert response.content == body
    env = httpx.post(f"{server.url}/environ", content=b"abc").json()
    assert env["CONTENT_LENGTH"] == "3"


def test_demo_site_answers_its_start_page_and_demo_app(start_server) -> None:
    server = start_server("webgarden.demo:application")
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/")
        assert page.status_code == 200 and "webgarden" in page.text and "/hello" in page.text
        assert http.get("/hello").text == "Hello, World!"
        assert json.loads(http.get("/worker").text)["pool"] == "DefaultAppPool"
        assert http.post("/echo", content=b"hi there").text == "hi there"
