"""Responses the listener makes itself, in HTTP.sys's words (iis-semantics.md §3.3-3.4).

Each `ListenerError` says whose fault it is (`client` or `server`), carries the status, the
page's texts and the HTTPERR reason. The pages are HTTP.sys's template byte for byte, so
tools that recognise IIS's errors recognise ours; the connection is closed after each
(`http1.error_response` writes them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from webgarden import SERVER_NAME


@dataclass(frozen=True, slots=True)
class ErrorPage:
    status: int
    title: str  # the status line's reason phrase and the page's TITLE
    heading: str  # H2
    text: str  # P
    reason: str  # HTTPERR s-reason
    fault: str  # "client" or "server"


def _page(status: int, title: str, heading: str, text: str, reason: str) -> ErrorPage:
    return ErrorPage(status, title, heading, text, reason, "client" if status < 500 else "server")


BAD_REQUEST = _page(400, "Bad Request", "Bad Request", "HTTP Error 400. The request is badly formed.", "BadRequest")
INVALID_HOSTNAME = _page(400, "Bad Request", "Bad Request - Invalid Hostname", "HTTP Error 400. The request hostname is invalid.", "Hostname")
INVALID_URL = _page(400, "Bad Request", "Bad Request - Invalid URL", "HTTP Error 400. The request URL is invalid.", "URL")
INVALID_VERB = _page(400, "Bad Request", "Bad Request - Invalid Verb", "HTTP Error 400. The request verb is invalid.", "Verb")
INVALID_HEADER = _page(400, "Bad Request", "Bad Request - Invalid Header", "HTTP Error 400. The request has an invalid header name.", "Header")
REQUEST_TOO_LONG = _page(400, "Bad Request", "Bad Request - Request Too Long", "HTTP Error 400. The size of the request headers is too long.", "RequestLength")
FIELD_TOO_LONG = _page(400, "Bad Request", "Bad Request - Header Field Too Long", "HTTP Error 400. A request header field is too long.", "FieldLength")
FORBIDDEN = _page(403, "Forbidden", "Forbidden", "HTTP Error 403. The directory has no default document, and browsing it is off.", "Forbidden")
SSL_REQUIRED = _page(403, "Forbidden", "Forbidden - SSL Required", "HTTP Error 403.4. The page must be viewed over a secure channel.", "SslRequired")
NOT_FOUND = _page(404, "Not Found", "Not Found", "HTTP Error 404. The requested resource is not found.", "NotFound")
MISDIRECTED = _page(421, "Misdirected Request", "Misdirected Request", "HTTP Error 421. The request's host name is not the one its TLS connection was made for.", "Misdirected")
URL_TOO_LONG = _page(414, "Request URL Too Long", "Request URL Too Long", "HTTP Error 414. The request URL is too long.", "URL_Length")
VERSION_NOT_SUPPORTED = _page(505, "HTTP Version Not Supported", "HTTP Version Not Supported", "HTTP Error 505. The HTTP version is not supported.", "Version_N/S")
NOT_IMPLEMENTED = _page(501, "Not Implemented", "Not Implemented", "HTTP Error 501. The request transfer encoding is not supported.", "N/I")
QUEUE_FULL = _page(503, "Service Unavailable", "Service Unavailable", "HTTP Error 503. The service is unavailable.", "QueueFull")
APP_OFFLINE = _page(503, "Service Unavailable", "Service Unavailable", "HTTP Error 503. The service is unavailable.", "AppOffline")
POOL_DISABLED = _page(503, "Service Unavailable", "Service Unavailable", "HTTP Error 503. The service is unavailable.", "Disabled")
APP_SHUTDOWN = _page(503, "Service Unavailable", "Service Unavailable", "HTTP Error 503. The service is unavailable.", "AppShutdown")
BAD_GATEWAY = _page(502, "Bad Gateway", "Bad Gateway", "HTTP Error 502. The worker process serving the request failed.", "Connection_Abandoned_By_AppPool")
GATEWAY_TIMEOUT = _page(504, "Gateway Timeout", "Gateway Timeout", "HTTP Error 504. The application did not answer in time.", "Timer_ExecutionTimeout")
WEBSOCKET_VERSION = _page(426, "Upgrade Required", "Upgrade Required", "HTTP Error 426. The WebSocket version is not supported: use version 13.", "WebSocket_Version")
INTERNAL = _page(500, "Internal Server Error", "Internal Server Error", "HTTP Error 500. The server encountered an internal error.", "Internal")

#: Seconds a client is asked to wait after a 503 (Retry-After).
RETRY_AFTER = 1


def body(page: ErrorPage) -> bytes:
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
        f"<HTML><HEAD><TITLE>{page.title}</TITLE>\r\n"
        '<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
        f"<BODY><h2>{page.heading}</h2>\r\n"
        f"<hr><p>{page.text}</p>\r\n"
        "</BODY></HTML>\r\n"
    ).encode("ascii")


@cache
def head_and_body(page: ErrorPage) -> tuple[bytes, bytes]:
    """The page's status line and headers (without framing, Connection and Date: the HTTP
    core adds them, `http1.error_response`), and its body."""
    content = body(page)
    lines = [
        f"HTTP/1.1 {page.status} {page.title}",
        "Content-Type: text/html; charset=us-ascii",
        f"Server: {SERVER_NAME}",
    ]
    if page.status == 503:
        lines.append(f"Retry-After: {RETRY_AFTER}")
    elif page.status == 426:
        lines.append("Sec-WebSocket-Version: 13")  # RFC 6455 §4.4: the version it speaks
    return ("\r\n".join(lines) + "\r\n").encode("ascii"), content
