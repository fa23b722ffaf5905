"""A compromised ASGI application forging WebSocket upgrades on its own link: the listener
opens a tunnel only where it validated an upgrade, and only with what the client offered.
Each forgery is a `bad-upgrade` violation: the client never gets a 101, the worker is
replaced, and the server serves on."""

from __future__ import annotations

import httpx
import pytest

from harness import ServerProcess, raw_request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture
def server(start_server) -> ServerProcess:
    return start_server("hostile_ws:app", "--interface", "asgi")


def _refused(server: ServerProcess, request: bytes) -> bytes:
    server.wait_event(lambda e: e["event"] == "worker.ready")
    before = len(server.events())
    answer = raw_request(server.port, request)
    violation = server.wait_event(lambda e: e["event"] == "worker.violation", after=before)
    assert violation["reason"] == "bad-upgrade", violation
    pid = violation["pid"]
    server.wait_event(lambda e: e["event"] == "worker.ready" and e["pid"] != pid, after=before)
    assert httpx.get(f"{server.url}/hello").text == "hello"
    assert b" 101 " not in answer.split(b"\r\n", 1)[0]
    return answer


def test_a_101_for_a_request_that_asked_for_no_upgrade_is_a_violation(server) -> None:
    answer = _refused(server, b"GET /unasked HTTP/1.1\r\nHost: a\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 502 ")


@pytest.mark.parametrize("path", ["/unoffered", "/own-accept", "/extension"])
def test_a_101_claiming_what_the_client_did_not_offer_is_a_violation(server, path) -> None:
    request = (f"GET {path} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat\r\n\r\n").encode()
    answer = _refused(server, request)
    assert answer.startswith(b"HTTP/1.1 502 ")
