"""What the WSGI host and the ASGI host share about a response (STYLE.md 9: one core).

Both hosts turn what their application says into the same frames; the rules that decide
those frames live here, once, as pure functions:

* `check_head`: validate a status and headers and serialize them as the listener sends
  them (no CR or LF inside a line, no hop-by-hop headers, no Content-Length or Date: framing
  and the clock are the listener's), with a `Server` line unless the app set one.
* `shared_cacheable`: whether the listener's cache may keep a response, so the host gathers
  it whole (one RESPONSE frame with END) up to `MAX_GATHER` instead of streaming it.
* `dynamic_coding`: IIS's dynamic compression decision (urlCompression, httpCompression)
  for one response, and the head with the Content-Encoding and Vary it then carries.
* `file_extent`: the bytes of an open file a zero-copy SENDFILE sends.

The hosts differ only in how they wait: WSGI threads block on the channel's condition,
ASGI tasks await the loop.
"""

from __future__ import annotations

import os
import re
import stat

from webgarden import SERVER_NAME
from webgarden.compression import CompressionRules, negotiate
from webgarden.ipc import messages
from webgarden.ipc.descriptors import user_filesystem
from webgarden.ipc.frames import MAX_CHUNK

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)

SERVER_LINE = f"Server: {SERVER_NAME}\r\n"

ERROR_500 = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">'
    b"\r\n<HTML><HEAD><TITLE>Internal Server Error</TITLE>\r\n"
    b'<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    b"<BODY><h2>Internal Server Error</h2>\r\n"
    b"<hr><p>HTTP Error 500. The application failed while processing the request.</p>\r\n"
    b"</BODY></HTML>\r\n"
)
ERROR_500_HEADERS = [("Content-Type", "text/html; charset=us-ascii")]

#: The most a cacheable response is gathered before it streams: the most one RESPONSE frame
#: carries, and the cache's default maxResponseSize (256 KB), so a larger response is
#: streamed and not cached, as HTTP.sys does.
MAX_GATHER = MAX_CHUNK


class ClientDisconnected(OSError):
    """The client went away; the response is abandoned. (An OSError, as ASGI 2.4 asks of a
    `send` on a closed connection.)"""


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_checked_names: dict[str, str] = {}  # header names already validated -> lower case
#: Header names remembered as valid; a bound, since an app may invent names per request.
MAX_CHECKED_NAMES = 1024
_SPECIAL = HOP_BY_HOP | {"content-length", "date", "server"}

Head = tuple[int, bytes]  # status code, serialized head


def check_head(
    status: str, headers: list[tuple[str, str]]
) -> tuple[Head, int, str, bool]:
    """Validate a head; return (status code, serialized head), the Content-Length, the
    Content-Type and whether the app set a Content-Encoding.

    The head is the status line and the header lines, each ending in CRLF, in latin-1, so the
    listener only adds its own lines (Date, framing, Connection). A CR or LF anywhere but at
    the end of a line is refused: no app can split a response.
    """
    if not isinstance(status, str) or len(status) < 4 or status[3] != " ":
        raise ValueError(f"invalid WSGI status {status!r}: expected '200 OK'")
    code = int(status[:3])
    if not 100 <= code <= 999:
        raise ValueError(f"invalid WSGI status code {code}")
    parts = ["HTTP/1.1 ", status, "\r\n"]
    length = -1
    server = False
    content_type, encoded = "", False
    for name, value in headers:
        lower = _checked_names.get(name)
        if lower is None:
            if not isinstance(name, str) or _TOKEN.fullmatch(name) is None:
                raise ValueError(f"invalid header name {name!r}")
            lower = name.lower()
            if len(_checked_names) < MAX_CHECKED_NAMES:
                _checked_names[name] = lower
        if lower in _SPECIAL:
            if lower == "content-length":
                length = int(value)
                continue
            if lower != "server":
                continue  # hop-by-hop (framing is the listener's), or Date (its clock)
            server = True
        if not isinstance(value, str):
            raise TypeError(f"header {name!r}: the value must be str, not {type(value).__name__}")
        if lower == "content-type":
            content_type = value
        elif lower == "content-encoding":
            encoded = True
        parts += (name, ": ", value, "\r\n")
    if not server:
        parts.append(SERVER_LINE)
    text = "".join(parts)
    lines = 1 + (len(parts) - 3) // 4 + (0 if server else 1)  # status, headers, Server
    if text.count("\n") != lines or text.count("\r") != lines:
        raise ValueError("a header or the status contains a CR or LF")
    return (code, text.encode("latin-1")), length, content_type, encoded


def shared_cacheable(head: Head, method: str, content_length: int) -> bool:
    """Whether the listener's cache may keep this response: a 200 to a GET whose
    Cache-Control says public and max-age or s-maxage, and no no-store, no-cache or
    private (cache.py decides the rest). One look at the serialized head."""
    code, serialized = head
    if code != 200 or method != "GET" or content_length > MAX_GATHER:
        return False
    lower = serialized.lower()
    values = []
    at = lower.find(b"\r\ncache-control:")
    while at >= 0:
        end = lower.index(b"\r\n", at + 2)
        values.append(lower[at + 16:end])
        at = lower.find(b"\r\ncache-control:", end)
    control = b",".join(values)
    return (b"public" in control and (b"max-age" in control or b"s-maxage" in control)
            and b"no-store" not in control
            and b"no-cache" not in control and b"private" not in control)


def dynamic_coding(
    rules: CompressionRules, request: messages.RequestHead, head: Head, encoded: bool,
    content_type: str, size: int | None,
) -> tuple[str, Head] | None:
    """The coding to compress this response with and its head with Content-Encoding and
    Vary added, or None: IIS's dynamic compression, for a 200 of a compressible type at
    least minFileSizeForComp long (`size` None: a streamed body of unknown length), for a
    client that accepts it."""
    code, serialized = head
    if code != 200 or encoded or (size is not None and size < rules.min_size):
        return None
    if rules.no_http10 and request.version == "HTTP/1.0":
        return None
    accept = None
    for name, value in request.headers:
        lower = name.lower()
        if lower == b"accept-encoding":
            accept = value.decode("latin-1")
        elif (lower == b"via" and rules.no_proxies) or (lower == b"range" and rules.no_range):
            return None
    coding = negotiate(accept, rules.dynamic_codings)
    if coding == "identity" or not rules.compressible(
        static=False, status=200, content_type=content_type,
        size=rules.min_size if size is None else size, response_headers={},
    ):
        return None
    extra = f"Content-Encoding: {coding}\r\nVary: Accept-Encoding\r\n".encode()
    return coding, (code, serialized + extra)


def file_extent(fd: int, offset: int, content_length: int) -> int | None:
    """Bytes to send of the open file `fd` from `offset` (at most `content_length` when it
    is not -1), or None when `fd` is not a regular file (the host then reads it instead)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or user_filesystem(fd) is not None:
        return None  # FUSE too: the listener refuses it (its reads could stall its loop)
    count = max(info.st_size - offset, 0)
    return count if content_length < 0 else min(count, content_length)
