"""The listener (IIS: HTTP.sys): owns the ports, the connections and the pool queues.

It runs no application code. Once a second `tick` refreshes the coarse clock and the
`Date` header, closes connections whose timer ran out (one sweep instead of a timer
per request), and writes the buffered log lines. The site logs (W3C) and the HTTPERR log
are `access.AccessLogs`; an HTTPERR line is also an `httperr` event in the event log.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import socket
import time
from email.utils import formatdate
from typing import Any

from webgarden.config.model import Binding, ServerConfig
from webgarden.events import EventLog
from webgarden.listener import errors, negotiate
from webgarden.listener.access import AccessLogs
from webgarden.listener.certwatch import CertWatch
from webgarden.listener.connection import HttpConnection
from webgarden.listener.exchange import Exchange
from webgarden.listener.http1 import HeadLimits, ParseCounters
from webgarden.listener.local import LocalResponder
from webgarden.listener.pool_queue import PoolQueue
from webgarden.listener.routing import Router
from webgarden.listener.tls import CertStore, Endpoint, TlsError

LISTEN_BACKLOG = 1024
#: Seconds between checks of the certificates' expiry (tls.certificate_expiring).
EXPIRY_CHECK_INTERVAL = 3600.0


def _head_limits(config: ServerConfig) -> HeadLimits:
    limits = config.limits
    return HeadLimits(limits.max_field_length, limits.max_request_bytes,
                      limits.allow_underscores_in_headers)


class BindError(Exception):
    """A configured address cannot be listened on. The message is one line for the user."""


def bind_socket(address: str, port: int) -> socket.socket:
    host = "0.0.0.0" if address == "*" else address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        why = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BindError(f"cannot listen on {host}:{port}: {why}") from None
    sock.setblocking(False)
    return sock


def _https_bindings(config: ServerConfig, key: tuple[str, int]) -> list[Binding]:
    return [b for site in config.sites for b in site.bindings
            if b.https and (b.address, b.port) == key]


def _loaded_certs(config: ServerConfig, emit: Any) -> CertStore:
    """Every certificate `config` uses, loaded (BindError: an https binding cannot serve)."""
    store = CertStore(config, emit)
    try:
        store.load_all(config)
    except TlsError as exc:
        raise BindError(str(exc)) from None
    return store


class Listener:
    def __init__(self, config: ServerConfig, pools: dict[str, PoolQueue], events: EventLog) -> None:
        self.config = config
        self.router = Router(config)
        self.local = LocalResponder(config)
        self.pools = pools
        self.events = events
        self.logs = AccessLogs(config, events)
        self.header_wait = config.limits.header_wait_timeout
        self.idle_timeout = config.limits.connection_timeout
        self.head_limits = _head_limits(config)
        # Counted across connections for the metrics (underscore headers dropped, ...).
        self.counters = ParseCounters()
        self.connections: set[HttpConnection] = set()
        self.sockets: dict[tuple[str, int], socket.socket] = {}
        self.servers: dict[tuple[str, int], asyncio.AbstractServer] = {}
        self.draining = False
        self.now = 0.0
        self.date_line = b""
        self._all_closed = asyncio.Event()
        self._ticker: asyncio.TimerHandle | None = None
        self._next_certs: CertStore | None = None
        self._next_scavenge = 0.0  # loop time of the next cache scavenge
        self.loop = asyncio.get_event_loop()
        # TLS: the certificates in service, loaded by `bind`; one Endpoint per https address.
        self.certs = CertStore(config, self.emit)
        self.cert_watch: CertWatch | None = None
        self.endpoints: dict[tuple[str, int], Endpoint] = {}
        self._next_expiry_check = 0.0
        self._tick()

    @staticmethod
    def wanted(config: ServerConfig) -> set[tuple[str, int]]:
        return {(b.address, b.port) for site in config.sites for b in site.bindings}

    def bind(self) -> None:
        """Load the certificates and open every configured address (before any worker
        starts: fail early)."""
        self.certs = _loaded_certs(self.config, self.emit)
        for key in sorted(self.wanted(self.config) - set(self.sockets)):
            self.sockets[key] = bind_socket(*key)
        self.cert_watch = CertWatch(self.loop, self.certs)

    async def serve(self) -> None:
        for key, sock in self.sockets.items():
            if key not in self.servers:
                endpoint = self._endpoint(key)
                self.servers[key] = await self.loop.create_server(
                    functools.partial(negotiate.connection, self, key[1], endpoint is not None),
                    sock=sock,
                    backlog=LISTEN_BACKLOG, ssl=endpoint.context if endpoint else None,
                )

    def _endpoint(self, key: tuple[str, int]) -> Endpoint | None:
        """The TLS endpoint of an address whose bindings are https, else None."""
        bindings = _https_bindings(self.config, key)
        if not bindings:
            return None
        endpoint = self.endpoints.get(key)
        if endpoint is None:
            endpoint = self.endpoints[key] = Endpoint(self.certs, key[1], bindings)
        return endpoint

    def prepare(self, config: ServerConfig) -> dict[tuple[str, int], socket.socket]:
        """Bind what a new configuration adds, changing nothing else (BindError: nothing opened)."""
        opened: dict[tuple[str, int], socket.socket] = {}
        for key in sorted(self.wanted(config) & set(self.servers)):
            if (key in self.endpoints) != bool(_https_bindings(config, key)):
                # Its listening socket serves one or the other: say it, change nothing.
                raise BindError(f"{key[0]}:{key[1]} cannot change between http and https "
                                "while the server runs: restart it, or use another port")
        self._next_certs = _loaded_certs(config, self.emit)
        try:
            for key in sorted(self.wanted(config) - set(self.sockets)):
                opened[key] = bind_socket(*key)
        except BindError:
            for sock in opened.values():
                sock.close()
            raise
        return opened

    async def apply(
        self,
        config: ServerConfig,
        pools: dict[str, PoolQueue],
        opened: dict[tuple[str, int], socket.socket],
    ) -> None:
        """Switch to a new configuration: new routes and pools for the next request; new
        addresses accept; removed ones stop accepting, their established connections live on."""
        self.config = config
        self.router = Router(config)
        self.local.close()
        self.local = LocalResponder(config)  # new rules, and an empty cache
        self.logs.reconfigure(config)
        self.pools = pools
        self.header_wait = config.limits.header_wait_timeout
        self.idle_timeout = config.limits.connection_timeout
        self.head_limits = _head_limits(config)  # new connections; open ones keep theirs
        self._switch_certs(config)
        self.sockets.update(opened)
        for key in set(self.sockets) - self.wanted(config):
            self.endpoints.pop(key, None)
            server = self.servers.pop(key, None)
            if server is not None:
                server.close()
            self.sockets.pop(key).close()
        await self.serve()

    def _switch_certs(self, config: ServerConfig) -> None:
        """The certificates `prepare` loaded serve the next handshakes, with the new
        configuration's bindings and TLS settings (`Endpoint.configure`)."""
        if self.cert_watch is not None:
            self.cert_watch.close()
        self.certs = self._next_certs or CertStore(config, self.emit)
        self._next_certs = None
        for key, endpoint in self.endpoints.items():
            endpoint.configure(self.certs, _https_bindings(config, key) or endpoint.bindings)
        self.cert_watch = CertWatch(self.loop, self.certs)

    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets.values()]

    def urls(self) -> list[str]:
        """Each bound address as a URL: https where its bindings are."""
        return [f"{'https' if key in self.endpoints else 'http'}://{h}:{p}/"
                for key, (h, p) in ((k, s.getsockname()[:2]) for k, s in self.sockets.items())]

    def _tick(self) -> None:
        self.now = self.loop.time()
        self.date_line = b"Date: " + formatdate(time.time(), usegmt=True).encode() + b"\r\n"
        for conn in [c for c in self.connections if c.deadline and c.deadline <= self.now]:
            reason = conn.expired(self.now)
            if reason is not None:
                self.httperr(conn, None, reason)
                conn.close()
        self.logs.tick()
        self.local.poll_changes()
        self.local.revalidate()
        if self.now >= self._next_expiry_check:
            self.certs.check_expiry()
            self._next_expiry_check = self.now + EXPIRY_CHECK_INTERVAL
        if self.now >= self._next_scavenge:  # HTTP.sys's scavenger: idle and expired entries
            self.local.cache.scavenge(self.now)
            self._next_scavenge = self.now + self.local.cache.settings.scavenger_period
        self._ticker = self.loop.call_later(1.0, self._tick)

    def httperr(
        self, conn: HttpConnection, page: errors.ErrorPage | None, reason: str | None = None,
        ex: Exchange | None = None,
    ) -> None:
        """An error HTTP.sys logs (a page it sent, or `reason`): to HTTPERR and the event
        log. `ex`: the request it ended, when it is known."""
        self.logs.httperr(conn, page.status if page else 0,
                          reason or (page.reason if page else "-"), ex)

    def emit(self, event: str, **fields: Any) -> None:
        self.events.emit(event, **fields)

    def connection_closed(self, conn: HttpConnection) -> None:
        self.connections.discard(conn)
        if self.draining and not self.connections:
            self._all_closed.set()

    # -- shutdown ---------------------------------------------------------------------

    def stop_accepting(self) -> None:
        for server in self.servers.values():
            server.close()
        for sock in self.sockets.values():
            sock.close()

    def drain(self) -> None:
        """Idle connections close now; busy ones after their last response."""
        self.draining = True
        for conn in list(self.connections):
            conn.drain()
        if not self.connections:
            self._all_closed.set()

    async def wait_drained(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._all_closed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.cert_watch is not None:
            self.cert_watch.close()
        self.logs.close()
        self.local.close()

    def stats(self) -> dict[str, Any]:
        return {
            "connections": len(self.connections),
            "queues": {name: len(q.waiting) for name, q in self.pools.items()},
            "underscore_headers_dropped": self.counters.underscore_headers_dropped,
        }
