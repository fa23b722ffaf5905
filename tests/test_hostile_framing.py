"""A compromised application that frames its own response: a real server and real workers,
the app writing a RESPONSE frame by hand (tests/apps/hostile.py). Framing and the
connection are the listener's alone (http1.frame_response): such a head is refused with
502 for that request, and nothing the app wrote reaches the client."""

from __future__ import annotations

import httpx
import pytest

from harness import ServerProcess, raw_request


@pytest.fixture
def server(start_server) -> ServerProcess:
    # A short shutdown limit: the hostile route holds its thread until it is killed.
    return start_server("hostile:application", "--threads", "2", "--shutdown-time-limit", "1")


@pytest.mark.parametrize("field", [
    "Transfer-Encoding: chunked", "Content-Length: 0", "Connection: keep-alive",
])
def test_a_worker_head_with_a_framing_field_gets_502_and_nothing_of_the_app(
        server: ServerProcess, field: str) -> None:
    target = "/framing-header?field=" + field.replace(" ", "%20")
    answer = raw_request(server.port, f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"forged" not in answer and field.encode() not in answer
    assert httpx.get(f"{server.url}/hello").text == "hello"  # the server serves on
