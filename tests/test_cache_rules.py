"""Which requests and responses the response cache takes (listener/cache.py), HTTP.sys's rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from config_documents import document
from webgarden.config import loads
from webgarden.config.webserver import CacheProfile
from webgarden.listener.cache import (
    DEFAULT_MAX_CACHE_MB,
    CacheRequest,
    CacheResponse,
    CacheSettings,
    Hit,
    Miss,
    ResponseCache,
    Skip,
)
from webgarden.listener.static import FileTarget

DATE = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
PUBLIC = (("Content-Type", "text/html"), ("Cache-Control", "public, max-age=60"))


def request(path: str = "/page", *, method: str = "GET", query: bytes = b"",
            coding: str = "identity", version: str = "1.1", body: bool = False,
            site: int = 1, **headers: str) -> CacheRequest:
    return CacheRequest(site, method, path, query,
                        {k.replace("_", "-"): v for k, v in headers.items()},
                        coding, version, body)


def response(body: bytes = b"hello", headers: tuple[tuple[str, str], ...] = PUBLIC,
             status: int = 200, file: FileTarget | None = None) -> CacheResponse:
    return CacheResponse(status, "OK" if status == 200 else "Other", headers, body, file)


def offer(cache: ResponseCache, req: CacheRequest, resp: CacheResponse, now: float
          ) -> Hit | Skip | None:
    """One request through the cache: a hit, or what store() said."""
    found = cache.lookup(req, now)
    if isinstance(found, Hit):
        return found
    if found.key is None:
        assert found.skip is not None
        return found.skip
    return cache.store(found.key, resp, now)


def stored(resp: CacheResponse, req: CacheRequest | None = None,
           settings: CacheSettings | None = None) -> Skip | None:
    """What happens to `resp` on the second request (the frequent-hit rule satisfied)."""
    cache = ResponseCache(settings or CacheSettings())
    req = req or request()
    offer(cache, req, resp, 0.0)
    return offer(cache, req, resp, 1.0)  # type: ignore[return-value]


def test_a_public_response_is_cached_on_the_second_request_and_hit_on_the_third() -> None:
    cache = ResponseCache(CacheSettings())
    assert offer(cache, request(), response(), 0.0) == Skip.NOT_FREQUENT
    assert offer(cache, request(), response(), 5.0) is None
    hit = offer(cache, request(), response(), 6.0)
    assert isinstance(hit, Hit)
    assert hit.render(DATE) == (b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                b"Cache-Control: public, max-age=60\r\nContent-Length: 5\r\n"
                                + DATE + b"\r\nhello")


def test_two_requests_further_apart_than_the_period_do_not_make_it_frequent() -> None:
    cache = ResponseCache(CacheSettings())
    assert offer(cache, request(), response(), 0.0) == Skip.NOT_FREQUENT
    assert offer(cache, request(), response(), 10.5) == Skip.NOT_FREQUENT  # a new window
    assert offer(cache, request(), response(), 12.0) is None


def test_the_threshold_and_period_come_from_server_runtime() -> None:
    config = loads(document(root_extra='<system.webServer><serverRuntime '
                                       'frequentHitThreshold="3" frequentHitTimePeriod="00:00:30"'
                                       " /></system.webServer>"))
    cache = ResponseCache(CacheSettings.from_config(config))
    assert [offer(cache, request(), response(), t) for t in (0.0, 20.0, 29.0)] == [
        Skip.NOT_FREQUENT, Skip.NOT_FREQUENT, None]
    once = ResponseCache(replace(CacheSettings(), frequent_hit_threshold=1))
    assert offer(once, request(), response(), 0.0) is None


@pytest.mark.parametrize(("req", "skip"), [
    (request(method="POST"), Skip.METHOD),
    (request(method="HEAD"), Skip.METHOD),
    (request(body=True), Skip.BODY),
    (request(version="2.0"), Skip.VERSION),
    (request(authorization="Basic eDp5"), Skip.AUTHORIZATION),
    (request(range="bytes=0-1"), Skip.RANGE),
    (request(if_range='"x"'), Skip.RANGE),
    (request(translate="F"), Skip.TRANSLATE),
    (request(expect="something"), Skip.EXPECT),
    (request(if_match='"x"'), Skip.CONDITIONAL),
    (request(if_unmodified_since="Sun, 06 Nov 1994 08:49:37 GMT"), Skip.CONDITIONAL),
    (request(query=b"a=1"), Skip.QUERY),
])
def test_requests_that_never_use_the_cache(req: CacheRequest, skip: Skip) -> None:
    cache = ResponseCache(CacheSettings())
    assert cache.lookup(req, 0.0) == Miss(None, skip)


def test_requests_that_may_use_it() -> None:
    for req in (request(expect="100-continue"), request(version="1.0"),
                request(cookie="a=b"), request(if_none_match='"x"')):
        assert stored(response(), req) is None


@pytest.mark.parametrize(("resp", "skip"), [
    (response(status=404), Skip.STATUS),
    (response(status=206), Skip.STATUS),
    (response(status=301), Skip.STATUS),
    (response(b""), Skip.EMPTY),
    (response(headers=(*PUBLIC, ("Set-Cookie", "s=1"))), Skip.SET_COOKIE),
    (response(headers=(*PUBLIC, ("set-cookie", "s=1"))), Skip.SET_COOKIE),
    (response(headers=(*PUBLIC, ("Vary", "Cookie"))), Skip.VARY),
    (response(headers=(*PUBLIC, ("Vary", "Accept-Encoding, User-Agent"))), Skip.VARY),
    (response(headers=(*PUBLIC, ("Vary", "*"))), Skip.VARY),
    (response(headers=(("Cache-Control", "public, max-age=60, no-store"),)), Skip.NO_STORE),
    (response(headers=(("Cache-Control", "private, max-age=60"),)), Skip.NO_STORE),
    (response(headers=(("Cache-Control", "no-cache"),)), Skip.NO_STORE),
    (response(headers=(*PUBLIC, ("Last-Modified", "yesterday"))), Skip.LAST_MODIFIED),
    (response(headers=(*PUBLIC, ("Content-Encoding", "gzip"))), Skip.ENCODING),
    (response(headers=(("Content-Type", "text/html"),)), Skip.UNCACHEABLE),
    (response(headers=(("Cache-Control", "public"),)), Skip.UNCACHEABLE),
    (response(headers=(("Cache-Control", "max-age=60"),)), Skip.UNCACHEABLE),
    (response(headers=(("Cache-Control", "public, max-age=0"),)), Skip.UNCACHEABLE),
    (response(headers=(("Cache-Control", "public, max-age=soon"),)), Skip.UNCACHEABLE),
])
def test_responses_that_are_never_stored(resp: CacheResponse, skip: Skip) -> None:
    assert stored(resp) == skip


def test_vary_accept_encoding_is_allowed_and_codings_are_separate_entries() -> None:
    vary = (*PUBLIC, ("Vary", "Accept-Encoding"))
    cache = ResponseCache(CacheSettings())
    plain, packed = request(coding="identity"), request(coding="gzip")
    gz = response(b"GZ", (*vary, ("Content-Encoding", "gzip")))
    for t in (0.0, 1.0):
        offer(cache, plain, response(headers=vary), t)
        offer(cache, packed, gz, t)
    hit_plain, hit_gz = cache.lookup(plain, 2.0), cache.lookup(packed, 2.0)
    assert isinstance(hit_plain, Hit) and hit_plain.render(DATE).endswith(b"\r\nhello")
    assert isinstance(hit_gz, Hit) and hit_gz.render(DATE).endswith(b"\r\nGZ")


def test_s_maxage_is_preferred_to_max_age() -> None:
    cache = ResponseCache(CacheSettings())
    resp = response(headers=(("Cache-Control", "public, max-age=100, s-maxage=10"),))
    offer(cache, request(), resp, 0.0)
    offer(cache, request(), resp, 1.0)
    assert isinstance(cache.lookup(request(), 10.9), Hit)
    assert isinstance(cache.lookup(request(), 11.0), Miss)


def test_size_limits_on_body_headers_and_the_whole_response() -> None:
    assert stored(response(b"x" * 262145)) == Skip.TOO_LARGE
    assert stored(response(headers=(*PUBLIC, ("X-Big", "y" * 1000)))) == Skip.HEADERS_TOO_LARGE
    small = replace(CacheSettings(), max_response_size=200)
    # Status line, headers, a two-digit Content-Length, the Date line, the blank line.
    head = len(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nCache-Control: public, "
               b"max-age=60\r\nContent-Length: 99\r\n") + 37 + 2
    assert stored(response(b"x" * (200 - head)), settings=small) is None
    assert stored(response(b"x" * (201 - head)), settings=small) == Skip.TOO_LARGE


def profiles(xml: str) -> CacheSettings:
    config = loads(document(root_extra=f"<system.webServer><caching><profiles>{xml}"
                                        "</profiles></caching></system.webServer>"))
    return CacheSettings.from_config(config)


DYNAMIC = (("Content-Type", "text/html"),)


def test_a_cache_for_time_period_profile_caches_dynamic_responses_for_its_duration() -> None:
    cache = ResponseCache(profiles('<add extension=".aspx" kernelCachePolicy="CacheForTimePeriod"'
                                   ' duration="00:00:30" />'))
    req = request("/report.aspx")
    offer(cache, req, response(headers=DYNAMIC), 0.0)
    assert offer(cache, req, response(headers=DYNAMIC), 1.0) is None
    assert isinstance(cache.lookup(req, 30.9), Hit)
    assert isinstance(cache.lookup(req, 31.0), Miss)
    assert stored(response(headers=DYNAMIC), request("/report.html")) == Skip.UNCACHEABLE


def test_a_cache_until_change_profile_keeps_the_response_until_invalidated() -> None:
    cache = ResponseCache(profiles('<add extension=".aspx" policy="CacheUntilChange" />'))
    req = request("/report.aspx")
    offer(cache, req, response(headers=DYNAMIC), 0.0)
    offer(cache, req, response(headers=DYNAMIC), 1.0)
    assert isinstance(cache.lookup(req, 100.0), Hit)
    assert cache.invalidate("/report.aspx") == 1
    assert isinstance(cache.lookup(req, 101.0), Miss)


def test_a_profile_wins_over_max_age_but_never_over_no_store() -> None:
    settings = profiles('<add extension=".aspx" kernelCachePolicy="CacheForTimePeriod" '
                        'duration="00:01:00" />')
    cache = ResponseCache(settings)
    req = request("/r.aspx")
    short = response(headers=(("Cache-Control", "public, max-age=5"),))
    offer(cache, req, short, 0.0)
    offer(cache, req, short, 1.0)
    assert isinstance(cache.lookup(req, 50.0), Hit)
    no_store = response(headers=(("Cache-Control", "no-store"),))
    assert stored(no_store, req, settings) == Skip.NO_STORE


def test_disable_cache_and_client_locations_keep_responses_off_the_server() -> None:
    disabled = profiles('<add extension=".html" kernelCachePolicy="DisableCache" />')
    assert ResponseCache(disabled).lookup(request("/a.html"), 0.0) == Miss(None, Skip.PROFILE)
    client = profiles('<add extension=".html" policy="CacheUntilChange" location="Client" />')
    assert stored(response(), request("/a.html"), client) == Skip.PROFILE


def test_vary_by_query_string_caches_queries_by_the_listed_variables() -> None:
    settings = profiles('<add extension=".aspx" policy="CacheUntilChange" '
                        'varyByQueryString="id;Lang" />')
    cache = ResponseCache(settings)

    def at(query: bytes, body: bytes, t: float) -> Hit | Skip | None:
        return offer(cache, request("/p.aspx", query=query), response(body, DYNAMIC), t)

    at(b"id=1&utm=a", b"one", 0.0)
    assert at(b"id=1&utm=b", b"one", 1.0) is None  # utm is not a key variable
    hit = at(b"utm=c&id=1", b"?", 2.0)
    assert isinstance(hit, Hit) and hit.render(DATE).endswith(b"one")
    assert at(b"id=2", b"two", 3.0) == Skip.NOT_FREQUENT
    everything = profiles('<add extension=".aspx" policy="CacheUntilChange" '
                          'varyByQueryString="*" />')
    cache = ResponseCache(everything)
    at(b"a=1", b"a", 0.0)
    at(b"a=1", b"a", 1.0)
    assert at(b"a=2", b"b", 2.0) == Skip.NOT_FREQUENT


def test_vary_by_headers_keys_entries_and_allows_that_vary() -> None:
    settings = profiles('<add extension=".aspx" policy="CacheUntilChange" '
                        'varyByHeaders="Accept-Language" />')
    cache = ResponseCache(settings)
    vary = (*DYNAMIC, ("Vary", "Accept-Language"))
    en, fr = request("/p.aspx", accept_language="en"), request("/p.aspx", accept_language="fr")
    for t in (0.0, 1.0):
        offer(cache, en, response(b"hello", vary), t)
    assert isinstance(cache.lookup(en, 2.0), Hit)
    assert isinstance(cache.lookup(fr, 2.0), Miss)


def static_file(default_document: bool = False) -> FileTarget:
    return FileTarget("/srv/site/logo.png", 3, 5_000_000_000, 7, 1, "image/png", '"7-3-1"',
                      default_document)


def test_static_files_are_cached_until_they_change() -> None:
    headers = (("Content-Type", "image/png"), ("ETag", '"7-3-1"'),
               ("Last-Modified", "Thu, 01 Jan 1970 00:00:05 GMT"))
    cache = ResponseCache(CacheSettings())
    req, resp = request("/logo.png"), response(b"PNG", headers, file=static_file())
    offer(cache, req, resp, 0.0)
    assert offer(cache, req, resp, 1.0) is None
    assert isinstance(cache.lookup(req, 100.0), Hit)
    assert cache.revalidate(lambda path: (1, 7, 3, 5_000_000_000)) == 0
    assert cache.revalidate(lambda path: (1, 7, 4, 6_000_000_000)) == 1
    assert isinstance(cache.lookup(req, 101.0), Miss)


def test_a_default_document_reached_through_its_directory_is_not_cached() -> None:
    resp = response(b"home", (("Content-Type", "text/html"),), file=static_file(True))
    assert stored(resp, request("/")) == Skip.DEFAULT_DOCUMENT


def test_the_cache_can_be_turned_off() -> None:
    for attributes in ('enabled="false"', 'enableKernelCache="false"'):
        config = loads(document(root_extra=f"<system.webServer><caching {attributes} />"
                                           "</system.webServer>"))
        cache = ResponseCache(CacheSettings.from_config(config))
        assert cache.lookup(request(), 0.0) == Miss(None, Skip.DISABLED)


def test_max_cache_size_zero_means_the_default() -> None:
    config = loads(document())
    assert CacheSettings.from_config(config).max_cache_bytes == DEFAULT_MAX_CACHE_MB << 20
    ten = loads(document(root_extra='<system.webServer><caching maxCacheSize="10" />'
                                    "</system.webServer>"))
    assert CacheSettings.from_config(ten).max_cache_bytes == 10 << 20


def test_a_profile_s_extension_matches_in_any_case() -> None:
    settings = CacheSettings(profiles=(CacheProfile(".ASPX", policy="CacheUntilChange"),))
    assert stored(response(headers=DYNAMIC), request("/x.aspx"), settings) is None
