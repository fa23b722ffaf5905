"""Which protocol serves a new connection: HTTP/1.1 (`connection.py`) or HTTP/2 (`http2.py`).

* Cleartext, with `<webLimits http2Cleartext="true">` (h2c by prior knowledge): a
  connection that opens with the HTTP/2 preface (`PRI * HTTP/2.0...`) speaks HTTP/2; any
  other first bytes are HTTP/1.1's. Until the first bytes decide, the HTTP/1.1 connection
  already exists and is registered, so its header-wait timer closes a silent client.
  (`Upgrade: h2c` is not offered: no browser uses it, and curl and h2load speak prior
  knowledge.)
* TLS: ALPN decides in `connection_made` (uvloop calls it once the handshake is over):
  "h2" (`tls.ALPN_PROTOCOLS` offers it first, as HTTP.sys enables HTTP/2 on TLS by
  default) is HTTP/2, anything else (or no ALPN) HTTP/1.1.
* Otherwise (the default) the factory makes the HTTP/1.1 connection directly: nothing
  is added to its path.
"""

from __future__ import annotations

import asyncio
from typing import Any

from webgarden.listener.connection import HttpConnection, ListenerServices
from webgarden.listener.http2 import Http2Connection
from webgarden.listener.http2_core import PREFACE


def connection(listener: ListenerServices, port: int, secure: bool = False) -> asyncio.Protocol:
    """The protocol factory of a listening socket (`port`: the binding's configured one;
    `secure`: its connections are TLS)."""
    if secure or listener.config.limits.http2_cleartext:
        return Chooser(listener, port)
    return HttpConnection(listener, port)


class Chooser(asyncio.Protocol):
    """Hands the transport to the protocol ALPN chose (TLS) or the first bytes name
    (h2c), with those bytes (`transport.set_protocol`)."""

    def __init__(self, listener: ListenerServices, port: int) -> None:
        self.listener = listener
        self.port = port
        self.http1 = HttpConnection(listener, port)
        self.transport: Any = None
        self.buffer = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        http1 = self.http1
        http1.connection_made(transport)  # registered, its timers run; TLS: its session
        session = http1.tls
        if session is None:
            return  # cleartext: the first bytes decide
        if session.alpn == "h2":
            self._http2(b"").secure(session, http1.head_extra)
        else:
            transport.set_protocol(http1)

    def data_received(self, data: bytes) -> None:
        buffered = self.buffer + data
        n = min(len(buffered), len(PREFACE))
        if buffered[:n] != PREFACE[:n]:
            self.transport.set_protocol(self.http1)
            self.http1.data_received(buffered)
            return
        if n < len(PREFACE):
            self.buffer = buffered  # a preface cut by a read: at most 23 bytes wait
            return
        self._http2(buffered)

    def _http2(self, data: bytes) -> Http2Connection:
        self.listener.connections.discard(self.http1)
        http2 = Http2Connection(self.listener, self.port)
        self.transport.set_protocol(http2)
        http2.connection_made(self.transport)
        if data:
            http2.data_received(data)
        return http2

    def connection_lost(self, exc: Exception | None) -> None:
        self.http1.connection_lost(exc)  # closed before its first bytes decided

    def eof_received(self) -> bool | None:
        return self.http1.eof_received()
