"""The small interfaces the listener's parts see each other through (owners down, events up).

The listener owns its connections; a connection owns its exchanges; an exchange owns the
file it is sending. An owned part never imports its owner: it is handed the owner as one
of these Protocols, and tells it what happened (`exchange_done`, `file_finished`, ...).
This module imports nothing of the listener, so no import circle can pass through it.

* `Client`: a client connection as an exchange, the file sender, the local responder and
  the access log see it. HTTP/1.1's `HttpConnection` is one; an HTTP/2 stream's
  connection and a WebSocket will be others, with the same exchange events.
* `Stream`: an exchange as the worker link and the pool see it: the events a worker's
  frames become, and what the manager still reads of a request.
* `StreamLink`: the worker link as an exchange sees it.
"""

from __future__ import annotations

from typing import Any, Protocol


class Clock(Protocol):
    """The listener's coarse clock and its current `Date` line."""

    @property
    def now(self) -> float: ...

    @property
    def date_line(self) -> bytes: ...


class Client(Protocol):
    """A client connection, from below."""

    client: tuple[str, int]  # peer address
    server: tuple[str, int]  # local address
    transport: Any
    paused_writing: bool
    sent: int  # response bytes written (the log's sc-bytes)
    logged: int  # `sent` when the previous response was logged
    log_addresses: tuple[bytes, bytes, bytes] | None  # the access log's, kept here
    log_last: tuple[Any, ...] | None  # the access log's: its last line's head
    failed_request: tuple[bytes, bytes, bytes]  # version, method, target of a bad request
    # TLS: the handshake's `tls.Session` (server name, ALPN, client certificate), None on
    # plain TCP; `scheme` "https" or "http" (what the app sees).
    tls: Any
    scheme: str

    @property
    def listener(self) -> Clock: ...

    @property
    def date_line(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...

    def writelines(self, data: tuple[bytes, ...]) -> None: ...

    def may_keep_alive(self) -> bool: ...

    def exchange_done(self, ex: Any) -> None: ...  # an exchange's response is complete

    def observe(self, ex: Any, block: bytes, body: bytes) -> None: ...  # offer it to the cache

    def httperr(self, status: int, reason: str, ex: Any) -> None: ...

    def emit(self, event: str, **fields: Any) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def abort(self, client_gone: bool = False) -> None: ...

    def start_file(self, sender: Any) -> None: ...

    def file_finished(self) -> None: ...


class StreamLink(Protocol):
    """A worker link, as the exchange on one of its streams sees it."""

    apps: dict[object, int]
    streams: dict[int, Any]

    def send(self, data: bytes) -> None: ...

    def grant(self, sid: int, n: int) -> None: ...

    def abandon(self, sid: int) -> None: ...


class Stream(Protocol):
    """An exchange on a worker stream, as the link, the queue and the manager see it."""

    app: Any
    method: str
    target: bytes
    since: float
    conn: Client

    @property
    def done(self) -> bool: ...

    @property
    def started(self) -> bool: ...

    @property
    def abandoned(self) -> bool: ...

    def attach(self, link: Any, sid: int) -> None: ...

    def on_response_head(self, head: Any, end: int) -> None: ...

    def on_response_body(self, data: bytes, end: int) -> None: ...

    def on_credit(self, n: int) -> None: ...

    def on_sendfile(self, *args: Any, **kwargs: Any) -> None: ...  # H1 shapes its arguments

    def on_worker_abort(self) -> None: ...

    def worker_lost(self) -> bool: ...

    def fail(self, page: Any, httperr: bool = True) -> None: ...
