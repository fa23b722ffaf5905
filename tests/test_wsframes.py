"""The worker's small-frame fast path against wsproto's own parser (worker/wsframes.py)."""

from __future__ import annotations

import os

from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Message, TextMessage
from wsproto.extensions import PerMessageDeflate

from webgarden.worker.wsframes import BoundedDeflate, idle, small_frame, small_frames, unmask

MASK = b"\x37\xfa\x21\x3d"


def masked(first: int, payload: bytes) -> bytes:
    return bytes((first, 0x80 | len(payload))) + MASK + unmask(payload, MASK)


def test_unmasking_is_its_own_inverse_for_every_length() -> None:
    for n in range(0, 130):
        data = os.urandom(n)
        assert unmask(unmask(data, MASK), MASK) == data
        assert unmask(data, MASK) == bytes(b ^ MASK[i % 4] for i, b in enumerate(data))


def test_whole_small_frames_become_messages_and_the_rest_is_left() -> None:
    data = masked(0x81, "héllo".encode()) + masked(0x82, b"\x00\x01") + b"\x81\xfe"
    found, used = small_frames(data, 1 << 20)
    assert [m for m, _ in found] == [{"type": "websocket.receive", "text": "héllo"},
                                     {"type": "websocket.receive", "bytes": b"\x00\x01"}]
    assert [n for _, n in found] == [6, 2] and data[used:] == b"\x81\xfe"


def test_anything_else_is_left_to_wsproto() -> None:
    for data in (masked(0x01, b"frag"),  # no FIN: a fragment
                 masked(0x89, b"ping"),  # a control frame
                 masked(0xC1, b"rsv1"),  # compressed (RSV1)
                 bytes((0x81, 4)) + b"open",  # not masked
                 masked(0x81, b"\xff\xfe"),  # not UTF-8
                 masked(0x81, b"x" * 10)[:-1]):  # incomplete
        assert small_frames(data, 1 << 20) == ([], 0)
    assert small_frames(masked(0x82, b"x" * 10), 9) == ([], 0)  # over the message limit


def test_a_server_frame_built_here_is_what_wsproto_builds() -> None:
    ws = Connection(ConnectionType.SERVER)
    for data in ("text", "é" * 40, b"\x00" * 125):
        assert small_frame(data) == ws.send(Message(data=data))
    assert small_frame(b"x" * 126) is None and small_frame("é" * 63) is None


def test_wsproto_is_idle_only_between_messages() -> None:
    ws = Connection(ConnectionType.SERVER)
    assert idle(ws)
    ws.receive_data(masked(0x01, b"fra"))  # a first fragment: a message is open
    assert [type(e) for e in ws.events()] == [TextMessage]
    assert not idle(ws)
    ws.receive_data(masked(0x80, b"g"))
    list(ws.events())
    assert idle(ws)
    ws.receive_data(masked(0x81, b"partial")[:5])  # half a frame buffered
    list(ws.events())
    assert not idle(ws)


def _deflate_pair(limit: int) -> tuple[Connection, Connection]:
    """A client and a server that agreed on permessage-deflate (the server's bounded)."""
    offer = PerMessageDeflate()
    server_ext = BoundedDeflate(limit)
    answer = server_ext.accept(offer.offer())
    assert answer is not None and answer is not False
    offer.finalize(answer if isinstance(answer, str) else "")
    return (Connection(ConnectionType.CLIENT, [offer]),
            Connection(ConnectionType.SERVER, [server_ext]))


def test_a_deflate_bomb_is_refused_with_1009_without_inflating_it() -> None:
    client, server = _deflate_pair(64 * 1024)
    bomb = client.send(Message(data=b"\x00" * (64 * 1024 * 1024)))  # 64 MiB of zeros
    assert len(bomb) < 100_000  # a few dozen KiB on the wire
    server.receive_data(bomb)
    events = list(server.events())
    assert isinstance(events[-1], CloseConnection) and events[-1].code == 1009
    inflated = sum(len(e.data) for e in events if isinstance(e, Message))
    assert inflated <= 64 * 1024 + 1


def test_compressed_messages_within_the_limit_inflate_whole() -> None:
    client, server = _deflate_pair(64 * 1024)
    for text in ("short", "long " * 10_000):
        server.receive_data(client.send(Message(data=text)))
        got = "".join(e.data for e in server.events() if isinstance(e, TextMessage))
        assert got == text
