"""Typed payloads of the structured frames, encoded as msgpack arrays with msgspec.

Body frames (REQUEST_BODY, RESPONSE_BODY) carry raw bytes and have no type here. CREDIT
and FILE_DONE carry one unsigned 32-bit number (`COUNT`), which is cheaper than msgpack.

What a worker sends is decoded strictly (`forbid_unknown_fields`: an array longer than the
type is an error, not silently cut), so a payload of another shape is refused whole.
"""

from __future__ import annotations

import struct

import msgspec

COUNT = struct.Struct(">I")
#: Characters of a worker's or a template's reason kept for the event log.
MAX_REASON = 2000
#: C0 and C1 controls but tab and newline: a reason reaches the operator's terminal (the
#: one-line startup error), where an escape sequence could rewrite what they read.
_CONTROLS = {c: "?" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (9, 10)}


def reason_shown(text: str) -> str:
    """A worker's or a template's reason as the server shows it: at most `MAX_REASON`
    characters, with no control characters that a terminal would act on."""
    return text[:MAX_REASON].translate(_CONTROLS)


class Ready(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    pid: int
    capacity: int  # requests the worker runs at once (its threads)


class RequestHead(msgspec.Struct, array_like=True, frozen=True):
    app: int  # index of the application in the worker's list
    method: str
    target: bytes  # the request target as received (REQUEST_URI)
    path: str  # canonical, percent-decoded path below script_name, latin-1 (PEP 3333)
    script_name: str  # the application's path prefix, "" for the root application
    query: bytes
    version: str  # "HTTP/1.1"
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int]
    server: tuple[str, int]
    scheme: str = "http"  # "ws": a WebSocket upgrade the listener validated
    window: int = 0  # request-body bytes the listener may send before it waits for credit
    # A WebSocket's settings (<webSocket>): largest message, ping interval and timeout (s).
    ws_max_message: int = 0
    ws_ping_interval: float = 0.0
    ws_ping_timeout: float = 0.0
    # TLS client certificate (<access sslFlags="SslNegotiateCert">): the listener's own
    # claims, from the handshake it verified; empty on plain TCP and without a certificate.
    ssl_client_cert: str = ""  # PEM (SSL_CLIENT_CERT)
    ssl_client_verify: str = ""  # "SUCCESS" or "NONE" on https (SSL_CLIENT_VERIFY); "" on http


class ResponseHead(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    status: int
    # The status line and header lines, each ending in CRLF, as they go on the wire; the
    # worker validated them and removed hop-by-hop headers, Content-Length and Date.
    head: bytes
    content_length: int = -1  # from the app's Content-Length, -1 when it gave none
    body: bytes = b""  # the first (with FLAG_END: the whole) body


class SendFile(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    """The body of a stream is `count` bytes from `offset` of the file the worker passed
    for this stream by SCM_RIGHTS (`ipc.descriptors`). It names no pid, path or descriptor
    number: the listener uses only the descriptor it received, once checked."""

    offset: int
    count: int


class Stats(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    requests: int
    rss: int
    private: int


class Abort(msgspec.Struct, array_like=True, frozen=True, forbid_unknown_fields=True):
    reason: str


def count_payload(n: int) -> bytes:
    return COUNT.pack(n)


def read_count(payload: bytes) -> int:
    value: int = COUNT.unpack(payload)[0]
    return value


encoder = msgspec.msgpack.Encoder()
ready_decoder = msgspec.msgpack.Decoder(Ready)
request_decoder = msgspec.msgpack.Decoder(RequestHead)
response_decoder = msgspec.msgpack.Decoder(ResponseHead)
sendfile_decoder = msgspec.msgpack.Decoder(SendFile)
stats_decoder = msgspec.msgpack.Decoder(Stats)
abort_decoder = msgspec.msgpack.Decoder(Abort)
