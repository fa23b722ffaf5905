"""HTTP/2's rules that need no socket: request heads, response heads, and the bounds on a
client's frames. The asyncio adapter is `http2.py`; the `h2` library (sans-IO) does the
framing, HPACK and the stream states underneath both.

1. A stream's request header list becomes the same `http1.RequestHead` an HTTP/1.1 request
   makes (`request_head`), with HTTP.sys's limits: the `:path` over `MaxFieldLength` is
   414, a field over it 400 FieldLength, the fields over `MaxRequestBytes` 400
   RequestLength. Header names with `_` are dropped and counted as HTTP/1.1 drops them.
   `:authority` is the Host (and becomes a `host` field when none was sent, so WSGI has
   HTTP_HOST); split `cookie` fields are joined with "; " (RFC 9113 §8.2.3).
2. Response heads come as HTTP/1.1 header blocks (a worker's, checked by the link; a
   cached entry's; a file's; an error page): `response_headers` turns one into an h2
   header list: `:status` first, lower-case names, without the fields that belong to an
   HTTP/1.1 connection (Connection, Keep-Alive, Transfer-Encoding, Upgrade,
   Proxy-Connection) and without a line that is not a `token: value` field. Converted
   heads are kept (`PreparedHeads`, bounded), so a cached entry is converted once.
3. Bounds on what a client sends, beside h2's own (`MAX_HEADER_LIST_SIZE` for the decoded
   list, which stops an HPACK bomb; 64 CONTINUATION frames):
   * `FrameGauge` reads the frame headers in the client's bytes before h2 buffers them:
     a header block (HEADERS and its CONTINUATIONs) over `max_block` bytes, or with more
     than `MAX_CONTINUATIONS` CONTINUATION frames, ends the connection (a CONTINUATION
     flood, CVE-2024-27316 and its kin, is refused at the first frame over the bound).
   * `ResetMeter` counts the RST_STREAMs a client sends for the streams it opened
     (rapid reset, CVE-2023-44487): more than `MAX_RESETS` within `RESET_WINDOW` seconds
     ends the connection with GOAWAY ENHANCE_YOUR_CALM. netty's bound (200 in 30 s).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from hpack import Encoder

from webgarden.listener import errors, http1
from webgarden.listener.http1 import NOT_PLAIN, HeadLimits, ParseCounters, RequestHead

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

#: CONTINUATION frames after one HEADERS. A block at the byte bound (32 KiB by default)
#: split at the smallest maximum frame size (16 KiB) needs 2; h2 itself allows 64.
MAX_CONTINUATIONS = 8
#: RST_STREAMs a client may send within RESET_WINDOW seconds (netty's defaults).
MAX_RESETS = 200
RESET_WINDOW = 30.0
#: Converted response heads kept (by the head's bytes, without its Date line).
MAX_PREPARED = 1024
#: HPACK-encoded response header lists kept (`StatelessEncoder`).
MAX_BLOCKS = 4096

_HEADERS, _CONTINUATION = 0x1, 0x9
_END_HEADERS = 0x4

#: Response fields that belong to an HTTP/1.1 connection, never to an HTTP/2 stream.
CONNECTION_FIELDS = frozenset({b"connection", b"keep-alive", b"proxy-connection",
                               b"transfer-encoding", b"upgrade"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch

H2Headers = list[tuple[bytes, bytes]]


# -- requests --------------------------------------------------------------------------

def request_head(fields: Iterable[tuple[bytes, bytes]], ended: bool, limits: HeadLimits,
                 counters: ParseCounters, began: float
                 ) -> tuple[RequestHead, errors.ErrorPage | None]:
    """The `RequestHead` of one stream's request, and the page that refuses it, if any.
    `ended`: the HEADERS frame ended the stream (no body). h2 has checked the fields
    (pseudo-headers, lower-case names, no connection fields, no CR/LF/NUL)."""
    head = RequestHead()
    head.began = began
    head.version = "HTTP/2"
    head.keep_alive = True
    head.has_body = not ended
    head.method = b"GET"
    max_field, page = limits.max_field, None
    authority = b""
    cookies: list[bytes] = []
    headers = head.headers
    for name, value in fields:
        if name[:1] == b":":
            if name == b":path":
                head.url = value
            elif name == b":method":
                head.method = value
            elif name == b":authority":
                authority = value
            continue
        size = len(name) + len(value)
        head.size += size + 4
        if size > max_field:
            page = page or errors.FIELD_TOO_LONG
        if http1._UNDERSCORE in name and not limits.allow_underscores:
            counters.underscore_headers_dropped += 1
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        _note(head, name, value)
        headers.append((name, value))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if authority:
        if head.host and head.host != authority:
            page = page or errors.INVALID_HOSTNAME
        elif not head.host:
            head.host = authority
            headers.append((b"host", authority))
    if len(head.url) > max_field:
        page = errors.URL_TOO_LONG
    elif page is None and head.size + len(head.url) > limits.max_request:
        page = errors.REQUEST_TOO_LONG
    return head, page


def _note(head: RequestHead, name: bytes, value: bytes) -> None:
    """What the exchange, the cache's fast path and the log read of one field."""
    if name == b"host":
        head.host = value
    elif name == b"content-length":
        head.has_body = head.has_body and value != b"0"
    elif name == b"accept-encoding":
        head.accept_encoding = value
    elif name == b"user-agent":
        head.user_agent = value
    elif name == b"referer":
        head.referer = value
    if name in NOT_PLAIN:
        head.plain = False


# -- responses -------------------------------------------------------------------------

def response_headers(block: bytes) -> H2Headers:
    """An HTTP/1.1 response head ("HTTP/1.1 200 OK\\r\\n" and field lines; a final empty
    line may be there or not) as an h2 header list. The status is the three digits after
    the version."""
    lines = block.split(b"\r\n")
    status = lines[0][9:12]
    found: H2Headers = [(b":status", status if status.isdigit() else b"500")]
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name in CONNECTION_FIELDS or not _TOKEN(name):
            continue
        found.append((name, value.strip()))
    return found


class PreparedHeads:
    """Response heads converted once: by the head's bytes (without the Date line, which
    changes each second), its h2 header list. Bounded: past `MAX_PREPARED`, it starts
    over (a site's responses come in few distinct heads)."""

    __slots__ = ("heads",)

    def __init__(self) -> None:
        self.heads: dict[bytes, H2Headers] = {}

    def get(self, block: bytes) -> H2Headers:
        found = self.heads.get(block)
        if found is None:
            if len(self.heads) >= MAX_PREPARED:
                self.heads.clear()
            found = self.heads[block] = response_headers(block)
        return found


class StatelessEncoder(Encoder):
    """HPACK for responses without the dynamic table, as nginx encodes them: each field a
    literal (its name indexed when the static table has it), so a header list always
    encodes to the same bytes and is encoded once (`MAX_BLOCKS` kept, shared by every
    connection). The first block of a connection starts with a table size update to 0, so
    the client's decoder keeps nothing either. Costs a few bytes per field against an
    indexed one, and saves HPACK's encoding (a third of a cached answer's CPU, measured).
    h2 may announce the client's table size: any size >= 0 fits."""

    def __init__(self) -> None:
        super().__init__()
        self._first = True

    @property
    def header_table_size(self) -> int:
        return 0

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        pass  # the client's decoder may hold more; we store nothing

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        key = tuple(headers)
        block = _BLOCKS.get(key)
        if block is None:
            if len(_BLOCKS) >= MAX_BLOCKS:
                _BLOCKS.clear()
            block = _BLOCKS[key] = _ENCODER.encode(key, huffman)
        if self._first:
            self._first = False
            return _SIZE_ZERO + block
        return block


def _stateless() -> tuple[Encoder, bytes]:
    encoder = Encoder()
    encoder.header_table_size = 0
    return encoder, encoder.encode([])  # the size update: every later block is stateless


_ENCODER, _SIZE_ZERO = _stateless()
_BLOCKS: dict[tuple[Any, ...], bytes] = {}


# -- bounds on the client's frames -----------------------------------------------------

class FrameGauge:
    """Reads the frame headers (9 bytes: length, type, flags, stream) in the bytes a client
    sends, skipping payloads, to bound header blocks before h2 buffers them. `feed` says
    why the connection must end, or None. It expects the connection preface first."""

    __slots__ = ("block", "continuations", "max_block", "partial", "skip")

    def __init__(self, max_block: int) -> None:
        self.max_block = max_block
        self.skip = len(PREFACE)  # bytes still to pass over (the preface, then payloads)
        self.partial = b""  # a frame header cut by a read
        self.block = -1  # bytes of the header block being received; -1: none
        self.continuations = 0

    def feed(self, data: bytes) -> str | None:
        i, n = 0, len(data)
        while i < n:
            if self.skip:
                take = min(self.skip, n - i)
                self.skip -= take
                i += take
                continue
            need = 9 - len(self.partial)
            if n - i < need:
                self.partial += data[i:]
                return None
            header = self.partial + data[i:i + need] if self.partial else data[i:i + 9]
            self.partial = b""
            i += need
            self.skip = length = int.from_bytes(header[:3], "big")
            kind, flags = header[3], header[4]
            if kind == _HEADERS:
                self.block, self.continuations = length, 0
            elif kind == _CONTINUATION and self.block >= 0:
                self.block += length
                self.continuations += 1
                if self.continuations > MAX_CONTINUATIONS:
                    return "continuation-flood"
            else:
                continue
            if self.block > self.max_block:
                return "header-block-too-large"
            if flags & _END_HEADERS:
                self.block = -1
        return None


class ResetMeter:
    """RST_STREAMs from the client within a sliding window of `RESET_WINDOW` seconds,
    counted in two buckets (the current window and the one before, weighted)."""

    __slots__ = ("clock", "count", "previous", "started")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.count = 0
        self.previous = 0

    def reset(self) -> bool:
        """One more RST_STREAM. True: past the bound, the connection must end."""
        now = self.clock()
        elapsed = now - self.started
        if elapsed >= RESET_WINDOW:
            self.previous = self.count if elapsed < 2 * RESET_WINDOW else 0
            self.count = 0
            self.started = now
            elapsed = 0.0
        self.count += 1
        weight = 1.0 - elapsed / RESET_WINDOW
        return self.count + self.previous * weight > MAX_RESETS
