"""URL canonicalization and routing, sans-IO."""

from __future__ import annotations

import pytest

from webgarden.config.model import (
    ApplicationConfig,
    Binding,
    PoolConfig,
    ServerConfig,
    SiteConfig,
)
from webgarden.listener.routing import Router, host_of
from webgarden.listener.urls import InvalidURL, split_target


@pytest.mark.parametrize(("target", "path", "query"), [
    (b"/", "/", b""),
    (b"/a/b?x=1&y", "/a/b", b"x=1&y"),
    (b"/a/./b/../c", "/a/c", b""),
    (b"/a//b", "/a/b", b""),
    (b"/a%2Fb", "/a/b", b""),
    (b"/dir/", "/dir/", b""),
    (b"/a\\b", "/a/b", b""),
    (b"/caf%C3%A9", "/caf\xc3\xa9", b""),
    (b"http://example.com/x?q", "/x", b"q"),
    (b"*", "*", b""),
])
def test_targets_are_canonicalized(target: bytes, path: str, query: bytes) -> None:
    got = split_target(target)
    assert (got.path, got.query) == (path, query)


@pytest.mark.parametrize("target", [
    b"/../x", b"/a/%2e%2e/%2e%2e/x", b"/a%00b", b"/%ff%fe", b"/a\x01", b"relative",
    b"/" + b"a" * 261, b"/a" * 256,
])
def test_bad_targets_are_invalid_urls(target: bytes) -> None:
    with pytest.raises(InvalidURL):
        split_target(target)


def test_an_absolute_form_target_names_its_host() -> None:
    assert split_target(b"http://Example.com:8080/p").host == b"Example.com:8080"
    assert host_of(b"Example.COM:8080") == "example.com" and host_of(b"[::1]:80") == "[::1]"


def _config() -> ServerConfig:
    def site(name: str, sid: int, bindings: tuple[Binding, ...], *apps: tuple[str, str]) -> SiteConfig:
        return SiteConfig(name, sid, bindings,
                          tuple(ApplicationConfig(path, pool, "m:app") for path, pool in apps))
    return ServerConfig(
        sites=(
            site("shop", 1, (Binding("*", 80, "shop.example"),), ("/", "A"), ("/api", "B")),
            site("wild", 2, (Binding("*", 80, "*.example"),), ("/", "B")),
            site("ip", 3, (Binding("10.0.0.1", 80),), ("/", "A")),
            site("any", 4, (Binding("*", 80),), ("/", "A"), ("/shop", "B")),
        ),
        pools=(PoolConfig("A"), PoolConfig("B")),
    )


@pytest.mark.parametrize(("ip", "host", "path", "site", "pool", "script", "rest"), [
    ("127.0.0.1", "shop.example", "/x", "shop", "A", "", "/x"),
    ("127.0.0.1", "shop.example", "/api/v1", "shop", "B", "/api", "/v1"),
    ("127.0.0.1", "shop.example", "/apis", "shop", "A", "", "/apis"),
    ("127.0.0.1", "blog.example", "/", "wild", "B", "", "/"),
    ("10.0.0.1", "other.org", "/", "ip", "A", "", "/"),
    ("127.0.0.1", "other.org", "/shop", "any", "B", "/shop", ""),
    ("127.0.0.1", "other.org", "/shopping", "any", "A", "", "/shopping"),
])
def test_routes_follow_http_sys_precedence_and_whole_segment_prefixes(
    ip: str, host: str, path: str, site: str, pool: str, script: str, rest: str
) -> None:
    router = Router(_config())
    found = router.route(ip, 80, host, path)
    assert found is not None
    route, below = found
    assert (route.site, route.pool, route.script_name, below) == (site, pool, script, rest)


def test_no_site_for_the_port_is_no_route() -> None:
    assert Router(_config()).route("127.0.0.1", 81, "shop.example", "/") is None
