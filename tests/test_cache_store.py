"""The response cache's store (listener/cache.py): LRU under a byte budget, scavenging,
expiry, invalidation, flushing, conditional hits and counters. A fake clock throughout."""

from __future__ import annotations

from dataclasses import replace

import pytest

from webgarden.listener import cache as cache_module
from webgarden.listener.cache import (
    ENTRY_OVERHEAD,
    CacheRequest,
    CacheResponse,
    CacheSettings,
    CacheStats,
    Hit,
    Miss,
    ResponseCache,
)

DATE = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
LAST_MODIFIED = "Sun, 06 Nov 1994 08:49:37 GMT"
HEADERS = (("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=3600"),
           ("ETag", '"v1"'), ("Last-Modified", LAST_MODIFIED), ("Server", "webgarden"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self, step: float = 0.0) -> float:
        self.now += step
        return self.now


def request(path: str = "/a", site: int = 1, coding: str = "identity",
            **headers: str) -> CacheRequest:
    return CacheRequest(site, "GET", path, b"", {k.replace("_", "-"): v
                                                 for k, v in headers.items()}, coding)


def response(body: bytes = b"body", headers: tuple[tuple[str, str], ...] = HEADERS
             ) -> CacheResponse:
    return CacheResponse(200, "OK", headers, body)


def put(cache: ResponseCache, req: CacheRequest, resp: CacheResponse, now: float) -> None:
    """Two requests, so the frequent-hit rule stores the response."""
    for _ in range(2):
        found = cache.lookup(req, now)
        assert isinstance(found, Miss) and found.key is not None
        cache.store(found.key, resp, now)
    assert isinstance(cache.lookup(req, now), Hit), "stored"


def entry_bytes(body: bytes, headers: tuple[tuple[str, str], ...] = HEADERS) -> int:
    cache = ResponseCache(CacheSettings())
    put(cache, request(), response(body, headers), 0.0)
    return cache.stats.bytes


def test_an_entry_is_charged_its_bytes_and_the_overhead() -> None:
    size = entry_bytes(b"x" * 100)
    assert size > 100 + ENTRY_OVERHEAD
    assert entry_bytes(b"x" * 200) == size + 100


def test_the_least_recently_used_entry_is_evicted_at_the_memory_cap() -> None:
    size = entry_bytes(b"x" * 100)
    cache = ResponseCache(replace(CacheSettings(), max_cache_bytes=2 * size))
    clock = Clock()
    put(cache, request("/a"), response(b"a" * 100), clock())
    put(cache, request("/b"), response(b"b" * 100), clock(1))
    assert isinstance(cache.lookup(request("/a"), clock(1)), Hit)  # /a is now the newest
    put(cache, request("/c"), response(b"c" * 100), clock(1))
    assert isinstance(cache.lookup(request("/a"), clock()), Hit)
    assert isinstance(cache.lookup(request("/b"), clock()), Miss)
    assert isinstance(cache.lookup(request("/c"), clock()), Hit)
    assert cache.stats.evictions == 1 and cache.stats.bytes <= 2 * size


def test_a_response_larger_than_the_whole_cache_is_not_stored() -> None:
    size = entry_bytes(b"x" * 100)
    cache = ResponseCache(replace(CacheSettings(), max_cache_bytes=size - 1))
    for _ in range(2):
        found = cache.lookup(request(), 0.0)
        assert isinstance(found, Miss) and found.key is not None
        result = cache.store(found.key, response(b"x" * 100), 0.0)
    assert result is cache_module.Skip.TOO_LARGE and len(cache) == 0


def test_storing_again_under_a_key_replaces_the_entry() -> None:
    cache = ResponseCache(CacheSettings())
    put(cache, request(), response(b"one"), 0.0)
    cache.invalidate("/a")
    put(cache, request(), response(b"two"), 1.0)
    hit = cache.lookup(request(), 2.0)
    assert isinstance(hit, Hit) and hit.render(DATE).endswith(b"two") and len(cache) == 1


def test_entries_not_hit_for_the_scavenger_period_are_dropped() -> None:
    cache = ResponseCache(CacheSettings())
    clock = Clock()
    put(cache, request("/idle"), response(), clock())
    put(cache, request("/busy"), response(), clock())
    assert isinstance(cache.lookup(request("/busy"), clock(100)), Hit)
    assert cache.scavenge(clock(20)) == 1  # /idle: 120 s without a hit
    assert isinstance(cache.lookup(request("/busy"), clock()), Hit)
    assert isinstance(cache.lookup(request("/idle"), clock()), Miss)
    assert cache.scavenge(clock(119)) == 0
    assert cache.scavenge(clock(1)) == 1
    assert cache.stats.scavenged == 2


def test_scavenging_also_forgets_old_hit_counts() -> None:
    cache = ResponseCache(CacheSettings())
    cache.lookup(request(), 0.0)
    cache.scavenge(11.0)
    found = cache.lookup(request(), 11.5)
    assert isinstance(found, Miss) and found.key is not None
    assert cache.store(found.key, response(), 11.5) is cache_module.Skip.NOT_FREQUENT


def test_a_max_age_entry_expires_and_is_then_missed() -> None:
    cache = ResponseCache(CacheSettings())
    headers = (("Cache-Control", "public, max-age=30"),)
    put(cache, request(), response(headers=headers), 0.0)
    assert isinstance(cache.lookup(request(), 29.9), Hit)
    assert isinstance(cache.lookup(request(), 30.0), Miss)
    assert len(cache) == 0
    put(cache, request("/b"), response(headers=headers), 40.0)
    assert isinstance(cache.lookup(request("/b"), 69.0), Hit)
    assert cache.scavenge(70.0) == 1  # expired, though hit recently


def test_the_hit_count_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "MAX_HIT_CANDIDATES", 3)
    cache = ResponseCache(CacheSettings())
    for path in ("/1", "/2", "/3", "/4"):
        cache.lookup(request(path), 0.0)
    found = cache.lookup(request("/1"), 1.0)  # /1 was forgotten: this is its first again
    assert isinstance(found, Miss) and found.key is not None
    assert cache.store(found.key, response(), 1.0) is cache_module.Skip.NOT_FREQUENT


def test_invalidate_drops_every_variant_of_a_path_optionally_for_one_site() -> None:
    cache = ResponseCache(CacheSettings())
    put(cache, request("/a", coding="identity"), response(), 0.0)
    put(cache, request("/a", coding="gzip"), response(), 0.0)
    put(cache, request("/a", site=2), response(), 0.0)
    put(cache, request("/b"), response(), 0.0)
    assert cache.invalidate("/a", site=2) == 1
    assert cache.invalidate("/a") == 2
    assert cache.invalidate("/a") == 0
    assert len(cache) == 1 and cache.stats.invalidations == 3


def test_invalidate_file_drops_what_was_made_from_a_file() -> None:
    from webgarden.listener.static import FileTarget

    target = FileTarget("/srv/a.txt", 4, 1, 2, 3, "text/plain", '"x"')
    cache = ResponseCache(CacheSettings())
    put(cache, request("/a.txt"), replace(response(), file=target), 0.0)
    put(cache, request("/a.txt", coding="gzip"), replace(response(), file=target), 0.0)
    assert cache.invalidate_file("/srv/other.txt") == 0
    assert cache.invalidate_file("/srv/a.txt") == 2 and len(cache) == 0


def test_flush_drops_one_site_or_everything() -> None:
    cache = ResponseCache(CacheSettings())
    for site in (1, 2):
        for path in ("/a", "/b"):
            put(cache, request(path, site=site), response(), 0.0)
    assert cache.flush(site=1) == 2 and len(cache) == 2
    assert isinstance(cache.lookup(request("/a", site=2), 1.0), Hit)
    assert cache.flush() == 2 and len(cache) == 0 and cache.stats.bytes == 0


def test_a_conditional_request_that_matches_gets_a_304_from_the_cache() -> None:
    cache = ResponseCache(CacheSettings())
    put(cache, request(), response(), 0.0)
    hit = cache.lookup(request(if_none_match='"v1"'), 1.0)
    assert isinstance(hit, Hit) and hit.not_modified
    assert hit.render(DATE) == (b"HTTP/1.1 304 Not Modified\r\n"
                                b"Cache-Control: public, max-age=3600\r\nETag: \"v1\"\r\n"
                                b"Last-Modified: " + LAST_MODIFIED.encode() + b"\r\n"
                                b"Server: webgarden\r\n" + DATE + b"\r\n")
    since = cache.lookup(request(if_modified_since=LAST_MODIFIED), 1.0)
    assert isinstance(since, Hit) and since.not_modified
    other = cache.lookup(request(if_none_match='"v0"'), 1.0)
    assert isinstance(other, Hit) and not other.not_modified
    assert other.render(DATE).startswith(b"HTTP/1.1 200 OK\r\n")


def test_hop_by_hop_headers_and_date_are_not_stored_and_length_is_recomputed() -> None:
    headers = (("Content-Type", "text/plain"), ("Cache-Control", "public, max-age=60"),
               ("Date", "Mon, 01 Jan 1990 00:00:00 GMT"), ("Connection", "keep-alive"),
               ("Transfer-Encoding", "chunked"), ("Content-Length", "999"))
    cache = ResponseCache(CacheSettings())
    put(cache, request(), response(b"12345", headers), 0.0)
    hit = cache.lookup(request(), 1.0)
    assert isinstance(hit, Hit)
    data = hit.render(b"Date: now\r\nConnection: close\r\n")
    assert data == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Cache-Control: public, max-age=60\r\nContent-Length: 5\r\n"
                    b"Date: now\r\nConnection: close\r\n\r\n12345")


def test_counters_count_hits_misses_stores_and_evictions() -> None:
    cache = ResponseCache(CacheSettings())
    put(cache, request(), response(), 0.0)  # 2 misses, 1 store, 1 hit
    cache.lookup(request(), 1.0)
    cache.lookup(CacheRequest(1, "POST", "/a"), 1.0)  # a miss that may not use the cache
    stats = cache.stats
    assert stats == CacheStats(entries=1, bytes=stats.bytes, hits=2, misses=3, stores=1,
                               evictions=0, scavenged=0, invalidations=0)
    assert cache.settings.scavenger_period == 120.0
