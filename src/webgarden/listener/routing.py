"""Routing: (local address, port, Host, path) -> site -> application -> pool. Sans-IO.

HTTP.sys's precedence (iis-semantics.md §2.2, W32 urlprefix-strings): a binding with an
explicit host name wins over a wildcard host (`*.example.com`, left-most label only), which
wins over a binding on that IP with no host, which wins over a binding on every address
(`*`) with no host. Within a site, the application with the longest path prefix that
matches whole segments wins ("/shop" matches "/shop" and "/shop/x", not "/shopping").
No site for the Host: `None`, and the listener answers 400 Invalid Hostname.
"""

from __future__ import annotations

from dataclasses import dataclass

from webgarden.config.model import ApplicationConfig, ServerConfig


@dataclass(frozen=True, slots=True)
class Route:
    site: str
    pool: str
    app: ApplicationConfig  # a worker hosting this application takes the request
    script_name: str  # "" for "/", else the application path


class _Site:
    __slots__ = ("apps", "hsts_header", "https_port", "name")

    def __init__(self, name: str, apps: list[tuple[str, Route]], hsts_header: bytes = b"",
                 https_port: int = 0) -> None:
        self.name = name
        self.hsts_header = hsts_header  # <hsts enabled>: the line every https answer gets
        self.https_port = https_port  # <hsts redirectHttpToHttps>: where http goes; 0: no
        # Longest prefix first, so the first match is the most specific.
        self.apps = sorted(apps, key=lambda item: len(item[0]), reverse=True)

    def match(self, path: str) -> tuple[Route, str] | None:
        for prefix, route in self.apps:
            if prefix == "/":
                return route, path
            if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
                return route, path[len(prefix) :]
        return None


#: Distinct (address, port, Host header) triples whose site is remembered.
SITE_CACHE_SIZE = 4096


class Router:
    def __init__(self, config: ServerConfig) -> None:
        self._cache: dict[tuple[str, int, bytes], _Site | None] = {}
        # (port) -> ordered candidate lists by precedence
        self._exact: dict[tuple[int, str], list[tuple[str, _Site]]] = {}
        self._wild: dict[int, list[tuple[str, str, _Site]]] = {}
        self._by_ip: dict[tuple[int, str], _Site] = {}
        self._any: dict[int, _Site] = {}
        # <security><access sslFlags="Ssl">: plain http requests get 403.4.
        self.ssl_required = "Ssl" in config.web_server.security.access.ssl_flags
        for site_config in config.sites:
            apps: list[tuple[str, Route]] = []
            for app in site_config.applications:
                script = "" if app.path == "/" else app.path
                apps.append((app.path, Route(site_config.name, app.pool, app, script)))
            hsts = site_config.hsts
            https = [b.port for b in site_config.bindings if b.https]
            site = _Site(site_config.name, apps,
                         hsts.header() if hsts.enabled else b"",
                         https[0] if https and hsts.enabled and hsts.redirect_http_to_https
                         else 0)
            for b in site_config.bindings:
                host = b.host.lower()
                if host.startswith("*."):
                    self._wild.setdefault(b.port, []).append((host[1:], b.address, site))
                elif host:
                    self._exact.setdefault((b.port, host), []).append((b.address, site))
                elif b.address != "*":
                    self._by_ip[(b.port, b.address)] = site
                else:
                    self._any[b.port] = site
        for wild in self._wild.values():
            wild.sort(key=lambda item: len(item[0]), reverse=True)

    def site_for(self, local_ip: str, port: int, host: str) -> _Site | None:
        if host:
            exact = self._exact.get((port, host))
            if exact:
                for address, site in exact:
                    if address in ("*", local_ip):
                        return site
            wild = self._wild.get(port)
            if wild:
                for suffix, address, site in wild:
                    if host.endswith(suffix) and len(host) > len(suffix) and address in (
                        "*",
                        local_ip,
                    ):
                        return site
        return self._by_ip.get((port, local_ip)) or self._any.get(port)

    def site_for_header(self, local_ip: str, port: int, header: bytes) -> _Site | None:
        """`site_for` with the raw Host header, remembered: the hot path's lookup."""
        key = (local_ip, port, header)
        try:
            return self._cache[key]
        except KeyError:
            pass
        site = self.site_for(local_ip, port, host_of(header))
        if len(self._cache) >= SITE_CACHE_SIZE:
            self._cache.clear()  # hostile Host variety: start over rather than grow
        self._cache[key] = site
        return site

    def route(self, local_ip: str, port: int, host: str, path: str) -> tuple[Route, str] | None:
        """The route and the path below the application, or None (no site, or no app)."""
        site = self.site_for(local_ip, port, host)
        if site is None:
            return None
        return site.match(path)


def host_of(header: bytes) -> str:
    """The Host header's name, lower case, without the port. '' if absent or empty."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1]
    return text.rsplit(":", 1)[0] if ":" in text else text
