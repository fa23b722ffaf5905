"""Where a request goes once its head is parsed: route, answer locally, or queue. One place.

Every protocol calls `start` for each exchange it makes (an HTTP/1.1 request when it
becomes the active one in its connection's pipeline, an HTTP/2 stream when its HEADERS
arrive): canonical URL and Host (400 URL, 400 Hostname), site and application (404),
the response cache and static files (`LocalResponder.answer`), then the pool's queue
(503 QueueFull, the offline page, or a reset at `TcpLevel`). No protocol repeats it.
"""

from __future__ import annotations

from typing import Any, Protocol

from webgarden.listener import errors, tls
from webgarden.listener.exchange import Exchange
from webgarden.listener.local import LocalResponder
from webgarden.listener.pool_queue import PoolQueue
from webgarden.listener.routing import Router, host_of
from webgarden.listener.urls import InvalidURL, split_target


class Services(Protocol):
    """What routing needs of the listener."""

    router: Router
    local: LocalResponder
    pools: dict[str, PoolQueue]
    now: float

    def httperr(self, conn: Any, page: errors.ErrorPage | None, reason: str | None = None,
                ex: Exchange | None = None) -> None: ...


def start(services: Services, ex: Exchange, port: int, local_address: str) -> None:
    """Route `ex` (received on `local_address`:`port`, the binding's configured port) and
    answer it here or hand it to its pool's queue."""
    try:
        target = split_target(ex.target)
    except InvalidURL:
        ex.fail(errors.INVALID_URL)
        return
    host = target.host if target.host is not None else ex.host
    if not host and ex.version != "HTTP/1.0":  # HTTP/1.1 and HTTP/2 must name it
        ex.fail(errors.INVALID_HOSTNAME)
        return
    site = services.router.site_for_header(local_address, port, host)
    if site is None:
        ex.fail(errors.INVALID_HOSTNAME)
        return
    session = ex.conn.tls
    if session is None:
        if site.https_port:  # <hsts redirectHttpToHttps>
            tls.redirect_to_https(ex, host_of(host), site.https_port)
            return
        if services.router.ssl_required:  # <access sslFlags="Ssl">
            ex.fail(errors.SSL_REQUIRED, httperr=False)
            return
    elif session.server_name is not None and tls.misdirected(session, host_of(host)):
        ex.fail(errors.MISDIRECTED)
        return
    matched = site.match(target.path)
    if matched is None:
        ex.fail(errors.NOT_FOUND)
        return
    route, ex.path = matched
    ex.script_name = route.script_name
    ex.app = route.app
    ex.query = target.query
    ex.route = route
    ex.url_path = target.path
    if ex.refusal is not None:
        ex.fail(ex.refusal)  # a malformed WebSocket handshake (listener/websocket.py): 400, 426
        return
    if ex.websocket is None and services.local.answer(ex, route, target.path, ex.path,
                                                      services.now):
        return  # a cache hit or a file: no worker needed
    pool = ex.pool = services.pools[route.pool]
    page = pool.submit(ex)
    if page is not None:
        if pool.reset_when_offline and page is pool.offline:
            services.httperr(ex.conn, page, ex=ex)
            ex.conn.abort()  # loadBalancerCapabilities TcpLevel: a reset, not a page
        else:
            ex.fail(page)
