"""The listener's WebSocket handshake rules, sans-IO (listener/websocket.py)."""

from __future__ import annotations

import pytest

from webgarden.listener import errors
from webgarden.listener.http1 import RequestHead
from webgarden.listener.websocket import (
    CLOSE_1011,
    Upgrade,
    check_upgrade,
    close_frame,
    tunnel_head,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
LIMITS = (1024, 20.0, 20.0)


def head(*extra: tuple[bytes, bytes], method: bytes = b"GET", version: str = "HTTP/1.1",
         has_body: bool = False, key: bytes | None = KEY, ws_version: bytes = b"13",
         connection: bytes = b"keep-alive, Upgrade") -> RequestHead:
    h = RequestHead()
    h.method, h.version, h.has_body = method, version, has_body
    h.headers = [(b"Host", b"a"), (b"Upgrade", b"websocket"), (b"Connection", connection),
                 (b"Sec-WebSocket-Version", ws_version), *extra]
    if key is not None:
        h.headers.append((b"Sec-WebSocket-Key", key))
    return h


def test_a_valid_handshake_gives_the_rfc_accept_value_and_the_offers() -> None:
    upgrade = check_upgrade(head((b"Sec-WebSocket-Protocol", b"chat, superchat"),
                                 (b"Sec-WebSocket-Extensions",
                                  b"permessage-deflate; client_max_window_bits")), LIMITS)
    assert isinstance(upgrade, Upgrade)
    assert upgrade.accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3's example
    assert upgrade.protocols == {b"chat", b"superchat"}
    assert upgrade.extensions == {b"permessage-deflate"}
    assert upgrade.limits == LIMITS


def test_a_request_that_asks_for_another_protocol_is_not_a_websocket() -> None:
    h = head()
    h.headers[1] = (b"Upgrade", b"h2c")
    assert check_upgrade(h, LIMITS) is None


@pytest.mark.parametrize("changed", [
    {"method": b"POST"}, {"version": "HTTP/1.0"}, {"has_body": True},
    {"connection": b"keep-alive"}, {"key": None}, {"key": b"c2hvcnQ="}, {"key": b"!!"},
])
def test_a_malformed_handshake_is_400(changed) -> None:
    assert check_upgrade(head(**changed), LIMITS) is errors.BAD_REQUEST


def test_another_version_is_426_which_names_13() -> None:
    assert check_upgrade(head(ws_version=b"8"), LIMITS) is errors.WEBSOCKET_VERSION
    page_head, _ = errors.head_and_body(errors.WEBSOCKET_VERSION)
    assert page_head.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13" in page_head


def _upgrade() -> Upgrade:
    checked = check_upgrade(head((b"Sec-WebSocket-Protocol", b"chat"),
                                 (b"Sec-WebSocket-Extensions", b"permessage-deflate")), LIMITS)
    assert isinstance(checked, Upgrade)
    return checked


def test_the_101_gets_the_listeners_own_upgrade_fields() -> None:
    made = tunnel_head(b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: chat\r\n"
                       b"Sec-WebSocket-Extensions: permessage-deflate\r\n", _upgrade(),
                       b"Date: x\r\n")
    assert made == (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: chat\r\n"
                    b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
                    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nDate: x\r\n\r\n")


@pytest.mark.parametrize("block", [
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: other\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Extensions: x-unoffered\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: forged\r\n",
])
def test_a_101_claiming_what_was_not_offered_is_refused(block: bytes) -> None:
    assert isinstance(tunnel_head(block, _upgrade(), b""), str)


def test_close_frames_are_unmasked_with_the_code_first() -> None:
    assert close_frame(1012) == b"\x88\x02\x03\xf4"
    assert CLOSE_1011[:4] == b"\x88" + bytes((len(CLOSE_1011) - 2,)) + (1011).to_bytes(2, "big")
